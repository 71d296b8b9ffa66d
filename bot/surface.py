"""What every listener needs: the control plane, background tasks, the outbox relay, the inbox.

A request that does work is recorded (``submit``, ``accept``) before its 2xx goes out, then
done after the ack (``perform``); ``sweep_forever`` redoes what a crashed process acknowledged
but did not finish.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics, strings
from bot.quiet import QuietGate
from bot.tasks import TaskTracker
from common import faults
from orchestration.config import OpsgateConfig
from orchestration.control import ControlPlane
from orchestration.inbox import SWEEP_S, Outcome, Request, RequestKind
from orchestration.outbox import OutboxRelay
from orchestration.telemetry import get_logger

log = get_logger("opsgate.surface")

# Bolt context keys of a request that does work.
PENDING = "inbox_pending"  # (key, request, its record in flight)
INTAKE = "inbox_intake"  # what recording it came to (an Intake), once known
HOLDS_ACK = "route_holds_ack"  # the HTTP route sends the 2xx only once the record is durable
HELD = "route_awaits"  # the record the HTTP route awaits before its 2xx (``ack_once_recorded``)

T = TypeVar("T")

# The response of the request being handled: work it starts waits until that response is
# written, so an ack always reaches the sender before the work it promises begins (and the
# crash tests' fault point after it is exact). Tasks copy it from the context they start in.
_RESPONSE_SENT: ContextVar[asyncio.Event | None] = ContextVar("opsgate_response_sent", default=None)
SEND_WAIT_S = 2.0  # a response never written (the sender hung up) holds its work this long


@contextlib.contextmanager
def responding() -> Iterator[asyncio.Event]:
    """While handling one request: the event its written response sets (``Written``)."""
    sent = asyncio.Event()
    token = _RESPONSE_SENT.set(sent)
    try:
        yield sent
    except BaseException:
        sent.set()  # no response of ours will be written: nothing waits for one
        raise
    finally:
        _RESPONSE_SENT.reset(token)


async def _response_written(sent: asyncio.Event | None) -> None:
    if sent is None or sent.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sent.wait(), SEND_WAIT_S)


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
        sent = _RESPONSE_SENT.get()

        async def job() -> None:
            try:
                await _response_written(sent)  # this request's ack is on the wire first
                await self.quiet.wait()  # acks of a burst go out before its background work
                await work
            finally:
                self.relay.wakeup.set()

        self.tasks.spawn(job(), name=name)

    def submit(self, request: Request, *, key: str, context: dict[str, Any]) -> None:
        """Start recording ``request`` under ``key``; ``accepted(context)`` waits for it."""
        detail = {"retry": context["retry_num"]} if context.get("retry_num") else {}
        context[PENDING] = (key, request, self.control.submit_request(key, request, **detail))

    async def accepted(self, context: dict[str, Any]) -> Intake:
        """Wait until the request ``submit`` started is durable, or could not be recorded."""
        if INTAKE in context:
            return Intake(context[INTAKE])
        key, request, pending = context[PENDING]
        try:
            intake = Intake.NEW if await pending else Intake.REPLAY
        except Exception as exc:
            log.error("request_not_recorded", key=key, kind=request.kind.value, error=repr(exc))
            intake = Intake.UNRECORDED
        context[INTAKE] = intake
        return intake

    async def accept(
        self, request: Request, *, key: str, context: dict[str, Any] | None = None
    ) -> Intake:
        """Record ``request`` under ``key`` (before its 2xx goes out); marks ``context``."""
        context = context if context is not None else {}
        self.submit(request, key=key, context=context)
        return await self.accepted(context)

    async def ack_once_recorded(
        self, context: dict[str, Any], ack: Callable[[], Awaitable[Any]], record: Awaitable[T]
    ) -> T:
        """Acknowledge only once ``record`` is committed; its result.

        Over HTTP the listener acks at once and the route holds the 2xx until the record is
        done, so a commit slower than Bolt's 3 s wait for ``ack()`` answers late rather than
        404 "unhandled request" for a vote that then counts. Elsewhere (Socket Mode) the
        listener itself waits, then acks.
        """
        if not context.get(HOLDS_ACK):
            result = await record
            await ack()
            return result
        task = asyncio.ensure_future(record)
        context[HELD] = task
        await ack()
        return await task

    def perform(
        self,
        key: str,
        request: Request,
        client: AsyncWebClient | None,
        *,
        counted_as: str | None = None,
    ) -> None:
        """Do a recorded request's work after the ack; the asker hears if it must wait."""
        self.run(self._perform(key, request, client, counted_as), name=f"request-{request.kind}")

    def perform_once_recorded(
        self, context: dict[str, Any], client: AsyncWebClient | None, *, counted_as: str
    ) -> None:
        """After the ack: once the record ``submit`` started is durable, do it if it is new."""
        key, request, _pending = context[PENDING]

        async def job() -> None:
            if await self.accepted(context) is Intake.NEW:
                await self._perform(key, request, client, counted_as)

        self.run(job(), name=f"request-{request.kind}")

    async def _perform(
        self, key: str, request: Request, client: AsyncWebClient | None, counted_as: str | None
    ) -> None:
        if counted_as and request.kind is RequestKind.OPEN:
            metrics.INCIDENTS.labels(source=counted_as).inc()
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


class Written(web.Response):
    """A response that tells the work of its request when it has been written (``responding``)."""

    sent: asyncio.Event | None = None

    @classmethod
    def of(cls, response: web.Response, sent: asyncio.Event) -> "Written":
        """The same status, headers and body."""
        written = cls(status=response.status, body=response.body, headers=response.headers)
        written.sent = sent
        return written

    async def write_eof(self, data: bytes = b"") -> None:
        """Write the end of the response, then let the request's work begin."""
        try:
            await super().write_eof(data)
            self.passed()
        finally:
            if self.sent is not None:
                self.sent.set()

    def passed(self) -> None:
        """What happens once the response is written, before the work begins."""


class Acknowledged(Written):
    """The 2xx of a request just recorded.

    The crash tests' fault point ``after_intake`` sits right after it is written: the sender
    has its 2xx and the request exists only in the inbox (its work waits for the write).
    """

    def passed(self) -> None:
        """Pass the fault point."""
        faults.point("after_intake")
