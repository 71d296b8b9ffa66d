"""What every listener needs: the control plane, background tasks, the outbox relay, the inbox.

A request that does work is recorded (``accept``) before its 2xx goes out, then done after
the ack (``perform``); ``sweep_forever`` redoes what a crashed process acknowledged but did not
finish.
"""

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot import strings
from bot.quiet import QuietGate
from bot.tasks import TaskTracker
from common import faults
from orchestration.config import OpsgateConfig
from orchestration.control import ControlPlane
from orchestration.inbox import SWEEP_S, Outcome, Request
from orchestration.outbox import OutboxRelay
from orchestration.telemetry import get_logger

log = get_logger("opsgate.surface")

R = TypeVar("R", bound=web.StreamResponse)
RECORDED = "inbox_recorded"  # context key: this request was recorded just now


class Intake(StrEnum):
    """What recording a request came to."""

    NEW = "new"
    REPLAY = "replay"  # recorded before: answer as before, do nothing more
    UNRECORDED = "unrecorded"  # the database did not answer: nothing may be promised


@dataclass
class Surface:
    """Collaborators of the Slack listeners."""

    control: ControlPlane
    config: OpsgateConfig
    tasks: TaskTracker
    relay: OutboxRelay
    quiet: QuietGate = field(default_factory=QuietGate)

    def run(self, work: Awaitable[Any], *, name: str) -> None:
        """Run ``work`` after the ack; then wake the outbox relay so Slack hears at once."""

        async def job() -> None:
            try:
                await self.quiet.wait()  # acks of a burst go out before its background work
                await work
            finally:
                self.relay.wakeup.set()

        self.tasks.spawn(job(), name=name)

    async def accept(
        self, request: Request, *, key: str, context: dict[str, Any] | None = None
    ) -> Intake:
        """Record ``request`` under ``key`` before its 2xx; marks the Bolt ``context``."""
        context = context if context is not None else {}
        detail = {"retry": context["retry_num"]} if context.get("retry_num") else {}
        try:
            new = await self.control.record_request(key, request, **detail)
        except Exception as exc:
            log.error("request_not_recorded", key=key, kind=request.kind.value, error=repr(exc))
            return Intake.UNRECORDED
        context[RECORDED] = new
        if not new:
            context["replayed"] = True
            return Intake.REPLAY
        return Intake.NEW

    def perform(self, key: str, request: Request, client: AsyncWebClient | None) -> None:
        """Do a recorded request's work after the ack; the asker hears if it must wait."""
        self.run(self._perform(key, request, client), name=f"request-{request.kind.value}")

    async def _perform(self, key: str, request: Request, client: AsyncWebClient | None) -> None:
        outcome = await self.control.handle_request(key, request)
        if outcome is not Outcome.FAILED or client is None or not request.private:
            return
        # The database failed us, so the outbox cannot carry this: tell the asker directly.
        try:
            await client.chat_postEphemeral(
                channel=request.channel, user=request.requester, text=strings.REQUEST_DELAYED
            )
        except Exception as exc:
            log.warning("request_delay_not_told", key=key, error=repr(exc))

    async def sweep_forever(self, interval_s: float = SWEEP_S) -> None:
        """Every ``interval_s`` (and at once): redo requests whose owner's lease lapsed."""
        while True:
            try:
                for key, request in await self.control.sweep_inbox():
                    self.perform(key, request, None)
            except Exception as exc:  # the database is down: the next sweep tries again
                log.warning("inbox_sweep_failed", error=repr(exc))
            await asyncio.sleep(interval_s)


async def send_now(request: web.Request, response: R) -> R:
    """Write ``response`` to the client now, before anything else happens in this process.

    The crash tests' fault point ``after_intake`` sits right after: the sender has its 2xx
    and the request exists only in the inbox.
    """
    await response.prepare(request)
    await response.write_eof()
    faults.point("after_intake")
    return response
