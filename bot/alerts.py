"""``POST /alerts/alertmanager``: firing alerts open incidents (Alertmanager webhook v4)."""

import hmac
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot import metrics
from orchestration.control import ControlPlane
from orchestration.errors import OrchestrationError
from orchestration.telemetry import get_logger

log = get_logger("opsgate.alerts")

REQUESTER = "alertmanager"


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


def alert_handler(
    control: ControlPlane, *, channel: str | None, token: str | None, run: Any
) -> Any:
    """The aiohttp handler; ``run`` schedules background work after the 202."""

    async def handle(request: web.Request) -> web.Response:
        if token and not hmac.compare_digest(
            request.headers.get("Authorization", ""), f"Bearer {token}"
        ):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            notification = Notification.model_validate_json(await request.read())
        except ValidationError as exc:
            return web.json_response(
                {
                    "error": "not an Alertmanager webhook",
                    "detail": exc.errors(include_url=False)[:5],
                },
                status=400,
            )
        if not channel:
            return web.json_response({"error": "slack.alert_channel is not configured"}, status=503)
        accepted = []
        for alert in notification.alerts:
            if alert.status != "firing":
                continue
            key = f"alert:{alert.fingerprint or incident_text(alert)}:{alert.startsAt}"
            if not await control.first_delivery(key):
                continue  # Alertmanager repeats notifications; one incident per firing
            accepted.append(incident_text(alert))
            metrics.INCIDENTS.labels(source="alertmanager").inc()
            run(_open(control, text=incident_text(alert), channel=channel), name="alert-open")
        return web.json_response({"accepted": accepted}, status=202)

    return handle


async def _open(control: ControlPlane, *, text: str, channel: str) -> None:
    try:
        await control.open_incident(
            text=text, requester=REQUESTER, channel=channel, source="alertmanager"
        )
    except OrchestrationError as exc:
        log.warning("alert_not_planned", text=text, code=exc.code, reason=exc.message)
