"""A local stand-in for PagerDuty: the REST API v2 calls opsgate makes, and signed Webhooks V3.

:class:`FakePagerDuty` serves on an ephemeral port (``await fake.start()`` gives its base URL)
and keeps incidents in memory. It implements the documented shapes of:

- ``PUT /incidents/{id}`` with ``{"incident": {"type": "incident_reference", "status" |
  "escalation_level"}}`` -> 200 ``{"incident": {...}}``;
- ``POST /incidents/{id}/notes`` with ``{"note": {"content"}}`` -> 201 ``{"note": {...}}``;

and their refusals, each with PagerDuty's error body ``{"error": {"message", "code",
"errors"}}``: 401 without ``Authorization: Token token=<key>`` of a known key, 400 without a
``From`` header naming a known user, 404 for an unknown incident, 400 for an invalid body or
a change a resolved incident no longer takes (acknowledge, escalate).

With a subscriber (:meth:`subscribe`), status changes are delivered as Webhooks V3 events
(``incident.triggered``, ``.acknowledged``, ``.resolved``, ``.escalated``, ``.annotated``)
signed ``X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>``, one ``v1=`` per secret
during a rotation (:meth:`rotate_secret`).
"""

import hashlib
import hmac
import itertools
import json
import secrets as pysecrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

SIGNATURE_HEADER = "X-PagerDuty-Signature"


def sign_v1(secrets: Sequence[str], body: bytes) -> str:
    """The ``X-PagerDuty-Signature`` value of ``body``: one ``v1=<hex>`` per secret."""
    return ",".join("v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets)


def _error(status: int, message: str, code: int, errors: Sequence[str] = ()) -> web.Response:
    error: dict[str, Any] = {"message": message, "code": code}
    if errors:
        error["errors"] = list(errors)
    return web.json_response({"error": error}, status=status)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Delivery:
    """One webhook sent to the subscriber: the event and the status it got back."""

    event_type: str
    body: bytes
    status: int | None


@dataclass
class FakePagerDuty:
    """PagerDuty's REST API v2 (the calls opsgate makes) and its webhooks, in memory."""

    token: str = "pd-test-token-0123456789"  # noqa: S105 - the stand-in's own test key
    users: frozenset[str] = frozenset({"oncall@example.com"})
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    _subscriber: str | None = None
    _secrets: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _numbers: Any = field(default_factory=lambda: itertools.count(1))
    base_url: str = ""

    async def start(self) -> str:
        """Serve on 127.0.0.1 at an ephemeral port; returns the base URL."""
        app = web.Application()
        app.router.add_put("/incidents/{id}", self._put_incident)
        app.router.add_post("/incidents/{id}/notes", self._post_note)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- incidents and webhooks ---------------------------------------------------------

    def subscribe(self, url: str, secret: str) -> None:
        """Deliver webhooks to ``url``, signed with ``secret``."""
        self._subscriber = url
        self._secrets = [secret]

    def rotate_secret(self, new_secret: str) -> None:
        """Sign with ``new_secret`` and the current one, as PagerDuty does during a rotation."""
        self._secrets = [new_secret, *self._secrets[:1]]

    def add_incident(self, title: str, *, service: str = "checkout-api") -> dict[str, Any]:
        """A new triggered incident (no webhook sent; :meth:`trigger` sends one)."""
        number = next(self._numbers)
        incident_id = "Q" + pysecrets.token_hex(6).upper()
        incident = {
            "id": incident_id,
            "type": "incident",
            "self": f"{self.base_url}/incidents/{incident_id}",
            "html_url": f"https://example.pagerduty.com/incidents/{incident_id}",
            "incident_number": number,
            "title": title,
            "status": "triggered",
            "urgency": "high",
            "escalation_level": 1,
            "incident_key": pysecrets.token_hex(8),
            "created_at": _now(),
            "service": {"id": "PSVC001", "type": "service_reference", "summary": service},
        }
        self.incidents[incident_id] = incident
        self.notes[incident_id] = []
        return incident

    async def trigger(self, title: str, *, service: str = "checkout-api") -> dict[str, Any]:
        """Open an incident and deliver ``incident.triggered`` to the subscriber."""
        incident = self.add_incident(title, service=service)
        await self.deliver("incident.triggered", incident)
        return incident

    async def resolve_from_pagerduty(self, incident_id: str) -> None:
        """Resolve an incident as a person in PagerDuty would, delivering the webhook."""
        self.incidents[incident_id]["status"] = "resolved"
        await self.deliver("incident.resolved", self.incidents[incident_id])

    def event(self, event_type: str, incident: dict[str, Any]) -> bytes:
        """A Webhooks V3 body: ``{"event": {id, event_type, resource_type, occurred_at,
        agent, client, data}}``."""
        data = {k: v for k, v in incident.items() if k != "self"}
        envelope = {
            "event": {
                "id": pysecrets.token_hex(10),
                "event_type": event_type,
                "resource_type": "incident",
                "occurred_at": _now(),
                "agent": {"id": "PUSER01", "type": "user_reference"},
                "client": None,
                "data": data,
            }
        }
        return json.dumps(envelope).encode()

    async def deliver(self, event_type: str, incident: dict[str, Any]) -> Delivery:
        """Send one signed event to the subscriber (recorded in ``deliveries``)."""
        body = self.event(event_type, incident)
        delivery = Delivery(event_type=event_type, body=body, status=None)
        self.deliveries.append(delivery)
        if self._subscriber is None:
            return delivery
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_v1(self._secrets, body),
            "User-Agent": "PagerDuty-Webhook/V3.0",
            "X-Webhook-Id": pysecrets.token_hex(8),
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(self._subscriber, data=body, headers=headers) as response,
        ):
            delivery.status = response.status
        return delivery

    # --- the REST API -------------------------------------------------------------------

    def _refusal(self, request: web.Request) -> web.Response | None:
        self.requests.append((request.method, request.path, dict(request.headers)))
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Token token={self.token}".encode()):
            return _error(401, "Unauthorized", 2006, ["Invalid or missing API token"])
        sender = request.headers.get("From", "")
        if not sender:
            return _error(
                400,
                "Invalid Input Provided",
                2001,
                ['You must specify a user\'s email address in the "From" header'],
            )
        if sender not in self.users:
            return _error(400, "Invalid Input Provided", 2001, ["Requester User Not Found"])
        return None

    async def _body(self, request: web.Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def _put_incident(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        incident = self.incidents.get(request.match_info["id"])
        if incident is None:
            return _error(404, "Not Found", 2100, ["Incident Not Found"])
        change = _incident_change(await self._body(request), incident)
        if isinstance(change, web.Response):
            return change
        status, level = change
        events = []
        if level is not None and level != incident["escalation_level"]:
            incident["escalation_level"] = level
            incident["status"] = "triggered"
            events.append("incident.escalated")
        if status is not None and status != incident["status"]:
            incident["status"] = status
            events.append(f"incident.{status}")
        for event_type in events:
            await self.deliver(event_type, incident)
        return web.json_response({"incident": incident})

    async def _post_note(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        incident_id = request.match_info["id"]
        if incident_id not in self.incidents:
            return _error(404, "Not Found", 2100, ["Incident Not Found"])
        body = await self._body(request)
        note = body.get("note") if body else None
        content = note.get("content") if isinstance(note, dict) else None
        if not isinstance(content, str) or not content:
            return _error(400, "Invalid Input Provided", 2001, ["Note content is required"])
        created = {
            "id": "PNOTE" + pysecrets.token_hex(4).upper(),
            "content": content,
            "created_at": _now(),
            "user": {"type": "user_reference", "summary": request.headers["From"]},
        }
        self.notes[incident_id].append(created)
        await self.deliver("incident.annotated", self.incidents[incident_id])
        return web.json_response({"note": created}, status=201)


def _incident_change(
    body: dict[str, Any] | None, incident: dict[str, Any]
) -> tuple[str | None, int | None] | web.Response:
    """The status and escalation level a PUT asks for, or the 400 refusing it."""
    change = body.get("incident") if body else None
    if not isinstance(change, dict) or change.get("type") not in ("incident", "incident_reference"):
        return _error(400, "Invalid Input Provided", 2001, ["Incident type is invalid"])
    status, level = change.get("status"), change.get("escalation_level")
    problem = None
    if status is None and level is None:
        problem = "Nothing to update"
    elif status not in (None, "acknowledged", "resolved"):
        problem = "Status is invalid"
    elif level is not None and (not isinstance(level, int) or not 1 <= level <= 20):
        problem = "Escalation level is invalid"
    elif incident["status"] == "resolved" and (status == "acknowledged" or level is not None):
        problem = "Incident Already Resolved"
    if problem is not None:
        return _error(400, "Invalid Input Provided", 2001, [problem])
    return status, level
