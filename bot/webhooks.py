"""What every incoming webhook does the same way (Alertmanager, PagerDuty).

:func:`read_authenticated` reads the body under the size cap (413) and authenticates it on the
raw bytes (401) before anything parses it; :func:`record_requests` records the requests the
webhook asks for in the inbox before its 202 (503 when the database did not take them all, so
the sender delivers again), and starts the work of the new ones once the 202 is written.
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from bot.decode import Refused, read_body
from bot.surface import Acknowledged, Intake, Surface, Written
from orchestration.inbox import Request
from orchestration.telemetry import get_logger

log = get_logger("opsgate.webhooks")

Authenticate = Callable[[Any, bytes], str | None]  # (headers, raw body) -> why not, or None


async def read_authenticated(
    request: web.Request, *, source: str, refusal: Authenticate, event: str
) -> bytes | web.Response:
    """The raw body once authenticated, else the 413 or 401 answer (one log line each: the
    413 a ``request_refused``, the 401 ``event``)."""
    try:
        body = await read_body(request)
    except Refused as refused:  # too large to read: refused before it is authenticated
        refused.log(surface=source, kind="webhook")
        return web.json_response({"error": refused.reason}, status=refused.status)
    reason = refusal(request.headers, body)
    if reason is not None:
        log.info(event, reason=reason, remote=request.remote)
        return web.json_response({"error": reason}, status=401)
    return body


async def record_requests(
    surface: Surface,
    requests: Sequence[tuple[str, Request]],
    sent: asyncio.Event,
    *,
    source: str,
) -> web.Response:
    """Record ``requests`` (key, request) before the answer; their work starts once it is
    written. 202 ``{"accepted": [texts of new requests]}``, or 503 when one was not recorded."""
    # Concurrent records share one commit; one delivery's requests go in together.
    intakes = await asyncio.gather(*(surface.accept(r, key=k) for k, r in requests))
    accepted = []
    for (key, req), intake in zip(requests, intakes, strict=True):
        if intake is Intake.NEW:  # not a replay: its work is done once
            accepted.append(req.text)
            surface.perform(key, req, None, counted_as=source)
    if Intake.UNRECORDED in intakes:
        # The sender retries a 5xx; what was recorded now is a replay then, not redone.
        retry = {"error": "could not record every request; retry", "accepted": accepted}
        return Written.of(web.json_response(retry, status=503), sent)
    response = web.json_response({"accepted": accepted}, status=202)
    return (Acknowledged if accepted else Written).of(response, sent)
