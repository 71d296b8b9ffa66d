"""Step leases: renewed by the process that runs a step, checked when a plan ends around it."""

from collections.abc import Collection
from datetime import datetime

from sqlmodel import Session, col, select, update

from common import Role
from orchestration.enums import StepStatus
from orchestration.lifecycle import set_step
from orchestration.models import Plan, Step
from orchestration.records import Ctx, audit, emit
from orchestration.recovery.respond import after_in_doubt
from orchestration.rollout import guard
from orchestration.statemachine import PLAN_FINAL

_FINAL = [s.value for s in PLAN_FINAL]


def renew_held(
    session: Session, *, owner: str, step_ids: Collection[str], until: datetime
) -> list[str]:
    """Extend the leases ``owner`` holds on ``step_ids``; returns the ids it must stop now.

    A step must stop when it is no longer ``owner``'s running step (another replica took it
    over after the lease lapsed) or when its plan ended (the incident was cancelled or
    resolved elsewhere).
    """
    if not step_ids:
        return []
    rows = session.exec(
        select(Step.id, Step.status, Step.lease_owner, Plan.status)
        .join(Plan, col(Plan.id) == col(Step.plan_id))
        .where(col(Step.id).in_(list(step_ids)))
    ).all()
    keep = [
        step_id
        for step_id, status, lease_owner, plan_status in rows
        if status == StepStatus.RUNNING.value and lease_owner == owner and plan_status not in _FINAL
    ]
    if keep:
        session.exec(
            update(Step)
            .where(
                col(Step.id).in_(keep),
                col(Step.lease_owner) == owner,
                col(Step.status) == StepStatus.RUNNING.value,
            )
            .values(lease_until=until)
        )
    return sorted(set(step_ids) - set(keep))


def stop_running(session: Session, ctx: Ctx, plan: Plan, *, owner: str) -> list[str]:
    """The running steps of a plan that just ended; returns the ids ``owner`` must stop.

    A step held by a live replica is stopped by that replica (its next lease renewal sees the
    plan ended); one whose holder is gone cannot be stopped and becomes in doubt (a read-only
    one changed nothing and is simply cancelled).
    """
    mine = []
    running = session.exec(
        select(Step).where(Step.plan_id == plan.id, Step.status == StepStatus.RUNNING.value)
    )
    for step in running:
        audit(
            session,
            ctx,
            "step_stop_requested",
            step_id=step.id,
            role=Role.AUDITOR,
            detail={"owner": step.lease_owner, "title": step.title},
        )
        if step.lease_owner == owner:
            mine.append(step.id)
        elif step.lease_until is None or step.lease_until < ctx.now:
            settle_orphan(session, ctx, step, why="the plan ended while its replica was gone")
    return mine


def settle_orphan(session: Session, ctx: Ctx, step: Step, *, why: str) -> None:
    """A running step of an ended plan whose process is gone: cancelled, or in doubt."""
    owner = step.lease_owner
    step.lease_owner = None
    step.lease_until = None
    if step.read_only:
        set_step(step, StepStatus.CANCELLED)
        step.error_code = "cancelled"
        step.error = f"Stopped: {why}; it was read-only, so nothing changed."
        session.add(step)
        return
    set_step(step, StepStatus.IN_DOUBT)
    step.error_code = "in_doubt"
    step.error = f"In doubt: {why}; nobody knows whether it took effect."
    session.add(step)
    guard.after_failure(session, ctx, [step])
    audit(
        session,
        ctx,
        "step_in_doubt",
        step_id=step.id,
        code="in_doubt",
        role=Role.AUDITOR,
        detail={"owner": owner, "why": why},
    )
    emit(
        session,
        ctx,
        "step_in_doubt",
        {
            "title": step.title,
            "tool_action": step.tool_action,
            "owner": owner,
            "started_at": step.started_at.isoformat() if step.started_at else None,
            "why": why,
        },
        step_id=step.id,
    )
    after_in_doubt(session, ctx, step)
