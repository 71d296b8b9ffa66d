"""Approve / Reject buttons on approval cards (``value`` is the approval nonce)."""

from typing import Any

from pydantic import BaseModel, ConfigDict
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import blocks, metrics
from bot.ids import ActionId
from bot.surface import Surface
from orchestration.enums import VoteChoice
from orchestration.telemetry import get_logger

log = get_logger("opsgate.actions")


class Click(BaseModel):
    """One button click: who, which nonce, where."""

    model_config = ConfigDict(frozen=True)
    user: str
    nonce: str
    channel: str | None
    trigger_id: str | None


def parse_click(body: dict[str, Any]) -> Click:
    """The click in a ``block_actions`` payload."""
    action = body["actions"][0]
    return Click(
        user=body["user"]["id"],
        nonce=str(action.get("value") or ""),
        channel=(body.get("channel") or {}).get("id"),
        trigger_id=body.get("trigger_id"),
    )


async def cast(surface: Surface, *, click: Click, choice: VoteChoice, reason: str = "") -> None:
    """Hand one vote to the control plane (refusals reach the voter through the outbox)."""
    outcome = await surface.control.vote(
        nonce=click.nonce, voter=click.user, choice=choice, reason=reason
    )
    metrics.VOTES.labels(code=outcome.code).inc()


def register(app: AsyncApp, surface: Surface) -> None:
    """Attach the button listeners."""

    @app.action(ActionId.APPROVE.value)
    async def approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        click = parse_click(body)
        surface.run(cast(surface, click=click, choice=VoteChoice.APPROVE), name="vote-approve")

    @app.action(ActionId.REJECT.value)
    async def reject(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        click = parse_click(body)
        if click.trigger_id:
            try:
                await client.views_open(
                    trigger_id=click.trigger_id, view=blocks.reject_modal(click.nonce)
                )
                return
            except Exception as exc:  # without a modal, reject without a reason
                log.warning("reject_modal_failed", error=repr(exc))
        surface.run(cast(surface, click=click, choice=VoteChoice.REJECT), name="vote-reject")
