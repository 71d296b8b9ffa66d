"""Cross-cutting work for every Slack request: correlation id, actor, inbox key, timing."""

import functools
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from slack_bolt.async_app import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot import metrics
from bot.decode import Refused, check_document
from bot.quiet import QuietGate
from orchestration.telemetry import bind_context

Next = Callable[[], Awaitable[BoltResponse]]


def kind_of(body: dict[str, Any]) -> str:
    """The metrics label of a Slack payload: ``command``, or its ``type``."""
    if "command" in body:
        return "command"
    return str(body.get("type") or "unknown")


def request_key(body: dict[str, Any], *, signature: str) -> str:
    """The inbox key of a request: the same for a replay or a retry, different otherwise.

    Events API deliveries: the event id (Slack's retries are signed anew but keep it). Other
    signed requests: a hash of the signature, which covers the timestamp and the body, so only
    a byte-identical replay maps to it. Socket Mode carries no signature (the socket itself is
    authenticated, and Slack resends nothing but events): a fresh key.
    """
    event_id = body.get("event_id")
    if event_id:
        return f"event:{event_id}"
    if signature:
        return "slack:" + hashlib.sha256(signature.encode()).hexdigest()
    return f"request:{uuid.uuid4().hex}"


def begin_request(
    quiet: QuietGate,
    context: dict[str, Any],
    *,
    body: dict[str, Any],
    user_id: str | None,
    channel_id: str | None,
    signature: str,
    retry: str,
) -> float:
    """Bind a correlation id, the actor and the request's inbox key; the time it started.

    The work every Slack request begins with, whoever dispatches it (Bolt's middleware chain,
    or the HTTP route's own path for ``/incident``).
    """
    started = time.perf_counter()
    quiet.touch()
    structlog.contextvars.clear_contextvars()
    correlation_id = uuid.uuid4().hex
    context["correlation_id"] = correlation_id
    bind_context(correlation_id=correlation_id, actor=user_id, channel=channel_id)
    context["inbox_key"] = request_key(body, signature=signature)
    if retry:
        context["retry_num"] = retry
    return started


def end_request(kind: str, *, started: float, status: int) -> None:
    """Count the request by kind and status, and the time it took to acknowledge."""
    elapsed = time.perf_counter() - started
    ack, requests = _children(kind, status)
    ack.observe(elapsed)
    requests.inc()


@functools.cache
def _children(kind: str, status: int) -> tuple[Any, Any]:
    """The metric children of one kind and status (a handful of pairs: looked up once)."""
    return (
        metrics.ACK_SECONDS.labels(kind=kind),
        metrics.SLACK_REQUESTS.labels(kind=kind, outcome=str(status)),
    )


async def socket_checked(req: AsyncBoltRequest, next: Next) -> BoltResponse | None:
    """Socket Mode payloads get the checks HTTP bodies get in the route (``bot.decode``).

    Slack delivers them parsed over an authenticated socket, so only the shape and content
    checks apply: a malformed one is refused (400, one log line) before any listener.
    """
    if req.mode == "socket_mode":
        try:
            check_document(req.body)
        except Refused as refused:
            refused.log(surface="socket", kind=kind_of(req.body)[:40])
            return BoltResponse(status=refused.status, body="")
    return await next()


def correlation(quiet: QuietGate) -> Callable[..., Awaitable[BoltResponse | None]]:
    """Bind a correlation id, the actor and the request's inbox key (``context``); time it.

    Replays are recognised where the request is recorded (``Surface.submit``, in the listener
    that knows the request does work), so a request that does no work costs no database round
    trip. (Bolt runs global middleware to the end before any listener: work after ``next()``
    happens before the listener, not around it.)
    """

    async def middleware(
        req: AsyncBoltRequest,
        context: AsyncBoltContext,
        next: Next,
    ) -> BoltResponse | None:
        body = req.body
        started = begin_request(
            quiet,
            context,
            body=body,
            user_id=context.user_id,
            channel_id=context.channel_id,
            signature=req.headers.get("x-slack-signature", [""])[0],
            retry=req.headers.get("x-slack-retry-num", [""])[0],
        )
        response = await next()  # Bolt middleware chains may return None
        end_request(
            kind_of(body), started=started, status=response.status if response is not None else 200
        )
        return response

    return middleware
