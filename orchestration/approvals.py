"""Votes on approval records: the only path from a human click to a grant.

A nonce names one approval record. ``cast_vote`` refuses, with a stable code and a plain
reason, every vote that must not count: unknown nonce, decided or expired record, a plan that
changed or went stale, changed args, a voter who may not vote (policy: ``eligible_voter`` for
approvals, ``eligible_rejecter`` for rejections), a second vote by the same person. One
eligible rejection decides at once: a veto needs no quorum, so the requester may cast it too.
``record_reason`` later attaches the rejecter's optional reason to that decided record.

Reaching quorum is atomic: the plan's row and then the record's are locked (``SELECT ... FOR
UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so of two simultaneous final votes
exactly one issues the grant and starts the step. Plan first, approvals second is the one lock
order of every unit of work that locks both (``lifecycle.skip_open_steps`` too); the reverse
order deadlocked a final vote against ``close_incident``.
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

REASON_MAX_CHARS = 500


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


def _lock(session: Session, nonce: str) -> tuple[Plan, Approval] | None:
    """The approval ``nonce`` names and its plan, both row-locked: the plan's row first."""
    plan = session.exec(
        select(Plan)
        .join(Approval, col(Approval.plan_id) == col(Plan.id))
        .where(Approval.nonce == nonce)
        .with_for_update(of=Plan)
    ).first()
    if plan is None:
        return None
    approval = session.exec(select(Approval).where(Approval.nonce == nonce).with_for_update()).one()
    return plan, approval


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
    locked = _lock(session, nonce)
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
    votes = _voters(session, approval.id)
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
    choice: VoteChoice,
    votes: list[Vote],
) -> None:
    """Raise _Refused unless ``voter`` may cast ``choice`` on ``approval`` now."""
    if approval.state == ApprovalState.REJECTED.value and approval.decided_by:
        raise _Refused(
            "approval_decided",
            f"<@{approval.decided_by}> already rejected this step; the button no longer works.",
        )
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
    if not check_fresh(session, ctx, plan):
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
    policy = eligible_rejecter if choice is VoteChoice.REJECT else eligible_voter
    eligibility = policy(
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
    approval.reason = reason  # from here on: why it was rejected (the card's final line)
    session.add(approval)
    if step is not None:
        set_step(step, StepStatus.REJECTED)
        step.error_code = "rejected"
        step.error = _step_error(voter, reason)
        session.add(step)
    _card(session, ctx, approval, votes)
    end_plan(
        session,
        ctx,
        plan,
        PlanStatus.HALTED,
        reason=_halt_reason(voter, step, reason),
        code="rejected",
    )
    return VoteResult(
        _outcome(
            approval,
            votes,
            code="vote_counted",
            reason="Rejected: the step will not run and the plan is halted.",
            accepted=True,
        )
    )


def clean_reason(reason: str) -> str:
    """A typed reason as stored: trimmed, at most :data:`REASON_MAX_CHARS` characters."""
    return reason.strip()[:REASON_MAX_CHARS]


def _step_error(voter: str, reason: str) -> str:
    return f"Rejected by {voter}" + (f": {reason}" if reason else "")


def _halt_reason(voter: str, step: Step | None, reason: str) -> str:
    what = f"'{step.title}'" if step else "continuing past the soft budget"
    why = f"<@{voter}> rejected {what}; the plan is halted."
    return f"{why} Reason: {reason}" if reason else why


def record_reason(
    session: Session, base: Ctx, *, nonce: str, voter: str, reason: str
) -> VoteOutcome:
    """Attach ``reason`` to the rejection ``voter`` cast on ``nonce``'s approval, or refuse.

    The rejection itself was counted at the click; this only adds detail to that record (the
    vote, the approval, the step's error, the plan's status reason) and tells the card and
    the thread. Refused: an unknown nonce, an empty reason, anyone but the rejecter, an
    approval that was not rejected, a reason already given.
    """
    text = clean_reason(reason)
    locked = _lock(session, nonce)
    if locked is None:
        audit(
            session,
            base,
            "rejection_reason_refused",
            nonce=nonce,
            actor=voter,
            role=Role.HUMAN,
            code="nonce_unknown",
        )
        return VoteOutcome(
            accepted=False,
            code="nonce_unknown",
            reason="This dialog is not linked to any approval.",
        )
    plan, approval = locked
    ctx = ctx_for(plan, base, actor=voter, role=Role.HUMAN)
    votes = _voters(session, approval.id)
    mine = next((v for v in votes if v.voter == voter), None)
    refused = _reason_refusal(approval, mine, voter=voter, text=text)
    if refused is not None:
        code, why = refused
        audit(
            session,
            ctx,
            "rejection_reason_refused",
            step_id=approval.step_id,
            nonce=nonce,
            code=code,
            detail={"reason": why, "text": text},
        )
        return _outcome(approval, votes, code=code, reason=why, accepted=False)
    assert mine is not None  # _reason_refusal refuses anyone without a vote
    step = session.get(Step, approval.step_id) if approval.step_id else None
    mine.reason = text
    approval.reason = text
    session.add_all([mine, approval])
    if step is not None:
        step.error = _step_error(voter, text)
        session.add(step)
    plan.status_reason = _halt_reason(voter, step, text)
    session.add(plan)
    audit(
        session,
        ctx,
        "rejection_reason_added",
        step_id=approval.step_id,
        nonce=nonce,
        detail={"reason": text},
    )
    _card(session, ctx, approval, votes)
    emit(
        session,
        ctx,
        "rejection_reason_added",
        {
            "approval_id": approval.id,
            "voter": voter,
            "reason": text,
            "purpose": approval.purpose,
            "title": step.title if step else "",
        },
        step_id=approval.step_id,
    )
    return _outcome(
        approval, votes, code="reason_added", reason="Your reason is on record.", accepted=True
    )


def _reason_refusal(
    approval: Approval, mine: Vote | None, *, voter: str, text: str
) -> tuple[str, str] | None:
    """Why ``voter`` may not attach ``text`` to ``approval`` (code, plain words), or None."""
    if not text:
        return "reason_empty", "Type a reason, or close this dialog: your rejection already counts."
    if approval.state != ApprovalState.REJECTED.value:
        return (
            "not_rejected",
            f"This step was not rejected (it is {approval.state}); there is no rejection to "
            "add a reason to.",
        )
    if mine is None or mine.choice != VoteChoice.REJECT.value or approval.decided_by != voter:
        return "not_your_rejection", "Only the person who rejected this step can add its reason."
    if mine.reason:
        return "reason_already_given", "Your reason is already on record; it cannot be changed."
    return None


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
    """Expire every pending approval past its expiry; returns how many.

    Plan row first, then the approval's (the one lock order); a plan another unit of work
    holds is skipped: that unit decides the approval, or the next run expires it.
    """
    due = session.exec(
        select(Approval.id, Approval.plan_id).where(
            Approval.state == ApprovalState.PENDING.value, col(Approval.expires_at) <= base.now
        )
    ).all()
    expired = 0
    for approval_id, plan_id in due:
        plan = session.exec(
            select(Plan).where(Plan.id == plan_id).with_for_update(skip_locked=True)
        ).first()
        if plan is None:
            continue
        approval = session.exec(
            select(Approval).where(Approval.id == approval_id).with_for_update()
        ).one()
        # Re-read under the locks: a vote or the plan's end may have decided it meanwhile.
        if approval.state != ApprovalState.PENDING.value or approval.expires_at > base.now:
            continue
        expire(session, ctx_for(plan, base), approval, plan)
        expired += 1
    return expired
