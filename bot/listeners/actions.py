"""Approve / Reject buttons on approval cards (``value`` is the approval nonce).

A click is acknowledged only after its vote is committed (``Surface.ack_once_recorded``): a
2xx means the vote survives a crash of this process (Slack never resends a click it got a 2xx
for). The step a final approval starts runs after the ack, in the background. Reject fails
safe: the click itself rejects and halts the step; the modal that opens afterwards only adds
an optional reason.
"""

from collections.abc import Awaitable
from typing import Any

from pydantic import BaseModel, ConfigDict
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import blocks, metrics, strings
from bot.ids import ActionId
from bot.surface import Surface
from orchestration.enums import VoteChoice
from orchestration.telemetry import get_logger
from orchestration.views import VoteOutcome

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


async def cast(
    surface: Surface, *, click: Click, choice: VoteChoice, later: list[Awaitable[None]]
) -> VoteOutcome | None:
    """Record one vote (committed on return); None when the control plane failed.

    Refusals reach the voter through the outbox; the step a final vote starts is appended to
    ``later``, to run after the ack.
    """
    try:
        outcome = await surface.control.vote(
            nonce=click.nonce, voter=click.user, choice=choice, defer=later.append
        )
    except Exception as exc:  # the database is down, say: tell the voter, never drop silently
        log.error("vote_failed", choice=choice.value, nonce=click.nonce, error=repr(exc))
        metrics.VOTES.labels(code="error").inc()
        return None
    metrics.VOTES.labels(code=outcome.code).inc()
    return outcome


async def after_ack(later: list[Awaitable[None]]) -> None:
    """Run, in order, the work a committed vote left for after its ack."""
    for work in later:
        await work


async def tell_not_counted(client: AsyncWebClient, click: Click) -> None:
    """Tell the voter, privately, that their click was not recorded."""
    if not click.channel:
        return  # nowhere to say it; the error is logged
    await client.chat_postEphemeral(
        channel=click.channel, user=click.user, text=strings.VOTE_NOT_RECORDED
    )


async def vote_then_ack(
    surface: Surface,
    *,
    choice: VoteChoice,
    ack: AsyncAck,
    body: dict[str, Any],
    client: AsyncWebClient,
    context: dict[str, Any],
) -> tuple[Click, VoteOutcome] | None:
    """Cast a click's vote and ack once it is committed; the work it left runs after the ack.

    None when it could not be recorded (the voter is told privately).
    """
    click = parse_click(body)
    later: list[Awaitable[None]] = []
    voting = cast(surface, click=click, choice=choice, later=later)
    outcome = await surface.ack_once_recorded(context, ack, voting)
    if outcome is None:
        surface.run(tell_not_counted(client, click), name="vote-not-recorded")
        return None
    surface.run(after_ack(later), name=f"vote-{choice.value}")
    return click, outcome


def register(app: AsyncApp, surface: Surface) -> None:
    """Attach the button listeners."""

    @app.action(ActionId.APPROVE.value)
    async def approve(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: dict[str, Any]
    ) -> None:
        choice = VoteChoice.APPROVE
        await vote_then_ack(
            surface, choice=choice, ack=ack, body=body, client=client, context=context
        )

    @app.action(ActionId.REJECT.value)
    async def reject(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: dict[str, Any]
    ) -> None:
        choice = VoteChoice.REJECT
        counted = await vote_then_ack(
            surface, choice=choice, ack=ack, body=body, client=client, context=context
        )
        if counted is None:
            return
        click, outcome = counted
        if not outcome.accepted or not click.trigger_id:
            return
        try:
            await client.views_open(
                trigger_id=click.trigger_id, view=blocks.reject_modal(click.nonce)
            )
        except Exception as exc:  # the rejection already counts; only the reason is lost
            log.warning("reject_modal_failed", nonce=click.nonce, error=repr(exc))
