"""The recovery playbook message: what failed, the manual steps, the plan that runs next."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.blocks import render
from bot.sandbox.limits import check_blocks, check_message
from tests.bot.test_blocks import all_mrkdwn, assert_escaped

PAYLOAD: dict[str, Any] = {
    "playbook_id": "http-flaky",
    "version": 2,
    "title": "A service keeps failing its HTTP calls",
    "mode": "tool_flaky",
    "failed_plan_version": 1,
    "step_title": "Restart checkout",
    "tool_action": "http.post",
    "error_code": "tool_timeout",
    "manual": ["Look at checkout's dashboards.", "Page its owners if the probe fails."],
    "replan": False,
    "plan": {
        "plan_id": "p2",
        "plan_version": 2,
        "runbook_id": "playbook:http-flaky",
        "steps": [{"title": "Probe checkout health", "tool_action": "http.get", "risk": "low"}],
    },
    "skipped": None,
    "correlation_id": "corr-123",
}


def accepted(rendered: Any) -> None:
    assert rendered.text
    assert check_message(rendered.text, rendered.blocks) == []
    assert check_blocks(rendered.blocks) == []


def test_the_message_says_what_failed_what_to_do_and_what_runs_next() -> None:
    rendered = render("recovery_playbook", PAYLOAD)
    accepted(rendered)
    text = all_mrkdwn(rendered)
    assert (
        "Recovery playbook:* A service keeps failing its HTTP calls (a tool kept failing)" in text
    )
    assert "Restart checkout" in text
    assert "(tool_timeout)" in text
    assert "1. Look at checkout's dashboards." in text
    assert "2. Page its owners if the probe fails." in text
    assert "Recovery plan v2" in text
    assert "Probe checkout health" in text
    assert "`http-flaky` v2" in text
    assert "corr-123" in text


def test_a_replan_and_a_skipped_automation_are_named() -> None:
    replan = PAYLOAD | {
        "mode": "stale_context",
        "replan": True,
        "step_title": "",
        "tool_action": "",
        "plan": PAYLOAD["plan"] | {"runbook_id": "web-restart", "plan_version": 3},
    }
    text = all_mrkdwn(render("recovery_playbook", replan))
    assert "Fresh plan v3* from the current runbook `web-restart`" in text
    assert "After:" not in text
    skipped = PAYLOAD | {"plan": None, "skipped": "the automated steps need {service}"}
    text = all_mrkdwn(render("recovery_playbook", skipped))
    assert "Nothing automated:* the automated steps need {service}" in text
    assert "Recovery plan" not in text


def test_user_text_is_escaped() -> None:
    hostile = PAYLOAD | {
        "title": "<!channel> <script>",
        "manual": ["<@U0BOSS|boss> & co"],
        "step_title": "<!channel>",
    }
    rendered = render("recovery_playbook", hostile)
    accepted(rendered)
    assert_escaped(rendered)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(list(PAYLOAD)),
        st.one_of(
            st.none(), st.integers(), st.text(max_size=4000), st.lists(st.text(), max_size=80)
        ),
    )
)
def test_any_payload_renders_a_message_slack_accepts(payload: dict[str, Any]) -> None:
    accepted(render("recovery_playbook", payload))
