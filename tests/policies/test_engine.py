"""The policy chain against the default pack, and whose votes count."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import Mode, Risk, Role
from policies import (
    Code,
    Decision,
    PolicyContext,
    Verdict,
    assess_risk,
    default_pack,
    eligible_rejecter,
    eligible_voter,
    evaluate,
    load_pack_text,
)
from policies.model import PackError
from tests.policies.factories import APPROVERS, REQUESTER, change, context

PACK = default_pack()


def _evaluate(ctx: PolicyContext) -> Decision:
    return evaluate(ctx, PACK)


# --- the default approval table ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "code", "rule"),
    [
        (Mode.SUPERVISED, "low_risk_auto", "approval:low"),
        (Mode.GATED, "gated_runs_alone", "builtin:gated-mode"),
    ],
)
def test_read_only_low_risk_runs_alone(mode: Mode, code: str, rule: str) -> None:
    """A read-only low-risk step runs without approval in supervised and gated mode."""
    decision = _evaluate(context(mode=mode))
    assert decision.verdict is Verdict.ALLOW
    assert (decision.code, decision.quorum, decision.rule_id) == (code, 0, rule)


def test_medium_risk_needs_one_approver() -> None:
    """Medium risk: one approval, and the requester may give it."""
    decision = _evaluate(change())
    assert decision.verdict is Verdict.REQUIRE_APPROVAL
    assert (decision.code, decision.quorum, decision.exclude_requester) == (
        "needs_one_approval",
        1,
        False,
    )
    assert decision.reason == "Medium-risk steps need one approver; the requester may approve."
    assert decision.ttl_minutes == 30


def test_high_risk_needs_two_approvers_excluding_the_requester() -> None:
    """High risk: two distinct approvals, neither from the requester."""
    decision = _evaluate(change(risk=Risk.HIGH))
    assert (decision.verdict, decision.code, decision.quorum) == (
        Verdict.REQUIRE_APPROVAL,
        "needs_two_approvals",
        2,
    )
    assert decision.exclude_requester
    assert decision.reason == "High-risk steps need two approvers, neither of them the requester."


def test_critical_risk_never_runs() -> None:
    """Critical risk is refused in every mode."""
    for mode in Mode:
        decision = _evaluate(change(risk=Risk.CRITICAL, mode=mode))
        assert (decision.verdict, decision.code) == (Verdict.DENY, "critical_never_runs")


@pytest.mark.parametrize("ctx", [context(), change(), change(risk=Risk.HIGH)])
def test_shadow_mode_executes_nothing(ctx: PolicyContext) -> None:
    """Shadow mode denies even read-only low-risk calls, without escalating to humans."""
    decision = _evaluate(ctx.model_copy(update={"mode": Mode.SHADOW}))
    assert (decision.verdict, decision.code) == (Verdict.DENY, "shadow_mode")
    assert decision.reason == "Shadow mode: opsgate proposes steps but executes nothing."
    assert not decision.escalate_to_humans


def test_state_change_is_at_least_medium() -> None:
    """A step declared low that changes state is treated as medium."""
    decision = _evaluate(change(risk=Risk.LOW))
    assert decision.risk is Risk.MEDIUM
    assert decision.escalated_by == "builtin:state-change"
    assert decision.quorum == 1


def test_gated_runs_alone_up_to_medium() -> None:
    """Gated is the most autonomous stage: a medium-risk change runs without approval."""
    assert _evaluate(change()).verdict is Verdict.REQUIRE_APPROVAL  # supervised asks
    decision = _evaluate(change(mode=Mode.GATED))
    assert (decision.verdict, decision.code, decision.rule_id) == (
        Verdict.ALLOW,
        "gated_runs_alone",
        "builtin:gated-mode",
    )
    assert (
        decision.reason
        == "Gated stage (global mode): steps up to medium risk run without approval."
    )


def test_gated_asks_for_elevation_above_its_scope() -> None:
    """A high-risk step outside the gated scope asks for elevation with its risk's quorum."""
    decision = _evaluate(
        change(risk=Risk.HIGH, mode=Mode.GATED, gated_up_to=Risk.MEDIUM, stage_scope="restarts")
    )
    assert (decision.verdict, decision.code, decision.quorum, decision.exclude_requester) == (
        Verdict.REQUIRE_APPROVAL,
        "elevation_required",
        2,
        True,
    )
    assert decision.reason.startswith(
        "Elevation: the gated stage (scope restarts) lets opsgate act alone up to medium risk;"
    )
    # A scope granted up to high runs it alone; a scope granted only low asks for medium.
    assert _evaluate(change(risk=Risk.HIGH, mode=Mode.GATED, gated_up_to=Risk.HIGH)).verdict is (
        Verdict.ALLOW
    )
    low = _evaluate(change(mode=Mode.GATED, gated_up_to=Risk.LOW))
    assert (low.code, low.quorum) == ("elevation_required", 1)


def test_gated_never_lifts_deny_rules_or_critical() -> None:
    """Deny rules and critical win at every stage, gated included."""
    critical = _evaluate(change(risk=Risk.CRITICAL, mode=Mode.GATED, gated_up_to=Risk.HIGH))
    assert (critical.verdict, critical.code) == (Verdict.DENY, "critical_never_runs")
    wipe = _evaluate(
        change(args={"cmd": "rm -rf /var/data"}, mode=Mode.GATED, gated_up_to=Risk.HIGH)
    )
    assert (wipe.verdict, wipe.code) == (Verdict.DENY, "recursive_delete")


def test_pack_refuses_the_removed_gated_min_quorum() -> None:
    """A pack written for the old, stricter gated mode is told what replaced the setting."""
    with pytest.raises(PackError, match="gated_min_quorum was removed"):
        load_pack_text("version: 1\ngated_min_quorum: 1\n")
    with pytest.raises(PackError, match="critical never runs"):
        load_pack_text("version: 1\ngated_runs_alone_up_to: critical\n")


def test_pack_may_deny_a_whole_risk_level() -> None:
    """A locked-down pack can refuse every high-risk step."""
    pack = load_pack_text("version: 1\napproval:\n  high: {deny: true}\n")
    decision = evaluate(change(risk=Risk.HIGH), pack)
    assert (decision.verdict, decision.code) == (Verdict.DENY, "risk_denied")


# --- deny rules ---------------------------------------------------------------------------------


def _sql(query: str) -> PolicyContext:
    return change(tool="sql", action="execute", args={"query": query})


def _shell(*argv: str) -> PolicyContext:
    return change(tool="shell", action="run", args={"argv": list(argv)})


DENIED: list[tuple[str, PolicyContext, str]] = [
    ("destructive-sql", _sql("DROP TABLE users"), "destructive_sql"),
    ("destructive-sql", _sql("drop\n  database shop;"), "destructive_sql"),
    ("destructive-sql", _sql("TRUNCATE TABLE orders"), "destructive_sql"),
    ("destructive-sql", _sql("DELETE FROM users"), "destructive_sql"),
    ("destructive-sql", _sql("delete from public.users;"), "destructive_sql"),
    ("destructive-sql", _shell("psql", "-c", "DROP SCHEMA app CASCADE"), "destructive_sql"),
    ("rm-rf", _shell("rm", "-rf", "/var/lib/app"), "recursive_delete"),
    ("rm-rf", _shell("sh", "-c", "rm -fr /tmp/x"), "recursive_delete"),
    ("rm-rf", _shell("rm", "-r", "-f", "/data"), "recursive_delete"),
    ("rm-rf", _shell("rm", "-R", "--no-preserve-root", "/"), "recursive_delete"),
    ("disk-wipe", _shell("mkfs.ext4", "/dev/sdb1"), "disk_wipe"),
    ("disk-wipe", _shell("dd", "if=/dev/zero", "of=/dev/sda", "bs=1M"), "disk_wipe"),
    (
        "delete-production",
        change(tool="kubernetes", action="delete", args={"namespace": "production"}),
        "delete_production",
    ),
    (
        "delete-production",
        change(tool="http", action="delete", args={"url": "https://api.prod.example.com/v1/x"}),
        "delete_production",
    ),
    (
        "http-delete-production",
        change(
            tool="http",
            action="request",
            args={"method": "DELETE", "url": "https://prod.example.com/cache"},
        ),
        "delete_production",
    ),
    (
        "kubectl-delete-production",
        _shell("kubectl", "-n", "prod", "delete", "deployment", "web"),
        "delete_production",
    ),
    (
        "terraform-destroy",
        change(tool="terraform", action="destroy", args={"workspace": "staging"}),
        "terraform_destroy",
    ),
    (
        "terraform-destroy-command",
        _shell("terraform", "destroy", "-auto-approve"),
        "terraform_destroy",
    ),
    ("terraform-destroy-command", _shell("terraform", "apply", "-destroy"), "terraform_destroy"),
]

ALLOWED: list[tuple[str, PolicyContext]] = [
    ("sql select", _sql("SELECT * FROM users")),
    ("sql delete with where", _sql("DELETE FROM users WHERE id = 7")),
    ("sql delete, where on the next line", _sql("DELETE FROM sessions\nWHERE expired")),
    ("drop outside sql", change(args={"note": "drop table talk at 3pm"})),
    ("rm one file", _shell("rm", "/tmp/app.pid")),
    ("rm recursive without force", _shell("rm", "-r", "/tmp/cache")),
    ("dd to a file", _shell("dd", "if=/dev/zero", "of=/tmp/blob", "bs=1M")),
    (
        "delete in staging",
        change(tool="kubernetes", action="delete", args={"namespace": "staging"}),
    ),
    ("delete products", change(tool="http", action="delete", args={"url": "http://x/products/9"})),
    ("kubectl get in prod", _shell("kubectl", "-n", "prod", "get", "pods")),
    ("kubectl delete in staging", _shell("kubectl", "-n", "staging", "delete", "pod", "web-1")),
    ("terraform plan", _shell("terraform", "plan")),
]


@pytest.mark.parametrize(
    ("rule_id", "ctx", "code"), DENIED, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(DENIED)]
)
def test_deny_rule_matches(rule_id: str, ctx: PolicyContext, code: str) -> None:
    """Each default deny rule refuses the calls it is written for."""
    decision = _evaluate(ctx)
    assert (decision.verdict, decision.rule_id, decision.code) == (Verdict.DENY, rule_id, code)
    assert decision.quorum == 0
    assert not decision.escalate_to_humans


@pytest.mark.parametrize(("label", "ctx"), ALLOWED, ids=[label for label, _ in ALLOWED])
def test_deny_rules_leave_harmless_calls_alone(label: str, ctx: PolicyContext) -> None:
    """Near misses of the deny rules are not denied (they may still need approval)."""
    assert _evaluate(ctx).verdict is not Verdict.DENY, label


def test_deny_rules_apply_to_read_only_calls_too() -> None:
    """A read-only SQL adapter still never receives DROP TABLE."""
    ctx = context(tool="sql", action="query", args={"query": "DROP TABLE users"})
    assert _evaluate(ctx).code == "destructive_sql"


def test_first_matching_deny_rule_wins() -> None:
    """Rules are tried in file order; the earliest match decides."""
    ctx = _shell("sh", "-c", "rm -rf /mnt && mkfs.ext4 /dev/sdb1")
    assert _evaluate(ctx).rule_id == "rm-rf"
    pack = load_pack_text(
        """\
version: 1
deny:
  - {id: second-in-pack-first-here, tool: "shell.*", reason: "Shell is off.", code: shell_off}
  - {id: rm-rf, args_pattern: 'rm -rf', reason: "No rm -rf.", code: recursive_delete}
"""
    )
    assert evaluate(ctx, pack).code == "shell_off"


# --- escalation ---------------------------------------------------------------------------------


def test_production_target_escalates_to_high() -> None:
    """A change aimed at production needs the high-risk quorum, and says why."""
    decision = _evaluate(change(args={"url": "https://checkout.production.example.com/restart"}))
    assert (decision.risk, decision.quorum, decision.exclude_requester) == (Risk.HIGH, 2, True)
    assert decision.escalated_by == "production-target"
    assert "production" in decision.reason


def test_reading_production_is_not_escalated() -> None:
    """Probing production health stays low risk: the rule only covers changes."""
    decision = _evaluate(context(args={"url": "https://prod.example.com/health"}))
    assert (decision.verdict, decision.risk, decision.escalated_by) == (
        Verdict.ALLOW,
        Risk.LOW,
        None,
    )


@pytest.mark.parametrize(
    "args",
    [{"argv": ["git", "push", "--force"]}, {"force": True}, {"argv": ["terraform", "-force"]}],
)
def test_force_flag_escalates_to_high(args: dict[str, Any]) -> None:
    """Forcing past a tool's own safety checks is high risk."""
    decision = _evaluate(change(tool="shell", action="run", args=args))
    assert (decision.risk, decision.escalated_by) == (Risk.HIGH, "force-flag")


def test_escalation_never_lowers_the_declared_risk() -> None:
    """A rule raising to high leaves a declared critical step critical."""
    ctx = change(risk=Risk.CRITICAL, args={"url": "https://prod.example.com/x"})
    assert assess_risk(ctx, PACK).risk is Risk.CRITICAL
    assert _evaluate(ctx).code == "critical_never_runs"


def test_escalation_can_make_a_step_critical() -> None:
    """An escalation rule to critical turns a step into one that never runs."""
    pack = load_pack_text(
        "version: 1\nescalate:\n"
        "  - {id: payments, args_pattern: payments, to: critical, reason: Payments core.}\n"
    )
    decision = evaluate(change(args={"url": "http://x/payments/reset"}), pack)
    assert (decision.code, decision.escalated_by) == ("critical_never_runs", "payments")


# --- roles and repeated denials -----------------------------------------------------------------


def test_planner_never_calls_tools() -> None:
    """The planner is denied even a read-only low-risk call."""
    decision = _evaluate(context(role=Role.PLANNER))
    assert (decision.verdict, decision.code) == (Verdict.DENY, "role_forbidden")


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.AUDITOR])
def test_read_only_roles(role: Role) -> None:
    """Researchers and auditors may read but never change state."""
    assert _evaluate(context(role=role)).verdict is Verdict.ALLOW
    decision = _evaluate(change(role=role))
    assert (decision.verdict, decision.code) == (Verdict.DENY, "role_read_only")


@pytest.mark.parametrize("role", [Role.EXECUTOR, Role.SYSTEM])
def test_executing_roles_reach_the_gate(role: Role) -> None:
    """Executors and the system are limited only by the approval gate."""
    assert _evaluate(change(role=role)).verdict is Verdict.REQUIRE_APPROVAL


def test_role_scope_comes_before_deny_rules() -> None:
    """A planner asking for DROP TABLE is refused for being the planner."""
    ctx = context(role=Role.PLANNER, tool="sql", action="query", args={"query": "DROP TABLE t"})
    assert _evaluate(ctx).code == "role_forbidden"


def test_repeated_denials_escalate_to_humans() -> None:
    """At the pack's denial limit opsgate stops and asks a human, whatever the step."""
    below = _evaluate(context(denials_in_plan=PACK.max_denials_per_plan - 1))
    assert below.verdict is Verdict.ALLOW
    decision = _evaluate(context(denials_in_plan=PACK.max_denials_per_plan))
    assert (decision.verdict, decision.code) == (Verdict.DENY, "denials_escalated")
    assert decision.escalate_to_humans
    assert "human" in decision.reason


def test_denial_limit_comes_before_deny_rules() -> None:
    """Once the limit is reached, the plan goes to a human even for a denied pattern."""
    ctx = _sql("DROP TABLE users").model_copy(update={"denials_in_plan": 5})
    assert _evaluate(ctx).code == "denials_escalated"


def test_deny_rules_come_before_shadow_and_critical() -> None:
    """The specific reason wins over the general one."""
    ctx = _sql("DROP TABLE users").model_copy(update={"mode": Mode.SHADOW, "risk": Risk.CRITICAL})
    assert _evaluate(ctx).code == "destructive_sql"


def test_critical_comes_before_shadow() -> None:
    """A critical step in shadow mode is reported as critical."""
    assert _evaluate(change(risk=Risk.CRITICAL, mode=Mode.SHADOW)).code == "critical_never_runs"


# --- votes --------------------------------------------------------------------------------------


def test_only_configured_approvers_vote() -> None:
    """A vote from someone outside the approvers does not count."""
    decision = _evaluate(change())
    result = eligible_voter(decision, voter="U_STRANGER", requester=REQUESTER, approvers=APPROVERS)
    assert (result.counts, result.code) == (False, "not_an_approver")
    assert result.reason == "Only configured approvers can vote on this step."


def test_requester_cannot_approve_high_risk() -> None:
    """For high risk the requester's own vote never counts."""
    decision = _evaluate(change(risk=Risk.HIGH))
    result = eligible_voter(decision, voter=REQUESTER, requester=REQUESTER, approvers=APPROVERS)
    assert (result.counts, result.code) == (False, "requester_cannot_approve")
    assert result.reason == (
        "You requested this incident; a high-risk step needs approvals from two other people."
    )


def test_requester_may_approve_medium_risk() -> None:
    """For medium risk the requester, when an approver, may approve."""
    decision = _evaluate(change())
    result = eligible_voter(decision, voter=REQUESTER, requester=REQUESTER, approvers=APPROVERS)
    assert (result.counts, result.code) == (True, "vote_counts")


def test_decisions_without_approval_take_no_votes() -> None:
    """Votes on an allowed or denied step do not count."""
    for decision in (_evaluate(context()), _evaluate(_sql("DROP TABLE t"))):
        result = eligible_voter(decision, voter="U_A", requester=REQUESTER, approvers=APPROVERS)
        assert (result.counts, result.code) == (False, Code.NO_APPROVAL_NEEDED)


def test_requester_may_reject_their_own_high_risk_step() -> None:
    """A veto needs no quorum: the requester's rejection counts where their approval does not."""
    decision = _evaluate(change(risk=Risk.HIGH))
    assert decision.exclude_requester
    result = eligible_rejecter(decision, voter=REQUESTER, requester=REQUESTER, approvers=APPROVERS)
    assert (result.counts, result.code) == (True, "vote_counts")


def test_requester_who_is_not_an_approver_may_still_reject() -> None:
    """Opening the incident is enough to stop its plan; approving still takes an approver."""
    decision = _evaluate(change(risk=Risk.HIGH))
    others = APPROVERS - {REQUESTER}
    assert eligible_rejecter(
        decision, voter=REQUESTER, requester=REQUESTER, approvers=others
    ).counts
    assert not eligible_voter(
        decision, voter=REQUESTER, requester=REQUESTER, approvers=others
    ).counts


@pytest.mark.parametrize("risk", [Risk.MEDIUM, Risk.HIGH])
def test_any_configured_approver_may_reject(risk: Risk) -> None:
    decision = _evaluate(change(risk=risk))
    for voter in APPROVERS - {REQUESTER}:
        result = eligible_rejecter(decision, voter=voter, requester=REQUESTER, approvers=APPROVERS)
        assert (result.counts, result.code) == (True, "vote_counts")


def test_strangers_cannot_reject() -> None:
    """Someone neither an approver nor the requester is refused, in plain words."""
    decision = _evaluate(change(risk=Risk.HIGH))
    result = eligible_rejecter(
        decision, voter="U_STRANGER", requester=REQUESTER, approvers=APPROVERS
    )
    assert (result.counts, result.code) == (False, "not_an_approver")
    assert result.reason == (
        "Only configured approvers and the person who opened this incident can reject this step."
    )


def test_steps_without_approval_take_no_rejections() -> None:
    for decision in (_evaluate(context()), _evaluate(_sql("DROP TABLE t"))):
        result = eligible_rejecter(decision, voter="U_A", requester=REQUESTER, approvers=APPROVERS)
        assert (result.counts, result.code) == (False, Code.NO_APPROVAL_NEEDED)


# --- properties ---------------------------------------------------------------------------------

_WORDS = st.sampled_from(
    ["prod", "production", "--force", "rm -rf /", "DROP TABLE x", "staging", "web", "restart", ""]
)
_ARGS = st.dictionaries(
    st.sampled_from(["url", "query", "namespace", "note"]),
    _WORDS | st.text(alphabet="abcdprof -/.;\n", max_size=20),
    max_size=3,
) | st.builds(lambda words: {"argv": words}, st.lists(_WORDS, max_size=4))

CONTEXTS = st.builds(
    PolicyContext,
    role=st.sampled_from(Role),
    tool=st.sampled_from(["http", "sql", "shell", "kubernetes", "terraform"]),
    action=st.sampled_from(["get", "post", "delete", "execute", "run", "destroy"]),
    args=_ARGS,
    risk=st.sampled_from(Risk),
    read_only=st.booleans(),
    mode=st.sampled_from(Mode),
    requester=st.sampled_from(["U_REQ", "U_A"]),
    approvers=st.frozensets(st.sampled_from(["U_REQ", "U_A", "U_B", "U_C"])),
    denials_in_plan=st.integers(min_value=0, max_value=5),
)


@given(CONTEXTS)
def test_evaluate_is_deterministic(ctx: PolicyContext) -> None:
    """The same context always yields an equal decision (also from an equal copy)."""
    assert _evaluate(ctx) == _evaluate(ctx) == _evaluate(PolicyContext(**dict(ctx)))


@given(CONTEXTS)
def test_effective_risk_is_never_below_the_declared_risk(ctx: PolicyContext) -> None:
    """Escalation only raises."""
    assert _evaluate(ctx).risk.rank >= ctx.risk.rank


@given(CONTEXTS)
def test_critical_or_shadow_never_runs(ctx: PolicyContext) -> None:
    """Critical risk or shadow mode always ends in deny."""
    for update in ({"risk": Risk.CRITICAL}, {"mode": Mode.SHADOW}):
        assert _evaluate(ctx.model_copy(update=update)).verdict is Verdict.DENY


@given(CONTEXTS, st.sampled_from(Risk), st.sampled_from(Risk))
def test_quorum_is_monotonic_in_risk(ctx: PolicyContext, first: Risk, second: Risk) -> None:
    """Raising the declared risk never lowers the quorum, nor turns a deny into a yes."""
    lower, higher = sorted((first, second), key=lambda risk: risk.rank)
    low = _evaluate(ctx.model_copy(update={"risk": lower}))
    high = _evaluate(ctx.model_copy(update={"risk": higher}))
    if low.verdict is Verdict.DENY:
        assert high.verdict is Verdict.DENY
    elif high.verdict is not Verdict.DENY:
        assert low.quorum <= high.quorum
        assert high.exclude_requester or not low.exclude_requester


@given(CONTEXTS, st.sampled_from(["U_REQ", "U_A", "U_B", "U_STRANGER"]))
def test_a_veto_is_never_harder_to_cast_than_an_approval(ctx: PolicyContext, voter: str) -> None:
    """Whoever may approve may reject; the requester may always reject a step that takes votes."""
    decision = _evaluate(ctx)
    args = {"voter": voter, "requester": ctx.requester, "approvers": ctx.approvers}
    rejects = eligible_rejecter(decision, **args).counts
    if eligible_voter(decision, **args).counts:
        assert rejects
    if decision.verdict is Verdict.REQUIRE_APPROVAL and voter == ctx.requester:
        assert rejects
