"""Alertmanager webhooks open incidents: once per firing alert, refusing malformed bodies."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.bot.scenario import Stack

ALERT_CHANNEL = "C0ALERTS"


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
