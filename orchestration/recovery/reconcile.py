"""The reconciler: takes over running steps whose lease lapsed, on any replica.

Read-only and idempotent steps run again under the same idempotency key. Any other step is
**in doubt**: nothing runs it again by itself. If the runbook declares a check (a read-only
probe), it runs first; then the thread gets a card saying what is known and asking what
happened: it ran (go on), run it again, or stop the plan, with the step's own quorum.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from common import Role, args_hash
from orchestration.authority import granted_credentials
from orchestration.enums import ApprovalPurpose, PlanStatus, SpanKind, StepStatus
from orchestration.executor import Outcome, Ticket, idempotency_key
from orchestration.grants import issue_grant, issue_scoped_grant
from orchestration.lifecycle import ctx_for, is_final, lock_plan, set_plan, set_step
from orchestration.models import AuditEvent, Plan, Span, Step
from orchestration.records import Ctx, audit, emit, span
from orchestration.recovery.leases import settle_orphan
from orchestration.recovery.respond import after_in_doubt
from orchestration.rollout import guard
from orchestration.runtime import Runtime
from orchestration.stepflow import open_approval, ticket_for

_TAKEN_OVER = [StepStatus.RUNNING.value, StepStatus.IN_DOUBT.value]


@dataclass(frozen=True)
class CheckJob:
    """A read-only check to run before asking humans about an in-doubt step."""

    plan_id: str
    step_id: str
    ticket: Ticket
    title: str
    owner: str | None


@dataclass(frozen=True)
class Reconciled:
    """What one pass took over: steps to run again, checks to run, steps now in doubt."""

    reruns: tuple[Ticket, ...] = ()
    checks: tuple[CheckJob, ...] = ()
    in_doubt: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        """Steps taken over (a step with a check is one of ``in_doubt``)."""
        return len(self.reruns) + len(self.in_doubt)


def claim_lapsed(session: Session, base: Ctx, rt: Runtime, *, limit: int = 20) -> Reconciled:
    """Take over up to ``limit`` steps whose lease lapsed (running, or in doubt without a card).

    Locks each plan, then its step, and re-checks the lease under the lock, so two replicas
    reconciling at once take each step over once.
    """
    candidates = session.exec(
        select(Step.id, Step.plan_id)
        .where(col(Step.status).in_(_TAKEN_OVER), col(Step.lease_until) < base.now)
        .order_by(col(Step.lease_until))
        .limit(limit)
    ).all()
    reruns: list[Ticket] = []
    checks: list[CheckJob] = []
    doubted: list[str] = []
    for step_id, plan_id in candidates:
        plan = lock_plan(session, plan_id)
        step = session.exec(select(Step).where(Step.id == step_id).with_for_update()).first()
        if step is None or step.status not in _TAKEN_OVER:
            continue
        if step.lease_until is None or step.lease_until >= base.now:
            continue  # renewed or taken over by another replica meanwhile
        ctx = ctx_for(plan, base, role=Role.AUDITOR)
        if step.status == StepStatus.RUNNING.value:
            audit(
                session,
                ctx,
                "step_lease_lapsed",
                step_id=step.id,
                detail={
                    "owner": step.lease_owner,
                    "lease_until": step.lease_until,
                    "started_at": step.started_at,
                },
            )
        if is_final(plan):
            if step.status == StepStatus.RUNNING.value:
                settle_orphan(session, ctx, step, why="its replica stopped after the plan ended")
                doubted.append(step.id)
            else:
                step.lease_until = None
                session.add(step)
            continue
        if step.status == StepStatus.RUNNING.value and (step.read_only or step.idempotent):
            reruns.append(_rerun(session, ctx, rt, plan, step))
            continue
        job = _doubt(session, ctx, rt, plan, step)
        if job is not None:
            checks.append(job)
        doubted.append(step.id)
    return Reconciled(reruns=tuple(reruns), checks=tuple(checks), in_doubt=tuple(doubted))


def _rerun(session: Session, ctx: Ctx, rt: Runtime, plan: Plan, step: Step) -> Ticket:
    """Run a read-only or idempotent step again here, under the same idempotency key."""
    previous = step.lease_owner
    step.lease_owner = rt.replica_id
    step.lease_until = ctx.now + timedelta(seconds=rt.config.execution.lease_s)
    step.attempts += 1
    step.started_at = ctx.now
    session.add(step)
    credentials = granted_credentials(
        session, rt, plan_id=plan.id, tool_action=step.tool_action, args=step.args
    )
    grant = issue_grant(
        session,
        ctx,
        step=step,
        signer=rt.signer,
        ttl_s=rt.config.execution.grant_ttl_s,
        credentials=credentials,
    )
    why = "read-only" if step.read_only else "idempotent"
    audit(
        session,
        ctx,
        "step_rerun",
        step_id=step.id,
        detail={"previous_owner": previous, "owner": rt.replica_id, "why": why},
    )
    emit(
        session,
        ctx,
        "step_rerun",
        {"title": step.title, "previous_owner": previous, "why": why},
        step_id=step.id,
    )
    return ticket_for(step, grant, plan, session=session)


def _doubt(session: Session, ctx: Ctx, rt: Runtime, plan: Plan, step: Step) -> CheckJob | None:
    """Mark ``step`` in doubt; returns its check to run first, else posts the card now."""
    if step.status == StepStatus.RUNNING.value:
        owner = step.lease_owner
        set_step(step, StepStatus.IN_DOUBT)
        step.error_code = "in_doubt"
        step.error = (
            f"In doubt: its replica ({owner}) stopped while the call was in flight; nobody "
            "knows whether it took effect."
        )
        guard.after_failure(session, ctx, [step])
        audit(
            session,
            ctx,
            "step_in_doubt",
            step_id=step.id,
            code="in_doubt",
            detail={"owner": owner, "started_at": step.started_at},
        )
        after_in_doubt(session, ctx, step)
    else:  # in doubt already; whoever claimed it died before posting the card
        owner = _first_owner(session, step)
    if plan.status == PlanStatus.RUNNING.value:
        set_plan(plan, PlanStatus.WAITING, "a step is in doubt")
        session.add(plan)
    check = step.in_doubt_check or {}
    if check.get("tool"):
        step.lease_owner = rt.replica_id
        step.lease_until = ctx.now + timedelta(seconds=rt.config.execution.lease_s)
        session.add(step)
        tool_action = str(check["tool"])
        args = dict(check.get("args") or {})
        hashed = args_hash(tool_action, args)
        grant = issue_scoped_grant(
            session,
            ctx,
            step_id=step.id,
            tool_action=tool_action,
            args_hash=hashed,
            signer=rt.signer,
            ttl_s=rt.config.execution.grant_ttl_s,
            credentials=granted_credentials(
                session, rt, plan_id=plan.id, tool_action=tool_action, args=args
            ),
        )
        ticket = Ticket(
            step_id=step.id,
            tool_action=tool_action,
            args=args,
            idempotent=True,
            expect=check.get("expect"),
            grant=grant,
            correlation_id=plan.correlation_id,
            plan_id=plan.id,
        )
        title = str(check.get("title") or f"Check {step.title}")
        return CheckJob(plan_id=plan.id, step_id=step.id, ticket=ticket, title=title, owner=owner)
    post_in_doubt_card(session, ctx, rt, plan, step, check=None, owner=owner)
    return None


def _first_owner(session: Session, step: Step) -> str | None:
    """The replica that ran ``step`` when it went in doubt (from the audit trail)."""
    event = session.exec(
        select(AuditEvent)
        .where(AuditEvent.step_id == step.id, AuditEvent.event == "step_in_doubt")
        .order_by(col(AuditEvent.id))
        .limit(1)
    ).first()
    return None if event is None else event.detail.get("owner")


def record_check(session: Session, base: Ctx, rt: Runtime, job: CheckJob, outcome: Outcome) -> None:
    """Keep the check's answer in the trace and post the in-doubt card with it."""
    plan = lock_plan(session, job.plan_id)
    step = session.get(Step, job.step_id)
    if step is None or step.status != StepStatus.IN_DOUBT.value:
        return  # settled meanwhile (a late result, or humans)
    if step.lease_owner != rt.replica_id:
        return  # another replica took the card over
    ctx = ctx_for(plan, base, role=Role.RESEARCHER)
    summary = outcome.result.summary if outcome.result is not None else (outcome.error or "")
    answer = {
        "title": job.title,
        "tool_action": job.ticket.tool_action,
        "ok": outcome.succeeded,
        "summary": summary if outcome.check.ok else f"{summary}; {outcome.check.reason}",
    }
    for attempt in outcome.attempts:
        span(
            session,
            ctx,
            kind=SpanKind.TOOL_CALL,
            name=f"check {job.ticket.tool_action}",
            step_id=step.id,
            started_at=attempt.started_at,
            ended_at=attempt.ended_at,
            status="ok" if attempt.ok else (attempt.error_code or "failed"),
            attributes={"summary": attempt.summary, "in_doubt_check": True},
        )
    audit(session, ctx, "in_doubt_checked", step_id=step.id, detail=answer)
    if is_final(plan):
        step.lease_owner = None
        step.lease_until = None
        session.add(step)
        return
    post_in_doubt_card(session, ctx, rt, plan, step, check=answer, owner=job.owner)


def post_in_doubt_card(
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    plan: Plan,
    step: Step,
    *,
    check: dict[str, Any] | None,
    owner: str | None,
) -> None:
    """Ask humans what happened to ``step``: an approval record with the step's quorum."""
    step.lease_owner = None
    step.lease_until = None
    session.add(step)
    last = session.exec(
        select(Span)
        .where(Span.step_id == step.id, Span.kind == SpanKind.TOOL_CALL.value)
        .order_by(col(Span.started_at).desc())
        .limit(1)
    ).first()
    quorum = max(step.quorum, 1)
    open_approval(
        session,
        ctx,
        rt,
        plan,
        step=step,
        quorum=quorum,
        exclude_requester=step.exclude_requester,
        reason=(
            "Its replica stopped while the call was in flight; nobody knows whether it took "
            "effect. Say what happened."
        ),
        purpose=ApprovalPurpose.IN_DOUBT,
        extra={
            "in_doubt": {
                "owner": owner,
                "started_at": step.started_at.isoformat() if step.started_at else None,
                "last_span": (
                    {
                        "name": last.name,
                        "status": last.status,
                        "summary": last.attributes.get("summary"),
                        "at": last.started_at.isoformat(),
                    }
                    if last is not None
                    else None
                ),
                "check": check,
                "idempotency_key": idempotency_key(step.id),
            }
        },
    )
