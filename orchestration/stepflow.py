"""Units of work that move a plan forward: pick the next step, gate it, record its result.

``next_action`` takes one decision for the first open step (run it, ask for approval, stop)
and commits it with its audit event, span and outbox message. ``finish_step`` records what the
Executor reported, lets the Auditor judge it, and plans compensation when it failed.

``finish_and_next`` is the hot path between two steps: it records a step's result and decides
the next step in one transaction. Its common case (the step succeeded, the next one runs or
waits for approval) is written in SQLAlchemy Core: one SELECT reads the plan, the finished step
and the next open step (two on PostgreSQL, where the plan row is locked first), the same
helpers as the ORM path change them as plain rows (:mod:`orchestration.rows`), and one UPDATE
per changed row writes them back; audit events, spans, outbox messages, the cost entry and the
grant go out as one multi-row INSERT per table. Anything else (a failure, a compensation, the
plan ending, a budget or channel gate, a refusal, stale knowledge) takes the ORM path,
in the same transaction, before the Core path has written anything it would decide again.
"""

import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import Table, bindparam, or_
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from adapters import Grant
from adapters.base import preview_action
from common import Mode, Risk, Role, args_hash
from common.incident_refs import incident_names
from orchestration import cache, observe
from orchestration.auditor import EPSILON_USD, BudgetVerdict, check_budget
from orchestration.authority import (
    CREDENTIAL_MISSING,
    audit_used,
    extended,
    granted_credentials,
    missing_credential,
    scope_reason,
)
from orchestration.budgets import channel_spent_today
from orchestration.db import append_row, flush_appends, upsert
from orchestration.enums import ApprovalPurpose, ApprovalState, PlanStatus, SpanKind, StepKind
from orchestration.enums import StepStatus as S
from orchestration.errors import NotFound
from orchestration.executor import Outcome, Ticket
from orchestration.grants import issue_grant, issue_scoped_grant
from orchestration.incident_context import incident_context
from orchestration.knowledge import row_count
from orchestration.lifecycle import (
    KNOWLEDGE_ROWS,
    check_fresh,
    ctx_for,
    end_plan,
    is_final,
    lock_plan,
    set_approval,
    set_plan,
    set_step,
    stale_knowledge,
    steps_of,
)
from orchestration.models import Approval, CostEntry, Plan, Step, TaskMemory
from orchestration.records import Ctx, audit, emit, span
from orchestration.rollout import guard
from orchestration.rollout.scopes import stage_words
from orchestration.rows import PLANS, STEPS, ApprovalRow, PlanRow, StepRow, columns, snapshot, take
from orchestration.rows import write_changes as write_row
from orchestration.runtime import Runtime
from policies import Decision, Verdict

NONCE_BYTES = 24  # 192 random bits
_OPEN = [S.PENDING.value, S.AWAITING_APPROVAL.value, S.RUNNING.value, S.IN_DOUBT.value]
_APPROVALS: Table = Approval.__table__  # type: ignore[attr-defined]


def keep(session: Session, obj: object) -> None:
    """Add an ORM object to the session; a Core row is written back by its unit instead."""
    if not isinstance(obj, (PlanRow, StepRow, ApprovalRow)):
        session.add(obj)


@dataclass(frozen=True)
class Next:
    """What to do after ``next_action``: run a ticket, or nothing (waiting or finished)."""

    ticket: Ticket | None = None
    waiting: bool = False


def ticket_for(
    step: Step | StepRow,
    grant: Grant,
    plan: Plan | PlanRow,
    *,
    session: Session | None = None,
) -> Ticket:
    """The Executor's view of a step it may run; with ``session``, the incident data its
    ``${incident:NAME}`` references take (read now, as the step starts)."""
    names = incident_names(step.args)
    context = incident_context(session, plan.incident_id, names) if session and names else {}
    return Ticket(
        step_id=step.id,
        tool_action=step.tool_action,
        args=step.args,
        idempotent=step.idempotent,
        expect=step.expect,
        grant=grant,
        correlation_id=plan.correlation_id,
        first_attempt=step.attempts,
        plan_id=plan.id,
        context=context,
    )


def start_step(
    session: Session, ctx: Ctx, rt: Runtime, plan: Plan | PlanRow, step: Step | StepRow
) -> Ticket:
    """Mark ``step`` running and issue its grant; the caller then runs the ticket."""
    set_step(step, S.RUNNING)
    step.attempts += 1
    step.started_at = ctx.now
    # The lease says who runs it; the process renews it, and a lapsed one goes to the reconciler.
    step.lease_owner = rt.replica_id
    step.lease_until = ctx.now + timedelta(seconds=rt.config.execution.lease_s)
    keep(session, step)
    if plan.status != PlanStatus.RUNNING.value:
        set_plan(plan, PlanStatus.RUNNING)
        keep(session, plan)
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
    audit(
        session,
        ctx,
        "step_started",
        step_id=step.id,
        role=Role.EXECUTOR,
        detail={"tool": step.tool_action, "title": step.title},
    )
    ticket = ticket_for(step, grant, plan, session=session)
    if step.read_only and rt.cache_ttl_s(step.tool_action) > 0:
        cached = cache.lookup(session, key=step.args_hash, now=ctx.now)
        if cached is not None:
            ticket = replace(ticket, cached=cached)
    return ticket


PREVIEW_MEMORY = "preview:"


def recorded_preview(session: Session, plan_id: str, step_id: str) -> dict[str, Any] | None:
    """The dry run's answer recorded for ``step_id`` (task memory, pruned with the plan)."""
    row = session.get(TaskMemory, (plan_id, PREVIEW_MEMORY + step_id))
    return dict(row.value) if row is not None else None


def preview_ticket(
    session: Session, ctx: Ctx, rt: Runtime, plan: Plan | PlanRow, step: Step | StepRow
) -> Ticket:
    """A ticket for the step's dry run, under a grant that covers the dry run only."""
    tool, _, action = step.tool_action.partition(".")
    scope = f"{tool}.{preview_action(action)}"
    grant = issue_scoped_grant(
        session,
        ctx,
        step_id=step.id,
        tool_action=scope,
        args_hash=args_hash(scope, step.args),
        signer=rt.signer,
        ttl_s=rt.config.execution.grant_ttl_s,
    )
    return replace(ticket_for(step, grant, plan, session=session), preview=True)


def record_preview(
    session: Session, base: Ctx, rt: Runtime, ticket: Ticket, outcome: Outcome
) -> Ticket | None:
    """Keep what the dry run said (or why it failed), then decide the step again.

    The step is still pending; the next decision finds the preview and puts it on the card.
    """
    plan = lock_plan(session, ticket.plan_id)
    ctx = ctx_for(plan, base, role=Role.AUDITOR)
    result = outcome.result
    if result is not None:
        value = {"ok": True, "summary": result.summary, "output": result.output}
    else:
        value = {"ok": False, "summary": f"the dry run failed: {outcome.error or 'no answer'}"}
    value["error_code"] = outcome.error_code
    upsert(
        session,
        TaskMemory.__table__,  # type: ignore[attr-defined]
        {
            "plan_id": plan.id,
            "key": PREVIEW_MEMORY + ticket.step_id,
            "updated_at": ctx.now,
            "value": value,
        },
        keys=["plan_id", "key"],
    )
    audit_credentials(session, ctx, ticket.step_id, outcome.issued)
    audit(
        session,
        ctx,
        "step_previewed",
        step_id=ticket.step_id,
        code=outcome.error_code,
        detail={"tool": ticket.tool_action, "ok": value["ok"], "summary": value["summary"]},
    )
    for attempt in outcome.attempts:
        span(
            session,
            ctx,
            kind=SpanKind.TOOL_CALL,
            name=f"dry run {ticket.tool_action}",
            step_id=ticket.step_id,
            started_at=attempt.started_at,
            ended_at=attempt.ended_at,
            parent_id=plan.id[:16],
            status="ok" if attempt.ok else (attempt.error_code or "failed"),
            attributes={"summary": attempt.summary, "dry_run": True},
        )
    session.flush()
    flush_appends(session)
    return next_action(session, base, rt, plan.id, locked=plan).ticket


def open_approval(
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    plan: Plan | PlanRow,
    *,
    step: Step | StepRow | None,
    quorum: int,
    exclude_requester: bool,
    reason: str,
    purpose: ApprovalPurpose | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Create a single-use approval record and post its card (``extra`` adds card fields).

    For a Core row ``plan`` the record is one more row of the unit's batched INSERTs.
    """
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "nonce": secrets.token_urlsafe(NONCE_BYTES),
        "purpose": (purpose or (ApprovalPurpose.STEP if step else ApprovalPurpose.BUDGET)).value,
        "incident_id": plan.incident_id,
        "plan_id": plan.id,
        "plan_version": plan.version,
        "step_id": step.id if step else None,
        "args_hash": step.args_hash if step else plan.plan_hash,
        "quorum": quorum,
        "exclude_requester": exclude_requester,
        "requester": plan.requester,
        "state": ApprovalState.PENDING.value,
        "reason": reason,
        "created_at": ctx.now,
        "expires_at": ctx.now
        + timedelta(
            minutes=rt.approval_ttl_minutes if step else rt.config.budgets.soft_wait_minutes
        ),
        "decided_at": None,
        "decided_by": None,
    }
    if isinstance(plan, PlanRow):
        append_row(session, _APPROVALS, values)
    else:
        session.add(Approval(**values))
    approval = ApprovalRow(**{k: v for k, v in values.items() if k not in _NOT_IN_ROW})
    audit(
        session,
        ctx,
        "approval_requested",
        step_id=approval.step_id,
        nonce=approval.nonce,
        role=Role.AUDITOR,
        detail={
            "quorum": quorum,
            "purpose": approval.purpose,
            "reason": reason,
            "expires_at": approval.expires_at,
        },
    )
    card = {
        "approval_id": approval.id,
        "nonce": approval.nonce,
        "purpose": approval.purpose,
        "quorum": quorum,
        "exclude_requester": exclude_requester,
        "reason": reason,
        "expires_at": approval.expires_at.isoformat(),
        "requester": plan.requester,
        "plan_version": plan.version,
    }
    if step is not None:
        card |= {
            "title": step.title,
            "tool_action": step.tool_action,
            "args": step.args,
            "risk": step.risk,
            "expect": step.expect,
            "compensate": step.compensate,
            "stage": stage_words(step.rollout),
        }
    emit(session, ctx, "approval_requested", card | (extra or {}), step_id=approval.step_id)


_NOT_IN_ROW = frozenset({"incident_id", "created_at"})


def _record_decision(step: Step | StepRow, decision: Decision) -> None:
    step.decision_code = decision.code
    step.decision_reason = decision.reason
    step.risk = decision.risk.value
    step.quorum = decision.quorum
    step.exclude_requester = decision.exclude_requester


def next_action(
    session: Session, base: Ctx, rt: Runtime, plan_id: str, *, locked: Plan | None = None
) -> Next:
    """Decide and commit what happens to the plan's first open step.

    ``locked`` is the plan when this transaction already holds its row lock.
    """
    plan = locked if locked is not None and locked.id == plan_id else lock_plan(session, plan_id)
    ctx = ctx_for(plan, base, role=Role.AUDITOR)
    if is_final(plan) or not check_fresh(session, ctx, plan, rt=rt):
        return Next()
    step = session.exec(
        select(Step)
        .where(Step.plan_id == plan.id, col(Step.status).in_(_OPEN))
        .order_by(col(Step.position))
        .limit(1)
    ).first()
    if step is None:
        _finish_plan(session, ctx, rt, plan, steps_of(session, plan.id))
        return Next()
    if step.status != S.PENDING.value:
        return Next(waiting=True)
    gated = _gate_budget(session, ctx, rt, plan, step)
    if gated is not None:
        return gated
    return _apply_decision(session, ctx, rt, plan, step)


def _gate_budget(session: Session, ctx: Ctx, rt: Runtime, plan: Plan, step: Step) -> Next | None:
    """Stop at the hard limit or the channel's daily cap, ask humans past the soft threshold;
    None lets the step through."""
    cap = rt.config.budgets.channel_daily_usd
    if cap is not None and plan.channel:
        spent = channel_spent_today(session, plan.channel, ctx.now)
        if spent + step.estimate_usd > cap + EPSILON_USD:
            end_plan(
                session,
                ctx,
                plan,
                PlanStatus.HALTED,
                code="channel_daily_cap",
                escalate=True,
                reason=f"This channel's daily cap is reached: ${spent:.4f} spent today, the "
                f"next step forecasts ${step.estimate_usd:.4f}, cap ${cap:.4f}.",
            )
            return Next()
    budget = check_budget(
        spent_usd=plan.spent_usd,
        spent_tokens=plan.spent_tokens,
        next_usd=step.estimate_usd,
        budget_usd=plan.budget_usd,
        budget_tokens=plan.budget_tokens,
        soft_ratio=plan.soft_ratio,
        soft_acknowledged=plan.soft_acknowledged,
    )
    if budget.verdict is BudgetVerdict.HARD:
        end_plan(
            session,
            ctx,
            plan,
            PlanStatus.HALTED,
            reason=budget.reason,
            code="budget_exceeded",
            escalate=True,
        )
        return Next()
    if budget.verdict is BudgetVerdict.SOFT:
        set_plan(plan, PlanStatus.WAITING, budget.reason)
        session.add(plan)
        open_approval(
            session,
            ctx,
            rt,
            plan,
            step=None,
            quorum=1,
            exclude_requester=False,
            reason=budget.reason,
        )
        return Next(waiting=True)
    return None


def _apply_decision(  # noqa: PLR0917 - the unit's collaborators, as in the other steps
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    plan: Plan | PlanRow,
    step: Step | StepRow,
    decision: Decision | None = None,
) -> Next:
    """Evaluate policy for ``step`` (unless ``decision`` is given) and act on the verdict.

    Core rows take only the allow and approval verdicts here (see ``_next_core``).
    """
    decision = decision or rt.decide(step, plan)
    _record_decision(step, decision)
    keep(session, step)
    audit(
        session,
        ctx,
        "policy_decided",
        step_id=step.id,
        code=decision.code,
        detail={
            "verdict": decision.verdict.value,
            "reason": decision.reason,
            "risk": decision.risk.value,
            "rule": decision.rule_id,
        },
    )
    if decision.verdict is Verdict.ALLOW:
        return Next(ticket=start_step(session, ctx, rt, plan, step))
    if decision.verdict is Verdict.REQUIRE_APPROVAL:
        preview: dict[str, Any] | None = None
        if rt.previews(step.tool_action) and not step.read_only:
            preview = recorded_preview(session, plan.id, step.id)
            if preview is None:
                # Ask the tool what the call would do first; the card waits for the answer.
                return Next(ticket=preview_ticket(session, ctx, rt, plan, step))
        set_step(step, S.AWAITING_APPROVAL)
        if plan.status != PlanStatus.WAITING.value:
            set_plan(plan, PlanStatus.WAITING)
        keep(session, plan)
        open_approval(
            session,
            ctx,
            rt,
            plan,
            step=step,
            quorum=decision.quorum,
            exclude_requester=decision.exclude_requester,
            reason=decision.reason,
            extra={"preview": preview} if preview is not None else None,
        )
        return Next(waiting=True)
    assert isinstance(plan, Plan), "refusals take the ORM path"
    assert isinstance(step, Step), "refusals take the ORM path"
    if decision.code == "shadow_mode":
        _shadow(session, ctx, rt, plan, steps_of(session, plan.id))
        return Next()
    set_step(step, S.DENIED)
    step.error_code = decision.code
    step.error = decision.reason
    plan.denials += 1
    emit(
        session,
        ctx,
        "step_denied",
        {
            "title": step.title,
            "tool_action": step.tool_action,
            "code": decision.code,
            "reason": decision.reason,
        },
        step_id=step.id,
    )
    end_plan(
        session,
        ctx,
        plan,
        PlanStatus.HALTED,
        reason=f"Policy refused '{step.title}': {decision.reason}",
        code=decision.code,
        escalate=True,
    )
    return Next()


def _shadow(session: Session, ctx: Ctx, rt: Runtime, plan: Plan, steps: list[Step]) -> None:
    """Shadow mode: record what each step would need under supervision; run nothing."""
    would = {}
    for step in steps:
        if step.status != S.PENDING.value:
            continue
        decision = rt.decide(step, plan, mode=Mode.SUPERVISED)
        would[step.key] = {"verdict": decision.verdict.value, "code": decision.code}
        step.decision_code = "shadow_mode"
        step.decision_reason = (
            f"Shadow mode: would have been {decision.verdict.value} ({decision.reason})"
        )
        session.add(step)
    audit(session, ctx, "shadow_plan_recorded", detail={"would": would})
    end_plan(
        session,
        ctx,
        plan,
        PlanStatus.SHADOW,
        reason=_shadow_reason(steps),
        code="shadow_mode",
    )


def _shadow_reason(steps: list[Step]) -> str:
    """What shadow did: nothing, or the read-only steps before the first proposal."""
    ran = [s for s in steps if s.status == S.SUCCEEDED.value]
    if not ran:
        return "Shadow mode: opsgate proposed this plan and executed nothing."
    changed = [s.title for s in ran if not s.read_only]
    proposed = [s.title for s in steps if s.decision_code == "shadow_mode" and not s.read_only]
    first = next((s for s in steps if s.decision_code == "shadow_mode"), None)
    scope = str((first.rollout or {}).get("scope") or "") if first else ""
    where = f"scope {scope} is in shadow" if scope and scope != "default" else "shadow mode"
    said = ", ".join(f"'{t}'" for t in proposed[:3]) or "the rest"
    before = (
        f"ran the steps before it (changing state: {', '.join(repr(t) for t in changed[:3])})"
        if changed
        else "ran only the read-only steps before it"
    )
    return f"Shadow: opsgate {before} and proposed {said} without running it ({where})."


def _finish_plan(session: Session, ctx: Ctx, rt: Runtime, plan: Plan, steps: list[Step]) -> None:
    failed = [s for s in steps if s.status in (S.FAILED, S.COMPENSATED) and s.kind == "runbook"]
    if not failed:
        end_plan(
            session,
            ctx,
            plan,
            PlanStatus.SUCCEEDED,
            reason="All steps succeeded.",
            code="plan_succeeded",
        )
        return
    comp = [s for s in steps if s.kind == StepKind.COMPENSATION.value]
    undone = ", ".join(s.title for s in comp) or "nothing to undo"
    end_plan(
        session,
        ctx,
        plan,
        PlanStatus.FAILED,
        reason=f"'{failed[0].title}' failed: {failed[0].error or 'see its result'}. "
        f"Compensation: {undone}. A human needs to take over.",
        code="step_failed",
        escalate=True,
    )
    from orchestration.recovery import after_step_failed  # noqa: PLC0415 - recovery imports us

    guard.after_failure(session, ctx, failed)
    after_step_failed(session, ctx, rt, plan, failed[0])


def finish_step(  # noqa: PLR0911 - each early return names one way a step's story ends
    session: Session, base: Ctx, rt: Runtime, ticket: Ticket, outcome: Outcome
) -> Plan:
    """Record a step's outcome, its cost, trace and audit; plan compensation on failure.

    Only the lease holder's outcome moves the step; a result that arrives after the step was
    declared in doubt settles it. Returns the plan, locked for the rest of the transaction.
    """
    plan = lock_plan(session, ticket.plan_id)  # the plan row first: the one lock order
    step = session.get(Step, ticket.step_id)
    assert step is not None
    ctx = ctx_for(plan, base, role=Role.EXECUTOR)
    held = step.status == S.RUNNING.value and step.lease_owner == rt.replica_id
    in_doubt = step.status == S.IN_DOUBT.value
    unheld = not (held or in_doubt) or (in_doubt and outcome.cancelled)
    if unheld:
        # Another replica holds it, or it is in doubt and this answer settles nothing.
        _record_unheld(session, ctx, step, outcome)
    refused = held and outcome.error_code == CREDENTIAL_MISSING
    if unheld or (refused and _ask_for_scope(session, ctx, rt, plan, step, outcome)):
        return plan
    _settle(session, ctx, step, outcome, in_doubt=in_doubt)
    observe.judge(step, outcome)
    _record_finish(session, ctx, rt, plan, step, outcome)
    ok = outcome.succeeded
    if ok:
        _mark_compensated(session, step)
        ending = observe.plan_ending(step)
        if ending is not None and not is_final(plan):
            end_plan(
                session, ctx, plan, PlanStatus.SUCCEEDED, reason=ending, code=observe.NOTHING_TO_DO
            )
        return plan
    if outcome.cancelled or is_final(plan):
        return plan  # the plan ended around it: nothing to retry or undo automatically
    if step.kind == StepKind.CANARY.value:
        _halt_after_canary(session, ctx, plan, step)
        return plan
    if plan.no_progress >= rt.config.execution.no_progress_steps:
        end_plan(
            session,
            ctx,
            plan,
            PlanStatus.HALTED,
            code="no_progress",
            escalate=True,
            reason=f"No progress in {plan.no_progress} steps; stopping early.",
        )
        return plan
    if step.kind == StepKind.COMPENSATION.value:
        end_plan(
            session,
            ctx,
            plan,
            PlanStatus.FAILED,
            code="compensation_failed",
            escalate=True,
            reason=f"Compensation '{step.title}' failed: {step.error}. A human needs to take over.",
        )
        from orchestration.recovery import after_step_failed  # noqa: PLC0415 - recovery imports us

        after_step_failed(session, ctx, rt, plan, step)
        return plan
    _plan_compensation(session, ctx, rt, plan, step)
    return plan


def _halt_after_canary(session: Session, ctx: Ctx, plan: Plan, canary: Step) -> None:
    """A failed canary halts the plan: the step it tried out is never offered for approval."""
    real = session.exec(
        select(Step).where(Step.plan_id == plan.id, Step.canary_step == canary.id)
    ).first()
    what = f"'{real.title}'" if real is not None else "the step it tried out"
    end_plan(
        session,
        ctx,
        plan,
        PlanStatus.HALTED,
        code="canary_failed",
        escalate=True,
        reason=f"The canary '{canary.title}' failed: {canary.error or 'see its result'}. "
        f"{what} was not offered for approval and did not run.",
    )


def _ask_for_scope(  # noqa: PLR0917 - the unit's collaborators, as in the other steps
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    plan: Plan,
    step: Step,
    outcome: Outcome,
) -> bool:
    """A step refused for a credential its role lacks waits behind a scope card (the Auditor
    asks humans to add it to this plan); False when there is nothing to ask for."""
    credential = missing_credential(rt, step)
    if credential is None or is_final(plan) or extended(session, plan.id, credential.name):
        return False
    set_step(step, S.AWAITING_APPROVAL)
    step.lease_owner = None
    step.lease_until = None
    step.error_code = CREDENTIAL_MISSING
    step.error = outcome.error
    step.finished_at = ctx.now
    session.add(step)
    audit_used(session, ctx, step=step, uses=outcome.credentials)
    audit(
        session,
        ctx,
        "step_failed",
        step_id=step.id,
        code=CREDENTIAL_MISSING,
        detail={"authority": credential.name, "summary": outcome.error or ""},
    )
    set_plan(plan, PlanStatus.WAITING, f"waiting for the credential {credential.name}")
    session.add(plan)
    open_approval(
        session,
        ctx_for(plan, ctx, role=Role.AUDITOR),
        rt,
        plan,
        step=step,
        quorum=max(step.quorum, 1),
        exclude_requester=step.exclude_requester,
        reason=scope_reason(credential, step, plan),
        purpose=ApprovalPurpose.SCOPE,
        extra={"authority": credential.name, "authority_read_only": credential.read_only},
    )
    return True


def _record_finish(  # noqa: PLR0917 - the unit's collaborators, as in the other steps
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    plan: Plan | PlanRow,
    step: Step | StepRow,
    outcome: Outcome,
) -> None:
    """A settled step's totals, cost entry, spans, task memory, audit event and card update."""
    ok = outcome.succeeded
    step.attempts = max(step.attempts, outcome.attempts[-1].number if outcome.attempts else 0)
    cost = sum(a.cost_usd for a in outcome.attempts)
    tokens = sum(a.tokens for a in outcome.attempts)
    step.cost_usd += cost
    step.tokens += tokens
    step.duration_ms = sum(
        (a.ended_at - a.started_at).total_seconds() * 1000 for a in outcome.attempts
    )
    step.finished_at = ctx.now
    keep(session, step)
    plan.spent_usd += cost
    plan.spent_tokens += tokens
    plan.no_progress = 0 if ok else plan.no_progress + 1
    keep(session, plan)
    tool = step.tool_action.split(".", 1)[0]
    append_row(
        session,
        CostEntry.__table__,  # type: ignore[attr-defined]
        {
            "at": ctx.now,
            "incident_id": plan.incident_id,
            "plan_id": plan.id,
            "step_id": step.id,
            "role": Role.EXECUTOR.value,
            "tool": tool,
            "runbook_id": plan.runbook_id,
            "channel": plan.channel,
            "usd": cost,
            "tokens": tokens,
            "duration_ms": step.duration_ms,
        },
    )
    step_span = span(
        session,
        ctx,
        kind=SpanKind.STEP,
        name=step.title,
        step_id=step.id,
        started_at=step.started_at or ctx.now,
        ended_at=ctx.now,
        parent_id=plan.id[:16],
        status=step.status,
        attributes={
            "tool": step.tool_action,
            "args": step.args,
            "expect": step.expect,
            "check": outcome.check.reason,
        },
    )
    for attempt in outcome.attempts:
        span(
            session,
            ctx,
            kind=SpanKind.TOOL_CALL,
            name=step.tool_action,
            step_id=step.id,
            started_at=attempt.started_at,
            ended_at=attempt.ended_at,
            parent_id=step_span,
            status="ok" if attempt.ok else (attempt.error_code or "failed"),
            attributes={
                "attempt": attempt.number,
                "idempotency_key": attempt.idempotency_key,
                "summary": attempt.summary,
                "cost_usd": attempt.cost_usd,
                "response": attempt.response,
            },
        )
    upsert(
        session,
        TaskMemory.__table__,  # type: ignore[attr-defined]
        {
            "plan_id": plan.id,
            "key": step.key,
            "updated_at": ctx.now,
            "value": {"status": step.status, "summary": _summary(outcome)},
        },
        keys=["plan_id", "key"],
    )
    audit_credentials(session, ctx, step.id, outcome.issued)
    audit_used(session, ctx, step=step, uses=outcome.credentials)
    audit(
        session,
        ctx,
        "step_succeeded" if ok else "step_failed",
        step_id=step.id,
        code=step.error_code,
        detail={"attempts": step.attempts, "cost_usd": cost, "summary": _summary(outcome)},
    )
    emit(
        session,
        ctx,
        "step_finished",
        {
            "title": step.title,
            "tool_action": step.tool_action,
            "status": step.status,
            "summary": _summary(outcome),
            "error": step.error,
            "error_code": step.error_code,
            "attempts": step.attempts,
            "duration_ms": round(step.duration_ms, 1),
            "cost_usd": cost,
            "plan_spent_usd": plan.spent_usd,
            "plan_budget_usd": plan.budget_usd,
            "kind": step.kind,
            "observe": step.observe,
        },
        step_id=step.id,
    )
    _account_cache(session, ctx, rt, step, outcome)


def audit_credentials(
    session: Session, ctx: Ctx, step_id: str, credentials: list[dict[str, Any]]
) -> None:
    """One audit event per credential a tool was issued for the step (what, whose, until when).

    Facts already recorded while the call ran (:func:`record_issued`) are skipped.
    """
    for fact in credentials:
        if fact.get("audited"):
            continue
        # The event's own columns (role, step) are not repeated in its detail.
        detail = {k: v for k, v in fact.items() if k not in _AUDIT_COLUMNS}
        event = str(fact.get("event") or "credential_issued")
        audit(session, ctx, event, step_id=step_id, role=Role.EXECUTOR, detail=detail)


def record_issued(
    session: Session, base: Ctx, *, plan_id: str, step_id: str, fact: dict[str, Any]
) -> None:
    """Audit a credential the moment a running call minted it (what, whose, until when)."""
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise NotFound(f"no plan {plan_id}")
    audit_credentials(session, ctx_for(plan, base, role=Role.EXECUTOR), step_id, [fact])


_AUDIT_COLUMNS = frozenset(
    {
        "audited",
        "event",
        "role",
        "actor",
        "correlation_id",
        "incident_id",
        "plan_id",
        "step_id",
        "nonce",
        "code",
    }
)


def _settle(
    session: Session, ctx: Ctx, step: Step | StepRow, outcome: Outcome, *, in_doubt: bool
) -> None:
    """Move the step to what its outcome says and release its lease."""
    ok = outcome.succeeded
    set_step(step, S.SUCCEEDED if ok else (S.CANCELLED if outcome.cancelled else S.FAILED))
    step.lease_owner = None
    step.lease_until = None
    if in_doubt:
        cancel_approvals_of(session, ctx, step, reason="The call finished after all: settled.")
    result = outcome.result
    step.result = result.model_dump(mode="json") if result else None
    step.error_code = None if ok else (outcome.error_code or "expect_not_met")
    step.error = None if ok else (outcome.error or outcome.check.reason)
    if outcome.cancelled:
        step.error = "Stopped while its call was in flight (the incident was closed); " + (
            "nothing changed." if step.read_only else "it may have partly taken effect."
        )


def _record_unheld(session: Session, ctx: Ctx, step: Step, outcome: Outcome) -> None:
    """A result from a process that no longer holds the step: kept in the trace, moves nothing."""
    audit(
        session,
        ctx,
        "step_result_ignored",
        step_id=step.id,
        role=Role.AUDITOR,
        detail={
            "status": step.status,
            "owner": step.lease_owner,
            "summary": _summary(outcome),
            "reason": "this process no longer held the step, or the answer settles nothing",
        },
    )
    for attempt in outcome.attempts:
        span(
            session,
            ctx,
            kind=SpanKind.TOOL_CALL,
            name=step.tool_action,
            step_id=step.id,
            started_at=attempt.started_at,
            ended_at=attempt.ended_at,
            status="ok" if attempt.ok else (attempt.error_code or "failed"),
            attributes={
                "attempt": attempt.number,
                "idempotency_key": attempt.idempotency_key,
                "summary": attempt.summary,
                "response": attempt.response,
                "late": True,
            },
        )


def cancel_approvals_of(session: Session, ctx: Ctx, step: Step | StepRow, *, reason: str) -> None:
    """Cancel the step's pending approvals (an in-doubt card that no longer needs an answer)."""
    for approval in session.exec(
        select(Approval).where(
            Approval.step_id == step.id, Approval.state == ApprovalState.PENDING.value
        )
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
            step_id=step.id,
        )


def _account_cache(
    session: Session, ctx: Ctx, rt: Runtime, step: Step | StepRow, outcome: Outcome
) -> None:
    """Count the hit or miss of a cached read and keep its fresh answer; clear after writes."""
    tool = step.tool_action.split(".", 1)[0]
    if not step.read_only:
        if outcome.succeeded and rt.tool_caches(tool):
            cache.invalidate_tool(session, tool)
        return
    ttl = rt.cache_ttl_s(step.tool_action)
    if ttl <= 0 or not outcome.attempts:
        return
    hit = outcome.attempts[0].cached
    cache.count(session, now=ctx.now, tool_action=step.tool_action, hit=hit)
    live = [a for a in outcome.attempts if not a.cached]
    if live and outcome.result is not None and outcome.result.ok:
        cache.store(
            session,
            key=step.args_hash,
            tool_action=step.tool_action,
            result=outcome.result,
            now=ctx.now,
            ttl_s=ttl,
        )


def _summary(outcome: Outcome) -> str:
    if outcome.result is not None:
        text = outcome.result.summary
        return text if outcome.check.ok else f"{text}; {outcome.check.reason}"
    return outcome.error or "no result"


def _mark_compensated(session: Session, step: Step) -> None:
    if step.kind != StepKind.COMPENSATION.value or step.compensates_step is None:
        return
    target = session.get(Step, step.compensates_step)
    if target is not None and target.status in (S.FAILED.value, S.SUCCEEDED.value):
        set_step(target, S.COMPENSATED)
        session.add(target)


def _plan_compensation(session: Session, ctx: Ctx, rt: Runtime, plan: Plan, failed: Step) -> None:
    """Skip the rest of the runbook; queue compensations (failed step first, then in reverse)."""
    steps = steps_of(session, plan.id)
    for other in steps:
        if other.status == S.PENDING.value:
            set_step(other, S.SKIPPED)
            other.error = f"skipped: '{failed.title}' failed"
            session.add(other)
    done = [s for s in steps if s.status == S.SUCCEEDED.value and s.compensate]
    targets = ([failed] if failed.compensate and not failed.read_only else []) + done[::-1]
    position = max(s.position for s in steps) + 1
    planned = []
    for target in targets:
        comp = target.compensate or {}
        undo = compensation_step(rt, plan, target, comp, position=position)
        if undo is None:
            continue  # a derived undo with nothing to restore (the call never changed anything)
        session.add(undo)
        planned.append(target)
        position += 1
    targets = planned
    audit(
        session,
        ctx,
        "compensation_planned",
        step_id=failed.id,
        role=Role.AUDITOR,
        detail={"steps": [t.title for t in targets], "failed": failed.title},
    )


def compensation_step(
    rt: Runtime, plan: Plan, target: Step, comp: dict[str, Any], *, position: int
) -> Step | None:
    """A new step that undoes ``target`` with its declared compensation.

    A ``derived`` compensation takes its args from the target's action (``compensate_from``,
    from the target's args and recorded result); None when that says there is nothing to undo.
    """
    tool_action = str(comp["tool"])
    args = dict(comp.get("args") or {})
    if comp.get("derived"):
        _target_tool, target_spec = rt.tools.action(target.tool_action)
        derive = target_spec.compensate_from
        derived = derive(target.args, target.result) if derive is not None else None
        if derived is None:
            return None
        args = derived
    _tool, spec = rt.tools.action(tool_action)
    risk = Risk(str(comp.get("risk") or spec.risk)).at_least(spec.risk)
    return Step(
        id=uuid.uuid4().hex,
        plan_id=plan.id,
        position=position,
        key=f"undo-{target.key}",
        kind=StepKind.COMPENSATION.value,
        title=str(comp.get("title") or f"Undo {target.title}"),
        tool_action=tool_action,
        args=args,
        args_hash=args_hash(tool_action, args),
        declared_risk=risk.value,
        risk=risk.value,
        read_only=spec.read_only,
        idempotent=spec.idempotent,
        compensates_step=target.id,
        status=S.PENDING.value,
        # The undo runs in the stage its step ran in (a gated step's undo runs alone within
        # the scope's risk bound); the policy still decides on the undo's own risk.
        rollout=(
            {**target.rollout, "why": f"undoes '{target.title}': {target.rollout.get('why')}"}
            if target.rollout
            else None
        ),
    )


# --- the hot path between two steps, in SQLAlchemy Core ------------------------------------

_LOCK_PLAN = core_select(PLANS.c.id).where(PLANS.c.id == bindparam("plan_id")).with_for_update()
_NEXT_OPEN = (
    core_select(STEPS.c.id)
    .where(
        STEPS.c.plan_id == bindparam("plan_id"),
        STEPS.c.status.in_(_OPEN),
        STEPS.c.id != bindparam("step_id"),
    )
    .order_by(STEPS.c.position)
    .limit(1)
    .scalar_subquery()
)
# The plan, the step that finished and the plan's next open step (1-2 rows), with the knowledge
# row count that revalidates the in-memory current versions.
_PLAN_AND_STEPS = (
    core_select(
        *columns(PlanRow, "p_"), *columns(StepRow, "s_"), row_count().label("knowledge_rows")
    )
    .select_from(PLANS.join(STEPS, STEPS.c.plan_id == PLANS.c.id))
    .where(
        PLANS.c.id == bindparam("plan_id"),
        or_(STEPS.c.id == bindparam("step_id"), STEPS.c.id == _NEXT_OPEN),
    )
)


class _Slow:
    """The Core path declines: the ORM path takes the unit (nothing written yet)."""


_SLOW = _Slow()


def finish_and_next(
    session: Session, base: Ctx, rt: Runtime, ticket: Ticket, outcome: Outcome
) -> Ticket | None:
    """Record ``ticket``'s outcome and decide the plan's next step, in one unit of work.

    Returns the next step's ticket when it may run now. The common case runs in Core (see
    the module docstring); the rest on the ORM path, with the same result.
    """
    if ticket.preview:
        return record_preview(session, base, rt, ticket, outcome)
    fast = _finish_core(session, base, rt, ticket, outcome)
    if not isinstance(fast, _Slow):
        return fast
    plan = finish_step(session, base, rt, ticket, outcome)
    session.flush()
    flush_appends(session)  # the next step's budget checks read these costs
    return next_action(session, base, rt, ticket.plan_id, locked=plan).ticket


def _finish_core(
    session: Session, base: Ctx, rt: Runtime, ticket: Ticket, outcome: Outcome
) -> Ticket | _Slow | None:
    """``finish_step`` then ``next_action`` for a step that succeeded, on plain rows."""
    conn = session.connection()
    params = {"plan_id": ticket.plan_id, "step_id": ticket.step_id}
    if conn.dialect.name == "postgresql":
        # The plan row first (the one lock order); the rows below are then read after it.
        conn.execute(_LOCK_PLAN, params)
    plan: PlanRow | None = None
    step: StepRow | None = None
    following: StepRow | None = None
    count = 0
    for row in conn.execute(_PLAN_AND_STEPS, params):
        if plan is None:
            plan = take(PlanRow, row, "p_")
            count = row.knowledge_rows
        found = take(StepRow, row, "s_")
        if found.id == ticket.step_id:
            step = found
        else:
            following = found
    held = step is not None and step.status == S.RUNNING.value
    if plan is None or step is None or not held or step.lease_owner != rt.replica_id:
        return _SLOW  # not this process's to settle: the ORM path records why
    if not outcome.succeeded or outcome.cancelled or step.kind == StepKind.COMPENSATION.value:
        return _SLOW  # failures, stops and compensations: rare, and they plan more work
    if step.observe and step.observe.get("end_if"):
        return _SLOW  # a probe whose answer may end the plan
    session.info[KNOWLEDGE_ROWS] = count
    plan_before, step_before = snapshot(plan), snapshot(step)
    ctx = ctx_for(plan, base, role=Role.EXECUTOR)
    _settle(session, ctx, step, outcome, in_doubt=False)
    observe.judge(step, outcome)
    _record_finish(session, ctx, rt, plan, step, outcome)
    write_row(conn, step, step_before)
    result = _next_core(session, base, rt, plan, following)
    write_row(conn, plan, plan_before)
    if isinstance(result, _Slow):
        flush_appends(session)  # the ORM path reads what was written so far
        return next_action(session, base, rt, plan.id).ticket
    return result


def _next_core(  # noqa: PLR0911 - each early return names one case the ORM path takes
    session: Session, base: Ctx, rt: Runtime, plan: PlanRow, step: StepRow | None
) -> Ticket | _Slow | None:
    """``next_action`` on plain rows when the next step runs or waits for approval.

    Checks everything that could lead elsewhere before changing anything.
    """
    if is_final(plan) or stale_knowledge(session, plan, rt):
        return _SLOW
    if step is None:
        return _SLOW  # the plan is finishing
    if step.status != S.PENDING.value:
        return None  # waiting for humans or another replica
    if rt.config.budgets.channel_daily_usd is not None and plan.channel:
        return _SLOW
    budget = check_budget(
        spent_usd=plan.spent_usd,
        spent_tokens=plan.spent_tokens,
        next_usd=step.estimate_usd,
        budget_usd=plan.budget_usd,
        budget_tokens=plan.budget_tokens,
        soft_ratio=plan.soft_ratio,
        soft_acknowledged=plan.soft_acknowledged,
    )
    if budget.verdict is not BudgetVerdict.OK:
        return _SLOW
    decision = rt.decide(step, plan)
    if decision.verdict not in (Verdict.ALLOW, Verdict.REQUIRE_APPROVAL):
        return _SLOW
    before = snapshot(step)
    ctx = ctx_for(plan, base, role=Role.AUDITOR)
    chosen = _apply_decision(session, ctx, rt, plan, step, decision)
    write_row(session.connection(), step, before)
    return chosen.ticket


def first_action(session: Session, base: Ctx, rt: Runtime, plan_id: str) -> Ticket | None:
    """``next_action`` for a plan not read yet in this unit (a plan starting or resuming).

    Core when its first open step runs or waits for approval; the ORM path otherwise.
    """
    conn = session.connection()
    params = {"plan_id": plan_id, "step_id": ""}  # no step finished: just the first open one
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_PLAN, params)
    rows = conn.execute(_PLAN_AND_STEPS, params).all()
    if len(rows) == 1:
        plan = take(PlanRow, rows[0], "p_")
        session.info[KNOWLEDGE_ROWS] = rows[0].knowledge_rows
        before = snapshot(plan)
        result = _next_core(session, base, rt, plan, take(StepRow, rows[0], "s_"))
        if not isinstance(result, _Slow):
            write_row(conn, plan, before)
            return result
    return next_action(session, base, rt, plan_id).ticket
