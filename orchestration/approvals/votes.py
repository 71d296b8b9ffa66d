"""Casting a vote: admissibility, quorum, the grant it issues, the rejection that halts."""

from dataclasses import replace

from sqlmodel import Session

from common import Risk, Role
from orchestration.approvals.common import (
    Refused,
    VoteResult,
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
from orchestration.enums import ApprovalPurpose, ApprovalState, PlanStatus, StepStatus, VoteChoice
from orchestration.lifecycle import (
    check_fresh,
    ctx_for,
    end_plan,
    is_final,
    set_approval,
    set_plan,
    set_step,
)
from orchestration.models import Approval, Plan, Step, Vote
from orchestration.records import Ctx, audit, emit
from orchestration.runtime import Runtime
from orchestration.stepflow import start_step
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


_STEP_CHOICES = frozenset({VoteChoice.APPROVE, VoteChoice.REJECT})


def _admissible(
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    approval: Approval,
    *,
    plan: Plan,
    step: Step | None,
    voter: str,
    choice: VoteChoice,
    votes: list[Vote],
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
    if not check_fresh(session, ctx, plan, rt=rt):
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
        return VoteResult(placeholder(approval), resume_plan=plan.id)
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
