"""Staged trust in Slack: shadow cards, the baseline card and its modal, ``/incident did``,
``/incident rollout`` and promotion votes, as signed requests through the real app against the
fake Slack Web API."""

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot.ids import ActionId, BlockId, CallbackId
from bot.sandbox import signing
from bot.sandbox.workspace import Message
from orchestration.closing import short_id
from orchestration.models import HumanAction, Incident, RolloutStage
from tests.bot.scenario import (
    APPROVER_A,
    APPROVER_B,
    CHANNEL,
    REQUESTER,
    SECRET,
    Stack,
)

SCOPE = "web-changes"
LATE = "UAPP3"  # another configured approver
OPS = "C0OPS"
ROLLOUT = {
    "scopes": [
        {
            "id": SCOPE,
            "runbook": "web-restart",
            "tools": ["state_changing", "destructive"],
            "stage": "shadow",
        }
    ]
}


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(
        db_url=db_url,
        tmp_path=tmp_path,
        rollout=ROLLOUT,
        slack={"channel_rate_per_s": 1000, "ops_channel": OPS},
    ) as running:
        yield running


def ack_text(body: str) -> str:
    """A slash command's immediate answer: its text and blocks, as one string."""
    try:
        answer = json.loads(body)
    except json.JSONDecodeError:
        return body
    return str(answer.get("text", "")) + json.dumps(answer.get("blocks") or [], ensure_ascii=False)


async def human_actions(stack: Stack) -> list[tuple[str, str | None, str, str]]:
    rows = await stack.control.db.run(
        lambda s: list(s.exec(select(HumanAction).order_by(col(HumanAction.id))))
    )
    return [(r.kind, r.step_key, r.text, r.source) for r in rows]


async def the_incident(stack: Stack) -> Incident:
    rows = await stack.control.db.run(lambda s: list(s.exec(select(Incident))))
    assert len(rows) == 1
    return rows[0]


def with_button(messages: list[Message], action_id: str) -> Message:
    for message in reversed(messages):
        for block in message.blocks or []:
            if any(e.get("action_id") == action_id for e in block.get("elements") or []):
                return message
    raise LookupError(f"no message with a {action_id!r} button")


async def open_in_shadow(stack: Stack) -> None:
    status, _ = await stack.command("checkout-api is down")
    assert status == 200
    await stack.settle()


async def test_in_shadow_the_card_says_so_and_nothing_state_changing_runs(stack: Stack) -> None:
    await open_in_shadow(stack)
    root = stack.root()
    steps = next(
        b["text"]["text"] for b in root.blocks or [] if "*Steps*" in str(b.get("text") or "")
    )
    lines = steps.splitlines()
    restart = next(i for i, line in enumerate(lines) if "Restart checkout-api" in line)
    assert lines[restart + 1].strip() == (
        f"↳ stage: shadow (nothing will run): scope {SCOPE} "
        "(runbook web-restart, state-changing steps or destructive steps)"
    )
    probe = next(i for i, line in enumerate(lines) if "Probe checkout-api" in line)
    assert (
        lines[probe + 1]
        .strip()
        .startswith("↳ stage: supervised: global mode (no rollout scope covers")
    )
    assert stack.service.restarts == 0
    assert stack.service.health_checks >= 1  # the read-only probe ran (global mode)
    assert not any(b.get("type") == "actions" for m in stack.thread() for b in m.blocks or []), (
        "a shadow step asks nobody to approve it"
    )


async def resolve_by_hand(stack: Stack) -> Incident:
    await open_in_shadow(stack)
    _, body = await stack.command("resolve restarted by hand", user=APPROVER_A)
    assert "Resolving incident" in ack_text(body)
    await stack.settle()
    return await the_incident(stack)


def taken_state(*values: tuple[str, str]) -> dict[str, Any]:
    """The checkboxes' ``state.values`` entry as Slack sends it: the ticked options."""
    return {
        "type": "checkboxes",
        "selected_options": [
            {"text": {"type": "plain_text", "text": text, "emoji": True}, "value": value}
            for value, text in values
        ],
    }


async def test_resolving_by_hand_asks_the_resolver_what_they_did(stack: Stack) -> None:
    """The baseline card mentions the resolver and lists the proposal; its button opens a
    modal with the proposed step as a checkbox; ticking it and adding a line records took,
    other and answered, and the thread hears what was recorded."""
    incident = await resolve_by_hand(stack)
    card = with_button(stack.thread(), ActionId.BASELINE_OPEN.value)
    assert f"<@{APPROVER_A}>" in str(card.blocks)
    assert "Restart checkout-api" in str(card.blocks)
    assert "Record what you did" in str(card.blocks)
    assert await human_actions(stack) == []  # nothing recorded until answered

    status, _ = await stack.click(card, ActionId.BASELINE_OPEN.value, user=APPROVER_A)
    assert status == 200
    await stack.settle()
    (opened,) = stack.slack.calls_to("views.open")
    assert opened is not None
    (view,) = stack.slack.workspace.views.values()
    assert view["callback_id"] == CallbackId.BASELINE.value
    assert view["private_metadata"] == incident.id
    taken = next(b for b in view["blocks"] if b.get("block_id") == BlockId.BASELINE_TAKEN.value)
    assert taken["element"]["type"] == "checkboxes"
    assert [(o["value"], o["text"]["text"]) for o in taken["element"]["options"]] == [
        ("restart", "Restart checkout-api")
    ]

    body = signing.view_submission_body(
        user_id=APPROVER_A,
        view=view,
        values={
            BlockId.BASELINE_TAKEN.value: {
                ActionId.BASELINE_TAKEN.value: taken_state(("restart", "Restart checkout-api"))
            },
            BlockId.BASELINE_OTHER.value: {
                ActionId.BASELINE_OTHER.value: {
                    "type": "plain_text_input",
                    "value": "drained the bad node",
                }
            },
        },
    )
    status, answer = await stack.post(body)
    assert status == 200
    assert "errors" not in answer  # the modal closes
    await stack.settle()
    assert await human_actions(stack) == [
        ("took", "restart", "", "card"),
        ("other", None, "drained the bad node", "card"),
        ("answered", None, "", "card"),
    ]
    recorded = [m for m in stack.thread() if "Baseline recorded" in m.text]
    assert len(recorded) == 1
    assert f"<@{APPROVER_A}>" in recorded[0].text
    assert "Restart checkout-api" in recorded[0].text
    assert "drained the bad node" in recorded[0].text


async def test_an_empty_baseline_answer_records_that_nothing_was_done(stack: Stack) -> None:
    """Nothing ticked (an empty ``selected_options``) and no text: only ``answered``, which
    makes the proposal a false positive."""
    incident = await resolve_by_hand(stack)
    card = with_button(stack.thread(), ActionId.BASELINE_OPEN.value)
    await stack.click(card, ActionId.BASELINE_OPEN.value, user=APPROVER_A)
    await stack.settle()
    (view,) = stack.slack.workspace.views.values()
    body = signing.view_submission_body(
        user_id=APPROVER_A,
        view=view,
        values={
            BlockId.BASELINE_TAKEN.value: {ActionId.BASELINE_TAKEN.value: taken_state()},
            BlockId.BASELINE_OTHER.value: {
                ActionId.BASELINE_OTHER.value: {"type": "plain_text_input", "value": None}
            },
        },
    )
    assert (await stack.post(body))[0] == 200
    await stack.settle()
    assert await human_actions(stack) == [("answered", None, "", "card")]
    assert "Baseline recorded" in stack.texts()
    assert incident.id == view["private_metadata"]


async def test_a_baseline_answer_for_an_unknown_incident_keeps_the_modal_open(
    stack: Stack,
) -> None:
    await resolve_by_hand(stack)
    card = with_button(stack.thread(), ActionId.BASELINE_OPEN.value)
    await stack.click(card, ActionId.BASELINE_OPEN.value, user=APPROVER_A)
    await stack.settle()
    (view,) = stack.slack.workspace.views.values()
    body = signing.view_submission_body(
        user_id=APPROVER_A, view={**view, "private_metadata": "0" * 32}, values={}
    )
    status, answer = await stack.post(body)
    assert status == 200
    assert json.loads(answer)["response_action"] == "errors"
    assert await human_actions(stack) == []


async def test_did_records_a_proposed_step_or_another_change_and_says_which(
    stack: Stack,
) -> None:
    incident = await resolve_by_hand(stack)
    ref = short_id(incident.id)
    _, body = await stack.command("did Restart checkout-api", user=APPROVER_A)
    assert ack_text(body) == (
        f"Recorded on incident `{ref}`: you took the proposed step 'Restart checkout-api'."
    )
    _, body = await stack.command("did flushed the CDN cache", user=APPROVER_A)
    assert ack_text(body) == (
        f"Recorded on incident `{ref}`: 'flushed the CDN cache', a change opsgate did not propose."
    )
    await stack.settle()
    assert await human_actions(stack) == [
        ("took", "restart", "", "did"),
        ("other", None, "flushed the CDN cache", "did"),
    ]


async def test_a_replayed_did_records_nothing_more(stack: Stack) -> None:
    await resolve_by_hand(stack)
    body = signing.slash_command_body(
        command="/incident", text="did drained the bad node", user_id=APPROVER_A, channel_id=CHANNEL
    )
    headers = signing.sign(body, secret=SECRET)
    first = ack_text((await stack.post(body, headers=headers, signed=False))[1])
    assert "drained the bad node" in first
    for _ in range(2):
        status, again = await stack.post(body, headers=headers, signed=False)
        assert status == 200
        assert "Already recorded" in ack_text(again)
    await stack.settle()
    assert await human_actions(stack) == [("other", None, "drained the bad node", "did")]


async def test_did_without_an_incident_or_without_words_records_nothing(stack: Stack) -> None:
    _, body = await stack.command("did restarted it", user=APPROVER_A)
    assert "no incident in this channel" in ack_text(body)
    _, body = await stack.command("did", user=APPROVER_A)
    assert "Say what you did" in ack_text(body)
    await stack.settle()
    assert await human_actions(stack) == []


async def test_did_with_several_open_incidents_asks_which(stack: Stack) -> None:
    await stack.command("checkout-api is down")
    await stack.command("payments-api is down")
    await stack.settle()
    _, body = await stack.command("did restarted it", user=APPROVER_A)
    text = ack_text(body)
    assert text.startswith("Several incidents are open here: ")
    assert "Say which: /incident did <id> <what>." in text
    assert await human_actions(stack) == []


async def test_rollout_shows_the_scope_its_stage_and_its_criteria(stack: Stack) -> None:
    _, body = await stack.command("rollout")
    text = ack_text(body)
    assert SCOPE in text
    assert "`shadow`" in text
    assert "runbook web-restart, state-changing steps or destructive steps" in text
    assert "exit criteria to supervised (not all met)" in text
    assert "✗ days in stage: 0.0 (at least 30)" in text
    assert "✗ judged incidents: 0 (at least 20)" in text


async def stage_of(stack: Stack) -> str:
    row = await stack.control.db.run(lambda s: s.get(RolloutStage, SCOPE))
    assert row is not None
    return row.stage


def promotion_card(stack: Stack) -> Message:
    cards = [m for m in stack.slack.messages(CHANNEL) if "Promote" in m.text]
    assert len(cards) == 1, [m.text for m in stack.slack.messages(CHANNEL)]
    return cards[0]


async def test_a_promotion_while_criteria_are_unmet_is_refused_in_the_ack(stack: Stack) -> None:
    _, body = await stack.command(f"rollout promote {SCOPE}")
    text = ack_text(body)
    assert f"{SCOPE} cannot be promoted to supervised: exit criteria unmet" in text
    assert "✗ days in stage: 0.0 (at least 30)" in text
    assert f"/incident rollout promote {SCOPE} override: <why>" in text
    await stack.settle()
    assert stack.slack.calls_to("chat.postMessage") == []
    assert await stage_of(stack) == "shadow"


async def test_an_overridden_promotion_is_decided_by_two_approvers_not_the_requester(
    stack: Stack,
) -> None:
    _, body = await stack.command(f"rollout promote {SCOPE} override: staging ran it for a month")
    assert "needs 2 approvals (not yours)" in ack_text(body)
    await stack.settle()
    card = promotion_card(stack)
    stale = copy.deepcopy(card.to_api())  # as another approver's screen still shows it
    shown = str(card.blocks)
    assert f"Promote {SCOPE} from shadow to supervised" in shown
    assert "staging ran it for a month" in shown
    assert "✗ days in stage" in shown

    status, _ = await stack.click(card, ActionId.APPROVE_PROMOTION.value, user=REQUESTER)
    assert status == 200
    await stack.settle()
    refused = " ".join(e.text for e in stack.slack.ephemerals(REQUESTER))
    assert "You asked for this promotion" in refused
    assert await stage_of(stack) == "shadow"

    await stack.click(card, ActionId.APPROVE_PROMOTION.value, user=APPROVER_A)
    await stack.settle()
    assert "1 of 2 approvals" in str(promotion_card(stack).blocks)
    assert await stage_of(stack) == "shadow"
    await stack.click(card, ActionId.APPROVE_PROMOTION.value, user=APPROVER_B)
    await stack.settle()
    assert await stage_of(stack) == "supervised"
    card = promotion_card(stack)
    assert "Approved" in str(card.blocks)
    assert not any(b.get("type") == "actions" for b in card.blocks or [])
    (ops,) = stack.slack.messages(OPS)
    assert f"{SCOPE} promoted from shadow to supervised" in ops.text + str(ops.blocks)
    assert "staging ran it for a month" in str(ops.blocks)

    # A click from a screen that still shows the buttons changes nothing, privately.
    late = signing.button_click_body(
        message=stale, channel_id=CHANNEL, action_id=ActionId.APPROVE_PROMOTION.value, user_id=LATE
    )
    assert (await stack.post(late))[0] == 200
    await stack.settle()
    assert "approved already" in " ".join(e.text for e in stack.slack.ephemerals(LATE))
    assert len(stack.slack.messages(OPS)) == 1


async def test_a_replayed_promotion_request_opens_one_promotion(stack: Stack) -> None:
    body = signing.slash_command_body(
        command="/incident",
        text=f"rollout promote {SCOPE} override: staging ran it for a month",
        user_id=REQUESTER,
        channel_id=CHANNEL,
    )
    headers = signing.sign(body, secret=SECRET)
    answers = [
        ack_text((await stack.post(body, headers=headers, signed=False))[1]) for _ in range(3)
    ]
    assert "needs 2 approvals" in answers[0]
    assert all("Already recorded" in a for a in answers[1:])
    await stack.settle()
    promotion_card(stack)  # exactly one
