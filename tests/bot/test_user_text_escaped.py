"""Text people type reaches Slack as text: no mention, broadcast, channel link or URL survives.

Each test types a hostile string into one field through the real app (signed requests, the
fake Slack Web API), then reads every message opsgate sent Slack: the string must arrive
escaped (``&lt;@U0BOSS9&gt;``), while the mentions opsgate writes itself stay live.
"""

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from adapters.testing.pagerduty import FakePagerDuty
from bot.ids import ActionId
from orchestration.models import Incident
from tests.bot.scenario import APPROVER_A, REQUESTER, Stack
from tests.bot.test_alerts import ALERT_CHANNEL, post_alert, webhook
from tests.bot.test_scenarios import reason_body

HOSTILE = "ask <@U0BOSS9> <!channel> <!subteam^S0OPS> <#C0SECRET> <https://evil.example|here> & co"
LIVE = ("<@U0BOSS9", "<!channel", "<!subteam", "<#C0SECRET", "<https://evil")
ESCAPED = "&lt;@U0BOSS9&gt; &lt;!channel&gt;"
SENDS = ("chat.postMessage", "chat.update", "chat.postEphemeral")


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(db_url=db_url, tmp_path=tmp_path) as running:
        yield running


def _mrkdwn(value: Any) -> Iterator[str]:
    """Every string Slack parses as mrkdwn: top-level ``text`` and mrkdwn text objects."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            value = json.loads(value)
        except ValueError:
            return
    if isinstance(value, dict):
        if value.get("type") == "plain_text":
            return  # never parsed for mentions or links
        for key, item in value.items():
            if key == "text" and isinstance(item, str):
                yield item
            else:
                yield from _mrkdwn(item)
    elif isinstance(value, list):
        for item in value:
            yield from _mrkdwn(item)


def sent(stack: Stack, *extra: str) -> str:
    """Everything opsgate sent Slack as mrkdwn (plus ``extra``: the acks it answered)."""
    texts = [t for c in stack.slack.calls if c.method in SENDS for t in _mrkdwn(c.args)]
    return "\n".join([*texts, *extra])


def assert_text_only(stack: Stack, *extra: str) -> str:
    out = sent(stack, *extra)
    for token in LIVE:
        assert token not in out, token
    assert ESCAPED in out  # it did reach Slack, as text
    return out


async def open_checkout(stack: Stack, text: str = "checkout-api is down") -> str:
    status, body = await stack.command(text)
    assert status == 200
    await stack.settle()
    return body


async def test_a_reject_reason_is_text_on_the_card_in_the_thread_and_in_status(
    stack: Stack,
) -> None:
    await open_checkout(stack)
    await stack.click(stack.card("Restart checkout-api"), ActionId.REJECT.value, user=APPROVER_A)
    await stack.settle()
    [view] = stack.slack.workspace.views.values()
    assert (await stack.post(reason_body(view, user=APPROVER_A, reason=HOSTILE)))[0] == 200
    await stack.settle()
    await stack.command("status")
    await stack.settle()
    out = assert_text_only(stack)
    assert f"❌ *Rejected* by <@{APPROVER_A}>: ask &lt;@U0BOSS9&gt;" in out  # our mention lives
    assert f"rejected by <@{APPROVER_A}>" in out  # /incident status names the rejecter
    assert APPROVER_A not in out.replace(f"<@{APPROVER_A}>", "")  # never a bare id


@pytest.mark.parametrize("verb", ["resolve", "cancel"])
async def test_a_resolve_or_cancel_reason_is_text(stack: Stack, verb: str) -> None:
    await open_checkout(stack)
    status, body = await stack.command(f"{verb} {HOSTILE}")
    assert status == 200
    await stack.settle()
    out = assert_text_only(stack, body)
    assert f"by <@{REQUESTER}>" in out


async def test_incident_text_is_text_in_the_ack_and_the_root(stack: Stack) -> None:
    ack = await open_checkout(stack, f"checkout-api is down {HOSTILE}")
    out = assert_text_only(stack, ack)
    assert "Incident (🔥 Open): checkout-api is down ask &lt;@U0BOSS9&gt;" in out


async def test_a_text_no_runbook_matches_is_text_in_the_refusal(stack: Stack) -> None:
    ack = await open_checkout(stack, f"the moon {HOSTILE}")
    assert_text_only(stack, ack, *(e.text for e in stack.slack.ephemerals(REQUESTER)))


@pytest.mark.parametrize("field", ["summary", "alertname"])
async def test_alert_labels_and_summary_are_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    monkeypatch.setenv("OPSGATE_ALERT_TOKEN", "alert-secret")
    async with Stack(
        db_url=f"sqlite:///{tmp_path / 'a.db'}",
        tmp_path=tmp_path,
        slack={"alert_channel": ALERT_CHANNEL, "channel_rate_per_s": 1000},
    ) as stack:
        body = webhook(team=HOSTILE)
        alert = body["alerts"][0]
        if field == "summary":
            alert["annotations"]["summary"] = f"checkout-api is down {HOSTILE}"
        else:  # no summary: the text is built from the labels
            alert["annotations"] = {}
            alert["labels"]["alertname"] = HOSTILE
        assert await post_alert(stack, body) < 300
        await stack.settle()
        out = assert_text_only(stack)
        assert "checkout-api is down" in out


@pytest.mark.parametrize("field", ["title", "service"])
async def test_a_pagerduty_title_or_service_is_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    """An incident PagerDuty triggers takes its text from the title (or the service's summary
    when it has none): whoever can name a PagerDuty incident must not ping the channel."""
    secret = "pd-webhook-secret-escaped"
    monkeypatch.setenv("OPSGATE_SECRET_PD_HOOK", secret)
    async with Stack(
        db_url=f"sqlite:///{tmp_path / 'p.db'}",
        tmp_path=tmp_path,
        slack={"alert_channel": ALERT_CHANNEL, "channel_rate_per_s": 1000},
        intake={"pagerduty": {"webhook_secret": "${secret:PD_HOOK}"}},
    ) as stack:
        fake = FakePagerDuty()
        await fake.start()
        try:
            assert stack.server is not None
            fake.subscribe(str(stack.server.make_url("/alerts/pagerduty")), secret)
            if field == "title":
                await fake.trigger(f"checkout-api is down {HOSTILE}")
            else:
                incident = fake.add_incident("", service=f"checkout-api {HOSTILE}")
                await fake.deliver("incident.triggered", incident)
            assert fake.deliveries[-1].status == 202
            await stack.settle()
        finally:
            await fake.stop()
        out = assert_text_only(stack)
        assert "checkout-api" in out


async def test_a_resolved_alert_told_in_the_thread_is_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_ALERT_TOKEN", "alert-secret")
    async with Stack(
        db_url=f"sqlite:///{tmp_path / 'a.db'}",
        tmp_path=tmp_path,
        slack={"alert_channel": ALERT_CHANNEL, "channel_rate_per_s": 1000},
    ) as stack:
        body = webhook()
        body["alerts"][0]["annotations"]["summary"] = f"checkout-api is down {HOSTILE}"
        assert await post_alert(stack, body) < 300
        await stack.settle()
        calls_before = len(stack.slack.calls)
        body["status"] = body["alerts"][0]["status"] = "resolved"
        assert await post_alert(stack, body) < 300
        await stack.settle()
        told = [
            t
            for c in stack.slack.calls[calls_before:]
            if c.method in SENDS
            for t in _mrkdwn(c.args)
        ]
        assert any("resolved" in t and "&lt;@U0BOSS9&gt;" in t for t in told), told
        assert_text_only(stack)


async def test_the_audit_timeline_and_the_replay_posted_in_the_thread_are_text(
    stack: Stack,
) -> None:
    """``/incident audit`` shows what people typed (incident text, reasons) and ``/incident
    replay`` the plan's outcome: both as text."""
    await open_checkout(stack, f"checkout-api is down {HOSTILE}")
    status, _ = await stack.command(f"cancel {HOSTILE}")
    assert status == 200
    await stack.settle()
    (incident,) = await stack.control.db.run(lambda s: list(s.exec(select(Incident))))
    calls_before = len(stack.slack.calls)
    for verb in ("audit", "replay"):
        status, body = await stack.command(f"{verb} {incident.id[:8]}")
        assert status == 200
        await stack.settle()
        for token in LIVE:
            assert token not in body, (verb, token)
    posted = "\n".join(
        t for c in stack.slack.calls[calls_before:] if c.method in SENDS for t in _mrkdwn(c.args)
    )
    assert "Audit timeline" in posted
    assert "nothing live was called or changed" in posted  # the replay was posted
    assert "&lt;@U0BOSS9&gt;" in posted  # the typed text is shown, as text
    for token in LIVE:
        assert token not in posted, token
