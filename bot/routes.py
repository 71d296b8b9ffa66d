"""HTTP routes of the one aiohttp server: Slack's endpoint, health, readiness, metrics."""

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier

from bot import metrics as slack_metrics
from bot import strings
from bot.alerts import AlertAuth, alert_handler
from bot.ops_collector import OpsCollector
from bot.settings import SlackSettings
from bot.surface import HOLDS_ACK, PENDING, Acknowledged, Intake, Surface
from common.redaction import redact_text
from orchestration.control import ControlPlane


def signature_ok(verifier: SignatureVerifier, request: web.Request, body: str) -> bool:
    """True when the request carries a valid, fresh Slack signature."""
    try:
        return verifier.is_valid(
            body,
            request.headers.get("X-Slack-Request-Timestamp", ""),
            request.headers.get("X-Slack-Signature", ""),
        )
    except ValueError:  # a missing or non-numeric timestamp
        return False


def add_routes(
    app: web.Application,
    *,
    bolt: AsyncApp,
    control: ControlPlane,
    settings: SlackSettings,
    surface: Surface,
) -> None:
    """``POST /slack/events``, ``/alerts/alertmanager``, ``GET /healthz``, ``/readyz``,
    ``/metrics``."""
    verifier = SignatureVerifier(settings.signing_secret) if settings.signing_secret else None
    ops = OpsCollector.over(control.db, clock=control.clock)

    async def events(request: web.Request) -> web.Response:
        # The signature is checked before the body is trusted: forged or stale -> 401.
        body = await request.text()
        if verifier is None or not signature_ok(verifier, request, body):
            slack_metrics.SLACK_REQUESTS.labels(kind="unknown", outcome="401").inc()
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            bolt_request = await to_bolt_request(request)
        except ValueError:  # signed but not a Slack payload we can parse
            slack_metrics.SLACK_REQUESTS.labels(kind="unknown", outcome="400").inc()
            return web.json_response({"error": "malformed request body"}, status=400)
        context = bolt_request.context
        context[HOLDS_ACK] = True
        response = await to_aiohttp_response(await bolt.async_dispatch(bolt_request))
        if PENDING not in context:
            return response  # nothing to record (help, status, clicks, ...)
        intake = await surface.accepted(context)  # usually durable before the ack was ready
        if intake is Intake.UNRECORDED and "command" in bolt_request.body:
            # The listener acked before the outcome was known: say what is true instead.
            return await to_aiohttp_response(BoltResponse(status=200, body=strings.NOT_RECORDED))
        if intake is Intake.NEW:
            return Acknowledged.of(response)
        return response

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

    if verifier is not None:
        app.router.add_post("/slack/events", events)
    # Without a signing secret (Socket Mode) nothing sent over HTTP could prove it came from
    # Slack, and Slack talks over the socket anyway: there is no HTTP Slack endpoint (404).
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post(
        "/alerts/alertmanager",
        alert_handler(
            surface,
            channel=control.config.slack.alert_channel,
            auth=AlertAuth.of(control.config, settings),
        ),
    )
