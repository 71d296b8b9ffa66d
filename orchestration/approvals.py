"""Votes on approval records: the only path from a human click to a grant.

A nonce names one approval record. ``cast_vote`` refuses, with a stable code and a plain
reason, every vote that must not count: unknown nonce, decided or expired record, a plan that
changed or went stale, changed args, a voter who is not an approver, the requester on a step
that excludes them, a second vote by the same person. Reaching quorum is atomic: the record
is locked (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so of two
simultaneous final votes exactly one issues the grant and starts the step.
"""

from dataclasses import dataclass, replace

from sqlmodel import Session, col, select

from common import Risk, Role
from orchestration.enums import ApprovalPurpose, ApprovalState, PlanStatus, StepStatus, VoteChoice
from orchestration.executor import Ticket
from orchestration.lifecycle import (
    check_fresh,
    ctx_for,
    end_plan,
    is_final,
    lock_plan,
    set_approval,
    set_plan,
    set_step,
)
from orchestration.models import Approval, Plan, Step, Vote
from orchestration.records import Ctx, audit, emit
from orchestration.runtime import Runtime
from orchestration.stepflow import start_step
from orchestration.views import VoteOutcome
from policies import Decision, Verdict, eligible_voter


@dataclass(frozen=True)
class VoteResult:
    """The outcome for the voter, plus what to run or resume afterwards."""

    outcome: VoteOutcome
    ticket: Ticket | None = None
    resume_plan: str | None = None


class _Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _voters(session: Session, approval_id: str) -> list[Vote]:
    return list(
        session.exec(select(Vote).where(Vote.approval_id == approval_id).order_by(col(Vote.id)))
    )


def _outcome(
    approval: Approval, votes: list[Vote], *, code: str, reason: str, accepted: bool
) -> VoteOutcome:
    approves = [v.voter for v in votes if v.choice == VoteChoice.APPROVE.value]
    return VoteOutcome(
        accepted=accepted,
        code=code,
        reason=reason,
        approval_id=approval.id,
        approval_state=approval.state,
        approvals=len(approves),
        quorum=approval.quorum,
        voters=tuple(v.voter for v in votes),
        step_id=approval.step_id,
        plan_id=approval.plan_id,
    )


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
    approval = session.exec(
        select(Approval).where(Approval.nonce == nonce).with_for_update()
    ).first()
    if approval is None:
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
    plan = lock_plan(session, approval.plan_id)
    ctx = ctx_for(plan, base, actor=voter, role=Role.HUMAN)
    step = session.get(Step, approval.step_id) if approval.step_id else None
    # Read under the approval's row lock: no other vote on it can commit in between.
    votes = _voters(session, approval.id)
    try:
        _admissible(session, ctx, rt, approval, plan=plan, step=step, voter=voter, votes=votes)
    except _Refused as refused:
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
            _outcome(approval, votes, code=refused.code, reason=refused.reason, accepted=False)
        )
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
    if choice is VoteChoice.REJECT:
        return _reject(
            session, ctx, approval, plan=plan, step=step, voter=voter, reason=reason, votes=votes
        )
    count = sum(1 for v in votes if v.choice == VoteChoice.APPROVE.value)
    result = VoteResult(_placeholder(approval))
    if count >= approval.quorum:
        result = _approve(session, ctx, rt, approval, plan=plan, step=step)
    _card(session, ctx, approval, votes)
    left = max(approval.quorum - count, 0)
    msg = (
        "Approved: the step runs now."
        if left == 0
        else (f"Your approval counts ({count}/{approval.quorum}); waiting for {left} more.")
    )
    return VoteResult(
        _outcome(approval, votes, code="vote_counted", reason=msg, accepted=True),
        ticket=result.ticket,
        resume_plan=result.resume_plan,
    )


def _placeholder(approval: Approval) -> VoteOutcome:
    return VoteOutcome(accepted=True, code="vote_counted", reason="", approval_id=approval.id)


def _card(session: Session, ctx: Ctx, approval: Approval, votes: list[Vote]) -> None:
    emit(
        session,
        ctx,
        "approval_updated",
        {
            "approval_id": approval.id,
            "state": approval.state,
            "quorum": approval.quorum,
            "approvals": sum(1 for v in votes if v.choice == VoteChoice.APPROVE.value),
            "votes": [{"voter": v.voter, "choice": v.choice, "reason": v.reason} for v in votes],
            "decided_by": approval.decided_by,
            "reason": approval.reason,
        },
        step_id=approval.step_id,
    )


def _admissible(
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    approval: Approval,
    *,
    plan: Plan,
    step: Step | None,
    voter: str,
    votes: list[Vote],
) -> None:
    """Raise _Refused unless ``voter`` may vote on ``approval`` now."""
    if approval.state != ApprovalState.PENDING.value:
        raise _Refused(
            "approval_decided",
            f"This approval is already {approval.state}; the button no longer works.",
        )
    if ctx.now >= approval.expires_at:
        expire(session, ctx, approval, plan)
        raise _Refused("approval_expired", "This approval expired; the step did not run.")
    if is_final(plan) or plan.version != approval.plan_version:
        raise _Refused(
            "plan_changed",
            f"The plan changed since this card was posted (now {plan.status}, "
            f"version {plan.version}); this approval no longer applies.",
        )
    if step is not None and step.args_hash != approval.args_hash:
        raise _Refused(
            "args_changed",
            "The step's arguments changed since this card was "
            "posted; this approval no longer applies.",
        )
    if not check_fresh(session, ctx, plan, rt=rt):
        raise _Refused("plan_stale", plan.status_reason)
    decision = Decision(
        verdict=Verdict.REQUIRE_APPROVAL,
        code="stored",
        reason=approval.reason or "approval",
        risk=Risk(step.risk) if step else Risk.MEDIUM,
        quorum=approval.quorum,
        exclude_requester=approval.exclude_requester,
        rule_id="approval-record",
    )
    eligibility = eligible_voter(
        decision, voter=voter, requester=approval.requester, approvers=rt.approvers
    )
    if not eligibility.counts:
        raise _Refused(eligibility.code, eligibility.reason)
    if any(v.voter == voter for v in votes):
        raise _Refused("already_voted", "Your vote on this step was already counted.")


def _approve(
    session: Session, ctx: Ctx, rt: Runtime, approval: Approval, *, plan: Plan, step: Step | None
) -> VoteResult:
    set_approval(approval, ApprovalState.APPROVED)
    approval.decided_at = ctx.now
    session.add(approval)
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
        session.add(plan)
        return VoteResult(_placeholder(approval), resume_plan=plan.id)
    ticket = start_step(session, replace(ctx, role=Role.EXECUTOR), rt, plan, step)
    return VoteResult(_placeholder(approval), ticket=ticket)


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
    session.add(approval)
    if step is not None:
        set_step(step, StepStatus.REJECTED)
        step.error_code = "rejected"
        step.error = f"Rejected by {voter}" + (f": {reason}" if reason else "")
        session.add(step)
    what = f"'{step.title}'" if step else "continuing past the soft budget"
    why = (
        f"Rejected by <@{voter}>: {what}"
        + (f" ({reason})" if reason else "")
        + ". The plan is halted."
    )
    _card(session, ctx, approval, votes)
    end_plan(session, ctx, plan, PlanStatus.HALTED, reason=why, code="rejected")
    return VoteResult(
        _outcome(
            approval,
            votes,
            code="vote_counted",
            reason="Rejected: the plan is halted.",
            accepted=True,
        )
    )


def expire(session: Session, ctx: Ctx, approval: Approval, plan: Plan) -> None:
    """Expire ``approval`` and halt its plan (the step never runs without fresh approval)."""
    set_approval(approval, ApprovalState.EXPIRED)
    approval.decided_at = ctx.now
    session.add(approval)
    step = session.get(Step, approval.step_id) if approval.step_id else None
    if step is not None and step.status == StepStatus.AWAITING_APPROVAL.value:
        set_step(step, StepStatus.SKIPPED)
        step.error_code = "approval_expired"
        step.error = "approval expired"
        session.add(step)
    audit(
        session,
        ctx,
        "approval_expired",
        step_id=approval.step_id,
        nonce=approval.nonce,
        role=Role.AUDITOR,
    )
    _card(session, ctx, approval, _voters(session, approval.id))
    if not is_final(plan):
        what = f"'{step.title}'" if step else "continuing past the soft budget"
        end_plan(
            session,
            ctx,
            plan,
            PlanStatus.HALTED,
            code="approval_expired",
            reason=f"No decision on {what} before the approval expired; the plan stopped.",
        )


def expire_due(session: Session, base: Ctx) -> int:
    """Expire every pending approval past its expiry; returns how many."""
    due = list(
        session.exec(
            select(Approval)
            .where(
                Approval.state == ApprovalState.PENDING.value, col(Approval.expires_at) <= base.now
            )
            .with_for_update(skip_locked=True)
        )
    )
    for approval in due:
        plan = lock_plan(session, approval.plan_id)
        expire(session, ctx_for(plan, base), approval, plan)
    return len(due)
