"""The optional reason a rejecter adds after the click that already rejected."""

from sqlmodel import Session

from common import Role
from orchestration.approvals.common import (
    card,
    clean_reason,
    halt_reason,
    lock,
    outcome,
    step_error,
    voters,
)
from orchestration.enums import ApprovalState, VoteChoice
from orchestration.lifecycle import (
    ctx_for,
)
from orchestration.models import Approval, Step, Vote
from orchestration.records import Ctx, audit, emit
from orchestration.views import VoteOutcome


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
    locked = lock(session, nonce)
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
    votes = voters(session, approval.id)
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
        return outcome(approval, votes, code=code, reason=why, accepted=False)
    assert mine is not None  # _reason_refusal refuses anyone without a vote
    step = session.get(Step, approval.step_id) if approval.step_id else None
    mine.reason = text
    approval.reason = text
    session.add_all([mine, approval])
    if step is not None:
        step.error = step_error(voter, text)
        session.add(step)
    plan.status_reason = halt_reason(voter, step, text)
    session.add(plan)
    audit(
        session,
        ctx,
        "rejection_reason_added",
        step_id=approval.step_id,
        nonce=nonce,
        detail={"reason": text},
    )
    card(session, ctx, approval, votes)
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
    return outcome(
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
