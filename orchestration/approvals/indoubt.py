"""Answers on an in-doubt card: it ran (go on), run it again, or stop the plan.

The card is an approval record of purpose ``in_doubt`` with the step's own quorum and
requester rule. "It ran" and "run it again" each need that quorum of the same answer; "stop"
is a veto like a rejection: one eligible person, the requester included, stops the plan at
the click (the step stays in doubt: nobody learned what happened to it).
"""

from dataclasses import replace

from sqlmodel import Session

from common import Role
from orchestration.approvals.common import VoteResult, card, outcome
from orchestration.enums import ApprovalState, PlanStatus, StepStatus, VoteChoice
from orchestration.lifecycle import end_plan, set_approval, set_plan, set_step
from orchestration.models import Approval, Plan, Step, Vote
from orchestration.records import Ctx, audit, emit
from orchestration.runtime import Runtime
from orchestration.stepflow import start_step

ANSWERS = frozenset({VoteChoice.RAN, VoteChoice.RERUN, VoteChoice.REJECT})


def answer_in_doubt(
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    approval: Approval,
    *,
    plan: Plan,
    step: Step,
    voter: str,
    choice: VoteChoice,
    votes: list[Vote],
) -> VoteResult:
    """Count one admissible answer; settle the step once its quorum of one answer is met."""
    if choice is VoteChoice.REJECT:
        return _stop(session, ctx, approval, plan=plan, step=step, voter=voter, votes=votes)
    same = [v.voter for v in votes if v.choice == choice.value]
    if len(same) < approval.quorum:
        card(session, ctx, approval, votes)
        left = approval.quorum - len(same)
        return VoteResult(
            outcome(
                approval,
                votes,
                code="vote_counted",
                reason=f"Your answer counts ({len(same)}/{approval.quorum}); "
                f"waiting for {left} more of the same answer.",
                accepted=True,
            )
        )
    set_approval(approval, ApprovalState.APPROVED)
    approval.decided_at = ctx.now
    approval.decided_by = voter
    session.add(approval)
    audit(
        session,
        ctx,
        "in_doubt_settled",
        step_id=step.id,
        nonce=approval.nonce,
        role=Role.AUDITOR,
        detail={"answer": choice.value, "by": same},
    )
    card(session, ctx, approval, votes, choice=choice)
    if choice is VoteChoice.RERUN:
        ticket = start_step(session, replace(ctx, role=Role.EXECUTOR), rt, plan, step)
        return VoteResult(
            outcome(
                approval,
                votes,
                code="vote_counted",
                reason="Settled: the step runs again now, under the same idempotency key.",
                accepted=True,
            ),
            ticket=ticket,
        )
    set_step(step, StepStatus.SUCCEEDED)
    step.error_code = None
    step.error = None
    step.result = {"settled_by": same, "answer": "it ran"}
    step.finished_at = ctx.now
    session.add(step)
    emit(
        session,
        ctx,
        "step_finished",
        {
            "title": step.title,
            "tool_action": step.tool_action,
            "status": step.status,
            "summary": "Settled by people: it ran. The plan goes on.",
            "attempts": step.attempts,
            "kind": step.kind,
        },
        step_id=step.id,
    )
    if plan.status == PlanStatus.WAITING.value:
        set_plan(plan, PlanStatus.RUNNING, "an in-doubt step was settled")
        session.add(plan)
    return VoteResult(
        outcome(
            approval,
            votes,
            code="vote_counted",
            reason="Settled: it ran; the plan goes on.",
            accepted=True,
        ),
        resume_plan=plan.id,
    )


def _stop(
    session: Session,
    ctx: Ctx,
    approval: Approval,
    *,
    plan: Plan,
    step: Step,
    voter: str,
    votes: list[Vote],
) -> VoteResult:
    set_approval(approval, ApprovalState.REJECTED)
    approval.decided_at = ctx.now
    approval.decided_by = voter
    session.add(approval)
    card(session, ctx, approval, votes)
    end_plan(
        session,
        ctx,
        plan,
        PlanStatus.HALTED,
        reason=f"<@{voter}> stopped the plan while '{step.title}' was in doubt; the step stays "
        "in doubt.",
        code="in_doubt_stopped",
    )
    return VoteResult(
        outcome(
            approval,
            votes,
            code="vote_counted",
            reason="Stopped: the plan is halted; the step stays in doubt.",
            accepted=True,
        )
    )
