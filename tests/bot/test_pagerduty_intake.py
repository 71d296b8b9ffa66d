"""PagerDuty Webhooks V3 through the real aiohttp app: signed deliveries from the PagerDuty
stand-in open and close incidents; unsigned ones are refused with nothing recorded."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from structlog.testing import capture_logs

from adapters.testing.pagerduty import FakePagerDuty, sign_v1
from bot.ids import ActionId
from bot.pagerduty import signature_ok
from orchestration.inbox import RETENTION
from orchestration.models import AuditEvent, InboxItem, Incident
from tests.bot.scenario import APPROVER_A, APPROVER_B, Stack
from tests.bot.test_alerts import DatabaseDown

ALERT_CHANNEL = "C0ALERTS"
SECRET = "pd-webhook-secret-0123456789"


@pytest.fixture
async def stack(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    monkeypatch.setenv("OPSGATE_SECRET_PAGERDUTY_WEBHOOK_SECRET", SECRET)
    async with Stack(
        db_url=db_url,
        tmp_path=tmp_path,
        slack={"alert_channel": ALERT_CHANNEL, "channel_rate_per_s": 1000},
        intake={"pagerduty": {"webhook_secret": "${secret:PAGERDUTY_WEBHOOK_SECRET}"}},
    ) as s:
        yield s


@pytest.fixture
async def pagerduty(stack: Stack) -> AsyncIterator[FakePagerDuty]:
    fake = FakePagerDuty()
    await fake.start()
    assert stack.server is not None
    fake.subscribe(str(stack.server.make_url("/alerts/pagerduty")), SECRET)
    yield fake
    await fake.stop()


async def incidents(stack: Stack) -> list[Incident]:
    return await stack.control.db.run(lambda s: list(s.exec(select(Incident))))


async def recorded(stack: Stack) -> tuple[int, int]:
    """How many inbox rows and audit events the database holds."""
    inbox = await stack.control.db.run(lambda s: len(list(s.exec(select(InboxItem)))))
    audit = await stack.control.db.run(lambda s: len(list(s.exec(select(AuditEvent)))))
    return inbox, audit


def test_signature_accepts_any_v1_of_a_rotation_and_nothing_else() -> None:
    body = b'{"event": {}}'
    assert signature_ok(sign_v1([SECRET], body), body, SECRET)
    assert signature_ok(sign_v1(["new-secret-xxxxxxxx", SECRET], body), body, SECRET)
    assert not signature_ok(sign_v1(["other-secret-xxxxxx"], body), body, SECRET)
    assert not signature_ok(sign_v1([SECRET], body + b" "), body, SECRET)
    forged = sign_v1([SECRET], body).replace("v1=", "v0=")
    assert not signature_ok(forged, body, SECRET)
    assert not signature_ok("", body, SECRET)


async def test_triggered_opens_and_resolved_closes_through_the_real_app(
    stack: Stack, pagerduty: FakePagerDuty
) -> None:
    """The whole scenario: PagerDuty triggers -> incident and plan; two approvers restart it
    with signed clicks; PagerDuty resolves -> the incident is resolved and its root says so."""
    incident = await pagerduty.trigger("checkout-api is down")
    assert pagerduty.deliveries[-1].status == 202
    await pagerduty.deliver("incident.triggered", incident)  # a redelivery: a replay
    await stack.settle()
    (opened,) = await incidents(stack)
    assert opened.source == "pagerduty"
    assert opened.requester == "pagerduty"
    assert opened.external_ref == f"pagerduty:{incident['id']}"
    assert len(stack.roots(ALERT_CHANNEL)) == 1
    card = stack.card("Restart checkout-api", ALERT_CHANNEL)
    for user in (APPROVER_A, APPROVER_B):
        status, _ = await stack.click(card, ActionId.APPROVE.value, user=user)
        assert status == 200
        await stack.settle()
        card = stack.card("Restart checkout-api", ALERT_CHANNEL)
    assert stack.service.restarts == 1

    await pagerduty.deliver("incident.acknowledged", incident)  # recorded, changes nothing
    await pagerduty.resolve_from_pagerduty(incident["id"])
    assert pagerduty.deliveries[-1].status == 202
    await stack.settle()
    (closed,) = await incidents(stack)
    assert closed.status == "resolved"
    assert "Resolved" in str(stack.root(ALERT_CHANNEL).blocks)
    events = await stack.control.db.run(
        lambda s: list(s.exec(select(AuditEvent).where(AuditEvent.incident_id == closed.id)))
    )
    names = [e.event for e in events]
    assert "incident_resolved" in names
    (external,) = [e for e in events if e.event == "external_event"]
    assert external.detail["event_type"] == "incident.acknowledged"


async def test_a_bad_signature_is_a_401_and_nothing_is_recorded(
    stack: Stack, pagerduty: FakePagerDuty
) -> None:
    before = await recorded(stack)
    assert stack.server is not None
    pagerduty.subscribe(str(stack.server.make_url("/alerts/pagerduty")), "not-the-secret-xx")
    with capture_logs() as logs:
        incident = await pagerduty.trigger("checkout-api is down")
    assert pagerduty.deliveries[-1].status == 401
    assert stack.http is not None
    assert stack.server is not None
    url = stack.server.make_url("/alerts/pagerduty")
    body = pagerduty.event("incident.triggered", incident)
    async with stack.http.post(url, data=body) as resp:  # no signature at all
        assert resp.status == 401
    await stack.settle()
    assert await recorded(stack) == before
    assert await incidents(stack) == []
    assert stack.slack.calls_to("chat.postMessage") == []
    assert any(e["event"] == "pagerduty_refused" for e in logs)
    assert SECRET not in json.dumps(logs, default=str)


async def test_rotation_malformed_bodies_and_unknown_incidents(
    stack: Stack, pagerduty: FakePagerDuty
) -> None:
    assert stack.http is not None
    assert stack.server is not None
    url = stack.server.make_url("/alerts/pagerduty")
    for body, status in (
        (b"not json", 400),
        (b'{"event": {"id": "e1"}}', 400),
        (
            json.dumps(
                {
                    "event": {
                        "id": "e",
                        "event_type": "incident.triggered",
                        "resource_type": "incident",
                        "data": {"id": "../x"},
                    }
                }
            ).encode(),
            400,
        ),
    ):
        headers = {"X-PagerDuty-Signature": sign_v1([SECRET], body)}
        async with stack.http.post(url, data=body, headers=headers) as resp:
            assert resp.status == status
    # A resolution of an incident opsgate never opened: audited, nothing closes, nobody told.
    stranger = pagerduty.add_incident("someone else's")
    await pagerduty.resolve_from_pagerduty(stranger["id"])
    assert pagerduty.deliveries[-1].status == 202
    await stack.settle()
    assert stack.slack.calls_to("chat.postMessage") == []
    skipped = await stack.control.db.run(
        lambda s: list(
            s.exec(select(AuditEvent).where(AuditEvent.event == "incident_close_skipped"))
        )
    )
    assert [e.detail["outcome"] for e in skipped] == ["no_such_incident"]
    # During a rotation PagerDuty signs with both secrets: accepted.
    pagerduty.rotate_secret("the-next-secret-xxxx")
    await pagerduty.trigger("checkout-api is down")
    assert pagerduty.deliveries[-1].status == 202
    await stack.settle()
    assert len(await incidents(stack)) == 1


async def test_an_event_that_cannot_be_recorded_gets_a_503(
    stack: Stack, pagerduty: FakePagerDuty, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PagerDuty redelivers on a 5xx; a 2xx is given only to what is recorded."""
    inbox = stack.control.inbox
    monkeypatch.setattr(inbox, "db", DatabaseDown())
    incident = await pagerduty.trigger("checkout-api is down")
    assert pagerduty.deliveries[-1].status == 503
    monkeypatch.setattr(inbox, "db", stack.control.db)
    await pagerduty.deliver("incident.triggered", incident)
    assert pagerduty.deliveries[-1].status == 202
    await stack.settle()
    assert len(await incidents(stack)) == 1


async def test_replayed_deliveries_open_and_close_once(
    stack: Stack, pagerduty: FakePagerDuty
) -> None:
    """Webhooks V3 signatures carry no timestamp: a captured delivery can be sent again byte
    for byte, validly signed. Each replay is recorded as one (202, nothing accepted) and does
    nothing: one incident, one root, one audited acknowledgement, one resolution, and a
    replayed trigger after the resolution does not reopen it."""
    assert stack.http is not None
    assert stack.server is not None
    url = stack.server.make_url("/alerts/pagerduty")

    async def replay(body: bytes, times: int) -> list[tuple[int, object]]:
        assert stack.http is not None
        answers = []
        for _ in range(times):
            headers = {"X-PagerDuty-Signature": sign_v1([SECRET], body)}
            async with stack.http.post(url, data=body, headers=headers) as resp:
                answers.append((resp.status, await resp.json()))
        return answers

    incident = await pagerduty.trigger("checkout-api is down")
    triggered = pagerduty.deliveries[-1].body
    assert await replay(triggered, 3) == [(202, {"accepted": []})] * 3
    await stack.settle()
    (opened,) = await incidents(stack)
    assert len(stack.roots(ALERT_CHANNEL)) == 1

    # An event that changes nothing here is audited once, however often it is replayed.
    await pagerduty.deliver("incident.acknowledged", incident)
    acknowledged = pagerduty.deliveries[-1].body
    ack = (202, {"recorded": "incident.acknowledged"})
    assert await replay(acknowledged, 3) == [ack] * 3

    await pagerduty.resolve_from_pagerduty(incident["id"])
    resolved = pagerduty.deliveries[-1].body
    assert await replay(resolved, 3) == [(202, {"accepted": []})] * 3
    assert await replay(triggered, 2) == [(202, {"accepted": []})] * 2
    await stack.settle()
    (closed,) = await incidents(stack)
    assert closed.id == opened.id
    assert closed.status == "resolved"
    events = await stack.control.db.run(
        lambda s: [
            e.event for e in s.exec(select(AuditEvent).where(AuditEvent.incident_id == closed.id))
        ]
    )
    assert events.count("incident_resolved") == 1
    assert events.count("incident_opened") == 1
    assert events.count("external_event") == 1
    assert len(stack.roots(ALERT_CHANNEL)) == 1
    told = [m for m in stack.thread(ALERT_CHANNEL) if "Incident resolved" in m.text + str(m.blocks)]
    assert len(told) == 1


@pytest.mark.parametrize("configured", [False, True])
async def test_without_its_secret_pagerduty_intake_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: bool
) -> None:
    """Secure by default: no ``intake.pagerduty``, or its secret not set, refuses every
    delivery (401, nothing recorded, one log line) however it is signed."""
    monkeypatch.delenv("OPSGATE_SECRET_PAGERDUTY_WEBHOOK_SECRET", raising=False)
    intake = {"pagerduty": {"webhook_secret": "${secret:PAGERDUTY_WEBHOOK_SECRET}"}}
    async with Stack(
        db_url=f"sqlite:///{tmp_path / 'closed.db'}",
        tmp_path=tmp_path,
        slack={"alert_channel": ALERT_CHANNEL, "channel_rate_per_s": 1000},
        **({"intake": intake} if configured else {}),
    ) as closed:
        fake = FakePagerDuty()
        await fake.start()
        try:
            assert closed.server is not None
            fake.subscribe(str(closed.server.make_url("/alerts/pagerduty")), SECRET)
            with capture_logs() as logs:
                await fake.trigger("checkout-api is down")
        finally:
            await fake.stop()
        assert fake.deliveries[-1].status == 401
        await closed.settle()
        assert await incidents(closed) == []
        assert closed.slack.calls_to("chat.postMessage") == []
        (refused,) = [e for e in logs if e["event"] == "pagerduty_refused"]
        assert "PagerDuty intake is closed" in refused["reason"]


async def test_a_capture_older_than_the_inbox_remembers_is_refused(
    stack: Stack, pagerduty: FakePagerDuty
) -> None:
    """The inbox keeps its keys for RETENTION; a replay older than that would look new, so an
    incident event that occurred before is refused (400) and opens nothing."""
    assert stack.http is not None
    assert stack.server is not None
    url = stack.server.make_url("/alerts/pagerduty")
    incident = pagerduty.add_incident("checkout-api is down")
    now = datetime.now(UTC)

    async def post(occurred_at: str) -> int:
        assert stack.http is not None
        envelope = json.loads(pagerduty.event("incident.triggered", incident))
        envelope["event"]["occurred_at"] = occurred_at
        body = json.dumps(envelope).encode()
        headers = {"X-PagerDuty-Signature": sign_v1([SECRET], body)}
        async with stack.http.post(url, data=body, headers=headers) as resp:
            return resp.status

    before = await recorded(stack)
    with capture_logs() as logs:
        assert await post((now - RETENTION - timedelta(hours=1)).isoformat()) == 400
        assert await post("yesterday") == 400
        assert await post("2026-11-25T10:00:00") == 400  # no time zone
    assert await recorded(stack) == before
    assert [e["reason"] for e in logs if e["event"] == "request_refused"] == [
        f"event.occurred_at: older than {RETENTION.days} days (a replay)",
        "event.occurred_at: not an ISO 8601 time",
        "event.occurred_at: no time zone",
    ]
    assert await post((now - RETENTION + timedelta(hours=1)).isoformat()) == 202
    await stack.settle()
    assert len(await incidents(stack)) == 1
