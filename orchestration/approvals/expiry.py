"""Approvals that nobody decided in time: expired, and their plans halted."""

from sqlmodel import Session, col, select

from common import Role
from orchestration.approvals.common import (
    card,
    voters,
)
from orchestration.enums import ApprovalState, PlanStatus, StepStatus
from orchestration.lifecycle import (
    ctx_for,
    end_plan,
    is_final,
    set_approval,
    set_step,
)
from orchestration.models import Approval, Plan, Step
from orchestration.records import Ctx, audit


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
    card(session, ctx, approval, voters(session, approval.id))
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
