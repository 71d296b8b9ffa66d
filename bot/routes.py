"""HTTP routes of the one aiohttp server: Slack's endpoint, health, readiness, metrics, traces.

Every malformed or unsigned request to ``POST /slack/events`` gets a 4xx and one
``request_refused`` log line before Bolt sees it (``bot.decode``, ``bot.payloads``).
"""

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot import metrics as slack_metrics
from bot import payloads, strings
from bot.alerts import AlertAuth, alert_handler
from bot.decode import Refused, SlackBody, decode_slack, read_body, slack_signature_ok
from bot.direct import DirectCommands
from bot.listeners import LISTENED
from bot.listeners.commands import IncidentCommand
from bot.ops_collector import OpsCollector
from bot.pagerduty import pagerduty_handler
from bot.payloads import Kind
from bot.settings import SlackSettings
from bot.surface import HELD, HOLDS_ACK, PENDING, Acknowledged, Intake, Surface, Written, responding
from bot.traces import LinkCheck, TraceLinks, render_forbidden, render_missing, render_trace
from common.redaction import redact_text
from orchestration.control import ControlPlane
from orchestration.telemetry import get_logger

log = get_logger("opsgate.routes")


def refusal(refused: Refused, *, surface: str, kind: str = "unknown") -> web.Response:
    """The 4xx of a refused request, with one log line (no traceback, no body)."""
    refused.log(surface=surface, kind=kind)
    if surface == "slack":
        slack_metrics.SLACK_REQUESTS.labels(kind=kind, outcome=str(refused.status)).inc()
    return web.json_response({"error": refused.reason}, status=refused.status)


# The trace page loads nothing from anywhere (inline CSS only) and is not cached or indexed.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}


def _html(page: str, *, status: int = 200) -> web.Response:
    return web.Response(
        text=page, status=status, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS
    )


def unlistened(slack: SlackBody) -> web.Response | None:
    """The answer to a well-formed payload no listener takes; None when one does.

    Answered here rather than by Bolt (whose answer is the same 404 with a long warning per
    request). An event type opsgate does not subscribe to, or a rate-limit notice, is
    acknowledged (200) so that Slack does not redeliver it; interactivity or a command that
    nothing handles is a 404.
    """
    target = payloads.listener_of(slack.model)
    if target is None:
        return None  # answered by Bolt's own middleware (URL handshake, certificate check)
    listened, name = target
    if listened in LISTENED and name in LISTENED[listened]:
        return None
    name = name[:60]  # it goes into a log line and the answer
    if listened in ("events", "notices"):
        log.info("request_ignored", surface="slack", kind=slack.kind, reason=f"no {name} listener")
        slack_metrics.SLACK_REQUESTS.labels(kind=slack.kind, outcome="200").inc()
        return web.Response(status=200)
    return refusal(
        Refused(404, f"opsgate has no {name} listener"), surface="slack", kind=slack.kind
    )


async def checked(request: web.Request, *, secret: str | None) -> SlackBody:
    """The request's body, signed and checked; ``Refused`` otherwise.

    The signature is checked on the raw bytes before anything else reads them (forged or
    stale: 401); then the body is decoded and checked against its payload model (4xx).
    """
    raw = await read_body(request)
    if not secret or not slack_signature_ok(
        raw,
        secret=secret,
        timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
        signature=request.headers.get("X-Slack-Signature", ""),
    ):
        raise Refused(401, "invalid signature")
    return decode_slack(request, raw)


def bolt_request(slack: SlackBody, request: web.Request) -> AsyncBoltRequest:
    """The Bolt request of a checked body: Bolt gets the parsed dict, not its own parse.

    Bolt's parser would re-read the text by other rules (a form body merely containing the word
    "payload" loses its fields, say); given the dict, Bolt sees exactly what was checked. The
    constructor takes a dict only in Socket Mode, so the mode is set back to HTTP, where Bolt
    verifies the signature of ``raw_body`` once more.
    """
    req = AsyncBoltRequest(
        body=slack.body,
        query=request.query_string,
        headers=dict(request.headers),
        mode="socket_mode",
    )
    req.raw_body = slack.text
    req.mode = "http"
    return req


async def dispatch(
    bolt: AsyncApp, slack: SlackBody, request: web.Request
) -> tuple[BoltResponse, dict[str, Any]]:
    """Bolt's answer to the request, and the request's context."""
    req = bolt_request(slack, request)
    context = req.context
    context[HOLDS_ACK] = True
    return await bolt.async_dispatch(req), context


async def held(
    surface: Surface, slack: SlackBody, response: web.Response, context: dict[str, Any]
) -> tuple[web.Response, bool]:
    """The answer once what it acknowledges is durable; whether it is a new record."""
    if HELD in context:  # a vote: its 2xx goes out once it is committed
        await context[HELD]
    if PENDING not in context:
        return response, False  # nothing to record (help, status, clicks, ...)
    intake = await surface.accepted(context)  # usually durable before the ack was ready
    if intake is Intake.UNRECORDED and slack.kind is Kind.COMMAND:
        # The listener acked before the outcome was known: say what is true instead.
        body = BoltResponse(status=200, body=strings.NOT_RECORDED)
        return await to_aiohttp_response(body), False
    return response, intake is Intake.NEW


def add_routes(
    app: web.Application,
    *,
    bolt: AsyncApp,
    incident: IncidentCommand,
    control: ControlPlane,
    settings: SlackSettings,
    surface: Surface,
    links: TraceLinks,
) -> None:
    """``POST /slack/events``, ``/alerts/alertmanager``, ``/alerts/pagerduty``, ``GET
    /healthz``, ``/readyz``, ``/metrics``, ``/traces/{trace_id}`` (signed links only).

    ``/incident`` over HTTP is answered here (``bot.direct``); everything else by ``bolt``.
    """
    signing_secret = settings.signing_secret
    direct = DirectCommands(bolt=bolt, incident=incident, quiet=surface.quiet)
    ops = OpsCollector.over(
        control.db, clock=control.clock, rollout=control.config.rollout, mode=control.config.mode
    )

    async def events(request: web.Request) -> web.Response:
        with surface.quiet.answering():  # background work waits while a burst is answered
            return await answer_event(request)

    async def answer_event(request: web.Request) -> web.Response:
        try:
            slack = await checked(request, secret=signing_secret)
        except Refused as refused:
            return refusal(refused, surface="slack")
        early = unlistened(slack)
        if early is not None:
            return early
        with responding() as sent:
            if direct.takes(slack):
                answered, context = await direct.answer(slack, request)
                slack_metrics.DISPATCHED.labels(kind=slack.kind, by="route").inc()
            else:
                answered, context = await dispatch(bolt, slack, request)
                slack_metrics.DISPATCHED.labels(kind=slack.kind, by="bolt").inc()
            response = await to_aiohttp_response(answered)
            response, recorded = await held(surface, slack, response, context)
            return (Acknowledged if recorded else Written).of(response, sent)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        ok = await control.db.ping()
        # Files disagreeing with the database keep the replica ready: it plans from the database.
        return web.json_response(
            {
                "status": "ready" if ok else "database unreachable",
                "knowledge": control.knowledge.status().as_json(),
            },
            status=200 if ok else 503,
        )

    async def metrics(_request: web.Request) -> web.Response:
        # Process-wide Slack metrics, then this control plane's operational gauges (their own
        # registry: several apps in one process must not collide in the global one).
        await ops.refresh()
        body = generate_latest() + generate_latest(ops.registry)
        body = redact_text(body.decode()).encode()  # label values come from stored data
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def trace(request: web.Request) -> web.Response:
        trace_id = request.match_info["trace_id"]
        now = control.clock.now()
        found = links.check(
            trace_id, request.query.get("exp", ""), request.query.get("sig", ""), now
        )
        if found is not LinkCheck.OK:
            log.warning(
                "request_refused",
                surface="traces",
                status=403,
                reason=f"trace link {found.value}",
                trace_id=trace_id[:128],
            )
            return _html(render_forbidden(), status=403)
        spans = await control.trace(trace_id)
        if not spans:
            return _html(render_missing(trace_id), status=404)
        expires = datetime.fromtimestamp(int(request.query["exp"]), UTC)
        page = await asyncio.to_thread(render_trace, trace_id, spans, expires=expires)
        return _html(page)

    if signing_secret:
        app.router.add_post("/slack/events", events)
    # Without a signing secret (Socket Mode) nothing sent over HTTP could prove it came from
    # Slack, and Slack talks over the socket anyway: there is no HTTP Slack endpoint (404).
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/traces/{trace_id}", trace)
    app.router.add_post(
        "/alerts/alertmanager",
        alert_handler(
            surface,
            channel=control.config.slack.alert_channel,
            auth=AlertAuth.of(control.config, settings),
        ),
    )
    app.router.add_post("/alerts/pagerduty", pagerduty_handler(surface, config=control.config))
