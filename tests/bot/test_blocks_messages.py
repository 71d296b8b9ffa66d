"""Messages that tell the truth: decided cards, status names, each reason once, names as text."""

from typing import Any

from bot import blocks
from bot.blocks import render, render_approval_card
from tests.bot.test_blocks import all_mrkdwn

CARD: dict[str, Any] = {
    "approval_id": "a1",
    "nonce": "n" * 32,
    "title": "Restart checkout-api",
    "tool_action": "http.post",
    "risk": "high",
    "quorum": 2,
    "exclude_requester": True,
    "reason": "High-risk steps need two approvers.",
    "expires_at": "2026-01-05T22:05:00+00:00",
    "args": {"url": "http://x/restart"},
    "requester": "U0REQ1",
    "plan_version": 1,
    "correlation_id": "c1",
}


def test_a_pending_card_says_when_it_expires_and_a_decided_one_does_not() -> None:
    assert "*Expires*" in all_mrkdwn(render_approval_card(CARD))
    for state in ("approved", "rejected", "expired", "cancelled"):
        update = {"state": state, "quorum": 2, "decided_by": "U0APP1", "reason": "peak."}
        assert "Expires" not in all_mrkdwn(render_approval_card(CARD, update)), state


def test_a_rejected_card_says_the_reason_once_without_doubled_punctuation() -> None:
    update = {
        "state": "rejected",
        "quorum": 2,
        "decided_by": "U0APP1",
        "votes": [{"voter": "U0APP1", "choice": "reject", "reason": "peak traffic."}],
    }
    text = all_mrkdwn(render_approval_card(CARD, update))
    assert "❌ *Rejected* by <@U0APP1>: peak traffic." in text
    assert text.count("peak traffic") == 1
    assert ".." not in text
    assert "::" not in text


def _halted_view() -> dict[str, Any]:
    halt = "<@U0SAM0002> rejected 'Restart checkout-api'; the plan is halted. Reason: peak."
    return {
        "status": "halted",
        "status_reason": halt,
        "runbook_id": "web-restart",
        "version": 1,
        "spent_usd": 0.0002,
        "budget_usd": 1.0,
        "steps": [
            {"title": "Probe", "tool_action": "http.get", "status": "succeeded"},
            {
                "title": "Restart checkout-api",
                "tool_action": "http.post",
                "status": "rejected",
                "error_code": "rejected",
                "error": "Rejected by U0SAM0002: peak.",
            },
            {"title": "Verify", "tool_action": "http.get", "status": "skipped", "error": halt},
        ],
    }


def test_status_names_the_rejecter_and_says_the_reason_once() -> None:
    rendered = blocks.status_blocks(_halted_view())
    text = all_mrkdwn(rendered)
    assert "rejected by <@U0SAM0002>" in text
    assert "<@U0SAM0002> rejected 'Restart checkout-api'" in text  # the plan's reason line
    assert "U0SAM0002" not in text.replace("<@U0SAM0002>", "")  # never a raw id
    assert text.count("peak.") == 1
    assert "⏭ *3. Verify*  `http.get` · skipped\n" in text + "\n"


def test_a_mention_typed_into_a_rejection_stays_text_in_status() -> None:
    view = _halted_view()
    view["status_reason"] += " <@U0BOSS9> <!here>"
    text = all_mrkdwn(blocks.status_blocks(view))
    assert "&lt;@U0BOSS9&gt; &lt;!here&gt;" in text
    assert "<@U0BOSS9>" not in text


def test_names_that_are_not_slack_ids_are_text() -> None:
    """A requester or actor that is no user id (a CLI name, an alert source) cannot ping."""
    card = {**CARD, "requester": "<!channel> <@U0BOSS9>"}
    text = all_mrkdwn(render_approval_card(card))
    assert "Requested by &lt;!channel&gt; &lt;@U0BOSS9&gt;" in text
    closed = all_mrkdwn(
        render("incident_resolved", {"actor": "<!here>", "reason": "<@U0BOSS9> fixed it"})
    )
    assert "by &lt;!here&gt;: &lt;@U0BOSS9&gt; fixed it" in closed
    assert "<@U0BOSS9>" not in closed
    assert "<!here>" not in closed


def test_a_closing_reason_mentions_nobody_even_the_closer() -> None:
    text = all_mrkdwn(
        render("incident_cancelled", {"actor": "U0REQ1", "reason": "<@U0REQ1> and <@U0X1>"})
    )
    assert "by <@U0REQ1>: &lt;@U0REQ1&gt; and &lt;@U0X1&gt;" in text


def test_a_refusal_written_by_the_control_plane_keeps_its_mention() -> None:
    payload = {
        "voter": "U0APP2",
        "code": "approval_decided",
        "reason": "<@U0APP1> already rejected this step; the button no longer works.",
    }
    assert "<@U0APP1> already rejected" in all_mrkdwn(render("vote_refused", payload))
