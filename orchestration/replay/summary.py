"""One run of a plan, summarised from the store it ran in (the live one or a sandbox)."""

from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlmodel import Session, col, select

from orchestration.enums import SpanKind
from orchestration.errors import NotFound
from orchestration.models import Approval, AuditEvent, Plan, Span, Step, Vote


class StepOutcome(BaseModel):
    """What became of one step: status, every call, cost."""

    model_config = ConfigDict(frozen=True)

    key: str
    title: str
    kind: str
    tool_action: str
    status: str
    attempts: int
    calls: tuple[str, ...] = ()  # "1:ok", "2:tool_failed", per attempt
    error_code: str | None = None
    error: str | None = None
    cost_usd: float = 0.0
    approvals: tuple[str, ...] = ()  # "approved by U1, U2"


class RunSummary(BaseModel):
    """What a plan's run came to: its status, steps, compensation, escalation and spend."""

    model_config = ConfigDict(frozen=True)

    plan_id: str
    status: str
    reason: str
    spent_usd: float
    budget_usd: float
    steps: tuple[StepOutcome, ...]
    compensation: tuple[str, ...] = ()  # titles of the compensation steps planned
    escalated: bool = False
    escalation: str = ""
    playbooks: tuple[str, ...] = ()  # recovery playbooks applied

    def step(self, key: str) -> StepOutcome | None:
        """The step with ``key``."""
        return next((s for s in self.steps if s.key == key), None)


def summarise(session: Session, plan_id: str) -> RunSummary:
    """The run of ``plan_id`` as this store recorded it."""
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise NotFound(f"no plan {plan_id}")
    steps = list(
        session.exec(select(Step).where(Step.plan_id == plan_id).order_by(col(Step.position)))
    )
    calls: dict[str, list[str]] = {}
    for sp in session.exec(
        select(Span)
        .where(Span.plan_id == plan_id, Span.kind == SpanKind.TOOL_CALL.value)
        .order_by(col(Span.started_at))
    ):
        if sp.step_id and not sp.attributes.get("in_doubt_check"):
            calls.setdefault(sp.step_id, []).append(f"{sp.attributes.get('attempt')}:{sp.status}")
    decided: dict[str, list[str]] = {}
    for approval in session.exec(
        select(Approval).where(Approval.plan_id == plan_id).order_by(col(Approval.created_at))
    ):
        voters = [
            f"{v.choice} {v.voter}"
            for v in session.exec(
                select(Vote).where(Vote.approval_id == approval.id).order_by(col(Vote.id))
            )
        ]
        text = f"{approval.state}" + (f" ({', '.join(voters)})" if voters else "")
        decided.setdefault(approval.step_id or "", []).append(text)
    events = list(
        session.exec(
            select(AuditEvent)
            .where(
                AuditEvent.plan_id == plan_id,
                col(AuditEvent.event).in_(
                    ["compensation_planned", "plan_escalated", "playbook_applied"]
                ),
            )
            .order_by(col(AuditEvent.id))
        )
    )
    compensation: list[str] = []
    escalation = ""
    playbooks: list[str] = []
    for event in events:
        detail: dict[str, Any] = event.detail
        if event.event == "compensation_planned":
            compensation += [str(t) for t in detail.get("steps") or []]
        elif event.event == "plan_escalated":
            escalation = str(detail.get("reason") or event.code or "escalated")
        else:
            playbooks.append(str(detail.get("playbook") or event.code))
    return RunSummary(
        plan_id=plan.id,
        status=plan.status,
        reason=plan.status_reason,
        spent_usd=plan.spent_usd,
        budget_usd=plan.budget_usd,
        steps=tuple(
            StepOutcome(
                key=s.key,
                title=s.title,
                kind=s.kind,
                tool_action=s.tool_action,
                status=s.status,
                attempts=s.attempts,
                calls=tuple(calls.get(s.id, [])),
                error_code=s.error_code,
                error=s.error,
                cost_usd=s.cost_usd,
                approvals=tuple(decided.get(s.id, [])),
            )
            for s in steps
        ),
        compensation=tuple(compensation),
        escalated=any(e.event == "plan_escalated" for e in events),
        escalation=escalation,
        playbooks=tuple(playbooks),
    )
