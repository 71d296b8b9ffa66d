"""Block Kit renderers: realistic payloads render, Slack would accept every message, user text is
escaped, buttons carry the nonce, decided cards lose their buttons, and output is deterministic."""

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import blocks, strings
from bot.blocks import MessageKind, Rendered, fit, render, render_approval_card
from bot.ids import ActionId, BlockId, CallbackId
from bot.sandbox.limits import Surface, check_blocks, check_message, check_view

NONCE = "n0nce-Abc_123-xyz"
EVIL = "<script>alert(1)</script> <!channel> & <@U0BOSS|boss>"
HUGE = "x<&>" * 2500  # 10k characters, every one of them escaping-hungry


# --- factories -----------------------------------------------------------------------------


def step(n: int = 1, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "key": f"step-{n}",
        "title": f"Restart checkout-api ({n})",
        "tool_action": "http.post",
        "args": {"url": "http://127.0.0.1:9000/svc/checkout-api/restart"},
        "risk": "high",
        "declared_risk": "high",
        "verdict": "require_approval",
        "code": "needs_two_approvals",
        "reason": "high risk needs two distinct approvers, neither of them the requester",
        "quorum": 2,
        "exclude_requester": True,
        "expect": None,
        "compensate": None,
        "cost_usd": 0.0,
    }
    return base | overrides


def incident(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "text": "checkout-api is down",
        "requester": "U0REQ1",
        "title": "Restart an unhealthy web service",
        "runbook_id": "web-restart",
        "plan_version": 1,
        "plan_hash": "3f2a9c1d0b7e4f6a8c9d0e1f2a3b4c5d",
        "params": {"service": "checkout-api"},
        "steps": [
            step(
                1,
                title="Probe checkout-api health",
                tool_action="http.get",
                risk="low",
                declared_risk="low",
                verdict="allow",
                code="low_risk_auto",
                reason="low risk runs without approval",
                quorum=0,
                exclude_requester=False,
            ),
            step(2, declared_risk="medium"),
            step(
                3,
                title="Drop the database",
                risk="critical",
                declared_risk="critical",
                verdict="deny",
                code="critical_never_runs",
                reason="critical steps never run",
                quorum=0,
            ),
        ],
        "forecast_usd": 0.03,
        "budget_usd": 1.0,
        "correlation_id": "corr-123",
    }
    return base | overrides


def card(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "approval_id": "a1",
        "nonce": NONCE,
        "purpose": "step",
        "quorum": 2,
        "exclude_requester": True,
        "reason": "high risk needs two distinct approvers",
        "expires_at": "2026-01-01T12:30:00+00:00",
        "requester": "U0REQ1",
        "plan_version": 1,
        "title": "Restart checkout-api",
        "tool_action": "http.post",
        "args": {"url": "http://127.0.0.1:9000/svc/checkout-api/restart"},
        "risk": "high",
        "expect": {"status": 200},
        "compensate": {
            "tool": "http.post",
            "title": "Warm checkout-api cache again",
            "args": {"url": "http://127.0.0.1:9000/svc/checkout-api/cache/warm"},
            "risk": "medium",
        },
        "correlation_id": "corr-123",
    }
    return base | overrides


def budget_card(**overrides: Any) -> dict[str, Any]:
    base = card(purpose="budget", quorum=1, exclude_requester=False)
    for key in ("title", "tool_action", "args", "risk", "expect", "compensate"):
        base.pop(key)
    base["reason"] = "spent $0.90 of the $1.00 soft budget"
    return base | overrides


def update(state: str = "pending", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "approval_id": "a1",
        "state": state,
        "quorum": 2,
        "approvals": 1,
        "votes": [{"voter": "U0APP1", "choice": "approve", "reason": ""}],
        "decided_by": None,
        "reason": "",
        "correlation_id": "corr-123",
    }
    return base | overrides


def step_finished(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": "Restart checkout-api",
        "tool_action": "http.post",
        "status": "succeeded",
        "summary": "HTTP 200 in 41 ms",
        "error": None,
        "error_code": None,
        "attempts": 1,
        "duration_ms": 41.3,
        "cost_usd": 0.001,
        "plan_spent_usd": 0.003,
        "plan_budget_usd": 1.0,
        "kind": "runbook",
        "correlation_id": "corr-123",
    }
    return base | overrides


def plan_view(n_steps: int = 3, **overrides: Any) -> dict[str, Any]:
    statuses = ["succeeded", "awaiting_approval", "pending"]
    base: dict[str, Any] = {
        "id": "p1",
        "incident_id": "i1",
        "version": 1,
        "runbook_id": "web-restart",
        "plan_hash": "3f2a9c",
        "status": "waiting",
        "status_reason": "waiting for 2 approvals on 'Restart checkout-api'",
        "mode": "supervised",
        "spent_usd": 0.002,
        "budget_usd": 1.0,
        "spent_tokens": 0,
        "budget_tokens": 0,
        "forecast_usd": 0.03,
        "created_at": "2026-01-01T12:00:00+00:00",
        "finished_at": None,
        "steps": [
            {
                "id": f"s{i}",
                "position": i,
                "key": f"k{i}",
                "kind": "runbook",
                "title": f"Step {i}",
                "tool_action": "http.get",
                "risk": "low",
                "status": statuses[i % 3],
                "attempts": 1,
                "decision_code": "low_risk_auto",
                "decision_reason": "",
                "error_code": None,
                "error": None,
                "result": None,
                "cost_usd": 0.0,
                "duration_ms": 3.0,
            }
            for i in range(n_steps)
        ],
    }
    return base | overrides


EVERY_KIND: dict[str, dict[str, Any]] = {
    MessageKind.INCIDENT_OPENED: incident(),
    MessageKind.APPROVAL_REQUESTED: card(),
    MessageKind.APPROVAL_UPDATED: update("approved"),
    MessageKind.VOTE_REFUSED: {
        "voter": "U0REQ1",
        "code": "requester_cannot_approve",
        "reason": "the requester cannot approve a high-risk step",
        "approval_id": "a1",
        "correlation_id": "corr-123",
    },
    MessageKind.REJECTION_REASON_ADDED: {
        "approval_id": "a1",
        "voter": "U0APP2",
        "reason": "wrong service",
        "purpose": "step",
        "title": "Restart checkout-api",
        "correlation_id": "corr-123",
    },
    MessageKind.STEP_FINISHED: step_finished(),
    MessageKind.STEP_DENIED: {
        "title": "Drop the database",
        "tool_action": "shell.run",
        "code": "critical_never_runs",
        "reason": "critical steps never run",
        "correlation_id": "corr-123",
    },
    MessageKind.PLAN_BLOCKED: {
        "reason": "Blocked before it started: the forecast cost $2.0000 exceeds $1.0000.",
        "forecast_usd": 2.0,
        "correlation_id": "corr-123",
    },
    MessageKind.PLAN_FINISHED: {
        "status": "succeeded",
        "reason": "all steps succeeded",
        "code": "done",
        "spent_usd": 0.003,
        "budget_usd": 1.0,
        "correlation_id": "corr-123",
    },
    MessageKind.ESCALATION: {
        "reason": "Compensation failed. A human needs to take over.",
        "code": "compensation_failed",
        "correlation_id": "corr-123",
    },
    MessageKind.INCIDENT_RESOLVED: {"actor": "U0REQ1", "reason": "fixed", "correlation_id": "c"},
    MessageKind.INCIDENT_CANCELLED: {"actor": "U0REQ1", "reason": "", "correlation_id": "c"},
}


# --- helpers -------------------------------------------------------------------------------


def assert_accepted(rendered: Rendered) -> None:
    """Slack would post it: blocks within every limit, a non-empty fallback text."""
    assert rendered.text
    assert len(rendered.blocks) <= 50
    assert check_message(rendered.text, rendered.blocks) == []
    assert check_blocks(rendered.blocks) == []


def mrkdwn_texts(node: object) -> list[str]:
    """Every mrkdwn string in a block tree."""
    if isinstance(node, list):
        return [text for item in node for text in mrkdwn_texts(item)]
    if not isinstance(node, dict):
        return []
    if node.get("type") == "mrkdwn":
        return [node["text"]]
    return [text for value in node.values() for text in mrkdwn_texts(value)]


def all_mrkdwn(rendered: Rendered) -> str:
    return "\n".join([rendered.text, *mrkdwn_texts(rendered.blocks)])


def actions_blocks(rendered: Rendered) -> list[dict[str, Any]]:
    return [b for b in rendered.blocks if b["type"] == "actions"]


def assert_escaped(rendered: Rendered) -> None:
    """No raw control sequence from user text reaches mrkdwn."""
    text = all_mrkdwn(rendered)
    assert "<script>" not in text
    assert "<!channel>" not in text
    assert "<@U0BOSS|boss>" not in text
    assert not re.search(r"&(?!amp;|lt;|gt;)", text), "a bare & would start an entity"


# --- every kind ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(EVERY_KIND))
def test_every_kind_renders_a_message_slack_accepts(kind: str) -> None:
    rendered = render(kind, EVERY_KIND[kind])
    assert isinstance(rendered, Rendered)
    assert_accepted(rendered)


@pytest.mark.parametrize("kind", list(EVERY_KIND))
def test_rendering_is_deterministic(kind: str) -> None:
    first = render(kind, EVERY_KIND[kind])
    second = render(kind, json.loads(json.dumps(EVERY_KIND[kind])))
    assert first == second
    assert json.dumps(first.blocks, sort_keys=True) == json.dumps(second.blocks, sort_keys=True)


def test_unknown_kind_renders_a_plain_safe_fallback() -> None:
    rendered = render("<!channel>_new_kind", {"anything": HUGE, "correlation_id": "c1"})
    assert_accepted(rendered)
    assert_escaped(rendered)
    assert [b["type"] for b in rendered.blocks] == ["section", "context"]
    assert "&lt;!channel&gt;_new_kind" in rendered.text


# --- incident root -------------------------------------------------------------------------


def test_incident_opened_shows_header_status_requester_plan_steps_and_forecast() -> None:
    rendered = render("incident_opened", incident())
    assert rendered.blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Incident: checkout-api is down", "emoji": True},
    }
    text = all_mrkdwn(rendered)
    assert "🔥 Open" in text
    assert "<@U0REQ1>" in text
    assert "`web-restart`" in text
    assert "plan v1" in text
    assert "`3f2a9c1d0b7e`" in text  # short hash
    assert "`service`=checkout-api" in text
    assert "🟢 *1. Probe checkout-api health*" in text
    assert "runs automatically" in text
    assert "high risk (declared medium)" in text
    assert "needs 2 approvals, not the requester: high risk needs two" in text
    assert "🔴 *3. Drop the database*" in text
    assert "denied: critical steps never run" in text
    assert "Forecast $0.0300 of $1.00 budget" in text
    assert "trace `corr-123`" in text


def test_incident_root_update_shows_the_new_status() -> None:
    rendered = blocks.render_incident_root(incident(), "resolved")
    assert_accepted(rendered)
    assert "✅ Resolved" in all_mrkdwn(rendered)
    assert "🔥 Open" not in all_mrkdwn(rendered)


def test_forecast_over_budget_is_flagged() -> None:
    rendered = render("incident_opened", incident(forecast_usd=2.5, budget_usd=1.0))
    assert "exceeds the $1.00 budget" in all_mrkdwn(rendered)


def test_two_hundred_huge_steps_stay_within_limits_and_say_how_many_are_left() -> None:
    steps = [step(n, title=HUGE, reason=HUGE, args={"blob": HUGE}) for n in range(200)]
    payload = incident(text=HUGE, title=HUGE, steps=steps, params={HUGE: HUGE})
    rendered = render("incident_opened", payload)
    assert_accepted(rendered)
    assert "more steps" in all_mrkdwn(rendered)
    assert len(rendered.blocks[0]["text"]["text"]) <= 150


def test_two_hundred_short_steps_are_packed_into_few_sections() -> None:
    rendered = render("incident_opened", incident(steps=[step(n) for n in range(200)]))
    assert_accepted(rendered)
    assert len(rendered.blocks) < 20


def test_user_text_in_the_incident_is_escaped() -> None:
    steps = [step(1, title=EVIL, reason=EVIL, tool_action=EVIL)]
    payload = incident(text=EVIL, title=EVIL, steps=steps, params={"service": EVIL})
    rendered = render("incident_opened", payload)
    assert_escaped(rendered)
    assert "&lt;script&gt;" in all_mrkdwn(rendered)
    # plain_text is never parsed for mentions, so the header shows the text as typed
    assert rendered.blocks[0]["text"]["type"] == "plain_text"


def test_only_slack_user_ids_become_mentions() -> None:
    rendered = render("incident_opened", incident(requester="alertmanager"))
    assert "<@alertmanager>" not in all_mrkdwn(rendered)
    assert "alertmanager" in all_mrkdwn(rendered)


# --- approval cards ------------------------------------------------------------------------


def test_approval_card_buttons_carry_the_nonce_and_the_contract_action_ids() -> None:
    rendered = render("approval_requested", card())
    assert_accepted(rendered)
    [actions] = actions_blocks(rendered)
    assert actions["block_id"] == BlockId.APPROVAL_ACTIONS
    approve, reject = actions["elements"]
    assert approve["action_id"] == "approve_step" == ActionId.APPROVE
    assert reject["action_id"] == "reject_step" == ActionId.REJECT
    assert approve["value"] == reject["value"] == NONCE
    assert approve["style"] == "primary"
    assert reject["style"] == "danger"
    assert rendered.blocks[-1] is actions


def test_approval_card_shows_what_why_risk_quorum_expiry_and_undo() -> None:
    rendered = render("approval_requested", card())
    text = all_mrkdwn(rendered)
    assert "Approval needed: Restart checkout-api" in text
    assert "`http.post`" in text
    assert "🟠 high" in text
    assert "0/2 (not the requester)" in text
    assert "high risk needs two distinct approvers" in text
    assert '```\n{\n  "url": "http://127.0.0.1:9000/svc/checkout-api/restart"\n}\n```' in text
    assert '"status": 200' in text
    assert "Warm checkout-api cache again" in text
    epoch = int(datetime(2026, 1, 1, 12, 30, tzinfo=UTC).timestamp())
    assert f"<!date^{epoch}^{{time}}|2026-01-01 12:30 UTC>" in text
    assert "Requested by <@U0REQ1>" in text


def test_naive_and_malformed_expiry_times_still_render() -> None:
    naive = render("approval_requested", card(expires_at="2026-01-01T12:30:00"))
    assert "|2026-01-01 12:30 UTC>" in all_mrkdwn(naive)
    broken = render("approval_requested", card(expires_at="<!channel> soon"))
    assert_accepted(broken)
    assert_escaped(broken)


def test_budget_card_asks_to_continue_past_the_soft_budget() -> None:
    rendered = render("approval_requested", budget_card())
    assert_accepted(rendered)
    text = all_mrkdwn(rendered)
    assert "Continue past the soft budget?" in text
    assert "spent $0.90 of the $1.00 soft budget" in text
    assert "0/1" in text
    assert actions_blocks(rendered)[0]["elements"][0]["value"] == NONCE


def test_huge_args_are_truncated_inside_a_closed_code_block() -> None:
    rendered = render("approval_requested", card(args={"script": HUGE}, title=HUGE, reason=HUGE))
    assert_accepted(rendered)
    assert_escaped(rendered)
    args = next(t for t in mrkdwn_texts(rendered.blocks) if t.startswith("*Args*"))
    assert args.endswith("…\n```")


def test_triple_backticks_in_args_cannot_close_the_code_block() -> None:
    rendered = render("approval_requested", card(args={"cmd": "```<!channel>```"}))
    args = next(t for t in mrkdwn_texts(rendered.blocks) if t.startswith("*Args*"))
    assert args.count("```") == 2
    assert "<!channel>" not in args


def test_a_card_without_a_usable_nonce_has_no_buttons() -> None:
    for nonce in (None, "", "n" * 2001):
        rendered = render("approval_requested", card(nonce=nonce))
        assert_accepted(rendered)
        assert actions_blocks(rendered) == []


def test_pending_update_shows_progress_and_keeps_the_buttons() -> None:
    rendered = render_approval_card(card(), update())
    assert_accepted(rendered)
    text = all_mrkdwn(rendered)
    assert "*1/2 approvals*: <@U0APP1>" in text
    assert "1/2 (not the requester)" in text
    assert actions_blocks(rendered)[0]["elements"][0]["value"] == NONCE


@pytest.mark.parametrize(
    ("state", "changes", "expected"),
    [
        (
            "approved",
            {
                "approvals": 2,
                "votes": [
                    {"voter": "U0APP1", "choice": "approve", "reason": ""},
                    {"voter": "U0APP2", "choice": "approve", "reason": ""},
                ],
                "decided_by": "U0APP2",
            },
            "✅ *Approved* by <@U0APP1>, <@U0APP2>",
        ),
        (
            "rejected",
            {
                "votes": [
                    {"voter": "U0APP1", "choice": "approve", "reason": ""},
                    {"voter": "U0APP2", "choice": "reject", "reason": "wrong service"},
                ],
                "decided_by": "U0APP2",
            },
            "❌ *Rejected* by <@U0APP2>: wrong service",
        ),
        ("expired", {}, "⌛ *Expired* before reaching quorum (1/2)"),
    ],
)
def test_decided_cards_lose_their_buttons_and_show_the_outcome(
    state: str, changes: dict[str, Any], expected: str
) -> None:
    rendered = render_approval_card(card(), update(state, **changes))
    assert_accepted(rendered)
    assert actions_blocks(rendered) == []
    assert expected in all_mrkdwn(rendered)
    assert state in rendered.text


def test_cancelled_update_carries_only_state_and_reason() -> None:
    """lifecycle.skip_open_steps sends {approval_id, state, reason}; the card keeps its facts."""
    partial = {"approval_id": "a1", "state": "cancelled", "reason": "Incident resolved by U0REQ1."}
    rendered = render_approval_card(card(), partial)
    assert_accepted(rendered)
    assert actions_blocks(rendered) == []
    text = all_mrkdwn(rendered)
    assert "🚫 *Cancelled*: Incident resolved by U0REQ1." in text
    assert "0/2" in text
    assert "Restart checkout-api" in text


def test_an_update_without_its_card_renders_alone_without_buttons() -> None:
    rendered = render("approval_updated", update("pending"))
    assert_accepted(rendered)
    assert actions_blocks(rendered) == []


def test_vote_reasons_and_voters_are_escaped() -> None:
    votes = [{"voter": EVIL, "choice": "reject", "reason": EVIL}]
    rendered = render_approval_card(card(title=EVIL), update("rejected", votes=votes, reason=EVIL))
    assert_accepted(rendered)
    assert_escaped(rendered)


def test_a_rejected_card_says_who_and_why_once() -> None:
    votes = [
        {"voter": "U0APP1", "choice": "approve", "reason": ""},
        {"voter": "U0APP2", "choice": "reject", "reason": "wrong service."},
    ]
    # The approval's stored reason must not stand in for a rejection given without one.
    text = all_mrkdwn(render_approval_card(card(), update("rejected", votes=votes)))
    assert text.count("wrong service") == 1
    assert "❌ *Rejected* by <@U0APP2>: wrong service." in text
    assert "*1/2 approvals*: <@U0APP1>" in text
    silent = [{"voter": "U0APP2", "choice": "reject", "reason": ""}]
    policy = "Policy: two approvers needed."
    text = all_mrkdwn(render_approval_card(card(), update("rejected", votes=silent, reason=policy)))
    assert "❌ *Rejected* by <@U0APP2>" in text
    assert policy not in text


def test_a_reason_added_later_is_threaded_with_who_and_what() -> None:
    rendered = render("rejection_reason_added", EVERY_KIND[MessageKind.REJECTION_REASON_ADDED])
    text = all_mrkdwn(rendered)
    assert "<@U0APP2> gave a reason for rejecting *Restart checkout-api*: wrong service" in text
    evil = {"voter": EVIL, "reason": EVIL, "title": EVIL, "purpose": "step"}
    assert_escaped(render("rejection_reason_added", evil))


def test_vote_refused_tells_the_voter_why() -> None:
    rendered = render("vote_refused", EVERY_KIND[MessageKind.VOTE_REFUSED])
    text = all_mrkdwn(rendered)
    assert "<@U0REQ1>, your vote was not counted" in text
    assert "requester cannot approve" in text
    assert "`requester_cannot_approve`" in text


# --- results -------------------------------------------------------------------------------


def test_step_succeeded_shows_result_duration_cost_total_attempts_and_trace() -> None:
    text = all_mrkdwn(render("step_finished", step_finished()))
    assert "✅ *Restart checkout-api* succeeded" in text
    assert "HTTP 200 in 41 ms" in text
    assert "41 ms" in text
    assert "+$0.0010" in text
    assert "total $0.0030 of $1.00 budget" in text
    assert "attempts 1" in text
    assert "trace `corr-123`" in text


def test_step_failure_says_what_happens_next() -> None:
    payload = step_finished(
        status="failed", error="HTTP 503", error_code="http_status", attempts=3, duration_ms=2400
    )
    text = all_mrkdwn(render("step_finished", payload))
    assert "❌ *Restart checkout-api* failed" in text
    assert "*Error* (`http_status`): HTTP 503" in text
    assert "Retries are used up (3 attempts)" in text
    assert "opsgate will run the declared compensation, then escalate to humans" in text
    assert "2.4 s" in text


def test_compensation_failure_escalates() -> None:
    payload = step_finished(status="failed", kind="compensation", error="boom", attempts=1)
    text = all_mrkdwn(render("step_finished", payload))
    assert "Compensation *Restart checkout-api* failed" in text
    assert "escalates to humans" in text


def test_step_finished_with_huge_and_hostile_text_stays_valid() -> None:
    payload = step_finished(
        status="failed", title=HUGE, summary=EVIL + HUGE, error=EVIL + HUGE, error_code=EVIL
    )
    rendered = render("step_finished", payload)
    assert_accepted(rendered)
    assert_escaped(rendered)


def test_escalation_pings_here_in_blocks_and_notification() -> None:
    rendered = render("escalation", EVERY_KIND[MessageKind.ESCALATION])
    assert rendered.text.startswith("<!here>")
    assert "<!here>" in mrkdwn_texts(rendered.blocks)[0]
    assert "Humans need to take over" in all_mrkdwn(rendered)


def test_escalation_reason_cannot_add_its_own_broadcast() -> None:
    rendered = render("escalation", {"reason": EVIL, "code": "x"})
    assert_escaped(rendered)
    assert all_mrkdwn(rendered).count("<!here>") == 2  # ours, in text and in the section


def test_control_plane_mentions_in_reasons_survive_but_broadcasts_do_not() -> None:
    """The actor's mention stays live; a mention typed into the reason and a broadcast do not."""
    payload = {
        "actor": "U0APP2",
        "status": "halted",
        "reason": "<@U0APP2> rejected 'Restart' (<!channel>). Reason: ask <@U0BOSS9>.",
        "code": "rejected",
        "spent_usd": 0.0,
        "budget_usd": 0.0,
    }
    rendered = render("plan_finished", payload)
    text = all_mrkdwn(rendered)
    assert "<@U0APP2>" in text
    assert "<@U0BOSS9>" not in text
    assert "&lt;@U0BOSS9&gt;" in text
    assert "&lt;!channel&gt;" in text
    assert "✋ Halted" in text
    assert "total $0.0000" in text


def test_step_denied_plan_blocked_and_closed_incidents_show_their_reasons() -> None:
    denied = all_mrkdwn(render("step_denied", EVERY_KIND[MessageKind.STEP_DENIED]))
    assert "Policy denied Drop the database" in denied
    assert "`critical_never_runs`" in denied
    blocked = all_mrkdwn(render("plan_blocked", EVERY_KIND[MessageKind.PLAN_BLOCKED]))
    assert "blocked before it started" in blocked
    assert "Forecast $2.00" in blocked
    resolved = all_mrkdwn(render("incident_resolved", EVERY_KIND[MessageKind.INCIDENT_RESOLVED]))
    assert "Incident resolved* by <@U0REQ1>: fixed" in resolved
    cancelled = render("incident_cancelled", EVERY_KIND[MessageKind.INCIDENT_CANCELLED])
    assert "Incident cancelled* by <@U0REQ1>" in all_mrkdwn(cancelled)
    assert cancelled.text == "Incident cancelled"


# --- slash-command replies and the modal ---------------------------------------------------


def test_help_lists_every_subcommand() -> None:
    rendered = blocks.help_text()
    assert_accepted(rendered)
    text = all_mrkdwn(rendered)
    for command in ("&lt;text&gt;", "help", "status", "resolve", "cancel"):
        assert f"`/incident {command}" in text
    assert blocks.help_blocks() == rendered.blocks
    assert rendered.text == strings.HELP


def test_usage_for_unknown_escapes_the_subcommand_and_lists_the_commands() -> None:
    rendered = blocks.usage_for_unknown("<!channel>")
    assert_accepted(rendered)
    assert_escaped(rendered)
    assert "`/incident resolve" in all_mrkdwn(rendered)


def test_status_shows_each_step_spend_and_plan_status() -> None:
    rendered = blocks.status_blocks(plan_view())
    assert_accepted(rendered)
    text = all_mrkdwn(rendered)
    assert "⏳ Waiting for humans" in text
    assert "total $0.0020 of $1.00 budget" in text
    assert "waiting for 2 approvals" in text
    assert "✅ *1. Step 0*" in text
    assert "🙋 *2. Step 1*" in text
    assert "awaiting approval" in text
    assert rendered.text == "Plan ⏳ Waiting for humans: 1/3 steps done"


def test_status_of_a_huge_plan_stays_within_limits() -> None:
    view = plan_view(200, status_reason=HUGE)
    for item in view["steps"]:
        item["title"], item["error"] = HUGE, EVIL
    rendered = blocks.status_blocks(view)
    assert_accepted(rendered)
    assert_escaped(rendered)


def test_reject_modal_carries_the_nonce_and_an_optional_reason_input() -> None:
    view = blocks.reject_modal(NONCE)
    assert check_view(view) == []
    assert check_blocks(view["blocks"], surface=Surface.MODAL) == []
    assert view["type"] == "modal"
    assert view["callback_id"] == "reject_reason" == CallbackId.REJECT_REASON
    assert view["private_metadata"] == NONCE
    [field] = [b for b in view["blocks"] if b["type"] == "input"]
    assert field["optional"] is True
    assert field["block_id"] == BlockId.REJECT_REASON
    assert field["element"]["type"] == "plain_text_input"
    assert field["element"]["action_id"] == ActionId.REJECT_REASON_INPUT


# --- properties ----------------------------------------------------------------------------


@given(text=st.text(alphabet="ab&<>;@!U0 ", max_size=300), limit=st.integers(10, 300))
def test_fit_never_exceeds_the_limit_or_splits_an_entity(text: str, limit: int) -> None:
    clipped = fit(strings.escape(text), limit)
    assert len(clipped) <= limit
    assert not re.search(r"&(?!amp;|lt;|gt;)", clipped)
    assert "<" not in clipped
    assert ">" not in clipped


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=50)
    | st.sampled_from([EVIL, HUGE, "U0ABC", "step", "budget", "pending", "failed", "deny"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_keys = st.sampled_from(
    sorted({key for payload in EVERY_KIND.values() for key in payload} | {"status"})
)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from([*EVERY_KIND, "something_else"]),
    payload=st.dictionaries(_keys, _values, max_size=12),
)
def test_any_payload_renders_something_slack_accepts(kind: str, payload: dict[str, Any]) -> None:
    rendered = render(kind, payload)
    assert_accepted(rendered)
    assert "<!channel>" not in all_mrkdwn(rendered)
