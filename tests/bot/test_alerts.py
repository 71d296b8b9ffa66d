"""Alertmanager webhooks open incidents: once per firing alert, refusing malformed bodies."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from orchestration.models import AuditEvent, InboxItem
from tests.bot.scenario import Stack

ALERT_CHANNEL = "C0ALERTS"


class DatabaseDown:
    """A database whose units of work all fail, as when the server is unreachable."""

    async def run(self, _work: object) -> None:
        raise OperationalError("INSERT INTO inbox", {}, Exception("database is down"))


def webhook(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "version": "4",
        "status": status,
        "receiver": "opsgate",
        "groupKey": "{}:{}",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "ServiceDown", "service": "checkout-api", **labels},
                "annotations": {"summary": "checkout-api is down"},
                "startsAt": "2026-11-25T10:00:00Z",
                "fingerprint": "abc123",
            }
        ],
    }


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    monkeypatch.setenv("OPSGATE_ALERT_TOKEN", "alert-secret")
    async with Stack(
        db_url=f"sqlite:///{tmp_path / 'a.db'}",
        tmp_path=tmp_path,
        slack={"alert_channel": ALERT_CHANNEL, "channel_rate_per_s": 1000},
    ) as s:
        yield s


async def post_alert(stack: Stack, body: object, token: str | None = "alert-secret") -> int:
    assert stack.http is not None
    assert stack.server is not None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with stack.http.post(
        stack.server.make_url("/alerts/alertmanager"), json=body, headers=headers
    ) as resp:
        return resp.status


async def test_a_firing_alert_opens_one_incident_in_the_alert_channel(stack: Stack) -> None:
    assert await post_alert(stack, webhook()) == 202
    assert await post_alert(stack, webhook()) == 202  # Alertmanager repeats itself
    await stack.settle()
    roots = stack.roots(ALERT_CHANNEL)
    assert len(roots) == 1
    assert "checkout-api is down" in roots[0].text
    assert "Restart checkout-api" in stack.texts(ALERT_CHANNEL)


async def test_resolved_alerts_open_nothing(stack: Stack) -> None:
    assert await post_alert(stack, webhook(status="resolved")) == 202
    await stack.settle()
    assert stack.slack.calls_to("chat.postMessage") == []


async def test_malformed_and_unauthenticated_alerts_are_refused(stack: Stack) -> None:
    assert await post_alert(stack, {"nope": 1}) == 400
    assert await post_alert(stack, webhook(), token=None) == 401
    assert await post_alert(stack, webhook(), token="wrong") == 401
    await stack.settle()
    assert stack.slack.calls_to("chat.postMessage") == []


async def audit_events(stack: Stack, name: str) -> list[AuditEvent]:
    return await stack.control.db.run(
        lambda s: list(s.exec(select(AuditEvent).where(AuditEvent.event == name)))
    )


async def test_a_repeated_alert_is_recorded_once_and_audited_as_a_replay(stack: Stack) -> None:
    assert await post_alert(stack, webhook()) == 202
    assert await post_alert(stack, webhook()) == 202
    await stack.settle()
    (replayed,) = await audit_events(stack, "request_replayed")
    assert replayed.detail["key"] == "alert:abc123:2026-11-25T10:00:00Z"
    rows = await stack.control.db.run(lambda s: list(s.exec(select(InboxItem))))
    assert [(r.key, r.done_at is not None) for r in rows] == [
        ("alert:abc123:2026-11-25T10:00:00Z", True)
    ]
    assert "Bearer" not in str(rows[0].payload)


async def test_two_firing_alerts_open_two_incidents_each_with_its_own_trace(stack: Stack) -> None:
    body = webhook()
    second = dict(body["alerts"][0], fingerprint="def456")
    second["annotations"] = {"summary": "orders-api is down"}
    body["alerts"].append(second)
    assert await post_alert(stack, body) == 202
    await stack.settle()
    assert len(stack.roots(ALERT_CHANNEL)) == 2
    opened = await audit_events(stack, "incident_opened")
    assert len({e.correlation_id for e in opened}) == 2


async def test_an_alert_that_cannot_be_recorded_gets_a_503_and_opens_on_the_retry(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alertmanager retries a 5xx; a 202 is only given to what is recorded."""
    inbox = stack.control.inbox
    monkeypatch.setattr(inbox, "db", DatabaseDown())
    assert await post_alert(stack, webhook()) == 503
    await stack.settle()
    assert stack.slack.calls_to("chat.postMessage") == []
    monkeypatch.setattr(inbox, "db", stack.control.db)
    assert await post_alert(stack, webhook()) == 202
    await stack.settle()
    assert len(stack.roots(ALERT_CHANNEL)) == 1
