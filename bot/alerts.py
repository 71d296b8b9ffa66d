"""``POST /alerts/alertmanager``: firing alerts open incidents (Alertmanager webhook v4).

Each firing alert is recorded in the inbox before the 202, keyed by fingerprint and start, so
the incident survives a crash after the 202 and Alertmanager's repeats open nothing more.
"""

import asyncio
import hashlib
import hmac
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.decode import Refused, check_charset, parse_json, read_body
from bot.surface import Acknowledged, Intake, Surface
from orchestration.inbox import Request, RequestKind
from orchestration.telemetry import get_logger, new_correlation_id

log = get_logger("opsgate.alerts")

REQUESTER = "alertmanager"
SOURCE = "alertmanager"


class Alert(BaseModel):
    """One alert of a webhook notification."""

    model_config = ConfigDict(extra="ignore")
    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""  # noqa: N815 - Alertmanager's field name
    fingerprint: str = ""


class Notification(BaseModel):
    """Alertmanager's webhook body (version 4)."""

    model_config = ConfigDict(extra="ignore")
    version: str = "4"
    status: str
    alerts: list[Alert] = Field(min_length=1, max_length=100)


def incident_text(alert: Alert) -> str:
    """The incident text of an alert: its summary, else '<service> is down'."""
    summary = alert.annotations.get("summary")
    if summary:
        return summary
    service = alert.labels.get("service") or alert.labels.get("job") or "a service"
    return f"{service} is down ({alert.labels.get('alertname', 'alert')})"


def alert_key(alert: Alert) -> str:
    """One key per firing: Alertmanager repeats a notification until the alert resolves."""
    identity = alert.fingerprint or hashlib.sha256(incident_text(alert).encode()).hexdigest()
    return f"alert:{identity}:{alert.startsAt}"


def decode_notification(request: web.Request, raw: bytes) -> Notification:
    """The webhook body: UTF-8 JSON, depth-capped, NUL-free, of Notification's shape (else 4xx)."""
    check_charset(request)
    document = parse_json(raw)
    try:
        return Notification.model_validate(document)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise Refused(400, f"{where}: {error['msg']}"[:200]) from None


def alert_handler(surface: Surface, *, channel: str | None, token: str | None) -> Any:
    """The aiohttp handler: firing alerts are recorded before the 202, opened after it."""

    async def handle(request: web.Request) -> web.Response:
        if token and not hmac.compare_digest(
            request.headers.get("Authorization", ""), f"Bearer {token}"
        ):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            notification = decode_notification(request, await read_body(request))
        except Refused as refused:
            log.warning(
                "request_refused",
                surface=SOURCE,
                kind="webhook",
                reason=refused.reason,
                status=refused.status,
            )
            return web.json_response(
                {"error": "not an Alertmanager webhook", "detail": refused.reason},
                status=refused.status,
            )
        if not channel:
            return web.json_response({"error": "slack.alert_channel is not configured"}, status=503)
        firing = [
            (
                alert_key(alert),
                Request(
                    kind=RequestKind.OPEN,
                    requester=REQUESTER,
                    channel=channel,
                    text=incident_text(alert),
                    source=SOURCE,
                    correlation_id=new_correlation_id(),
                    private=False,
                ),
            )
            for alert in notification.alerts
            if alert.status == "firing"
        ]
        # Concurrent records share one commit; one notification's alerts go in together.
        intakes = await asyncio.gather(*(surface.accept(r, key=k) for k, r in firing))
        accepted = []
        for (key, req), intake in zip(firing, intakes, strict=True):
            if intake is Intake.NEW:  # not a replay: one incident per firing
                accepted.append(req.text)
                surface.perform(key, req, None, counted_as=SOURCE)
        if Intake.UNRECORDED in intakes:
            # Alertmanager retries a 5xx; the alerts recorded now are replays then, not redone.
            return web.json_response(
                {"error": "could not record every alert; retry", "accepted": accepted}, status=503
            )
        response = web.json_response({"accepted": accepted}, status=202)
        return Acknowledged.of(response) if accepted else response

    return handle
