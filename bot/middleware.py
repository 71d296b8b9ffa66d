"""Cross-cutting work for every Slack request: correlation id, actor, retry dedupe, timing."""

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from slack_bolt.async_app import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot import metrics
from bot.quiet import QuietGate
from orchestration.control import ControlPlane
from orchestration.telemetry import bind_context, get_logger

log = get_logger("opsgate.slack")

Next = Callable[[], Awaitable[BoltResponse]]


def _kind(body: dict[str, Any]) -> str:
    if "command" in body:
        return "command"
    return str(body.get("type") or "unknown")


def correlation(
    control: ControlPlane, quiet: QuietGate
) -> Callable[..., Awaitable[BoltResponse | None]]:
    """Bind a correlation id and the actor; drop Slack's retried deliveries of one event."""

    async def middleware(
        req: AsyncBoltRequest,
        context: AsyncBoltContext,
        next: Next,
    ) -> BoltResponse | None:
        started = time.perf_counter()
        quiet.touch()
        structlog.contextvars.clear_contextvars()
        correlation_id = uuid.uuid4().hex
        context["correlation_id"] = correlation_id
        body = req.body
        kind = _kind(body)
        bind_context(
            correlation_id=correlation_id, actor=context.user_id, channel=context.channel_id
        )
        event_id = body.get("event_id")
        if event_id and not await control.first_delivery(f"event:{event_id}"):
            retry = req.headers.get("x-slack-retry-num", ["0"])[0]
            log.info("slack_retry_ignored", event_id=event_id, retry=retry)
            metrics.SLACK_REQUESTS.labels(kind=kind, outcome="duplicate").inc()
            return BoltResponse(status=200, body="")
        response = await next()  # Bolt middleware chains may return None
        metrics.ACK_SECONDS.labels(kind=kind).observe(time.perf_counter() - started)
        status = response.status if response is not None else 200
        metrics.SLACK_REQUESTS.labels(kind=kind, outcome=str(status)).inc()
        return response

    return middleware
