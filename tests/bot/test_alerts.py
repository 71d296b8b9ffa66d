"""Alertmanager webhooks: one incident per alert group, resolved alerts threaded and closing it,
malformed and unauthenticated bodies refused."""

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select
from structlog.testing import capture_logs

from bot.alerts import Notification, check_alert_intake, group_request_key, groups, sign_body
from bot.ids import ActionId
from bot.settings import SettingsError, SlackSettings
from orchestration.config import OpsgateConfig
from orchestration.models import AuditEvent, HumanAction, InboxItem, Incident, OutboxMessage
from tests.bot.scenario import APPROVER_A, APPROVER_B, Stack
from tests.bot.test_process import Served

ALERT_CHANNEL = "C0ALERTS"


class DatabaseDown:
    """A database whose units of work all fail, as when the server is unreachable."""

    async def run(self, _work: object) -> None:
        raise OperationalError("INSERT INTO inbox", {}, Exception("database is down"))


def webhook(status: str = "firing", group: str = "{}:{}", **labels: str) -> dict[str, Any]:
    return {
        "version": "4",
        "status": status,
        "receiver": "opsgate",
        "groupKey": group,
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


async def post_alert(
    stack: Stack,
    body: object,
    token: str | None = "alert-secret",
    *,
    headers: dict[str, str] | None = None,
) -> int:
    assert stack.http is not None
    assert stack.server is not None
    send = {"Authorization": f"Bearer {token}"} if token else {}
    send.update(headers or {})
    async with stack.http.post(
        stack.server.make_url("/alerts/alertmanager"), json=body, headers=send
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
    ((group, alerts),) = groups(Notification.model_validate(webhook()))
    key = group_request_key(group, alerts)
    assert key.startswith("alerts:")
    assert replayed.detail["key"] == key
    rows = await stack.control.db.run(lambda s: list(s.exec(select(InboxItem))))
    assert [(r.key, r.done_at is not None) for r in rows] == [(key, True)]
    assert "Bearer" not in str(rows[0].payload)


def two_alerts(group: str = "{}:{}") -> dict[str, Any]:
    body = webhook(group=group)
    second = dict(body["alerts"][0], fingerprint="def456")
    second["annotations"] = {"summary": "orders-api is down"}
    body["alerts"].append(second)
    return body


async def test_the_alerts_of_one_group_open_one_incident_and_two_groups_two(
    stack: Stack,
) -> None:
    """One incident per groupKey, not per alert; each incident with its own trace."""
    assert await post_alert(stack, two_alerts()) == 202
    await stack.settle()
    assert len(stack.roots(ALERT_CHANNEL)) == 1
    assert await post_alert(stack, two_alerts(group='{}:{service="orders"}')) == 202
    await stack.settle()
    assert len(stack.roots(ALERT_CHANNEL)) == 2
    opened = await audit_events(stack, "incident_opened")
    assert len({e.correlation_id for e in opened}) == 2


async def test_without_a_group_key_each_alert_is_a_group_of_its_own(stack: Stack) -> None:
    body = two_alerts(group="")
    assert await post_alert(stack, body) == 202
    await stack.settle()
    assert len(stack.roots(ALERT_CHANNEL)) == 2


async def incidents(stack: Stack) -> list[Incident]:
    return await stack.control.db.run(lambda s: list(s.exec(select(Incident))))


async def test_resolved_alerts_are_threaded_and_close_the_incident_once_its_plan_ends(
    stack: Stack,
) -> None:
    """A partly resolved group is told in the thread; all resolved waits for the plan to end,
    then the incident is resolved by alertmanager."""
    assert await post_alert(stack, two_alerts()) == 202
    await stack.settle()
    partly = two_alerts()
    partly["alerts"][1]["status"] = "resolved"
    assert await post_alert(stack, partly) == 202
    await stack.settle()
    texts = stack.texts(ALERT_CHANNEL)
    assert "resolved: orders-api is down" in texts
    assert "1 firing, 1 resolved" in texts
    resolved = two_alerts()
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
    resolved["status"] = "resolved"
    assert await post_alert(stack, resolved) == 202
    await stack.settle()
    (incident,) = await incidents(stack)
    assert incident.status == "open", "its restart still waits for approval: the plan runs on"
    assert "0 firing, 2 resolved" in stack.texts(ALERT_CHANNEL)
    for user in (APPROVER_A, APPROVER_B):
        card = stack.card("Restart checkout-api", ALERT_CHANNEL)
        await stack.click(card, ActionId.APPROVE.value, user=user)
        await stack.settle()
    assert stack.service.restarts == 1
    (incident,) = await incidents(stack)
    assert incident.status == "resolved"
    (closed,) = await audit_events(stack, "incident_resolved")
    assert closed.actor == "alertmanager"
    assert "Incident resolved" in stack.texts(ALERT_CHANNEL)
    # The group fires again later: its incident is closed, so a new one opens.
    again = two_alerts()
    for alert in again["alerts"]:
        alert["startsAt"] = "2026-11-25T11:00:00Z"
    assert await post_alert(stack, again) == 202
    await stack.settle()
    assert len(await incidents(stack)) == 2


async def approve_restart(stack: Stack) -> None:
    for user in (APPROVER_A, APPROVER_B):
        card = stack.card("Restart checkout-api", ALERT_CHANNEL)
        await stack.click(card, ActionId.APPROVE.value, user=user)
        await stack.settle()
    assert stack.service.restarts == 1


async def test_a_group_resolving_after_its_plan_ended_closes_at_once(stack: Stack) -> None:
    assert await post_alert(stack, webhook()) == 202
    await stack.settle()
    await approve_restart(stack)
    (incident,) = await incidents(stack)
    assert incident.status == "open", "its alert still fires"
    assert await post_alert(stack, webhook(status="resolved")) == 202
    await stack.settle()
    (incident,) = await incidents(stack)
    assert incident.status == "resolved"


async def test_with_closing_off_resolved_alerts_are_only_threaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_ALERT_TOKEN", "alert-secret")
    async with Stack(
        db_url=f"sqlite:///{tmp_path / 'a.db'}",
        tmp_path=tmp_path,
        slack={
            "alert_channel": ALERT_CHANNEL,
            "channel_rate_per_s": 1000,
            "alerts_close_incidents": False,
        },
    ) as quiet:
        assert await post_alert(quiet, webhook()) == 202
        await quiet.settle()
        await approve_restart(quiet)
        assert await post_alert(quiet, webhook(status="resolved")) == 202
        await quiet.settle()
        assert "resolved: checkout-api is down" in quiet.texts(ALERT_CHANNEL)
        (incident,) = await incidents(quiet)
        assert incident.status == "open"


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


async def test_an_hmac_signed_alert_is_accepted_and_a_wrong_signature_refused(stack: Stack) -> None:
    body = json.dumps(webhook()).encode()
    assert stack.http is not None
    assert stack.server is not None
    url = stack.server.make_url("/alerts/alertmanager")
    wrong = {"X-Opsgate-Signature": sign_body("not-the-token", body)}
    async with stack.http.post(url, data=body, headers=wrong) as resp:
        assert resp.status == 401
    right = {"X-Opsgate-Signature": sign_body("alert-secret", body)}
    async with stack.http.post(url, data=body, headers=right) as resp:
        assert resp.status == 202
    await stack.settle()
    assert len(stack.roots(ALERT_CHANNEL)) == 1


async def test_without_a_token_alert_intake_is_closed_unless_explicitly_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secure by default even when the app is embedded without ``serve``'s start-up check."""
    monkeypatch.delenv("OPSGATE_ALERT_TOKEN", raising=False)
    async with Stack(
        db_url=f"sqlite:///{tmp_path / 'closed.db'}",
        tmp_path=tmp_path,
        slack={"alert_channel": ALERT_CHANNEL, "channel_rate_per_s": 1000},
    ) as closed:
        assert await post_alert(closed, webhook(), token=None) == 401
        await closed.settle()
        assert closed.slack.calls_to("chat.postMessage") == []
    async with Stack(
        db_url=f"sqlite:///{tmp_path / 'open.db'}",
        tmp_path=tmp_path,
        slack={
            "alert_channel": ALERT_CHANNEL,
            "channel_rate_per_s": 1000,
            "allow_unauthenticated_alerts": True,
        },
    ) as opened:
        assert await post_alert(opened, webhook(), token=None) == 202
        await opened.settle()
        assert len(opened.roots(ALERT_CHANNEL)) == 1


def _settings(alert_token: str | None) -> SlackSettings:
    return SlackSettings(
        bot_token="xoxb-1",
        signing_secret="s",
        app_token=None,
        api_url="http://x/",
        alert_token=alert_token,
    )


def test_the_start_up_check_names_the_variable_and_logs_an_explicit_opt_out() -> None:
    closed = OpsgateConfig.model_validate({"slack": {"alert_channel": ALERT_CHANNEL}})
    with pytest.raises(SettingsError, match="OPSGATE_ALERT_TOKEN"):
        check_alert_intake(closed, _settings(None))
    check_alert_intake(closed, _settings("t"))  # a credential: starts
    check_alert_intake(OpsgateConfig(), _settings(None))  # no alert channel: nothing to guard
    opted = OpsgateConfig.model_validate(
        {"slack": {"alert_channel": ALERT_CHANNEL, "allow_unauthenticated_alerts": True}}
    )
    with capture_logs() as logs:
        check_alert_intake(opted, _settings(None))
        check_alert_intake(opted, _settings(None))
    assert [e["event"] for e in logs] == ["alerts_unauthenticated"] * 2
    assert all(e["log_level"] == "warning" for e in logs)


def test_serve_refuses_to_start_with_an_alert_channel_and_no_token(tmp_path: Path) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "opsgate.yaml").write_text(
        f"runbooks: ./runbooks\nslack: {{alert_channel: {ALERT_CHANNEL}}}\n"
    )
    served = Served(tmp_path, "http://127.0.0.1:9/")
    command = [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    done = subprocess.run(
        command, env=served.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert "OPSGATE_ALERT_TOKEN" in done.stderr
    assert "http_listening" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


async def test_an_alert_naming_its_requester_keeps_them_from_approving_high_risk(
    stack: Stack,
) -> None:
    """The person an alert names is its requester: their approval of the restart never counts."""
    body = webhook()
    body["alerts"][0]["annotations"]["opsgate_requester"] = APPROVER_A
    assert await post_alert(stack, body) == 202
    await stack.settle()
    (incident,) = await stack.control.db.run(lambda s: list(s.exec(select(Incident))))
    assert incident.requester == APPROVER_A
    card = stack.card("Restart checkout-api", ALERT_CHANNEL)
    for user in (APPROVER_A, APPROVER_B):
        await stack.click(card, ActionId.APPROVE.value, user=user)
    await stack.settle()
    assert stack.service.restarts == 0
    assert "requested" in " ".join(e.text for e in stack.slack.ephemerals(APPROVER_A))


async def test_an_alert_without_a_person_needs_two_distinct_approvers(stack: Stack) -> None:
    assert await post_alert(stack, webhook()) == 202
    await stack.settle()
    (incident,) = await stack.control.db.run(lambda s: list(s.exec(select(Incident))))
    assert incident.requester == "alertmanager"
    card = stack.card("Restart checkout-api", ALERT_CHANNEL)
    await stack.click(card, ActionId.APPROVE.value, user=APPROVER_A)
    await stack.settle()
    assert stack.service.restarts == 0
    await stack.click(
        stack.card("Restart checkout-api", ALERT_CHANNEL), ActionId.APPROVE.value, user=APPROVER_B
    )
    await stack.settle()
    assert stack.service.restarts == 1


async def test_an_alert_resolving_a_shadow_incident_with_nothing_recorded_counts_as_no_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staged trust: the restart is only proposed; the alert resolves by itself, nobody records
    anything, so the baseline says "no action needed" (and the proposal was a false positive)."""
    monkeypatch.setenv("OPSGATE_ALERT_TOKEN", "alert-secret")
    rollout = {"scopes": [{"id": "restarts", "tools": ["destructive"], "stage": "shadow"}]}
    async with Stack(
        db_url=f"sqlite:///{tmp_path / 'a.db'}",
        tmp_path=tmp_path,
        slack={"alert_channel": ALERT_CHANNEL, "channel_rate_per_s": 1000},
        rollout=rollout,
    ) as stack:
        assert await post_alert(stack, webhook()) == 202
        await stack.settle()
        assert stack.service.restarts == 0
        assert "proposed 'Restart checkout-api' without running it" in stack.texts(ALERT_CHANNEL)
        assert await post_alert(stack, webhook(status="resolved")) == 202
        await stack.settle()
        (incident,) = await incidents(stack)
        assert (incident.status, incident.requester) == ("resolved", "alertmanager")
        control = stack.control
        assert control is not None
        actions = await control.db.run(lambda s: list(s.exec(select(HumanAction))))
        assert [(a.kind, a.source) for a in actions] == [("no_action", "alert")]
        asked = await control.db.run(
            lambda s: list(
                s.exec(select(OutboxMessage).where(OutboxMessage.kind == "baseline_requested"))
            )
        )
        assert asked == []  # nobody to ask: no person resolved it
        (row,) = [r for r in await control.rollout.status() if r.scope == "restarts"]
        assert (row.evidence.incidents, row.evidence.fp_overall().count) == (1, 1)
