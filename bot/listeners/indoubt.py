"""The three answers on an in-doubt card (``value`` is the in-doubt approval's nonce).

Like Approve and Reject, an answer is committed before its ack; the step that "run it again"
starts, or the plan that "it ran" resumes, goes on after the ack.
"""

from collections.abc import Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.ids import ActionId
from bot.listeners.actions import vote_then_ack
from bot.surface import Surface
from orchestration.enums import VoteChoice

ANSWERS = {
    ActionId.IN_DOUBT_RAN: VoteChoice.RAN,
    ActionId.IN_DOUBT_RERUN: VoteChoice.RERUN,
    ActionId.IN_DOUBT_STOP: VoteChoice.REJECT,
}

Listener = Callable[..., Coroutine[Any, Any, None]]


def _listener(surface: Surface, choice: VoteChoice) -> Listener:
    async def answer(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: dict[str, Any]
    ) -> None:
        await vote_then_ack(
            surface, choice=choice, ack=ack, body=body, client=client, context=context
        )

    return answer


def register(app: AsyncApp, surface: Surface) -> None:
    """Attach one listener per answer."""
    for action_id, choice in ANSWERS.items():
        app.action(action_id.value)(_listener(surface, choice))
