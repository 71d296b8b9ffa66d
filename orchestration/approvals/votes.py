"""Casting a vote: admissibility, quorum, the grant it issues, the rejection that halts.

An approving vote on a step's card is the hot path (vote, quorum, grant, claim of the step):
it runs in SQLAlchemy Core. One SELECT reads the plan, the approval, its step and the votes
already cast (on PostgreSQL the plan row is locked by a statement of its own first, then the
approval with that read: the one lock order); the vote is one INSERT (its unique key refuses
a racing duplicate); admissibility is the same ``_admissible`` as the ORM path; each changed row
is one UPDATE, and the audit events, the grant and the card update are batched INSERTs.
Anything that would refuse, reject, expire, answer an in-doubt card or find the plan stale
takes the ORM path instead, before the Core path has written anything.
"""

from dataclasses import replace
from typing import Any

from sqlalchemy import Table, bindparam, insert
from sqlalchemy import select as core_select
from sqlmodel import Session

from common import Risk, Role
from orchestration.approvals.common import (
    Refused,
    VoteResult,
    VoteRow,
    Votes,
    card,
    clean_reason,
    halt_reason,
    lock,
    outcome,
    placeholder,
    step_error,
    voters,
)
from orchestration.approvals.expiry import expire
from orchestration.approvals.indoubt import ANSWERS, answer_in_doubt
from orchestration.authority import extend_scope, missing_credential
from orchestration.enums import ApprovalPurpose, ApprovalState, PlanStatus, StepStatus, VoteChoice
from orchestration.knowledge import row_count
from orchestration.lifecycle import (
    KNOWLEDGE_ROWS,
    check_fresh,
    ctx_for,
    end_plan,
    is_final,
    set_approval,
    set_plan,
    set_step,
    stale_knowledge,
)
from orchestration.models import Approval, Plan, Step, Vote
from orchestration.records import Ctx, audit, emit
from orchestration.rows import (
    APPROVALS,
    PLANS,
    STEPS,
    ApprovalRow,
    PlanRow,
    StepRow,
    columns,
    snapshot,
    take,
    write_changes,
)
from orchestration.runtime import Runtime
from orchestration.stepflow import keep, start_step
from orchestration.views import VoteOutcome
from policies import Decision, Verdict, eligible_rejecter, eligible_voter


def cast_vote(
    session: Session,
    base: Ctx,
    rt: Runtime,
    *,
    nonce: str,
    voter: str,
    choice: VoteChoice,
    reason: str = "",
) -> VoteResult:
    """Count or refuse one vote; on quorum issue the grant and start the step."""
    if choice is VoteChoice.APPROVE:
        fast = _approve_core(session, base, rt, nonce=nonce, voter=voter, reason=reason)
        if fast is not None:
            return fast
    locked = lock(session, nonce)
    if locked is None:
        audit(
            session,
            base,
            "vote_refused",
            nonce=nonce,
            actor=voter,
            role=Role.HUMAN,
            code="nonce_unknown",
            detail={"choice": choice.value},
        )
        return VoteResult(
            VoteOutcome(
                accepted=False,
                code="nonce_unknown",
                reason="This button is not linked to any approval.",
            )
        )
    plan, approval = locked
    ctx = ctx_for(plan, base, actor=voter, role=Role.HUMAN)
    step = session.get(Step, approval.step_id) if approval.step_id else None
    # Read under the row locks: no other vote on it can commit in between.
    votes = voters(session, approval.id)
    try:
        _admissible(
            session,
            ctx,
            rt,
            approval,
            plan=plan,
            step=step,
            voter=voter,
            choice=choice,
            votes=votes,
        )
    except Refused as refused:
        audit(
            session,
            ctx,
            "vote_refused",
            step_id=approval.step_id,
            nonce=nonce,
            code=refused.code,
            detail={"choice": choice.value, "reason": refused.reason},
        )
        emit(
            session,
            ctx,
            "vote_refused",
            {
                "voter": voter,
                "code": refused.code,
                "reason": refused.reason,
                "approval_id": approval.id,
            },
            step_id=approval.step_id,
        )
        return VoteResult(
            outcome(approval, votes, code=refused.code, reason=refused.reason, accepted=False)
        )
    reason = clean_reason(reason)
    vote = Vote(
        approval_id=approval.id, voter=voter, choice=choice.value, reason=reason, created_at=ctx.now
    )
    session.add(vote)
    session.flush()  # the (approval, voter) unique key refuses a racing duplicate here
    votes.append(vote)
    audit(
        session,
        ctx,
        "vote_recorded",
        step_id=approval.step_id,
        nonce=nonce,
        detail={"choice": choice.value, "reason": reason},
    )
    if approval.purpose == ApprovalPurpose.IN_DOUBT.value:
        assert step is not None  # in-doubt records always name their step
        return answer_in_doubt(
            session,
            ctx,
            rt,
            approval,
            plan=plan,
            step=step,
            voter=voter,
            choice=choice,
            votes=votes,
        )
    if choice is VoteChoice.REJECT:
        return _reject(
            session, ctx, approval, plan=plan, step=step, voter=voter, reason=reason, votes=votes
        )
    return _count(session, ctx, rt, approval, plan=plan, step=step, votes=votes)


def _count(
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    approval: Approval | ApprovalRow,
    *,
    plan: Plan | PlanRow,
    step: Step | StepRow | None,
    votes: Votes,
) -> VoteResult:
    """An approving vote was recorded: grant and start the step on quorum, update the card."""
    count = sum(1 for v in votes if v.choice == VoteChoice.APPROVE.value)
    result = VoteResult(placeholder(approval))
    if count >= approval.quorum:
        result = _approve(session, ctx, rt, approval, plan=plan, step=step)
    card(session, ctx, approval, votes)
    left = max(approval.quorum - count, 0)
    msg = (
        "Approved: the step runs now."
        if left == 0
        else (f"Your approval counts ({count}/{approval.quorum}); waiting for {left} more.")
    )
    return VoteResult(
        outcome(approval, votes, code="vote_counted", reason=msg, accepted=True),
        ticket=result.ticket,
        resume_plan=result.resume_plan,
    )


_VOTES: Table = Vote.__table__  # type: ignore[attr-defined]
_BY_NONCE = APPROVALS.c.nonce == bindparam("nonce")
_LOCK_PLAN_BY_NONCE = (
    core_select(PLANS.c.id)
    .join(APPROVALS, APPROVALS.c.plan_id == PLANS.c.id)
    .where(_BY_NONCE)
    .with_for_update(of=PLANS)
)
# The plan, the approval, its step and one row per vote cast (or one row with none).
_VOTE_READ = (
    core_select(
        *columns(PlanRow, "p_"),
        *columns(ApprovalRow, "a_"),
        *columns(StepRow, "s_"),
        _VOTES.c.voter.label("v_voter"),
        _VOTES.c.choice.label("v_choice"),
        _VOTES.c.reason.label("v_reason"),
        row_count().label("knowledge_rows"),
    )
    .select_from(
        APPROVALS.join(PLANS, PLANS.c.id == APPROVALS.c.plan_id)
        .outerjoin(STEPS, STEPS.c.id == APPROVALS.c.step_id)
        .outerjoin(_VOTES, _VOTES.c.approval_id == APPROVALS.c.id)
    )
    .where(_BY_NONCE)
    .order_by(_VOTES.c.id)
)
_VOTE_READ_LOCKED = _VOTE_READ.with_for_update(of=APPROVALS)
_INSERT_VOTE = insert(_VOTES)


def _approve_core(
    session: Session, base: Ctx, rt: Runtime, *, nonce: str, voter: str, reason: str
) -> VoteResult | None:
    """An admissible approving vote on a step's card, on plain rows; None: take the ORM path."""
    conn = session.connection()
    read = _VOTE_READ
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_PLAN_BY_NONCE, {"nonce": nonce})
        read = _VOTE_READ_LOCKED
    rows = conn.execute(read, {"nonce": nonce}).all()
    if not rows:
        return None  # unknown nonce: refused and audited by the ORM path
    first = rows[0]
    plan = take(PlanRow, first, "p_")
    approval = take(ApprovalRow, first, "a_")
    step = take(StepRow, first, "s_") if first.s_id is not None else None
    votes = [VoteRow(r.v_voter, r.v_choice, r.v_reason) for r in rows if r.v_voter is not None]
    if approval.purpose != ApprovalPurpose.STEP.value or step is None:
        return None
    ctx = ctx_for(plan, base, actor=voter, role=Role.HUMAN)
    session.info[KNOWLEDGE_ROWS] = first.knowledge_rows
    if ctx.now >= approval.expires_at or stale_knowledge(session, plan, rt):
        return None  # expiring or invalidating the plan writes: the ORM path does it
    try:
        _admissible(
            session,
            ctx,
            rt,
            approval,
            plan=plan,
            step=step,
            voter=voter,
            choice=VoteChoice.APPROVE,
            votes=votes,
        )
    except Refused:
        return None  # the ORM path refuses it again, audited
    reason = clean_reason(reason)
    conn.execute(
        _INSERT_VOTE,
        {
            "approval_id": approval.id,
            "voter": voter,
            "choice": VoteChoice.APPROVE.value,
            "reason": reason,
            "created_at": ctx.now,
        },
    )
    votes.append(VoteRow(voter, VoteChoice.APPROVE.value, reason))
    audit(
        session,
        ctx,
        "vote_recorded",
        step_id=approval.step_id,
        nonce=nonce,
        detail={"choice": VoteChoice.APPROVE.value, "reason": reason},
    )
    before: list[tuple[Any, Any]] = [(row, snapshot(row)) for row in (plan, approval, step)]
    result = _count(session, ctx, rt, approval, plan=plan, step=step, votes=votes)
    for row, values in before:
        write_changes(conn, row, values)
    return result


_STEP_CHOICES = frozenset({VoteChoice.APPROVE, VoteChoice.REJECT})


def _admissible(
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    approval: Approval | ApprovalRow,
    *,
    plan: Plan | PlanRow,
    step: Step | StepRow | None,
    voter: str,
    choice: VoteChoice,
    votes: Votes,
) -> None:
    """Raise Refused unless ``voter`` may cast ``choice`` on ``approval`` now."""
    in_doubt = approval.purpose == ApprovalPurpose.IN_DOUBT.value
    if choice not in (ANSWERS if in_doubt else _STEP_CHOICES):
        raise Refused("wrong_answer", "That answer does not belong to this card.")
    if approval.state == ApprovalState.REJECTED.value and approval.decided_by:
        raise Refused(
            "approval_decided",
            f"<@{approval.decided_by}> already rejected this step; the button no longer works.",
        )
    if approval.state != ApprovalState.PENDING.value:
        raise Refused(
            "approval_decided",
            f"This approval is already {approval.state}; the button no longer works.",
        )
    if ctx.now >= approval.expires_at:
        assert isinstance(approval, Approval), "the Core path checks expiry first"
        assert isinstance(plan, Plan), "the Core path checks expiry first"
        expire(session, ctx, approval, plan)
        raise Refused("approval_expired", "This approval expired; the step did not run.")
    if is_final(plan) or plan.version != approval.plan_version:
        raise Refused(
            "plan_changed",
            f"The plan changed since this card was posted (now {plan.status}, "
            f"version {plan.version}); this approval no longer applies.",
        )
    if step is not None and step.args_hash != approval.args_hash:
        raise Refused(
            "args_changed",
            "The step's arguments changed since this card was "
            "posted; this approval no longer applies.",
        )
    if isinstance(plan, PlanRow):
        fresh = not stale_knowledge(session, plan, rt)  # the ORM path invalidates the plan
    else:
        fresh = check_fresh(session, ctx, plan, rt=rt)
    if not fresh:
        raise Refused("plan_stale", plan.status_reason)
    decision = Decision(
        verdict=Verdict.REQUIRE_APPROVAL,
        code="stored",
        reason=approval.reason or "approval",
        risk=Risk(step.risk) if step else Risk.MEDIUM,
        quorum=approval.quorum,
        exclude_requester=approval.exclude_requester,
        rule_id="approval-record",
    )
    policy = eligible_rejecter if choice is VoteChoice.REJECT else eligible_voter
    eligibility = policy(
        decision, voter=voter, requester=approval.requester, approvers=rt.approvers
    )
    if not eligibility.counts:
        raise Refused(eligibility.code, eligibility.reason)
    if any(v.voter == voter for v in votes):
        raise Refused("already_voted", "Your vote on this step was already counted.")


def _approve(
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    approval: Approval | ApprovalRow,
    *,
    plan: Plan | PlanRow,
    step: Step | StepRow | None,
) -> VoteResult:
    set_approval(approval, ApprovalState.APPROVED)
    approval.decided_at = ctx.now
    keep(session, approval)
    audit(
        session,
        ctx,
        "approval_granted",
        step_id=approval.step_id,
        nonce=approval.nonce,
        role=Role.AUDITOR,
        detail={"quorum": approval.quorum},
    )
    if approval.purpose == ApprovalPurpose.BUDGET.value or step is None:
        plan.soft_acknowledged = True
        set_plan(plan, PlanStatus.RUNNING, "budget continuation approved")
        keep(session, plan)
        return VoteResult(placeholder(approval), resume_plan=plan.id)
    if approval.purpose == ApprovalPurpose.SCOPE.value:
        credential = missing_credential(rt, step)
        if credential is not None:
            extend_scope(
                session,
                ctx,
                plan_id=plan.id,
                step_id=step.id,
                credential=credential.name,
                nonce=approval.nonce,
            )
        if plan.status == PlanStatus.WAITING.value:
            set_plan(plan, PlanStatus.RUNNING, "scope extended")
            keep(session, plan)
    ticket = start_step(session, replace(ctx, role=Role.EXECUTOR), rt, plan, step)
    return VoteResult(placeholder(approval), ticket=ticket)


def _reject(
    session: Session,
    ctx: Ctx,
    approval: Approval,
    *,
    plan: Plan,
    step: Step | None,
    voter: str,
    reason: str,
    votes: list[Vote],
) -> VoteResult:
    set_approval(approval, ApprovalState.REJECTED)
    approval.decided_at = ctx.now
    approval.decided_by = voter
    approval.reason = reason  # from here on: why it was rejected (the card's final line)
    session.add(approval)
    if step is not None:
        set_step(step, StepStatus.REJECTED)
        step.error_code = "rejected"
        step.error = step_error(voter, reason)
        session.add(step)
    card(session, ctx, approval, votes)
    end_plan(
        session,
        ctx,
        plan,
        PlanStatus.HALTED,
        reason=halt_reason(voter, step, reason),
        code="rejected",
    )
    return VoteResult(
        outcome(
            approval,
            votes,
            code="vote_counted",
            reason="Rejected: the step will not run and the plan is halted.",
            accepted=True,
        )
    )
