"""The pack's ``require`` rules (a canary or a dry run, by risk or namespace) and canaries that
run alone: pure policy, no I/O."""

from typing import Any

import pytest

from common import Mode, Risk, Role
from policies import (
    Code,
    PolicyContext,
    Verdict,
    default_pack,
    evaluate,
    load_pack_text,
    missing_requirements,
)
from policies.model import PackError
from tests.policies.factories import change, context

PROD_NS = r'"namespace":"([a-z0-9-]*-)?prod(uction)?(-[a-z0-9-]*)?"'

PACK = load_pack_text(
    f"""\
version: 1
escalate:
  - id: kube-prod
    tool: "kubernetes.*"
    read_only: false
    args_pattern: '{PROD_NS}'
    to: high
    reason: "Production namespace."
require:
  - id: prod-restart-canary
    tool: ["kubernetes.rollout_restart"]
    args_pattern: '{PROD_NS}'
    canary: true
    reason: "Production restarts are tried on the canary first."
  - id: high-dry-run
    tool: "kubernetes.*"
    read_only: false
    min_risk: high
    dry_run: true
    reason: "High-risk Kubernetes changes are dry-run first."
"""
)


def kube(
    action: str = "rollout_restart", namespace: str = "shop-prod", **over: Any
) -> PolicyContext:
    """An Executor's state-changing kubernetes call (medium risk as declared)."""
    fields: dict[str, Any] = {
        "tool": "kubernetes",
        "action": action,
        "args": {"namespace": namespace, "name": "web"},
    }
    return change(**(fields | over))


# --- require: canary --------------------------------------------------------------------------


def test_a_production_restart_without_a_canary_is_denied_naming_the_rule() -> None:
    """canary: true on a namespace pattern: the step is refused with canary_required."""
    decision = evaluate(kube(dry_run=True), PACK)
    assert (decision.verdict, decision.code, decision.rule_id) == (
        Verdict.DENY,
        Code.CANARY_REQUIRED,
        "prod-restart-canary",
    )
    assert decision.reason == (
        "Production restarts are tried on the canary first. This step declares no canary; "
        "add canary: to the runbook step."
    )
    assert decision.risk is Risk.HIGH  # the escalation still applies to the refusal


def test_the_same_restart_with_a_canary_goes_to_approval() -> None:
    """With a declared canary (and its dry run) the rule is met: two approvals, as high risk."""
    decision = evaluate(kube(has_canary=True, dry_run=True), PACK)
    assert (decision.verdict, decision.code, decision.quorum) == (
        Verdict.REQUIRE_APPROVAL,
        Code.NEEDS_TWO_APPROVALS,
        2,
    )


def test_a_namespace_the_rule_does_not_name_needs_no_canary() -> None:
    """The args pattern scopes the rule: a restart in a staging namespace runs on medium rules."""
    decision = evaluate(kube(namespace="shop-staging"), PACK)
    assert (decision.verdict, decision.code) == (Verdict.REQUIRE_APPROVAL, "needs_one_approval")
    assert missing_requirements(kube(namespace="shop-staging"), PACK) == []


def test_an_action_the_rule_does_not_name_needs_no_canary() -> None:
    """Only the listed actions: a production scale with its dry run needs no canary."""
    decision = evaluate(kube("scale", dry_run=True), PACK)
    assert decision.verdict is Verdict.REQUIRE_APPROVAL


def test_a_canary_is_never_asked_for_a_canary_of_its_own() -> None:
    """The canary call itself matches the rule's pattern but is exempt from require rules."""
    ctx = kube(canary=True)
    assert missing_requirements(ctx.model_copy(update={"risk": Risk.HIGH}), PACK) == []
    assert evaluate(ctx, PACK).code != Code.CANARY_REQUIRED


# --- require: dry run, by risk ----------------------------------------------------------------


def test_a_high_risk_change_that_cannot_be_dry_run_is_denied() -> None:
    """dry_run: true at min_risk high: an action without a server-side dry run is refused."""
    decision = evaluate(kube("scale", dry_run=False), PACK)
    assert (decision.verdict, decision.code, decision.rule_id) == (
        Verdict.DENY,
        Code.DRY_RUN_REQUIRED,
        "high-dry-run",
    )
    assert decision.reason == (
        "High-risk Kubernetes changes are dry-run first. kubernetes.scale cannot be tried "
        "with a dry run first."
    )


def test_min_risk_is_compared_with_the_effective_risk() -> None:
    """Below min_risk nothing is required; the same call escalated to high is refused."""
    staging = kube("scale", namespace="shop-staging", dry_run=False)
    assert evaluate(staging, PACK).verdict is Verdict.REQUIRE_APPROVAL  # medium: no rule
    declared_high = kube("scale", namespace="shop-staging", dry_run=False, risk=Risk.HIGH)
    assert evaluate(declared_high, PACK).code == Code.DRY_RUN_REQUIRED


def test_every_missing_requirement_is_listed_and_the_canary_is_reported_first() -> None:
    """A step lacking both: missing_requirements names both; the decision names the first."""
    ctx = kube(dry_run=False).model_copy(update={"risk": Risk.HIGH})
    missing = [(rule.id, what) for rule, what in missing_requirements(ctx, PACK)]
    assert missing == [("prod-restart-canary", "canary"), ("high-dry-run", "dry_run")]
    assert evaluate(kube(dry_run=False), PACK).code == Code.CANARY_REQUIRED


def test_read_only_calls_are_outside_a_read_only_false_rule() -> None:
    """A read of a production namespace is never asked for a dry run."""
    read = context(
        tool="kubernetes",
        action="get",
        args={"namespace": "shop-prod", "kind": "pods"},
        risk=Risk.HIGH,
    )
    assert missing_requirements(read, PACK) == []


def test_a_requirement_is_checked_before_the_risk_table_and_shadow_mode() -> None:
    """The refusal says what to add, even in shadow mode (which would refuse anything)."""
    decision = evaluate(kube(mode=Mode.SHADOW), PACK)
    assert decision.code == Code.CANARY_REQUIRED


def test_the_default_pack_asks_production_kubernetes_changes_for_a_dry_run() -> None:
    """default.yaml: a production-namespace change without a dry run is refused."""
    pack = default_pack()
    decision = evaluate(kube(dry_run=False), pack)
    assert (decision.code, decision.rule_id) == (
        Code.DRY_RUN_REQUIRED,
        "production-kubernetes-dry-run",
    )
    assert evaluate(kube(dry_run=True), pack).verdict is Verdict.REQUIRE_APPROVAL
    assert evaluate(kube(namespace="shop", dry_run=False), pack).verdict is (
        Verdict.REQUIRE_APPROVAL
    )


def test_a_require_rule_must_require_something() -> None:
    """A rule with neither canary nor dry_run is a load error naming the fix."""
    with pytest.raises(PackError, match="needs canary: true, dry_run: true or both"):
        load_pack_text(
            'version: 1\nrequire:\n  - {id: r, tool: "*", reason: "r"}\n', source="p.yaml"
        )


# --- canaries that run alone ------------------------------------------------------------------


def test_a_canary_at_or_below_the_cap_runs_without_approval() -> None:
    """A medium-risk canary is allowed with canary_runs_alone (the default cap is medium)."""
    decision = evaluate(kube(namespace="shop-canary", canary=True), PACK)
    assert (decision.verdict, decision.code, decision.rule_id, decision.quorum) == (
        Verdict.ALLOW,
        Code.CANARY_RUNS_ALONE,
        "builtin:canary",
        0,
    )
    assert decision.reason.startswith("A canary runs without approval up to medium risk")


def test_a_canary_that_escalates_above_the_cap_asks_for_approval() -> None:
    """A canary whose args name production is high risk: two approvals, as any high step."""
    decision = evaluate(kube(namespace="shop-prod", canary=True), PACK)
    assert (decision.verdict, decision.quorum) == (Verdict.REQUIRE_APPROVAL, 2)


def test_the_cap_comes_from_the_pack() -> None:
    """canary_runs_alone_up_to: low makes a medium canary ask for its approval."""
    pack = load_pack_text("version: 1\ncanary_runs_alone_up_to: low\n")
    decision = evaluate(kube(namespace="shop-canary", canary=True), pack)
    assert (decision.verdict, decision.code) == (Verdict.REQUIRE_APPROVAL, "needs_one_approval")
    high = load_pack_text("version: 1\ncanary_runs_alone_up_to: high\n")
    decision = evaluate(kube(namespace="shop-canary", canary=True, risk=Risk.HIGH), high)
    assert decision.code == Code.CANARY_RUNS_ALONE


def test_only_canaries_run_alone() -> None:
    """The same medium call that is not a canary needs its approval."""
    decision = evaluate(kube(namespace="shop-canary"), PACK)
    assert decision.verdict is Verdict.REQUIRE_APPROVAL


def test_a_canary_still_executes_nothing_in_shadow_mode() -> None:
    """Running alone is an approval rule: shadow mode refuses a canary as it refuses all."""
    decision = evaluate(kube(namespace="shop-canary", canary=True, mode=Mode.SHADOW), PACK)
    assert (decision.verdict, decision.code) == (Verdict.DENY, Code.SHADOW_MODE)


def test_a_researcher_canary_is_still_outside_its_role() -> None:
    """Role scope comes first: a canary is a state change the Researcher may not make."""
    decision = evaluate(kube(namespace="shop-canary", canary=True, role=Role.RESEARCHER), PACK)
    assert (decision.verdict, decision.code) == (Verdict.DENY, Code.ROLE_READ_ONLY)
