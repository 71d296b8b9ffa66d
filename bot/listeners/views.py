"""The rejection-reason modal: an optional reason added to a rejection already counted.

The submission is acknowledged after the reason is committed; a refusal (or a failure to
record it) keeps the modal open with the reason shown under the input. Closing the modal
sends nothing and changes nothing.
"""

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot import strings
from bot.ids import BlockId, CallbackId
from bot.surface import Surface
from orchestration.telemetry import get_logger

log = get_logger("opsgate.views")

MAX_ERROR_CHARS = 150  # keep the inline error to a line or two under the input


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
        reason = reason_of(view).strip()
        if not reason:  # submitted blank: the rejection stands as it is
            await ack()
            return
        user = body["user"]["id"]
        nonce = str(view.get("private_metadata") or "")
        try:
            outcome = await surface.control.add_reason(nonce=nonce, voter=user, reason=reason)
        except Exception as exc:  # the database is down, say: keep the text, say it failed
            log.error("rejection_reason_failed", nonce=nonce, error=repr(exc))
            await ack(
                response_action="errors",
                errors={BlockId.REJECT_REASON.value: strings.REASON_NOT_RECORDED},
            )
            return
        if not outcome.accepted:
            await ack(
                response_action="errors",
                errors={BlockId.REJECT_REASON.value: outcome.reason[:MAX_ERROR_CHARS]},
            )
            return
        await ack()
        surface.relay.wakeup.set()  # the card and thread hear of the reason at once
