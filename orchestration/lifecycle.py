"""Plan-level transitions shared by the step and approval units of work."""

from sqlmodel import Session, col, delete, select

from common import Role
from orchestration import alertgroups
from orchestration.enums import ApprovalState, PlanStatus, SpanKind, StepStatus
from orchestration.errors import NotFound
from orchestration.knowledge import pinned_versions, row_count, stale_pins
from orchestration.models import Approval, Plan, Step, TaskMemory
from orchestration.records import Ctx, audit, emit, span
from orchestration.rows import ApprovalRow, PlanRow, StepRow
from orchestration.runtime import Runtime
from orchestration.statemachine import (
    APPROVAL_TRANSITIONS,
    PLAN_FINAL,
    PLAN_TRANSITIONS,
    STEP_TRANSITIONS,
    transition,
)

OPEN_STEP_STATES = (StepStatus.PENDING, StepStatus.AWAITING_APPROVAL)
# session.info key: the knowledge row count read with the plan (see knowledge.current).
KNOWLEDGE_ROWS = "opsgate_knowledge_rows"


def ctx_for(
    plan: Plan | PlanRow, base: Ctx, *, actor: str | None = None, role: Role | None = None
) -> Ctx:
    """A context bound to ``plan`` (its incident, channel and correlation id)."""
    return Ctx(
        correlation_id=plan.correlation_id,
        now=base.now,
        actor=actor or base.actor,
        role=role or base.role,
        incident_id=plan.incident_id,
        plan_id=plan.id,
        channel=plan.channel,
    )


def lock_plan(session: Session, plan_id: str) -> Plan:
    """Load a plan, locking its row (PostgreSQL) so one transaction advances it at a time."""
    found = session.exec(
        select(Plan, row_count()).where(Plan.id == plan_id).with_for_update(of=Plan)
    ).first()
    if found is None:
        raise NotFound(f"no plan {plan_id}")
    plan, count = found
    session.info[KNOWLEDGE_ROWS] = count
    return plan


def steps_of(session: Session, plan_id: str) -> list[Step]:
    """The plan's steps in order."""
    return list(
        session.exec(select(Step).where(Step.plan_id == plan_id).order_by(col(Step.position)))
    )


def set_step(step: Step | StepRow, target: StepStatus) -> None:
    """Move ``step`` to ``target`` through the transitions table."""
    step.status = transition(STEP_TRANSITIONS, StepStatus(step.status), target).value


def set_plan(plan: Plan | PlanRow, target: PlanStatus, reason: str = "") -> None:
    """Move ``plan`` to ``target`` through the transitions table."""
    plan.status = transition(PLAN_TRANSITIONS, PlanStatus(plan.status), target).value
    if reason:
        plan.status_reason = reason


def set_approval(approval: Approval | ApprovalRow, target: ApprovalState) -> None:
    """Move ``approval`` to ``target`` through the transitions table."""
    approval.state = transition(APPROVAL_TRANSITIONS, ApprovalState(approval.state), target).value


def skip_open_steps(session: Session, ctx: Ctx, plan: Plan, *, reason: str) -> None:
    """Skip every step not yet run and cancel its pending approvals.

    The caller holds ``plan``'s row lock; the approvals are locked after it, never before:
    plan first, then approvals is the one lock order (``approvals.cast_vote`` keeps it too).
    """
    for step in steps_of(session, plan.id):
        if step.status in OPEN_STEP_STATES:
            set_step(step, StepStatus.SKIPPED)
            step.error = step.error or reason
            session.add(step)
    for approval in session.exec(
        select(Approval)
        .where(Approval.plan_id == plan.id, Approval.state == ApprovalState.PENDING.value)
        .with_for_update()
    ):
        set_approval(approval, ApprovalState.CANCELLED)
        approval.decided_at = ctx.now
        approval.reason = reason
        session.add(approval)
        emit(
            session,
            ctx,
            "approval_updated",
            {"approval_id": approval.id, "state": approval.state, "reason": reason},
            step_id=approval.step_id,
        )


def end_plan(
    session: Session,
    ctx: Ctx,
    plan: Plan,
    status: PlanStatus,
    *,
    reason: str,
    code: str,
    escalate: bool = False,
) -> None:
    """Finish ``plan``: skip what is left, prune its task memory, close its span, tell humans."""
    skip_open_steps(session, ctx, plan, reason=reason)
    set_plan(plan, status, reason)
    plan.finished_at = ctx.now
    session.add(plan)
    session.exec(delete(TaskMemory).where(col(TaskMemory.plan_id) == plan.id))
    span(
        session,
        ctx,
        kind=SpanKind.PLAN,
        name=f"plan {plan.runbook_id} v{plan.version}",
        started_at=plan.created_at,
        ended_at=ctx.now,
        status=status.value,
        attributes={"plan_hash": plan.plan_hash, "reason": reason, "spent_usd": plan.spent_usd},
        span_id=plan.id[:16],
    )
    audit(
        session,
        ctx,
        "plan_finished",
        code=code,
        role=Role.AUDITOR,
        detail={"status": status.value, "reason": reason, "spent_usd": plan.spent_usd},
    )
    emit(
        session,
        ctx,
        "plan_finished",
        {
            "status": status.value,
            "reason": reason,
            "code": code,
            "spent_usd": plan.spent_usd,
            "budget_usd": plan.budget_usd,
        },
    )
    if escalate:
        audit(
            session, ctx, "plan_escalated", code=code, role=Role.AUDITOR, detail={"reason": reason}
        )
        emit(session, ctx, "escalation", {"reason": reason, "code": code})
    alertgroups.after_plan_end(session, ctx, plan)


def stale_knowledge(session: Session, plan: Plan | PlanRow, rt: Runtime) -> list[str]:
    """The plan's pins that are no longer the stored latest versions.

    Checked against the runtime's in-memory map when the unit read the knowledge row count
    with the plan row (every hot path does), else with one query.
    """
    count = session.info.get(KNOWLEDGE_ROWS)
    if count is not None:
        return rt.versions.stale(session, plan.knowledge_pins, count)
    return stale_pins(plan.knowledge_pins, pinned_versions(session, plan.knowledge_pins))


def check_fresh(session: Session, ctx: Ctx, plan: Plan, *, rt: Runtime) -> bool:
    """False (and the plan invalidated, its stale_context playbook applied) when a pinned
    knowledge version changed."""
    changed = stale_knowledge(session, plan, rt)
    if not changed:
        return True
    reason = (
        f"Knowledge this plan was built from changed since it was proposed ({', '.join(changed)}); "
        "the plan is invalidated and nothing more of it will run. Open the incident again for a "
        "fresh plan."
    )
    end_plan(session, ctx, plan, PlanStatus.STALE, reason=reason, code="plan_stale")
    from orchestration.recovery import after_stale  # noqa: PLC0415 - recovery imports lifecycle

    after_stale(session, ctx, rt, plan)
    return False


def is_final(plan: Plan | PlanRow) -> bool:
    """True when ``plan`` can no longer change (or is blocked)."""
    return PlanStatus(plan.status) in PLAN_FINAL or plan.status == PlanStatus.BLOCKED.value
