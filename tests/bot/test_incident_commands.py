"""``/incident`` subcommands scoped to one incident, the policy on who may close, truthful acks.

Signed slash commands and events through the real app against the fake Slack Web API.
"""

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from bot.sandbox import signing
from orchestration.closing import short_id
from orchestration.enums import IncidentStatus
from orchestration.models import AuditEvent, Incident
from tests.bot.scenario import APPROVER_A, CHANNEL, REQUESTER, SECRET, STRANGER, Stack


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(db_url=db_url, tmp_path=tmp_path) as running:
        yield running


async def audit_events(stack: Stack, name: str) -> list[AuditEvent]:
    return await stack.control.db.run(
        lambda s: list(s.exec(select(AuditEvent).where(AuditEvent.event == name)))
    )


async def incidents(stack: Stack) -> dict[str, Incident]:
    rows = await stack.control.db.run(lambda s: list(s.exec(select(Incident))))
    return {row.text: row for row in rows}


def ack_text(body: str) -> str:
    """The text and blocks of a slash command's immediate answer (Bolt sends a text-only
    answer as plain text, one with blocks as JSON)."""
    try:
        answer = json.loads(body)
    except json.JSONDecodeError:
        return body
    return str(answer.get("text", "")) + json.dumps(answer.get("blocks") or [], ensure_ascii=False)


async def open_two(stack: Stack) -> dict[str, Incident]:
    for text in ("checkout-api is down", "orders-api is down"):
        status, _ = await stack.command(text)
        assert status == 200
    await stack.settle()
    opened = await incidents(stack)
    assert len(opened) == 2
    return opened


async def test_the_ack_of_text_no_runbook_matches_says_so_and_nothing_follows(
    stack: Stack,
) -> None:
    status, body = await stack.command("the moon is made of cheese")
    assert status == 200
    text = ack_text(body)
    assert "did not open an incident" in text
    assert "No runbook matches" in text
    assert "Opening" not in text
    await stack.settle()
    assert stack.slack.ephemerals(REQUESTER) == []  # no second, contradicting message
    assert stack.slack.calls_to("chat.postMessage") == []
    assert len(await audit_events(stack, "plan_not_found")) == 1  # still audited


async def test_the_ack_of_injection_shaped_text_refuses_it_at_once(stack: Stack) -> None:
    _, body = await stack.command("checkout-api is down; rm -rf /tmp")
    text = ack_text(body)
    assert "refused because it chains a shell command" in text
    await stack.settle()
    assert stack.slack.ephemerals(REQUESTER) == []
    assert len(await audit_events(stack, "input_rejected")) == 1


async def test_the_ack_of_an_incident_names_the_runbook_that_will_plan_it(stack: Stack) -> None:
    _, body = await stack.command("checkout-api is down")
    text = ack_text(body)
    assert "Opening an incident: checkout-api is down" in text
    assert "Restart an unhealthy web service" in text


async def test_resolve_with_nothing_open_answers_that_in_the_ack_alone(stack: Stack) -> None:
    _, body = await stack.command("resolve all good")
    text = ack_text(body)
    assert "no open incident" in text.lower()
    assert "On it" not in text
    await stack.settle()
    assert stack.slack.ephemerals(REQUESTER) == []


async def test_with_two_open_resolve_without_an_id_lists_them_and_closes_nothing(
    stack: Stack,
) -> None:
    opened = await open_two(stack)
    _, body = await stack.command("resolve fixed")
    text = ack_text(body)
    assert "2 open incidents" in text
    for incident in opened.values():
        assert f"/incident resolve {short_id(incident.id)}" in text
    await stack.settle()
    assert {i.status for i in (await incidents(stack)).values()} == {IncidentStatus.OPEN.value}
    assert stack.slack.ephemerals(REQUESTER) == []


async def test_resolve_by_id_closes_that_incident_and_says_which(stack: Stack) -> None:
    opened = await open_two(stack)
    orders = opened["orders-api is down"]
    _, body = await stack.command(f"resolve {short_id(orders.id)} restarted by hand")
    text = ack_text(body)
    assert f"Resolving incident `{short_id(orders.id)}` (orders-api is down)" in text
    await stack.settle()
    now = await incidents(stack)
    assert now["orders-api is down"].status == IncidentStatus.RESOLVED.value
    assert now["checkout-api is down"].status == IncidentStatus.OPEN.value
    (resolved,) = await audit_events(stack, "incident_resolved")
    assert resolved.incident_id == orders.id
    assert resolved.detail["reason"] == "restarted by hand"
    # Again, by the same id: a no-op with a plain answer.
    _, body = await stack.command(f"resolve {short_id(orders.id)}")
    assert "is already resolved; nothing changed" in ack_text(body)
    await stack.settle()
    assert len(await audit_events(stack, "incident_resolved")) == 1
    assert stack.slack.ephemerals(REQUESTER) == []


async def test_status_lists_every_open_incident_of_the_channel(stack: Stack) -> None:
    opened = await open_two(stack)
    _, body = await stack.command("status")
    text = ack_text(body)
    assert "2 open incidents in this channel" in text
    for name, incident in opened.items():
        assert short_id(incident.id) in text
        assert name in text
    _, body = await stack.command(f"status {short_id(opened['orders-api is down'].id)}")
    text = ack_text(body)
    assert "Restart orders-api" in text
    assert "Restart checkout-api" not in text


async def test_an_unknown_id_is_named_in_the_answer(stack: Stack) -> None:
    await open_two(stack)
    _, body = await stack.command("cancel 0123456789ab")
    assert "There is no incident `0123456789ab`" in ack_text(body)


async def test_a_channel_member_may_not_resolve_and_the_refusal_is_audited(
    stack: Stack,
) -> None:
    _, _ = await stack.command("checkout-api is down")
    await stack.settle()
    _, body = await stack.command("resolve it is fine", user=STRANGER)
    text = ack_text(body)
    assert "You cannot resolve incident" in text
    assert "Only the person who opened it, a configured approver" in text
    await stack.settle()
    (incident,) = (await incidents(stack)).values()
    assert incident.status == IncidentStatus.OPEN.value
    (refused,) = await audit_events(stack, "incident_close_refused")
    assert refused.actor == STRANGER
    assert refused.incident_id == incident.id
    assert stack.slack.ephemerals(STRANGER) == []  # told once, in the ack
    _, body = await stack.command("cancel", user=STRANGER)
    assert "You cannot cancel incident" in ack_text(body)
    await stack.settle()
    assert len(await audit_events(stack, "incident_close_refused")) == 2
    # An approver may stop the automation.
    _, body = await stack.command("cancel wrong runbook", user=APPROVER_A)
    assert "Cancelling incident" in ack_text(body)
    await stack.settle()
    (incident,) = (await incidents(stack)).values()
    assert incident.status == IncidentStatus.CANCELLED.value


async def test_a_mention_in_an_incidents_thread_resolves_that_incident(stack: Stack) -> None:
    opened = await open_two(stack)
    checkout = opened["checkout-api is down"]
    assert checkout.thread_ts is not None
    event = {
        "type": "app_mention",
        "user": REQUESTER,
        "channel": CHANNEL,
        "text": "<@UBOT> resolve restarted by hand",
        "ts": "1700000000.000900",
        "thread_ts": checkout.thread_ts,
    }
    body = signing.event_body(event=event, event_id="EvResolve1")
    assert (await stack.post(body))[0] == 200
    assert (await stack.post(body, headers=signing.retry_headers(1)))[0] == 200  # a retry
    await stack.settle()
    now = await incidents(stack)
    assert now["checkout-api is down"].status == IncidentStatus.RESOLVED.value
    assert now["orders-api is down"].status == IncidentStatus.OPEN.value
    assert len(await audit_events(stack, "incident_resolved")) == 1
    thread = stack.slack.thread(CHANNEL, checkout.thread_ts)
    assert any("resolved" in m.text.lower() for m in thread)


async def test_a_mention_outside_any_thread_with_two_open_asks_which(stack: Stack) -> None:
    await open_two(stack)
    event = {
        "type": "app_mention",
        "user": REQUESTER,
        "channel": CHANNEL,
        "text": "<@UBOT> cancel",
        "ts": "1700000000.000950",
    }
    assert (await stack.post(signing.event_body(event=event, event_id="EvCancel1")))[0] == 200
    await stack.settle()
    told = " ".join(e.text for e in stack.slack.ephemerals(REQUESTER))
    assert "2 open incidents" in told
    assert {i.status for i in (await incidents(stack)).values()} == {IncidentStatus.OPEN.value}


async def test_a_replayed_status_or_help_changes_nothing_and_posts_nothing(stack: Stack) -> None:
    await open_two(stack)
    for text in ("status", "help"):
        body = signing.slash_command_body(
            command="/incident", text=text, user_id=REQUESTER, channel_id=CHANNEL
        )
        headers = signing.sign(body, secret=SECRET)
        answers = {(await stack.post(body, headers=headers, signed=False))[1] for _ in range(3)}
        assert len(answers) == 1
    await stack.settle()
    assert stack.slack.ephemerals(REQUESTER) == []


async def test_a_replayed_metrics_request_posts_its_figures_once(stack: Stack) -> None:
    body = signing.slash_command_body(
        command="/incident", text="metrics", user_id=REQUESTER, channel_id=CHANNEL
    )
    headers = signing.sign(body, secret=SECRET)
    for _ in range(3):
        assert (await stack.post(body, headers=headers, signed=False))[0] == 200
    await stack.settle()
    assert len(stack.slack.ephemerals(REQUESTER)) == 1
