"""What every kind of vote shares: locking, the stored votes, outcomes and the card."""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from orchestration.enums import VoteChoice
from orchestration.executor import Ticket
from orchestration.knowledge import row_count
from orchestration.lifecycle import KNOWLEDGE_ROWS
from orchestration.models import Approval, Plan, Step, Vote
from orchestration.records import Ctx, emit
from orchestration.rows import ApprovalRow, StepRow
from orchestration.views import VoteOutcome

REASON_MAX_CHARS = 500


@dataclass(frozen=True)
class VoteResult:
    """The outcome for the voter, plus what to run or resume afterwards."""

    outcome: VoteOutcome
    ticket: Ticket | None = None
    resume_plan: str | None = None


@dataclass(frozen=True)
class VoteRow:
    """A stored vote as the Core path reads it."""

    voter: str
    choice: str
    reason: str


Votes = Sequence[Vote | VoteRow]


class Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def voters(session: Session, approval_id: str) -> list[Vote]:
    return list(
        session.exec(select(Vote).where(Vote.approval_id == approval_id).order_by(col(Vote.id)))
    )


def outcome(
    approval: Approval | ApprovalRow, votes: Votes, *, code: str, reason: str, accepted: bool
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


def lock(session: Session, nonce: str) -> tuple[Plan, Approval] | None:
    """The approval ``nonce`` names and its plan, both row-locked: the plan's row first."""
    found = session.exec(
        select(Plan, row_count())
        .join(Approval, col(Approval.plan_id) == col(Plan.id))
        .where(Approval.nonce == nonce)
        .with_for_update(of=Plan)
    ).first()
    if found is None:
        return None
    plan, count = found
    session.info[KNOWLEDGE_ROWS] = count
    approval = session.exec(select(Approval).where(Approval.nonce == nonce).with_for_update()).one()
    return plan, approval


def placeholder(approval: Approval | ApprovalRow) -> VoteOutcome:
    return VoteOutcome(accepted=True, code="vote_counted", reason="", approval_id=approval.id)


def card(
    session: Session,
    ctx: Ctx,
    approval: Approval | ApprovalRow,
    votes: Votes,
    *,
    choice: VoteChoice | None = None,
) -> None:
    """Queue the card's update after a vote (``choice``: the answer that decided it)."""
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
            "choice": choice.value if choice else None,
        },
        step_id=approval.step_id,
    )


def clean_reason(reason: str) -> str:
    """A typed reason as stored: trimmed, at most :data:`REASON_MAX_CHARS` characters."""
    return reason.strip()[:REASON_MAX_CHARS]


def step_error(voter: str, reason: str) -> str:
    return f"Rejected by {voter}" + (f": {reason}" if reason else "")


def halt_reason(voter: str, step: Step | StepRow | None, reason: str) -> str:
    what = f"'{step.title}'" if step else "continuing past the soft budget"
    why = f"<@{voter}> rejected {what}; the plan is halted."
    return f"{why} Reason: {reason}" if reason else why
