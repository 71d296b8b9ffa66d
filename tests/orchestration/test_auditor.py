"""The Auditor's pure checks: tool results against ``expect``, spend against budgets."""

from typing import Any

import pytest

from orchestration.auditor import (
    EXPECT_KEYS,
    BudgetVerdict,
    Check,
    check_budget,
    check_expect,
)


def http_result(status: int = 200, **output: Any) -> dict[str, Any]:
    """A ToolResult-shaped dict as the http adapter returns it."""
    return {"ok": 200 <= status < 300, "status": status, "output": {"status": status, **output}}


def test_expect_keys_are_the_documented_five() -> None:
    assert {"status", "ok", "exit_code", "body_contains", "json"} == EXPECT_KEYS


def test_no_expectation_always_passes() -> None:
    assert check_expect(None, http_result(500)) == Check(ok=True)
    assert check_expect({}, {}) == Check(ok=True)


@pytest.mark.parametrize(
    ("expect", "result"),
    [
        ({"status": 200}, http_result(200)),
        ({"status": [200, 204]}, http_result(204)),
        ({"status": 503}, {"ok": False, "output": {"status": 503}}),  # status only in output
        ({"ok": True}, http_result(201)),
        ({"ok": False}, http_result(500)),
        ({"exit_code": 0}, {"ok": True, "output": {"exit_code": 0, "stdout": ""}}),
        ({"body_contains": "healthy"}, http_result(body='{"state": "healthy"}')),
        ({"body_contains": "42 GB"}, {"ok": True, "output": {"exit_code": 0, "stdout": "42 GB"}}),
        ({"json": {"fresh": True}}, http_result(json={"fresh": True, "age": 3})),
        ({"json": {"a": {"b": 1}}}, http_result(json={"a": {"b": 1, "c": 2}, "d": 4})),
        ({"status": 200, "json": {"ok": 1}}, http_result(json={"ok": 1})),
    ],
    ids=[
        "status-int",
        "status-list",
        "status-from-output",
        "ok-true",
        "ok-false",
        "exit-code",
        "body-contains",
        "stdout-contains",
        "json-subset",
        "json-nested-subset",
        "several-keys",
    ],
)
def test_expectation_met_passes(expect: dict[str, Any], result: dict[str, Any]) -> None:
    assert check_expect(expect, result) == Check(ok=True)


@pytest.mark.parametrize(
    ("expect", "result", "reason"),
    [
        ({"status": 200}, http_result(503), "expected status 200, got 503"),
        ({"status": [200, 204]}, http_result(500), "expected status 200 or 204, got 500"),
        ({"status": 200}, {"ok": False, "output": {}}, "expected status 200, got None"),
        ({"ok": True}, http_result(500), "expected ok=True, got ok=False"),
        ({"ok": False}, http_result(200), "expected ok=False, got ok=True"),
        (
            {"exit_code": 0},
            {"ok": False, "output": {"exit_code": 2}},
            "expected exit code 0, got 2",
        ),
        (
            {"body_contains": "healthy"},
            http_result(body="down"),
            "expected the body to contain 'healthy'",
        ),
        (
            {"json": {"fresh": True}},
            http_result(json={"fresh": False}),
            "expected the JSON body to contain {'fresh': True}",
        ),
        (
            {"json": {"a": {"b": 1}}},
            http_result(json={"a": "flat"}),
            "expected the JSON body to contain {'a': {'b': 1}}",
        ),
        (
            {"json": {"fresh": True}},
            http_result(body="not json"),
            "expected the JSON body to contain {'fresh': True}",
        ),
    ],
    ids=[
        "status-int",
        "status-list",
        "status-missing",
        "ok-true",
        "ok-false",
        "exit-code",
        "body-contains",
        "json-value",
        "json-nested-not-mapping",
        "json-absent",
    ],
)
def test_expectation_missed_fails_with_a_plain_reason(
    expect: dict[str, Any], result: dict[str, Any], reason: str
) -> None:
    assert check_expect(expect, result) == Check(ok=False, reason=reason)


def test_first_failing_key_gives_the_reason() -> None:
    check = check_expect({"status": 200, "body_contains": "ok"}, http_result(500, body="x"))
    assert check == Check(ok=False, reason="expected status 200, got 500")


def budget(**overrides: Any) -> BudgetVerdict:
    args: dict[str, Any] = {
        "spent_usd": 0.0,
        "spent_tokens": 0,
        "next_usd": 0.0,
        "budget_usd": 1.0,
        "budget_tokens": 1000,
        "soft_ratio": 0.8,
        "soft_acknowledged": False,
    }
    args.update(overrides)
    return check_budget(**args).verdict


def test_budget_ok_below_the_soft_threshold() -> None:
    assert budget(spent_usd=0.5, next_usd=0.1, spent_tokens=500) is BudgetVerdict.OK


def test_budget_soft_at_80_percent_of_dollars() -> None:
    assert budget(spent_usd=0.79) is BudgetVerdict.OK
    assert budget(spent_usd=0.8) is BudgetVerdict.SOFT


def test_budget_soft_at_80_percent_of_tokens() -> None:
    assert budget(spent_tokens=799) is BudgetVerdict.OK
    assert budget(spent_tokens=800) is BudgetVerdict.SOFT


def test_soft_verdict_reason_gives_the_figures_and_asks_for_approval() -> None:
    check = check_budget(
        spent_usd=0.85,
        spent_tokens=100,
        next_usd=0.0,
        budget_usd=1.0,
        budget_tokens=1000,
        soft_ratio=0.8,
        soft_acknowledged=False,
    )
    assert check.verdict is BudgetVerdict.SOFT
    assert check.reason == (
        "85% of the plan budget is spent ($0.8500 of $1.0000, 100/1000 tokens); approve to continue"
    )


def test_budget_soft_at_exactly_80_percent_despite_float_rounding() -> None:
    assert budget(spent_usd=0.04, budget_usd=0.05) is BudgetVerdict.SOFT


def test_acknowledged_soft_budget_lets_work_continue() -> None:
    assert budget(spent_usd=0.9, soft_acknowledged=True) is BudgetVerdict.OK
    assert budget(spent_tokens=900, soft_acknowledged=True) is BudgetVerdict.OK


def test_budget_hard_when_the_next_step_would_exceed_it() -> None:
    check = check_budget(
        spent_usd=0.9,
        spent_tokens=0,
        next_usd=0.2,
        budget_usd=1.0,
        budget_tokens=1000,
        soft_ratio=0.8,
        soft_acknowledged=True,
    )
    assert check.verdict is BudgetVerdict.HARD
    assert check.reason == (
        "hard budget reached: spent $0.9000 + next step $0.2000 > budget $1.0000"
    )


def test_next_step_that_lands_exactly_on_the_budget_is_not_hard() -> None:
    assert budget(spent_usd=0.5, next_usd=0.5, soft_acknowledged=True) is BudgetVerdict.OK


def test_budget_hard_when_the_token_limit_is_reached_even_if_acknowledged() -> None:
    check = check_budget(
        spent_usd=0.0,
        spent_tokens=1000,
        next_usd=0.0,
        budget_usd=1.0,
        budget_tokens=1000,
        soft_ratio=0.8,
        soft_acknowledged=True,
    )
    assert check.verdict is BudgetVerdict.HARD
    assert check.reason == "token budget reached: 1000/1000 tokens"


def test_hard_dollar_limit_wins_over_soft() -> None:
    assert budget(spent_usd=0.95, next_usd=0.1) is BudgetVerdict.HARD


def test_zero_budgets_mean_unlimited() -> None:
    verdict = budget(
        spent_usd=50.0, next_usd=5.0, spent_tokens=10**6, budget_usd=0, budget_tokens=0
    )
    assert verdict is BudgetVerdict.OK
