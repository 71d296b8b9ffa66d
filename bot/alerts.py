"""``POST /alerts/alertmanager``: alert groups open, update and close incidents (webhook v4).

Alertmanager sends one notification per group (``groupKey``) holding every alert of the group.
Each notification is recorded in the inbox before the 202, keyed by the group and the state of
its alerts (fingerprint, status, start), so its effect survives a crash after the 202 and
Alertmanager's repeats of the same state do nothing more. The first notification of a group
with a firing alert opens ONE incident; later ones post what changed (an alert resolved, a new
one firing) to its thread, and once every alert has resolved and the plan has finished the
incident is resolved (``slack.alerts_close_incidents``; see ``orchestration.alertgroups``). A
notification without a ``groupKey`` (a hand-made one) makes each alert a group of its own.

Intake is authenticated by default: a request presents ``OPSGATE_ALERT_TOKEN`` either as a
bearer token (``Authorization: Bearer <token>``, Alertmanager's ``http_config.authorization``)
or as an HMAC-SHA256 of the body keyed with it (``X-Opsgate-Signature: sha256=<hex>``). With an
alert channel and no token, ``serve`` refuses to start (:func:`check_alert_intake`) unless
``slack.allow_unauthenticated_alerts`` is true, which is logged at every start.

The requester of an alert-opened incident is the alert's source: ``alertmanager``, which is no
person and no approver, so every high-risk step still needs two distinct configured approvers.
An alert that names the person behind it (annotation or label ``opsgate_requester``, a Slack
user id) makes that person the requester: the requester rule then applies to them as to an
incident they opened with ``/incident``.
"""

import asyncio
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.decode import Refused, check_charset, parse_json
from bot.settings import ALERT_TOKEN_VAR, SettingsError, SlackSettings
from bot.surface import Surface, responding
from bot.webhooks import read_authenticated, record_requests
from orchestration.config import OpsgateConfig
from orchestration.inbox import Request, RequestKind
from orchestration.telemetry import get_logger, new_correlation_id

log = get_logger("opsgate.alerts")

REQUESTER = "alertmanager"
SOURCE = "alertmanager"
REQUESTER_KEY = "opsgate_requester"  # annotation or label naming the person behind an alert
SIGNATURE_HEADER = "X-Opsgate-Signature"
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")


@dataclass(frozen=True)
class AlertAuth:
    """How alert webhooks authenticate: a shared token, or (explicitly) not at all."""

    token: str | None
    allow_unauthenticated: bool = False

    @classmethod
    def of(cls, config: OpsgateConfig, settings: SlackSettings) -> "AlertAuth":
        """The intake's credential from the environment and the config's explicit opt-out."""
        return cls(settings.alert_token, config.slack.allow_unauthenticated_alerts)

    def refusal(self, headers: Any, body: bytes) -> str | None:
        """Why a request is not authenticated (None when it is)."""
        if self.token is None:
            if self.allow_unauthenticated:
                return None
            return f"alert intake is closed: {ALERT_TOKEN_VAR} is not set"
        bearer = headers.get("Authorization", "")
        if bearer and hmac.compare_digest(bearer.encode(), f"Bearer {self.token}".encode()):
            return None
        signature = headers.get(SIGNATURE_HEADER, "")
        if signature:
            digest = hmac.new(self.token.encode(), body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(signature.encode(), f"sha256={digest}".encode()):
                return None
            return f"wrong {SIGNATURE_HEADER}"
        return "missing or wrong bearer token"


def sign_body(token: str, body: bytes) -> str:
    """The ``X-Opsgate-Signature`` value of ``body`` under ``token``."""
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def require_alert_intake(config: OpsgateConfig, settings: SlackSettings) -> None:
    """:func:`check_alert_intake` for ``serve``: a refusal ends the process with its reason
    (exit status 1, no traceback)."""
    try:
        check_alert_intake(config, settings)
    except SettingsError as exc:
        raise SystemExit(f"config_invalid: {exc}\nopsgate did not start.") from None


def check_alert_intake(config: OpsgateConfig, settings: SlackSettings) -> None:
    """Refuse to start with an alert channel and no alert credential (SettingsError).

    ``slack.allow_unauthenticated_alerts: true`` is the only way around, logged every start.
    """
    if not config.slack.alert_channel or settings.alert_token:
        return
    if config.slack.allow_unauthenticated_alerts:
        log.warning(
            "alerts_unauthenticated",
            channel=config.slack.alert_channel,
            detail=(
                "slack.allow_unauthenticated_alerts is true: anyone who can reach "
                "POST /alerts/alertmanager can open incidents and start their probes"
            ),
        )
        return
    raise SettingsError(
        f"slack.alert_channel is set but {ALERT_TOKEN_VAR} is not: set {ALERT_TOKEN_VAR} to the "
        "token Alertmanager sends (http_config.authorization, type Bearer), or set "
        "slack.allow_unauthenticated_alerts: true to accept alerts from anyone"
    )


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
    groupKey: str = Field(default="", max_length=2000)  # noqa: N815 - Alertmanager's field name
    alerts: list[Alert] = Field(min_length=1, max_length=100)


def incident_text(alert: Alert) -> str:
    """The incident text of an alert: its summary, else '<service> is down'."""
    summary = alert.annotations.get("summary")
    if summary:
        return summary
    service = alert.labels.get("service") or alert.labels.get("job") or "a service"
    return f"{service} is down ({alert.labels.get('alertname', 'alert')})"


def alert_requester(alert: Alert) -> str:
    """The person the alert names (``opsgate_requester``), else the alert's source."""
    named = (alert.annotations.get(REQUESTER_KEY) or alert.labels.get(REQUESTER_KEY) or "").strip()
    return named if _USER_ID.fullmatch(named) else REQUESTER


def alert_identity(alert: Alert) -> str:
    """The alert's fingerprint, else a hash of its text (hand-made webhooks have none)."""
    return alert.fingerprint or hashlib.sha256(incident_text(alert).encode()).hexdigest()[:16]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def groups(notification: Notification) -> list[tuple[str, list[Alert]]]:
    """``(group hash, alerts)``: the notification's one group, or one group per alert."""
    if notification.groupKey:
        return [(_digest(notification.groupKey), list(notification.alerts))]
    return [(_digest(f"alert:{alert_identity(a)}"), [a]) for a in notification.alerts]


def group_request_key(group: str, alerts: list[Alert]) -> str:
    """One key per state of a group: Alertmanager's repeats of the same state are replays."""
    state = sorted(f"{alert_identity(a)}|{a.status}|{a.startsAt}" for a in alerts)
    return f"alerts:{group}:{_digest(chr(10).join(state))}"


def group_request(group: str, alerts: list[Alert], channel: str) -> Request:
    """The inbox request of one group's notification."""
    firing = [a for a in alerts if a.status == "firing"]
    lead = firing[0] if firing else alerts[0]
    return Request(
        kind=RequestKind.ALERTS,
        requester=alert_requester(lead) if firing else REQUESTER,
        channel=channel,
        text=incident_text(lead),
        source=SOURCE,
        correlation_id=new_correlation_id(),
        private=False,
        group_key=group,
        alerts=tuple(
            {
                "fingerprint": alert_identity(a),
                "status": "resolved" if a.status == "resolved" else "firing",
                "name": a.labels.get("alertname", "alert"),
                "starts_at": a.startsAt,
                "text": incident_text(a)[:300],
            }
            for a in alerts
        ),
    )


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


def alert_handler(surface: Surface, *, channel: str | None, auth: AlertAuth) -> Any:
    """The aiohttp handler: firing alerts are recorded before the 202, opened after it."""

    async def handle(request: web.Request) -> web.Response:
        body = await read_authenticated(
            request, source=SOURCE, refusal=auth.refusal, event="alert_refused"
        )
        if isinstance(body, web.Response):
            return body
        try:
            notification = decode_notification(request, body)
        except Refused as refused:
            refused.log(surface=SOURCE, kind="webhook")
            return web.json_response(
                {"error": "not an Alertmanager webhook", "detail": refused.reason},
                status=refused.status,
            )
        if not channel:
            return web.json_response({"error": "slack.alert_channel is not configured"}, status=503)
        with responding() as sent:
            return await record(notification, channel, sent)

    async def record(notification: Notification, channel: str, sent: asyncio.Event) -> web.Response:
        """Record each group's notification before the answer; its work starts once written."""
        requests = [
            (group_request_key(group, alerts), group_request(group, alerts, channel))
            for group, alerts in groups(notification)
        ]
        return await record_requests(surface, requests, sent, source=SOURCE)

    return handle
