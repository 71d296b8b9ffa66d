"""The rejection-reason modal."""

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.ids import CallbackId
from bot.listeners.actions import Click, cast
from bot.surface import Surface
from orchestration.enums import VoteChoice


def reason_of(view: dict[str, Any]) -> str:
    """The text typed into the modal's only input (empty when left blank)."""
    for block in (view.get("state") or {}).get("values", {}).values():
        for element in block.values():
            value = element.get("value")
            if value:
                return str(value)[:500]
    return ""


def register(app: AsyncApp, surface: Surface) -> None:
    """Attach the modal submission listener."""

    @app.view(CallbackId.REJECT_REASON.value)
    async def submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await ack()
        click = Click(
            user=body["user"]["id"],
            nonce=str(view.get("private_metadata") or ""),
            channel=None,
            trigger_id=None,
        )
        surface.run(
            cast(surface, click=click, choice=VoteChoice.REJECT, reason=reason_of(view)),
            name="vote-reject",
        )
