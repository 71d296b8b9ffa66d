"""``POST /alerts/pagerduty``: PagerDuty Webhooks V3 open and close incidents.

Every delivery is signed: ``X-PagerDuty-Signature`` holds one or more comma-separated
``v1=<hex HMAC-SHA256 of the raw body keyed with the subscription's secret>`` (several while
PagerDuty rotates the secret); one must match ``intake.pagerduty.webhook_secret`` (a
``${secret:NAME}``), compared in constant time, before the body is parsed. A missing or wrong
signature is a 401 and nothing is recorded. Then the body must be UTF-8 JSON of the V3 shape
``{"event": {"id", "event_type", "resource_type", "occurred_at", "data": {...}}}`` (4xx).

- ``incident.triggered`` opens an incident in ``intake.pagerduty.channel`` (default
  ``slack.alert_channel``), recorded in the inbox before the 202 like an Alertmanager alert;
  its requester is ``pagerduty`` and it mirrors the PagerDuty incident (``pagerduty:<id>``).
- ``incident.resolved`` resolves the incident mirroring it (``orchestration.closing``); an
  incident opsgate never opened, or closed already, is audited and left alone.
- any other event is audited (``external_event``, on the mirroring incident if any, under
  the correlation id ``pagerduty-event:<event id>``) and answered 202 once recorded; a
  redelivery or replay of the same event id is answered the same and not recorded again.

PagerDuty redelivers on a non-2xx; the inbox keys (``pagerduty:<incident id>:triggered`` and
``...:resolved``) make a redelivery a replay. A V3 signature covers no timestamp, so a captured
delivery stays validly signed for ever: an ``incident.*`` event whose ``occurred_at`` is older
than the inbox keeps its keys (``orchestration.inbox.RETENTION``) is refused (400) as a replay
the inbox could no longer recognise.
"""

import hashlib
import hmac
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.secrets import SecretSource
from bot.decode import Refused, check_charset, parse_json
from bot.surface import Surface, Written, responding
from bot.webhooks import read_authenticated, record_requests
from orchestration.config import OpsgateConfig, PagerDutyIntakeConfig
from orchestration.inbox import RETENTION, Request, RequestKind
from orchestration.telemetry import get_logger, new_correlation_id

log = get_logger("opsgate.pagerduty")

SOURCE = "pagerduty"
REQUESTER = "pagerduty"
SIGNATURE_HEADER = "X-PagerDuty-Signature"
MAX_SIGNATURES = 10


def signature_ok(header: str, body: bytes, secret: str) -> bool:
    """True when one ``v1=`` signature in ``header`` is the HMAC-SHA256 of ``body``."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    found = False
    for item in header.split(",")[:MAX_SIGNATURES]:
        version, _, digest = item.strip().partition("=")
        # Compare every candidate (no early exit), each in constant time.
        if version == "v1" and hmac.compare_digest(digest.encode("utf-8", "replace"), expected):
            found = True
    return found


class PagerDutyAuth:
    """Checks deliveries against the configured webhook secret, looked up per request."""

    def __init__(
        self, config: PagerDutyIntakeConfig | None, *, secrets: SecretSource | None = None
    ) -> None:
        """Verify with ``config.webhook_secret``; without config every delivery is refused."""
        self._ref = config.webhook_secret if config else None
        self._secrets = secrets or SecretSource()

    def refusal(self, headers: Any, body: bytes) -> str | None:
        """Why a delivery is not authentic (None when it is)."""
        if self._ref is None:
            return "PagerDuty intake is closed: intake.pagerduty.webhook_secret is not configured"
        missing = self._secrets.missing(self._ref)
        if missing:
            return f"PagerDuty intake is closed: the secret {missing[0]} is not set"
        secret = self._secrets.resolve(self._ref)
        header = headers.get(SIGNATURE_HEADER, "")
        if not header:
            return f"missing {SIGNATURE_HEADER}"
        if not signature_ok(header, body, secret):
            return f"wrong {SIGNATURE_HEADER}"
        return None


class Service(BaseModel):
    """The service an incident belongs to (a reference with its summary)."""

    model_config = ConfigDict(extra="ignore")
    id: str = ""
    summary: str = ""


class IncidentData(BaseModel):
    """The part of an incident event's ``data`` opsgate reads."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")
    title: str = ""
    number: int | None = None
    incident_number: int | None = None
    html_url: str = ""
    service: Service | None = None
    urgency: str = ""


class Event(BaseModel):
    """A Webhooks V3 event."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=128)
    event_type: str = Field(min_length=1, max_length=100)
    resource_type: str = ""
    occurred_at: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class Envelope(BaseModel):
    """The body of a delivery."""

    model_config = ConfigDict(extra="ignore")
    event: Event


def decode_event(request: web.Request, raw: bytes) -> Envelope:
    """The delivery body: UTF-8 JSON, depth-capped, NUL-free, of the V3 shape (else 4xx)."""
    check_charset(request)
    document = parse_json(raw)
    try:
        return Envelope.model_validate(document)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise Refused(400, f"{where}: {error['msg']}"[:200]) from None


def incident_of(event: Event) -> IncidentData:
    """The incident an ``incident.*`` event is about; 400 when ``data`` is not one."""
    try:
        return IncidentData.model_validate(event.data)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(("event", "data", *(str(p) for p in error["loc"])))
        raise Refused(400, f"{where}: {error['msg']}"[:200]) from None


def check_fresh(event: Event, now: datetime) -> None:
    """Refuse (400) an event older than the inbox remembers: a replay it would not know."""
    try:
        occurred = datetime.fromisoformat(event.occurred_at)
    except ValueError:
        raise Refused(400, "event.occurred_at: not an ISO 8601 time") from None
    if occurred.tzinfo is None:
        raise Refused(400, "event.occurred_at: no time zone")
    if now - occurred > RETENTION:
        raise Refused(400, f"event.occurred_at: older than {RETENTION.days} days (a replay)")


def incident_text(incident: IncidentData) -> str:
    """The incident text: its title, else '<service> is down (PagerDuty #N)'."""
    if incident.title.strip():
        return incident.title.strip()
    service = incident.service.summary if incident.service and incident.service.summary else ""
    number = incident.incident_number or incident.number
    return f"{service or 'a service'} is down (PagerDuty #{number or incident.id})"


def external_ref(incident_id: str) -> str:
    """How an opsgate incident names the PagerDuty incident it mirrors."""
    return f"{SOURCE}:{incident_id}"


def intake_channel(config: OpsgateConfig) -> str | None:
    """Where PagerDuty incidents open: ``intake.pagerduty.channel``, else the alert channel."""
    section = config.intake.pagerduty
    return (section.channel if section else None) or config.slack.alert_channel


def pagerduty_handler(surface: Surface, *, config: OpsgateConfig) -> Any:
    """The aiohttp handler: signed deliveries recorded before the 202, done after it."""
    auth = PagerDutyAuth(config.intake.pagerduty)
    channel = intake_channel(config)

    async def handle(request: web.Request) -> web.Response:
        body = await read_authenticated(
            request, source=SOURCE, refusal=auth.refusal, event="pagerduty_refused"
        )
        if isinstance(body, web.Response):
            return body
        try:
            envelope = decode_event(request, body)
            event = envelope.event
            incident = incident_of(event) if event.resource_type == "incident" else None
            if incident is not None:
                check_fresh(event, surface.control.clock.now())
        except Refused as refused:
            refused.log(surface=SOURCE, kind="webhook")
            return web.json_response(
                {"error": "not a PagerDuty V3 webhook", "detail": refused.reason},
                status=refused.status,
            )
        with responding() as sent:
            if incident is not None and event.event_type in (
                "incident.triggered",
                "incident.resolved",
            ):
                if not channel:
                    return web.json_response(
                        {"error": "no channel: set intake.pagerduty.channel"}, status=503
                    )
                return await record_requests(
                    surface, [request_of(event, incident, channel)], sent, source=SOURCE
                )
            return await note(event, incident, sent)

    async def note(event: Event, incident: IncidentData | None, sent: Any) -> web.Response:
        """Audit an event that changes nothing here; 202 once it is recorded."""
        ref = external_ref(incident.id) if incident else None
        try:
            incident_id = await surface.control.record_external_event(
                source=SOURCE,
                event=event.event_type,
                external_ref=ref,
                detail={"event_id": event.id, "occurred_at": event.occurred_at},
                correlation_id=event_correlation(event),  # a replay of it is recorded once
            )
        except Exception as exc:  # the database did not answer: PagerDuty delivers again
            log.error("pagerduty_event_not_recorded", event_type=event.event_type, error=repr(exc))
            response = web.json_response({"error": "could not record the event; retry"}, status=503)
            return Written.of(response, sent)
        log.info("pagerduty_event_recorded", event_type=event.event_type, incident_id=incident_id)
        return Written.of(web.json_response({"recorded": event.event_type}, status=202), sent)

    return handle


def event_correlation(event: Event) -> str:
    """The correlation id of an event that changes nothing: the same for every delivery of it."""
    return f"{SOURCE}-event:{event.id}"


def request_of(event: Event, incident: IncidentData, channel: str) -> tuple[str, Request]:
    """The inbox key and request of a triggered or resolved event."""
    triggered = event.event_type == "incident.triggered"
    request = Request(
        kind=RequestKind.OPEN if triggered else RequestKind.RESOLVE,
        requester=REQUESTER,
        channel=channel,
        text=incident_text(incident) if triggered else "Resolved in PagerDuty.",
        source=SOURCE,
        correlation_id=new_correlation_id(),
        private=False,
        external_ref=external_ref(incident.id),
    )
    suffix = "triggered" if triggered else "resolved"
    return f"{external_ref(incident.id)}:{suffix}", request
