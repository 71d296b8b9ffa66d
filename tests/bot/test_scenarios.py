"""Signed Slack requests through the real aiohttp app, against a fake Slack Web API."""

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from bot import strings
from bot.ids import ActionId, BlockId
from bot.sandbox import signing
from bot.sandbox.workspace import Message
from orchestration.inbox import NoticeKind, Request, RequestKind, notify
from orchestration.models import AuditEvent, OutboxMessage, Vote
from orchestration.views import Opened
from tests.bot.scenario import (
    APPROVER_A,
    APPROVER_B,
    CHANNEL,
    REQUESTER,
    SECRET,
    STRANGER,
    Stack,
)


class DatabaseDown:
    """A database whose units of work all fail, as when the server is unreachable."""

    async def run(self, _work: object) -> None:
        raise OperationalError("INSERT INTO inbox", {}, Exception("database is down"))


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(db_url=db_url, tmp_path=tmp_path) as running:
        yield running


async def open_checkout(stack: Stack) -> None:
    status, _ = await stack.command("checkout-api is down")
    assert status == 200
    await stack.settle()


async def test_slash_command_opens_incident_runs_probe_and_waits_for_approval(
    stack: Stack,
) -> None:
    status, body = await stack.command("checkout-api is down")
    assert status == 200
    assert "checkout-api is down" in body
    await stack.settle()
    root = stack.root()
    assert "checkout-api is down" in root.text
    assert "Restart an unhealthy web service" in str(root.blocks)
    thread = stack.texts()
    assert "Probe checkout-api health" in thread
    assert "503" in thread
    card = stack.card("Restart checkout-api")
    values = [
        e["value"] for b in card.blocks or [] if b.get("type") == "actions" for e in b["elements"]
    ]
    assert len(values) == 2
    assert values[0] == values[1]
    assert len(values[0]) >= 32
    assert stack.service.restarts == 0


async def test_two_distinct_approvers_run_the_restart_once_and_refusals_are_ephemeral(
    stack: Stack,
) -> None:
    await open_checkout(stack)
    card = stack.card("Restart checkout-api")
    for user in (REQUESTER, STRANGER):
        status, _ = await stack.click(card, ActionId.APPROVE.value, user=user)
        assert status == 200
    await stack.settle()
    requester_msgs = " ".join(e.text for e in stack.slack.ephemerals(REQUESTER))
    stranger_msgs = " ".join(e.text for e in stack.slack.ephemerals(STRANGER))
    assert "two other people" in requester_msgs or "requested" in requester_msgs
    assert "approvers" in stranger_msgs

    await stack.click(stack.card("Restart checkout-api"), ActionId.APPROVE.value, user=APPROVER_A)
    await stack.click(stack.card("Restart checkout-api"), ActionId.APPROVE.value, user=APPROVER_A)
    await stack.settle()
    card = stack.card("Restart checkout-api")
    assert "1/2" in str(card.blocks)
    assert stack.service.restarts == 0
    assert "already counted" in " ".join(e.text for e in stack.slack.ephemerals(APPROVER_A))

    await stack.click(card, ActionId.APPROVE.value, user=APPROVER_B)
    await stack.settle()
    assert stack.service.restarts == 1
    card = stack.card("Restart checkout-api")
    assert not any(b.get("type") == "actions" for b in card.blocks or [])
    thread = stack.texts()
    assert "Verify checkout-api is healthy" in thread
    assert "$" in thread  # cost deltas and running totals are threaded


async def test_five_simultaneous_final_clicks_run_the_step_exactly_once(stack: Stack) -> None:
    await open_checkout(stack)
    card = stack.card("Restart checkout-api")
    await stack.click(card, ActionId.APPROVE.value, user=APPROVER_A)
    await stack.settle()
    card = stack.card("Restart checkout-api")
    results = await asyncio.gather(
        *(
            stack.click(card, ActionId.APPROVE.value, user=user)
            for user in (APPROVER_B, "UAPP3", "UAPP4", "UAPP5", "UAPP6")
        )
    )
    assert all(status == 200 for status, _ in results)
    await stack.settle()
    assert stack.service.restarts == 1


def has_buttons(message: Message) -> bool:
    return any(b.get("type") == "actions" for b in message.blocks or [])


def nonce_of(card: Message) -> str:
    [actions] = [b for b in card.blocks or [] if b.get("type") == "actions"]
    return str(actions["elements"][0]["value"])


def reason_body(view: dict[str, Any], *, user: str, reason: str) -> str:
    """The modal submitted with ``reason`` typed in."""
    return signing.view_submission_body(
        user_id=user,
        view=view,
        values={
            BlockId.REJECT_REASON.value: {
                ActionId.REJECT_REASON_INPUT.value: {"type": "plain_text_input", "value": reason}
            }
        },
    )


async def stored_votes(stack: Stack) -> list[tuple[str, str, str]]:
    rows = await stack.control.db.run(
        lambda s: list(s.exec(select(Vote.voter, Vote.choice, Vote.reason).order_by(col(Vote.id))))
    )
    return [tuple(row) for row in rows]


async def plan_status(stack: Stack) -> str:
    incident = await stack.control.open_incident_in(CHANNEL)
    assert incident is not None
    return (await stack.control.incident_plan(incident.id)).status


async def test_a_reject_click_halts_the_step_even_if_the_modal_is_never_submitted(
    stack: Stack,
) -> None:
    """The click rejects; the modal only offers a reason. Nobody submits it: the step is still
    rejected, the card says who, and an approval arriving later is refused."""
    await open_checkout(stack)
    card = stack.card("Restart checkout-api")
    nonce = nonce_of(card)
    stale = copy.deepcopy(card.to_api())  # as another approver's screen still shows it
    status, _ = await stack.click(card, ActionId.REJECT.value, user=APPROVER_A)
    assert status == 200
    assert await stored_votes(stack) == [(APPROVER_A, "reject", "")]  # committed before the ack
    await stack.settle()
    [view] = stack.slack.workspace.views.values()
    assert view["private_metadata"] == nonce
    assert await plan_status(stack) == "halted"
    card = stack.card("Restart checkout-api")
    assert not has_buttons(card)
    assert f"❌ *Rejected* by <@{APPROVER_A}>" in str(card.blocks)
    assert f"<@{APPROVER_A}> rejected 'Restart checkout-api'; the plan is halted." in stack.texts()

    late = signing.button_click_body(
        message=stale, channel_id=CHANNEL, action_id=ActionId.APPROVE.value, user_id=APPROVER_B
    )
    assert (await stack.post(late))[0] == 200
    await stack.settle()
    refused = " ".join(e.text for e in stack.slack.ephemerals(APPROVER_B))
    assert "already rejected this step" in refused
    assert stack.service.restarts == 0


async def test_the_requester_rejects_their_own_high_risk_step(stack: Stack) -> None:
    """The requester's approval of a high-risk step does not count; their Reject does."""
    await open_checkout(stack)
    card = stack.card("Restart checkout-api")
    await stack.click(card, ActionId.APPROVE.value, user=REQUESTER)
    await stack.settle()
    assert has_buttons(stack.card("Restart checkout-api"))
    status, _ = await stack.click(card, ActionId.REJECT.value, user=REQUESTER)
    assert status == 200
    await stack.settle()
    assert await plan_status(stack) == "halted"
    assert f"❌ *Rejected* by <@{REQUESTER}>" in str(stack.card("Restart checkout-api").blocks)
    assert [c["trigger_id"] for c in stack.slack.calls_to("views.open")]
    assert stack.service.restarts == 0


async def test_a_stranger_cannot_reject_and_gets_no_modal(stack: Stack) -> None:
    await open_checkout(stack)
    await stack.click(stack.card("Restart checkout-api"), ActionId.REJECT.value, user=STRANGER)
    await stack.settle()
    assert "person who opened this incident" in " ".join(
        e.text for e in stack.slack.ephemerals(STRANGER)
    )
    assert stack.slack.calls_to("views.open") == []
    assert has_buttons(stack.card("Restart checkout-api"))
    assert await plan_status(stack) == "waiting"


async def test_a_reject_whose_modal_fails_to_open_still_counts(stack: Stack) -> None:
    await open_checkout(stack)
    stack.slack.fail_next("views.open", 1, status=500)
    status, _ = await stack.click(
        stack.card("Restart checkout-api"), ActionId.REJECT.value, user=APPROVER_A
    )
    assert status == 200
    await stack.settle()
    assert stack.slack.workspace.views == {}
    assert await plan_status(stack) == "halted"
    assert not has_buttons(stack.card("Restart checkout-api"))


async def test_rejection_with_a_reason_halts_the_plan_and_says_who_and_why_once(
    stack: Stack,
) -> None:
    await open_checkout(stack)
    card = stack.card("Restart checkout-api")
    status, _ = await stack.click(card, ActionId.REJECT.value, user=APPROVER_A)
    assert status == 200
    await stack.settle()
    assert await plan_status(stack) == "halted"  # before any reason
    [view] = stack.slack.workspace.views.values()
    status, body = await stack.post(reason_body(view, user=APPROVER_A, reason="peak traffic."))
    assert (status, body) == (200, "")  # the modal closes
    assert await stored_votes(stack) == [(APPROVER_A, "reject", "peak traffic.")]
    await stack.settle()
    assert stack.service.restarts == 0
    card = stack.card("Restart checkout-api")
    assert not has_buttons(card)
    card_text = str(card.blocks)
    assert f"❌ *Rejected* by <@{APPROVER_A}>: peak traffic." in card_text
    assert card_text.count("peak traffic") == 1
    assert ".." not in card_text
    reasons = [m for m in stack.thread() if "gave a reason" in m.text + str(m.blocks)]
    assert len(reasons) == 1
    thread_text = str(reasons[0].blocks)
    assert f"<@{APPROVER_A}> gave a reason for rejecting *Restart checkout-api*: peak traffic." in (
        thread_text
    )
    assert thread_text.count("peak traffic") == 1


async def test_a_reason_from_someone_who_did_not_reject_is_refused_in_the_modal(
    stack: Stack,
) -> None:
    await open_checkout(stack)
    await stack.click(stack.card("Restart checkout-api"), ActionId.REJECT.value, user=APPROVER_A)
    await stack.settle()
    [view] = stack.slack.workspace.views.values()
    status, body = await stack.post(reason_body(view, user=APPROVER_B, reason="not mine"))
    assert status == 200
    only = "Only the person who rejected this step can add its reason."
    assert json.loads(body) == {
        "response_action": "errors",
        "errors": {BlockId.REJECT_REASON.value: only},
    }
    assert await stored_votes(stack) == [(APPROVER_A, "reject", "")]
    await stack.settle()
    assert "not mine" not in stack.texts()


async def test_a_blank_reason_closes_the_modal_and_changes_nothing(stack: Stack) -> None:
    await open_checkout(stack)
    await stack.click(stack.card("Restart checkout-api"), ActionId.REJECT.value, user=APPROVER_A)
    await stack.settle()
    [view] = stack.slack.workspace.views.values()
    assert await stack.post(reason_body(view, user=APPROVER_A, reason="   ")) == (200, "")
    await stack.settle()
    assert await stored_votes(stack) == [(APPROVER_A, "reject", "")]
    assert "gave a reason" not in stack.texts()


async def test_a_click_is_committed_before_its_ack(stack: Stack) -> None:
    """When the 2xx arrives, the vote is already stored (Slack never resends a 2xx'd click)."""
    await open_checkout(stack)
    card = stack.card("Restart checkout-api")
    assert (await stack.click(card, ActionId.APPROVE.value, user=APPROVER_A))[0] == 200
    assert await stored_votes(stack) == [(APPROVER_A, "approve", "")]
    assert (await stack.click(card, ActionId.APPROVE.value, user=APPROVER_B))[0] == 200
    assert await stored_votes(stack) == [(APPROVER_A, "approve", ""), (APPROVER_B, "approve", "")]
    await stack.settle()  # the step the final vote started runs after the ack
    assert stack.service.restarts == 1


async def test_a_vote_slower_than_bolts_ack_wait_is_answered_200_once_committed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit past Bolt's 3 s wait for ack() is late, never a 404 for a vote that counts."""
    await open_checkout(stack)
    card = stack.card("Restart checkout-api")
    vote = stack.control.vote

    async def slow_vote(**kwargs: Any) -> Any:
        await asyncio.sleep(3.5)  # a loaded database, past Bolt's ack_timeout of 3 s
        return await vote(**kwargs)

    monkeypatch.setattr(stack.control, "vote", slow_vote)
    assert (await stack.click(card, ActionId.APPROVE.value, user=APPROVER_A))[0] == 200
    assert await stored_votes(stack) == [(APPROVER_A, "approve", "")]


async def test_a_click_the_database_cannot_record_is_answered_not_dropped(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control plane fails (database down): the voter hears their click did not count."""
    await open_checkout(stack)

    async def down(**_kwargs: Any) -> None:
        raise OperationalError("SELECT 1", None, ConnectionRefusedError("database down"))

    monkeypatch.setattr(stack.control, "vote", down)
    card = stack.card("Restart checkout-api")
    for action in (ActionId.APPROVE, ActionId.REJECT):
        status, _ = await stack.click(card, action.value, user=APPROVER_A)
        assert status == 200
    await stack.settle()
    told = [e.text for e in stack.slack.ephemerals(APPROVER_A)]
    assert len(told) == 2
    assert all("did not count" in text for text in told)
    assert stack.slack.calls_to("views.open") == []
    monkeypatch.undo()
    assert await stored_votes(stack) == []
    assert has_buttons(stack.card("Restart checkout-api"))


async def test_a_reason_the_database_cannot_record_keeps_the_modal_open(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await open_checkout(stack)
    await stack.click(stack.card("Restart checkout-api"), ActionId.REJECT.value, user=APPROVER_A)
    await stack.settle()
    [view] = stack.slack.workspace.views.values()

    async def down(**_kwargs: Any) -> None:
        raise OperationalError("SELECT 1", None, ConnectionRefusedError("database down"))

    monkeypatch.setattr(stack.control, "add_reason", down)
    status, body = await stack.post(reason_body(view, user=APPROVER_A, reason="peak traffic"))
    assert status == 200
    assert json.loads(body)["errors"] == {
        BlockId.REJECT_REASON.value: "opsgate could not save your reason just now; try again."
    }


async def test_restart_between_two_votes_loses_nothing(stack: Stack) -> None:
    await open_checkout(stack)
    await stack.click(stack.card("Restart checkout-api"), ActionId.APPROVE.value, user=APPROVER_A)
    await stack.settle()
    await stack.shutdown()
    await stack.boot()
    await stack.click(stack.card("Restart checkout-api"), ActionId.APPROVE.value, user=APPROVER_B)
    await stack.settle()
    assert stack.service.restarts == 1
    assert "Verify checkout-api is healthy" in stack.texts()
    assert len(stack.roots()) == 1


async def test_burst_of_60_slash_commands_is_acked_within_3_seconds_each(stack: Stack) -> None:
    async def timed(i: int) -> float:
        started = time.perf_counter()
        status, _ = await stack.command(f"svc-{i} is down", channel=f"C{i:04d}")
        assert status == 200
        return time.perf_counter() - started

    latencies = await asyncio.gather(*(timed(i) for i in range(60)))
    assert max(latencies) < 3.0, sorted(latencies)[-5:]
    await stack.settle(timeout_s=60)
    assert sum(len(stack.roots(f"C{i:04d}")) for i in range(60)) == 60


async def test_forged_stale_and_unsigned_requests_get_401_and_malformed_gets_4xx(
    stack: Stack,
) -> None:
    body = signing.slash_command_body(
        command="/incident", text="checkout-api is down", user_id=REQUESTER, channel_id=CHANNEL
    )
    forged = signing.sign(body, secret="not-the-secret")
    assert (await stack.post(body, headers=forged, signed=False))[0] == 401
    stale = signing.sign(body, secret=SECRET, timestamp=int(time.time()) - 600)
    assert (await stack.post(body, headers=stale, signed=False))[0] == 401
    assert (await stack.post(body, signed=False))[0] == 401
    status, _ = await stack.post("payload=%7Bnot-json")
    assert 400 <= status < 500
    await stack.settle()
    assert stack.slack.calls_to("chat.postMessage") == []


async def test_slack_retries_of_one_event_open_one_incident(stack: Stack) -> None:
    event = {
        "type": "app_mention",
        "user": REQUESTER,
        "channel": CHANNEL,
        "text": "<@UBOT> checkout-api is down",
        "ts": "1700000000.000100",
    }
    body = signing.event_body(event=event, event_id="Ev0001")
    assert (await stack.post(body))[0] == 200
    retry = signing.retry_headers(1)
    assert (await stack.post(body, headers=retry))[0] == 200
    await stack.settle()
    assert len(stack.roots()) == 1


async def test_help_status_unknown_resolve(stack: Stack) -> None:
    status, body = await stack.command("help")
    assert status == 200
    assert "/incident status" in body
    status, body = await stack.command("statuss")
    assert status == 200
    assert "is not a command" in body
    assert "/incident status" in body
    status, body = await stack.command("status")  # answered in the ack: a read, no effect
    assert "no open incident" in body.lower()
    await open_checkout(stack)
    _, body = await stack.command("status")
    assert "Restart checkout-api" in body
    assert "checkout-api is down" in body  # which incident the plan belongs to
    await stack.command("resolve service restarted by hand")
    await stack.settle()
    assert "resolved" in stack.texts().lower()
    assert "restarted by hand" in stack.texts()
    assert await stack.control.open_incident_in(CHANNEL) is None


async def test_slack_rate_limits_and_outages_delay_but_lose_nothing(stack: Stack) -> None:
    stack.slack.fail_next("chat.postMessage", 2, status=429, retry_after=0)
    await open_checkout(stack)
    assert "Probe checkout-api health" in stack.texts()
    stack.slack.outage(True)
    await stack.click(stack.card("Restart checkout-api"), ActionId.APPROVE.value, user=APPROVER_A)
    await asyncio.sleep(0.3)
    stack.slack.outage(False)
    # the click itself reached opsgate; its card update waited for Slack to come back
    deadline = time.monotonic() + 10
    while "1/2" not in str(stack.card("Restart checkout-api").blocks):
        assert time.monotonic() < deadline, "card never updated after the outage"
        await stack.app.surface.relay.drain()  # type: ignore[union-attr]
        await asyncio.sleep(0.1)


async def test_health_ready_and_metrics(stack: Stack) -> None:
    assert stack.http is not None
    assert stack.server is not None
    for path, expected in (
        ("/healthz", "ok"),
        ("/readyz", "ready"),
        ("/metrics", "opsgate_slack_requests_total"),
    ):
        async with stack.http.get(stack.server.make_url(path)) as resp:
            assert resp.status == 200
            assert expected in await resp.text()


async def test_soft_budget_card_in_the_thread_asks_to_continue(db_url: str, tmp_path: Path) -> None:
    """Past the soft threshold the Auditor posts a card with nonce buttons; approving goes on."""
    async with Stack(
        db_url=db_url, tmp_path=tmp_path, budgets={"plan_usd": 0.0003, "soft_ratio": 0.5}
    ) as stack:
        await open_checkout(stack)
        for user in (APPROVER_A, APPROVER_B):
            await stack.click(stack.card("Restart checkout-api"), ActionId.APPROVE.value, user=user)
            await stack.settle()
        assert stack.service.restarts == 1
        budget_card = stack.card("budget")
        assert "Verify checkout-api is healthy" not in stack.texts().split("budget")[-1]
        await stack.click(budget_card, ActionId.APPROVE.value, user=APPROVER_A)
        await stack.settle()
        assert "Verify checkout-api is healthy" in stack.texts()
        view = await stack.control.incident_plan((await stack.control.open_incident_in(CHANNEL)).id)  # type: ignore[union-attr]
        assert view.status == "succeeded"


async def audit_events(stack: Stack, name: str) -> list[AuditEvent]:
    return await stack.control.db.run(
        lambda s: list(s.exec(select(AuditEvent).where(AuditEvent.event == name)))
    )


async def test_a_replayed_signed_slash_command_opens_one_incident(stack: Stack) -> None:
    """Five byte-identical copies inside Slack's signature window: one incident, same ack."""
    body = signing.slash_command_body(
        command="/incident", text="checkout-api is down", user_id=REQUESTER, channel_id=CHANNEL
    )
    headers = signing.sign(body, secret=SECRET)
    answers = [await stack.post(body, headers=headers, signed=False) for _ in range(5)]
    assert {status for status, _ in answers} == {200}
    assert len({text for _, text in answers}) == 1
    assert "checkout-api is down" in answers[0][1]
    await stack.settle()
    assert len(stack.roots()) == 1
    assert stack.service.health_checks == 1
    assert len(await audit_events(stack, "incident_opened")) == 1
    assert len(await audit_events(stack, "request_replayed")) == 4


async def test_a_replayed_resolve_closes_the_incident_once(stack: Stack) -> None:
    await open_checkout(stack)
    body = signing.slash_command_body(
        command="/incident", text="resolve restarted by hand", user_id=REQUESTER, channel_id=CHANNEL
    )
    headers = signing.sign(body, secret=SECRET)
    for _ in range(3):
        assert (await stack.post(body, headers=headers, signed=False))[0] == 200
    await stack.settle()
    assert len(await audit_events(stack, "incident_resolved")) == 1
    kinds = await stack.control.db.run(lambda s: list(s.exec(select(OutboxMessage.kind))))
    assert kinds.count("incident_resolved") == 1
    assert len(await audit_events(stack, "request_replayed")) == 2
    assert stack.slack.ephemerals(REQUESTER) == []  # not "no open incident" for the replays


async def test_slack_retries_of_a_mention_after_a_failed_record_open_one_incident(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unrecorded means unacknowledged: the event gets a 503 (Slack delivers it again), the
    command's ack says nothing will happen."""
    inbox = stack.control.inbox
    monkeypatch.setattr(inbox, "db", DatabaseDown())
    event = {
        "type": "app_mention",
        "user": REQUESTER,
        "channel": CHANNEL,
        "text": "<@UBOT> checkout-api is down",
        "ts": "1700000000.000200",
    }
    body = signing.event_body(event=event, event_id="Ev0002")
    assert (await stack.post(body))[0] == 503
    status, text = await stack.command("checkout-api is down")
    assert status == 200
    assert text == strings.NOT_RECORDED
    await stack.settle()
    assert stack.slack.calls_to("chat.postMessage") == []

    monkeypatch.setattr(inbox, "db", stack.control.db)
    assert (await stack.post(body, headers=signing.retry_headers(1)))[0] == 200
    assert (await stack.post(body, headers=signing.retry_headers(2)))[0] == 200
    await stack.settle()
    assert len(stack.roots()) == 1
    (replayed,) = await audit_events(stack, "request_replayed")
    assert replayed.detail["retry"] == "2"


async def test_work_that_fails_is_told_to_the_asker_and_redone_by_the_sweeper(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails the unit of work: the row stays, the asker hears it is delayed, and
    the sweeper (no restart needed) opens the incident once the database answers again."""
    control = stack.control
    real_open = control.open_incident
    calls: list[str] = []

    async def fails_once(**kwargs: Any) -> Opened:
        calls.append(str(kwargs.get("inbox_key")))
        if len(calls) == 1:
            raise OperationalError("INSERT INTO incidents", {}, Exception("database is down"))
        return await real_open(**kwargs)

    monkeypatch.setattr(control, "open_incident", fails_once)
    status, _ = await stack.command("checkout-api is down")
    assert status == 200
    await stack.settle()
    assert strings.REQUEST_DELAYED in [e.text for e in stack.slack.ephemerals(REQUESTER)]
    assert stack.slack.calls_to("chat.postMessage") == []
    deadline = time.monotonic() + 30
    while not stack.slack.calls_to("chat.postMessage"):
        assert time.monotonic() < deadline, "the sweeper never redid the request"
        await asyncio.sleep(0.1)
    await stack.settle()
    assert len(calls) == 2
    assert calls[0] == calls[1]  # the same inbox row, redone
    assert len(stack.roots()) == 1
    assert stack.service.health_checks == 1


async def test_a_request_opsgate_gave_up_on_is_told_in_plain_words(stack: Stack) -> None:
    """Privately to the person who asked; an alert's in its channel (no person asked)."""
    person = Request(
        kind=RequestKind.OPEN,
        requester=REQUESTER,
        channel=CHANNEL,
        text="checkout-api is down",
        correlation_id="c1",
    )
    alert = person.model_copy(update={"requester": "alertmanager", "private": False})
    now = stack.control.clock.now()

    def work(session: Session) -> None:
        for request in (person, alert):
            notify(session, request, now=now, notice=NoticeKind.ABANDONED, attempts=5)

    await stack.control.db.run(work)
    assert stack.app is not None
    stack.app.surface.relay.wakeup.set()
    await stack.settle()
    told = [e.text for e in stack.slack.ephemerals(REQUESTER)]
    assert told == [strings.abandoned("checkout-api is down", 5)]
    assert "after 5 attempts" in told[0]
    assert [m.text for m in stack.roots()] == [strings.abandoned("checkout-api is down", 5)]
