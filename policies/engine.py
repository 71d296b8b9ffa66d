"""The policy chain: pure functions ``(PolicyContext, Pack) -> Decision | None``, first one wins.

``evaluate`` first works out the effective risk (declared risk, raised by escalation rules and by
the call changing state; never lowered), then runs :data:`CHAIN` with that risk in the context:

1. role scope          - planner calls nothing; researcher and auditor only read-only actions
2. repeated denials    - too many refusals in one plan: stop and hand over to a human
3. deny rules          - the pack's patterns; the first match wins
4. requirements        - a step the pack's ``require`` rules match lacks its canary or dry run
5. refused risk        - critical (and any level the pack denies) never runs
6. shadow mode         - opsgate proposes, executes nothing
7. approval            - the quorum the pack's table asks for; a canary at or below
                         ``canary_runs_alone_up_to`` runs without one; in the gated stage a
                         step inside the scope's risk bound runs alone and one outside it asks
                         for elevation

Every step but the last may pass (``None``); the last always decides. Escalation never decides
anything itself, so computing it up front changes no outcome and keeps each policy a plain
two-argument function, like a structlog processor.
"""

from collections.abc import Callable, Mapping
from enum import StrEnum
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict

from common import Mode, Risk, Role
from policies.matching import match_texts
from policies.model import Code, Decision, Eligibility, PolicyContext, Verdict
from policies.pack import Pack, RequireRule

Policy = Callable[[PolicyContext, Pack], Decision | None]

ROLE_SCOPE_RULE = "builtin:role-scope"
DENIAL_LIMIT_RULE = "builtin:denial-limit"
REFUSED_RISK_RULE = "builtin:refused-risk"
SHADOW_MODE_RULE = "builtin:shadow-mode"
STATE_CHANGE_RULE = "builtin:state-change"
GATED_MODE_RULE = "builtin:gated-mode"
APPROVAL_RULE_PREFIX = "approval:"
CANARY_RULE = "builtin:canary"

SHADOW_REASON = "Shadow mode: opsgate proposes steps but executes nothing."
STATE_CHANGE_REASON = "The step changes state, so it is at least medium risk."


class Scope(StrEnum):
    """Which tool actions a role may call."""

    NONE = "none"
    READ_ONLY = "read_only"
    ANY = "any"


ROLE_SCOPES: Mapping[Role, Scope] = MappingProxyType(
    {
        Role.PLANNER: Scope.NONE,
        Role.RESEARCHER: Scope.READ_ONLY,
        Role.AUDITOR: Scope.READ_ONLY,
        Role.EXECUTOR: Scope.ANY,
        Role.SYSTEM: Scope.ANY,
        # A human's call still goes through shadow mode and the approval gate below.
        Role.HUMAN: Scope.ANY,
    }
)

_READ_ONLY_REASONS: Mapping[Role, str] = MappingProxyType(
    {
        Role.RESEARCHER: "Researchers only gather facts; {action} changes state.",
        Role.AUDITOR: "Auditors check results and ask humans; they never run {action}.",
    }
)

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


class RiskAssessment(BaseModel):
    """The effective risk of a call and, when it was raised, which rule raised it and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    risk: Risk
    escalated_by: str | None = None
    reason: str | None = None


def assess_risk(ctx: PolicyContext, pack: Pack) -> RiskAssessment:
    """The declared risk raised by the state-change floor and every matching escalation rule.

    The first rule to reach the final level is the one reported in ``escalated_by``.
    """
    best = RiskAssessment(risk=ctx.risk)
    if not ctx.read_only and best.risk.rank < Risk.MEDIUM.rank:
        best = RiskAssessment(
            risk=Risk.MEDIUM, escalated_by=STATE_CHANGE_RULE, reason=STATE_CHANGE_REASON
        )
    texts = match_texts(ctx.args)
    for rule in pack.escalate:
        if rule.to.rank > best.risk.rank and rule.matches(
            tool_action=ctx.tool_action, read_only=ctx.read_only, texts=texts
        ):
            best = RiskAssessment(risk=rule.to, escalated_by=rule.id, reason=rule.reason)
    return best


def evaluate(ctx: PolicyContext, pack: Pack) -> Decision:
    """Run :data:`CHAIN` on ``ctx`` and return the first decision."""
    assessment = assess_risk(ctx, pack)
    assessed = ctx.model_copy(update={"risk": assessment.risk})
    for policy in CHAIN:
        decision = policy(assessed, pack)
        if decision is not None:
            return _note_escalation(decision, assessment)
    raise AssertionError("the approval policy always decides")  # pragma: no cover


def role_scope(ctx: PolicyContext, pack: Pack) -> Decision | None:
    """Deny calls outside the caller's role scope (see :data:`ROLE_SCOPES`)."""
    scope = ROLE_SCOPES[ctx.role]
    if scope is Scope.NONE:
        reason = f"The {ctx.role} proposes steps; it never calls tools."
        return _deny(ctx, code=Code.ROLE_FORBIDDEN, reason=reason, rule_id=ROLE_SCOPE_RULE)
    if scope is Scope.READ_ONLY and not ctx.read_only:
        template = _READ_ONLY_REASONS.get(ctx.role, "The {role} may only call read-only actions.")
        reason = template.format(action=ctx.tool_action, role=ctx.role)
        return _deny(ctx, code=Code.ROLE_READ_ONLY, reason=reason, rule_id=ROLE_SCOPE_RULE)
    return None


def repeated_denials(ctx: PolicyContext, pack: Pack) -> Decision | None:
    """Stop a plan that keeps getting refused and hand it to humans instead of retrying."""
    if ctx.denials_in_plan < pack.max_denials_per_plan:
        return None
    times = "time" if ctx.denials_in_plan == 1 else "times"
    reason = (
        f"opsgate was refused {ctx.denials_in_plan} {times} in this plan; "
        "it stops retrying and hands the incident to a human."
    )
    return _deny(
        ctx,
        code=Code.DENIALS_ESCALATED,
        reason=reason,
        rule_id=DENIAL_LIMIT_RULE,
        escalate_to_humans=True,
    )


def deny_rules(ctx: PolicyContext, pack: Pack) -> Decision | None:
    """Deny the call when one of the pack's deny rules matches; the first match wins."""
    texts = match_texts(ctx.args)
    for rule in pack.deny:
        if rule.matches(tool_action=ctx.tool_action, read_only=ctx.read_only, texts=texts):
            return _deny(ctx, code=rule.code, reason=rule.reason, rule_id=rule.id)
    return None


def missing_requirements(ctx: PolicyContext, pack: Pack) -> list[tuple[RequireRule, str]]:
    """The ``require`` rules ``ctx`` matches and what it lacks for each (``canary``/``dry_run``).

    ``ctx.risk`` is taken as the effective risk. A canary is never asked for a canary of its own.
    """
    if ctx.canary:
        return []
    texts = match_texts(ctx.args)
    missing = []
    for rule in pack.require:
        if ctx.risk.rank < rule.min_risk.rank:
            continue
        if not rule.matches(tool_action=ctx.tool_action, read_only=ctx.read_only, texts=texts):
            continue
        if rule.canary and not ctx.has_canary:
            missing.append((rule, "canary"))
        if rule.dry_run and not ctx.dry_run:
            missing.append((rule, "dry_run"))
    return missing


def requirements(ctx: PolicyContext, pack: Pack) -> Decision | None:
    """Deny a step that lacks the canary or dry run a ``require`` rule asks for."""
    missing = missing_requirements(ctx, pack)
    if not missing:
        return None
    rule, what = missing[0]
    if what == "canary":
        code = Code.CANARY_REQUIRED
        reason = f"{rule.reason} This step declares no canary; add canary: to the runbook step."
    else:
        code = Code.DRY_RUN_REQUIRED
        reason = f"{rule.reason} {ctx.tool_action} cannot be tried with a dry run first."
    return _deny(ctx, code=code, reason=reason, rule_id=rule.id)


def refused_risk(ctx: PolicyContext, pack: Pack) -> Decision | None:
    """Deny critical steps, and any risk level the pack's approval table denies."""
    if not pack.approval.for_risk(ctx.risk).deny:
        return None
    if ctx.risk is Risk.CRITICAL:
        code, reason = Code.CRITICAL_NEVER_RUNS, "Critical-risk steps never run, in any mode."
    else:
        code = Code.RISK_DENIED
        reason = f"{ctx.risk.capitalize()}-risk steps never run under this policy pack."
    return _deny(ctx, code=code, reason=reason, rule_id=REFUSED_RISK_RULE)


def shadow_mode(ctx: PolicyContext, pack: Pack) -> Decision | None:
    """In shadow mode nothing executes, however harmless."""
    if ctx.mode is not Mode.SHADOW:
        return None
    return _deny(ctx, code=Code.SHADOW_MODE, reason=SHADOW_REASON, rule_id=SHADOW_MODE_RULE)


def approval(ctx: PolicyContext, pack: Pack) -> Decision:
    """Allow, or ask for the quorum the pack sets for the effective risk.

    In the gated stage, steps up to the scope's ``max_risk`` (``ctx.gated_up_to``, else the
    pack's ``gated_runs_alone_up_to``) run alone; a riskier one asks for elevation for this
    plan, with the quorum its risk needs (at least one).
    """
    if ctx.canary and not ctx.read_only and ctx.risk.rank <= pack.canary_runs_alone_up_to.rank:
        reason = (
            f"A canary runs without approval up to {pack.canary_runs_alone_up_to} risk: it tries "
            "the step where it cannot hurt, and the step waits for it."
        )
        return _decide(
            ctx,
            verdict=Verdict.ALLOW,
            code=Code.CANARY_RUNS_ALONE,
            reason=reason,
            rule_id=CANARY_RULE,
        )
    level = pack.approval.for_risk(ctx.risk)
    if ctx.mode is Mode.GATED:
        return _gated(ctx, pack, level.quorum, level.exclude_requester)
    quorum, rule_id = level.quorum, f"{APPROVAL_RULE_PREFIX}{ctx.risk}"
    if quorum == 0:
        reason = f"{ctx.risk.capitalize()}-risk steps run without approval."
        return _decide(
            ctx, verdict=Verdict.ALLOW, code=Code.LOW_RISK_AUTO, reason=reason, rule_id=rule_id
        )
    exclude = level.exclude_requester
    return Decision(
        verdict=Verdict.REQUIRE_APPROVAL,
        code=_approval_code(quorum),
        reason=approval_reason(risk=ctx.risk, quorum=quorum, exclude_requester=exclude),
        risk=ctx.risk,
        quorum=quorum,
        exclude_requester=exclude,
        rule_id=rule_id,
        ttl_minutes=pack.approval_ttl_minutes,
    )


def _gated(ctx: PolicyContext, pack: Pack, quorum: int, exclude: bool) -> Decision:
    """Gated stage: run alone inside the scope's risk bound, else ask for elevation."""
    limit = ctx.gated_up_to or pack.gated_runs_alone_up_to
    where = f"scope {ctx.stage_scope}" if ctx.stage_scope else "global mode"
    if ctx.risk.rank <= limit.rank:
        reason = f"Gated stage ({where}): steps up to {limit} risk run without approval."
        return _decide(
            ctx,
            verdict=Verdict.ALLOW,
            code=Code.GATED_RUNS_ALONE,
            reason=reason,
            rule_id=GATED_MODE_RULE,
        )
    quorum = max(quorum, 1)
    asked = approval_reason(risk=ctx.risk, quorum=quorum, exclude_requester=exclude)
    reason = (
        f"Elevation: the gated stage ({where}) lets opsgate act alone up to {limit} risk; this "
        f"{ctx.risk}-risk step is outside it and runs only if approved, for this plan. {asked}"
    )
    return Decision(
        verdict=Verdict.REQUIRE_APPROVAL,
        code=Code.ELEVATION_REQUIRED,
        reason=reason,
        risk=ctx.risk,
        quorum=quorum,
        exclude_requester=exclude,
        rule_id=GATED_MODE_RULE,
        ttl_minutes=pack.approval_ttl_minutes,
    )


CHAIN: tuple[Policy, ...] = (
    role_scope,
    repeated_denials,
    deny_rules,
    requirements,
    refused_risk,
    shadow_mode,
    approval,
)
"""The policies :func:`evaluate` runs, in order."""


def approval_reason(*, risk: Risk, quorum: int, exclude_requester: bool) -> str:
    """Plain words for an approval requirement, naming the count and the requester rule."""
    people = f"{_number(quorum)} approver{'s' if quorum > 1 else ''}"
    if not exclude_requester:
        rule = "; the requester may approve" if quorum == 1 else "; the requester may be one"
    elif quorum == 1:
        rule = " other than the requester"
    else:
        rule = f", {'neither' if quorum == 2 else 'none'} of them the requester"
    return f"{risk.capitalize()}-risk steps need {people}{rule}."


def eligible_voter(
    decision: Decision, *, voter: str, requester: str, approvers: frozenset[str]
) -> Eligibility:
    """Whether a vote from ``voter`` counts towards ``decision``'s quorum.

    Args:
        decision: The decision that asked for approval.
        voter: The user id that clicked Approve or Reject.
        requester: The user id that opened the incident.
        approvers: Configured approver ids, with user groups already expanded to user ids.
    """
    if decision.verdict is not Verdict.REQUIRE_APPROVAL:
        reason = f"This step takes no votes: policy said {decision.verdict}."
        return Eligibility(counts=False, code=Code.NO_APPROVAL_NEEDED, reason=reason)
    if voter not in approvers:
        reason = "Only configured approvers can vote on this step."
        return Eligibility(counts=False, code=Code.NOT_AN_APPROVER, reason=reason)
    if decision.exclude_requester and voter == requester:
        others = "person" if decision.quorum == 1 else "people"
        reason = (
            f"You requested this incident; a {decision.risk}-risk step needs approvals from "
            f"{_number(decision.quorum)} other {others}."
        )
        return Eligibility(counts=False, code=Code.REQUESTER_CANNOT_APPROVE, reason=reason)
    return Eligibility(counts=True, code=Code.VOTE_COUNTS, reason="Your vote counts.")


def eligible_rejecter(
    decision: Decision, *, voter: str, requester: str, approvers: frozenset[str]
) -> Eligibility:
    """Whether a rejection from ``voter`` stops ``decision``'s step.

    A veto needs no quorum and only ever makes things safer, so every configured approver may
    cast one, and so may the requester (even where their approval would not count). Anyone
    else is refused, as for approvals.

    Args:
        decision: The decision that asked for approval.
        voter: The user id that clicked Reject.
        requester: The user id that opened the incident.
        approvers: Configured approver ids, with user groups already expanded to user ids.
    """
    if decision.verdict is not Verdict.REQUIRE_APPROVAL:
        reason = f"This step takes no votes: policy said {decision.verdict}."
        return Eligibility(counts=False, code=Code.NO_APPROVAL_NEEDED, reason=reason)
    if voter not in approvers and voter != requester:
        reason = (
            "Only configured approvers and the person who opened this incident can reject "
            "this step."
        )
        return Eligibility(counts=False, code=Code.NOT_AN_APPROVER, reason=reason)
    return Eligibility(counts=True, code=Code.VOTE_COUNTS, reason="Your rejection counts.")


def _approval_code(quorum: int) -> Code:
    """The code naming how many approvals a step needs."""
    if quorum == 1:
        return Code.NEEDS_ONE_APPROVAL
    if quorum == 2:
        return Code.NEEDS_TWO_APPROVALS
    return Code.NEEDS_APPROVAL


def _number(count: int) -> str:
    """``2`` as ``two``; digits past ten."""
    return _WORDS[count] if count < len(_WORDS) else str(count)


def _deny(
    ctx: PolicyContext, *, code: str, reason: str, rule_id: str, escalate_to_humans: bool = False
) -> Decision:
    """A deny decision at the context's (effective) risk."""
    return _decide(
        ctx,
        verdict=Verdict.DENY,
        code=code,
        reason=reason,
        rule_id=rule_id,
        escalate_to_humans=escalate_to_humans,
    )


def _decide(
    ctx: PolicyContext,
    *,
    verdict: Verdict,
    code: str,
    reason: str,
    rule_id: str,
    escalate_to_humans: bool = False,
) -> Decision:
    """A decision that needs no votes (allow or deny)."""
    return Decision(
        verdict=verdict,
        code=code,
        reason=reason,
        risk=ctx.risk,
        quorum=0,
        exclude_requester=False,
        escalate_to_humans=escalate_to_humans,
        rule_id=rule_id,
    )


_RISK_DRIVEN = frozenset(
    {
        Code.CRITICAL_NEVER_RUNS,
        Code.RISK_DENIED,
        Code.NEEDS_ONE_APPROVAL,
        Code.NEEDS_TWO_APPROVALS,
        Code.NEEDS_APPROVAL,
        Code.ELEVATION_REQUIRED,
    }
)


def _note_escalation(decision: Decision, assessment: RiskAssessment) -> Decision:
    """Record which rule raised the risk; say why when the risk is what decided."""
    if assessment.escalated_by is None:
        return decision
    update: dict[str, object] = {"escalated_by": assessment.escalated_by}
    if decision.code in _RISK_DRIVEN:
        update["reason"] = f"{decision.reason} Risk raised to {decision.risk}: {assessment.reason}"
    return decision.model_copy(update=update)
