"""Messages that tell the truth: decided cards, status names, each reason once, names as text."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot import blocks
from bot.blocks import render, render_approval_card
from tests.bot.test_blocks import EVIL, all_mrkdwn, assert_accepted, assert_escaped, incident

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


# --- the root as steps finish, and a probe's observation --------------------------------


def _progress(**overrides: Any) -> dict[str, Any]:
    root = incident()
    keys = [str(step_["key"]) for step_ in root["steps"]]
    base: dict[str, Any] = {
        "status": "succeeded",
        "status_reason": "All steps succeeded.",
        "steps": [
            {"key": keys[0], "kind": "runbook", "status": "succeeded"},
            {"key": keys[1], "kind": "runbook", "status": "succeeded"},
            {"key": keys[2], "kind": "runbook", "status": "succeeded"},
        ],
    }
    base.update(overrides)
    return base


def test_the_root_without_progress_shows_the_proposal() -> None:
    text = all_mrkdwn(blocks.render_incident_root(incident(), "open"))
    assert "runs automatically" in text
    assert "Plan outcome" not in text


def test_the_root_with_progress_shows_outcomes_not_what_steps_would_need() -> None:
    rendered = blocks.render_incident_root(incident(), "resolved", _progress())
    assert_accepted(rendered)
    text = all_mrkdwn(rendered)
    assert "runs automatically" not in text
    assert "needs 2 approvals" not in text
    assert text.count("✅ succeeded") == 3
    assert "*Plan outcome*\n✅ Succeeded: All steps succeeded." in text
    assert "✅ Resolved" in text


def test_a_compensation_and_a_failure_show_on_the_root() -> None:
    progress = _progress(
        status="failed",
        status_reason="'Restart' failed: boom. A human needs to take over.",
    )
    progress["steps"][1].update(status="compensated", error="boom <!here>")
    progress["steps"].append(
        {"key": "undo-x", "kind": "compensation", "status": "succeeded", "title": "Undo restart"}
    )
    text = all_mrkdwn(blocks.render_incident_root(incident(), "open", progress))
    assert "↩️ undone: boom &lt;!here&gt;" in text
    assert "↩️ Compensation *Undo restart*" in text
    assert "❌ Failed: 'Restart' failed: boom." in text
    assert "<!here>" not in text


def test_a_step_finished_with_an_observation_separates_the_call_from_the_health() -> None:
    observe = {"seen": "unhealthy", "why": "expected status 200, got 503", "status": 503}
    payload = {
        "title": "Probe checkout-api health",
        "tool_action": "http.get",
        "status": "succeeded",
        "summary": "GET http://x/health -> 503 (1 ms)",
        "observe": observe,
    }
    text = all_mrkdwn(render("step_finished", payload))
    assert "the call worked, and the service is *unhealthy*" in text
    assert "*Observed:* answered 503: unhealthy (expected status 200, got 503)" in text
    assert "succeeded  `http.get`" not in text
    healthy = {**payload, "observe": {"seen": "healthy", "status": 200}}
    assert "answered 200: healthy" in all_mrkdwn(render("step_finished", healthy))
    shell = {**payload, "observe": {"seen": "unhealthy", "exit_code": 3, "why": "x"}}
    assert "exited 3: unhealthy (x)" in all_mrkdwn(render("step_finished", shell))


def test_a_plan_a_probe_ended_finishes_as_nothing_to_do() -> None:
    payload = {"status": "succeeded", "code": "nothing_to_do", "reason": "The service is healthy."}
    text = all_mrkdwn(render("plan_finished", payload))
    assert "*Plan finished: ✅ Nothing to do*\nThe service is healthy." in text


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30) | st.sampled_from([EVIL]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
_step_keys = st.sampled_from(["key", "kind", "status", "error", "observe", "title", "result"])


@settings(max_examples=100, deadline=None)
@given(
    status=_values,
    reason=_values,
    steps=st.lists(st.dictionaries(_step_keys, _values, max_size=6), max_size=5),
)
def test_any_progress_renders_a_root_slack_accepts(
    status: object, reason: object, steps: list[dict[str, Any]]
) -> None:
    progress = {"status": status, "status_reason": reason, "steps": steps}
    rendered = blocks.render_incident_root(incident(), "open", progress)
    assert_accepted(rendered)
    assert_escaped(rendered)


def test_the_proposed_root_says_a_healthy_probe_ends_the_plan() -> None:
    root = incident()
    root["steps"][0]["observe"] = {"healthy": {"status": 200}, "end_if": "healthy"}
    text = all_mrkdwn(blocks.render_incident_root(root, "open"))
    assert "runs automatically; a healthy answer ends the plan" in text


def test_a_halted_plans_leading_mention_is_live_and_a_cancelled_plans_is_not() -> None:
    stop = "<@U0APP1> stopped the plan while 'Restart' was in doubt; the step stays in doubt."
    halted = {"status": "halted", "status_reason": stop, "steps": []}
    assert "_<@U0APP1> stopped the plan" in all_mrkdwn(blocks.status_blocks(halted))
    root = all_mrkdwn(blocks.render_incident_root(incident(), "open", halted))
    assert "✋ Halted: <@U0APP1> stopped the plan" in root
    typed = {"status": "cancelled", "status_reason": "<@U0BOSS9> said so", "steps": []}
    assert "<@U0BOSS9>" not in all_mrkdwn(blocks.status_blocks(typed))
    closed = all_mrkdwn(blocks.render_incident_root(incident(), "resolved", typed))
    assert "U0BOSS9" not in closed  # the root says Resolved; the thread says who and why
    assert "*Plan outcome*\n🚫 Cancelled" in closed
