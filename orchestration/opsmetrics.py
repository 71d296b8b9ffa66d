"""Operational metrics over a time window: spend, budgets, cache and outcome figures.

Pure query functions over a ``Session``; :func:`ops_report` gathers them into a frozen
:class:`OpsReport` for the window ``[start, end)`` (aware UTC datetimes). The digest, the
``/metrics`` endpoint and ``/incident metrics`` all read the same report.

Which rows a figure counts (the *cohort*):

- **Spend** counts cost entries whose ``at`` falls in the window.
- **Outcome figures** (action success, escalation, cost per successful action, false
  positives, lead time) count the plans that reached a final state in the window
  (``finished_at`` in the window), shadow plans excepted: they change nothing and are measured
  by the rollout evidence instead (``orchestration.rollout.evidence``: FP and FN against the
  human baseline). A plan is counted once, when its outcome is known; a plan
  still waiting for humans is not counted yet.
- **Budget warnings and stops** count audit events in the window.
- **MTTR** counts incidents *resolved* in the window (cancelled ones are not resolutions).
- **Model usage** (tokens and USD by role and model) counts the cost entries of model calls
  (``tool`` ``llm:<model>``) in the window; **model calls by outcome** count the
  ``model_calls`` rows in the window, calls the budget stopped before they were made included.
- **Cache** counts the UTC days (``cache_counters.day``) whose midnight falls in the window:
  the counters are kept per UTC day, so a local day or a rolling 24 hours is approximated by
  the one UTC day that starts inside it.

A ratio whose denominator is zero is ``None`` (rendered "n/a"), never 0.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from orchestration.agents.planning import LLM_RUNBOOK_ID
from orchestration.enums import (
    ApprovalPurpose,
    IncidentStatus,
    PlanStatus,
    StepKind,
    StepStatus,
)
from orchestration.models import (
    Approval,
    AuditEvent,
    CacheCounter,
    CostEntry,
    Incident,
    ModelCall,
    Plan,
    Step,
    Vote,
)

TOP_PLANS = 5
MAX_BUDGET_EVENTS = 20
DIMENSIONS = ("role", "tool", "runbook_id", "channel")
MODEL_TOOL_PREFIX = "llm:"  # the cost entries of model calls: ``tool`` is ``llm:<model>``

_EXECUTED = (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.COMPENSATED)
_CHANGE_DECIDED = (*_EXECUTED, StepStatus.REJECTED)
_CHANGE_FALSE_POSITIVE = (StepStatus.REJECTED, StepStatus.COMPENSATED)

_FROZEN = ConfigDict(frozen=True)


class Amount(BaseModel):
    """Spend under one key of a dimension (or the total)."""

    model_config = _FROZEN
    key: str
    usd: float = 0.0
    tokens: int = 0


class DaySpend(BaseModel):
    """One day of the spend trend, with its breakdowns (largest first)."""

    model_config = _FROZEN
    day: date
    usd: float = 0.0
    tokens: int = 0
    by_role: tuple[Amount, ...] = ()
    by_tool: tuple[Amount, ...] = ()
    by_runbook: tuple[Amount, ...] = ()


class CostlyPlan(BaseModel):
    """A plan among the costliest of the window."""

    model_config = _FROZEN
    plan_id: str
    runbook_id: str
    incident_text: str
    status: str
    usd: float
    tokens: int


class PersonTime(BaseModel):
    """The time one approver's votes cost: from each card posted to their vote on it."""

    model_config = _FROZEN
    voter: str
    seconds: float = 0.0
    votes: int = 0


class ModelUsage(BaseModel):
    """What one agent role spent on one model: metered calls, tokens, USD."""

    model_config = _FROZEN
    role: str
    model: str
    calls: int = 0
    tokens: int = 0
    usd: float = 0.0


class CallCount(BaseModel):
    """How many calls of one role to one model ended with one outcome."""

    model_config = _FROZEN
    role: str
    model: str
    outcome: str
    calls: int = 0


class BudgetEvent(BaseModel):
    """A budget warning (soft limit asked humans) or stop (hard limit, or blocked by forecast)."""

    model_config = _FROZEN
    at: datetime
    kind: str  # "warning" | "stop" | "blocked"
    plan_id: str
    runbook_id: str
    reason: str


class OpsReport(BaseModel):
    """Every figure of one window; see the module docstring for which rows each counts."""

    model_config = _FROZEN
    start: datetime
    end: datetime

    spend: Amount
    by_role: tuple[Amount, ...] = ()
    by_tool: tuple[Amount, ...] = ()
    by_runbook: tuple[Amount, ...] = ()
    by_channel: tuple[Amount, ...] = ()
    trend: tuple[DaySpend, ...] = ()
    costliest: tuple[CostlyPlan, ...] = ()
    budget_warnings: tuple[BudgetEvent, ...] = ()
    budget_stops: tuple[BudgetEvent, ...] = ()
    budget_warning_count: int = 0
    budget_stop_count: int = 0

    cache_hits: int = 0
    cache_misses: int = 0
    incidents_opened: int = 0
    incidents_resolved: int = 0
    plans_finished: int = 0
    plans_succeeded: int = 0
    plans_escalated: int = 0
    actions_executed: int = 0
    actions_succeeded: int = 0
    changes_decided: int = 0
    changes_false_positive: int = 0
    finished_plans_usd: float = 0.0

    cache_hit_rate: float | None = None
    mttr_s: float | None = None
    action_success_rate: float | None = None
    escalation_rate: float | None = None
    cost_per_successful_action_usd: float | None = None
    false_positive_rate: float | None = None
    change_lead_time_s: float | None = None
    # People time: votes cast in the window, each from its card's posting to the vote.
    people_s: float = 0.0
    people_votes: int = 0
    people: tuple[PersonTime, ...] = ()
    # Which planner made the plans proposed in the window (plans created in it).
    plans_proposed: int = 0
    plans_by_llm: int = 0
    llm_plan_share: float | None = None
    # The agents' model calls: spend by role and model, and calls by outcome.
    model_usage: tuple[ModelUsage, ...] = ()
    model_calls: tuple[CallCount, ...] = ()

    @property
    def plans_by_runbook(self) -> int:
        """Plans proposed in the window that a runbook made."""
        return self.plans_proposed - self.plans_by_llm


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when the denominator is zero."""
    return numerator / denominator if denominator else None


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean, or None for no values."""
    return sum(values) / len(values) if values else None


def _in_window(column: Any, start: datetime, end: datetime) -> tuple[Any, Any]:
    return column >= start, column < end


def _sorted(totals: dict[str, list[float]]) -> tuple[Amount, ...]:
    amounts = [Amount(key=k, usd=v[0], tokens=int(v[1])) for k, v in totals.items()]
    return tuple(sorted(amounts, key=lambda a: (-a.usd, -a.tokens, a.key)))


def _spend_rows(
    session: Session, start: datetime, end: datetime, dims: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Spend grouped by all of ``dims`` at once: ``(*keys, usd, tokens, entries)`` rows."""
    columns = [getattr(CostEntry, d) for d in dims]
    rows = session.connection().execute(
        sa_select(*columns, func.sum(CostEntry.usd), func.sum(CostEntry.tokens), func.count())
        .where(*_in_window(CostEntry.at, start, end))
        .group_by(*columns)
    )
    return [tuple(row) for row in rows]


def _grouped_spend(
    session: Session,
    start: datetime,
    end: datetime,
    dims: Sequence[str],
    *,
    rows: Sequence[tuple[Any, ...]] | None = None,
) -> tuple[Amount, dict[str, tuple[Amount, ...]]]:
    """Total spend and spend by each of ``dims`` in one grouped query (or from its ``rows``)."""
    if rows is None:
        rows = _spend_rows(session, start, end, dims)
    per_dim: dict[str, dict[str, list[float]]] = {d: defaultdict(lambda: [0.0, 0]) for d in dims}
    total_usd, total_tokens = 0.0, 0
    for row in rows:
        *keys, usd, tokens, _entries = row
        usd, tokens = float(usd or 0), int(tokens or 0)
        total_usd += usd
        total_tokens += tokens
        for dim, key in zip(dims, keys, strict=True):
            acc = per_dim[dim][str(key)]
            acc[0] += usd
            acc[1] += tokens
    return (
        Amount(key="total", usd=total_usd, tokens=total_tokens),
        {d: _sorted(per_dim[d]) for d in dims},
    )


Spent = tuple[Amount, dict[str, tuple[Amount, ...]]]


def spend_by_day(
    session: Session,
    days: Iterable[tuple[date, datetime, datetime]],
    *,
    known: dict[tuple[datetime, datetime], Spent] | None = None,
) -> tuple[DaySpend, ...]:
    """Spend per day, each day given as ``(day, start, end)`` (local days have local bounds).

    ``known`` holds windows already summed (by at least role, tool and runbook): the digest's
    own day is the trend's last, and is not read twice.
    """
    out = []
    for day, start, end in days:
        found = (known or {}).get((start, end))
        total, dims = found or _grouped_spend(session, start, end, ("role", "tool", "runbook_id"))
        out.append(
            DaySpend(
                day=day,
                usd=total.usd,
                tokens=total.tokens,
                by_role=dims["role"],
                by_tool=dims["tool"],
                by_runbook=dims["runbook_id"],
            )
        )
    return tuple(out)


def costliest_plans(
    session: Session, start: datetime, end: datetime, *, limit: int = TOP_PLANS
) -> tuple[CostlyPlan, ...]:
    """The plans that spent most in the window (ties by plan id), with runbook and incident."""
    usd = func.sum(CostEntry.usd)
    rows = session.exec(
        select(CostEntry.plan_id, usd, func.sum(CostEntry.tokens))
        .where(*_in_window(CostEntry.at, start, end))
        .group_by(CostEntry.plan_id)
        .order_by(usd.desc(), col(CostEntry.plan_id))
        .limit(limit)
    ).all()
    out = []
    for plan_id, spent, tokens in rows:
        found = session.exec(
            select(Plan, Incident)
            .join(Incident, col(Incident.id) == col(Plan.incident_id), isouter=True)
            .where(Plan.id == plan_id)
        ).first()
        plan, incident = found if found else (None, None)
        out.append(
            CostlyPlan(
                plan_id=plan_id,
                runbook_id=plan.runbook_id if plan else "",
                incident_text=incident.text if incident else "",
                status=plan.status if plan else "",
                usd=float(spent or 0),
                tokens=int(tokens or 0),
            )
        )
    return tuple(out)


def budget_events(
    session: Session, start: datetime, end: datetime
) -> tuple[list[BudgetEvent], list[BudgetEvent]]:
    """Warnings and stops in the window, oldest first.

    Warning: an ``approval_requested`` audit event whose ``detail.purpose`` is ``budget`` (the
    soft limit asked humans to continue). Stop: a ``plan_finished`` event with code
    ``budget_exceeded`` (the hard limit halted the plan), or a ``plan_blocked`` event with code
    ``budget_forecast`` (the forecast exceeded the budget before the plan started).
    """
    rows = session.exec(
        select(AuditEvent, Plan.runbook_id)
        .join(Plan, col(Plan.id) == col(AuditEvent.plan_id), isouter=True)
        .where(
            col(AuditEvent.event).in_(("approval_requested", "plan_finished", "plan_blocked")),
            *_in_window(AuditEvent.at, start, end),
        )
        .order_by(col(AuditEvent.at), col(AuditEvent.id))
    ).all()
    warnings: list[BudgetEvent] = []
    stops: list[BudgetEvent] = []
    for event, runbook_id in rows:
        detail = event.detail or {}
        kind = None
        if event.event == "approval_requested":
            if detail.get("purpose") == ApprovalPurpose.BUDGET.value:
                kind = "warning"
        elif event.event == "plan_finished" and event.code == "budget_exceeded":
            kind = "stop"
        elif event.event == "plan_blocked" and event.code == "budget_forecast":
            kind = "blocked"
        if kind is None:
            continue
        reason = str(detail.get("reason") or "")
        if kind == "blocked":
            reason = (
                f"forecast ${float(detail.get('forecast_usd') or 0):.4f} > "
                f"budget ${float(detail.get('budget_usd') or 0):.4f}"
            )
        item = BudgetEvent(
            at=event.at,
            kind=kind,
            plan_id=event.plan_id or "",
            runbook_id=runbook_id or "",
            reason=reason,
        )
        (warnings if kind == "warning" else stops).append(item)
    return warnings, stops


def utc_days(start: datetime, end: datetime) -> list[str]:
    """The UTC days (``YYYY-MM-DD``) whose midnight falls in ``[start, end)``."""
    first = datetime.combine(start.date(), datetime.min.time(), tzinfo=start.tzinfo)
    if first < start:
        first += timedelta(days=1)
    days = []
    while first < end:
        days.append(first.date().isoformat())
        first += timedelta(days=1)
    return days


def cache_counts(session: Session, start: datetime, end: datetime) -> tuple[int, int]:
    """Cache (hits, misses) over the UTC days of the window (see :func:`utc_days`)."""
    days = utc_days(start, end)
    if not days:
        return 0, 0
    row = session.exec(
        select(func.sum(CacheCounter.hits), func.sum(CacheCounter.misses)).where(
            col(CacheCounter.day).in_(days)
        )
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


def planned_by_llm(session: Session, start: datetime, end: datetime) -> tuple[int, int]:
    """Plans created in the window, and how many of them the LLM Planner made."""
    rows = session.exec(
        select(Plan.runbook_id, func.count())
        .where(*_in_window(Plan.created_at, start, end))
        .group_by(Plan.runbook_id)
    ).all()
    total = sum(int(count) for _, count in rows)
    return total, sum(int(count) for runbook, count in rows if runbook == LLM_RUNBOOK_ID)


def model_usage(
    rows: Iterable[tuple[Any, ...]], dims: Sequence[str] = DIMENSIONS
) -> tuple[ModelUsage, ...]:
    """Tokens and USD of the model calls by role and model (most tokens first), from the
    window's spend rows (:func:`_spend_rows` over ``dims``, which hold role and tool): the
    digest reads its cost rows once."""
    role_at, tool_at = dims.index("role"), dims.index("tool")
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for row in rows:
        tool = str(row[tool_at])
        if not tool.startswith(MODEL_TOOL_PREFIX):
            continue
        *_, usd, tokens, entries = row
        acc = totals[str(row[role_at]), tool.removeprefix(MODEL_TOOL_PREFIX)]
        acc[0] += int(entries or 0)
        acc[1] += int(tokens or 0)
        acc[2] += float(usd or 0)
    found = [
        ModelUsage(role=role, model=model, calls=int(c), tokens=int(t), usd=u)
        for (role, model), (c, t, u) in totals.items()
    ]
    return tuple(sorted(found, key=lambda u: (-u.tokens, u.role, u.model)))


def model_call_counts(session: Session, start: datetime, end: datetime) -> tuple[CallCount, ...]:
    """The agents' model calls in the window by role, model and outcome."""
    rows = session.exec(
        select(ModelCall.role, ModelCall.model, ModelCall.outcome, func.count())
        .where(*_in_window(ModelCall.at, start, end))
        .group_by(ModelCall.role, ModelCall.model, ModelCall.outcome)
    ).all()
    found = [
        CallCount(role=role, model=model, outcome=outcome, calls=int(calls))
        for role, model, outcome, calls in rows
    ]
    return tuple(sorted(found, key=lambda c: (c.role, c.model, c.outcome)))


def people_time(session: Session, start: datetime, end: datetime) -> tuple[PersonTime, ...]:
    """Per approver, the seconds from each approval card's posting to their vote on it, over
    the votes cast in the window (most time first)."""
    rows = session.exec(
        select(Vote.voter, Vote.created_at, Approval.created_at)
        .join(Approval, col(Approval.id) == col(Vote.approval_id))
        .where(*_in_window(Vote.created_at, start, end))
    ).all()
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for voter, voted, posted in rows:
        totals[voter][0] += max((voted - posted).total_seconds(), 0.0)
        totals[voter][1] += 1
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return tuple(PersonTime(voter=v, seconds=t, votes=int(n)) for v, (t, n) in ordered)


def resolve_times(session: Session, start: datetime, end: datetime) -> list[float]:
    """Seconds from opening to resolution of each incident resolved in the window."""
    rows = session.exec(
        select(Incident.created_at, Incident.resolved_at).where(
            Incident.status == IncidentStatus.RESOLVED.value,
            *_in_window(Incident.resolved_at, start, end),
        )
    ).all()
    return [(resolved - created).total_seconds() for created, resolved in rows if resolved]


# Plan endings that hand the incident to humans: halted (a rejection, a policy denial, an
# approval that timed out, a budget or progress stop, a stop while in doubt) or failed.
_TAKEN_OVER = (PlanStatus.HALTED.value, PlanStatus.FAILED.value)


def escalated_plans(session: Session, cohort: Any, plans: Sequence[Any]) -> set[str]:
    """The plans of ``cohort`` where humans had to take over.

    A plan counts when it ended halted or failed (a rejection, a policy denial, an approval
    that expired, a budget or no-progress stop, a failed step), when opsgate escalated it (a
    ``plan_escalated`` audit event), or when one of its steps went in doubt (an ``in_doubt``
    approval record asked humans what happened). A designed approval that was granted, a
    plan the knowledge made stale and an incident closed by hand do not count.
    """
    found = {row[0] for row in plans if row[1] in _TAKEN_OVER}
    found |= {
        pid
        for pid in session.exec(
            select(AuditEvent.plan_id).where(
                AuditEvent.event == "plan_escalated", col(AuditEvent.plan_id).in_(cohort)
            )
        )
        if pid
    }
    found |= set(
        session.exec(
            select(Approval.plan_id).where(
                col(Approval.plan_id).in_(cohort),
                Approval.purpose == ApprovalPurpose.IN_DOUBT.value,
            )
        )
    )
    found |= set(
        session.exec(
            select(Step.plan_id).where(
                col(Step.plan_id).in_(cohort), Step.status == StepStatus.IN_DOUBT.value
            )
        )
    )
    return found


def ops_report(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    trend_days: Sequence[tuple[date, datetime, datetime]] = (),
) -> OpsReport:
    """Every figure of the window ``[start, end)``.

    Formulas (cohorts as in the module docstring; "action" = a runbook step, compensations are
    the remedy, not actions of their own):

    - ``cache_hit_rate`` = hits / (hits + misses).
    - ``mttr_s`` = mean(resolved_at - created_at) over incidents resolved in the window.
    - ``action_success_rate`` = succeeded actions / executed actions, where executed means
      status succeeded, failed or compensated (it ran; a compensated step ran and was undone,
      so it does not count as a success).
    - ``escalation_rate`` = plans where humans had to take over / plans finished; see
      :func:`escalated_plans`. An approval the runbook's policy asks for by design is not an
      escalation: it is the plan working as written.
    - ``cost_per_successful_action_usd`` = spend of the finished plans (all their cost
      entries, whenever spent) / succeeded actions of those plans.
    - ``false_positive_rate`` = state-changing (not read-only) actions that a human rejected or
      that were compensated / state-changing actions that were decided (rejected, or ran:
      succeeded, failed, compensated). Policy denials never reached a human or a tool and are
      not counted.
    - ``change_lead_time_s`` = mean(finished_at - created_at) over plans finished.
    """
    spent = _spend_rows(session, start, end, DIMENSIONS)
    total, dims = _grouped_spend(session, start, end, DIMENSIONS, rows=spent)
    proposed, by_llm = planned_by_llm(session, start, end)
    people = people_time(session, start, end)
    warnings, stops = budget_events(session, start, end)
    hits, misses = cache_counts(session, start, end)
    resolve_s = resolve_times(session, start, end)
    opened = session.exec(
        select(func.count())
        .select_from(Incident)
        .where(*_in_window(Incident.created_at, start, end))
    ).one()

    cohort = (
        select(Plan.id)
        .where(*_in_window(Plan.finished_at, start, end))
        .where(Plan.status != PlanStatus.SHADOW.value)
    )
    plans = session.exec(
        select(Plan.id, Plan.status, Plan.created_at, Plan.finished_at).where(
            col(Plan.id).in_(cohort)
        )
    ).all()
    steps = session.exec(
        select(Step.status, Step.read_only).where(
            col(Step.plan_id).in_(cohort), Step.kind == StepKind.RUNBOOK.value
        )
    ).all()
    escalated = escalated_plans(session, cohort, plans)
    cohort_usd = float(
        session.exec(
            select(func.coalesce(func.sum(CostEntry.usd), 0.0)).where(
                col(CostEntry.plan_id).in_(cohort)
            )
        ).one()
    )

    executed = sum(1 for status, _ in steps if status in _EXECUTED)
    succeeded = sum(1 for status, _ in steps if status == StepStatus.SUCCEEDED)
    changes = [status for status, read_only in steps if not read_only]
    decided = sum(1 for status in changes if status in _CHANGE_DECIDED)
    false_pos = sum(1 for status in changes if status in _CHANGE_FALSE_POSITIVE)
    lead = [(fin - created).total_seconds() for _, _, created, fin in plans if fin is not None]

    return OpsReport(
        start=start,
        end=end,
        spend=total,
        by_role=dims["role"],
        by_tool=dims["tool"],
        by_runbook=dims["runbook_id"],
        by_channel=dims["channel"],
        trend=spend_by_day(session, trend_days, known={(start, end): (total, dims)}),
        costliest=costliest_plans(session, start, end),
        budget_warnings=tuple(warnings[-MAX_BUDGET_EVENTS:]),
        budget_stops=tuple(stops[-MAX_BUDGET_EVENTS:]),
        budget_warning_count=len(warnings),
        budget_stop_count=len(stops),
        cache_hits=hits,
        cache_misses=misses,
        incidents_opened=int(opened),
        incidents_resolved=len(resolve_s),
        plans_finished=len(plans),
        plans_succeeded=sum(1 for _, status, _, _ in plans if status == PlanStatus.SUCCEEDED),
        plans_escalated=len(escalated),
        actions_executed=executed,
        actions_succeeded=succeeded,
        changes_decided=decided,
        changes_false_positive=false_pos,
        finished_plans_usd=cohort_usd,
        cache_hit_rate=ratio(hits, hits + misses),
        mttr_s=mean(resolve_s),
        action_success_rate=ratio(succeeded, executed),
        escalation_rate=ratio(len(escalated), len(plans)),
        cost_per_successful_action_usd=ratio(cohort_usd, succeeded),
        false_positive_rate=ratio(false_pos, decided),
        change_lead_time_s=mean(lead),
        people_s=sum(p.seconds for p in people),
        people_votes=sum(p.votes for p in people),
        people=people,
        plans_proposed=proposed,
        plans_by_llm=by_llm,
        llm_plan_share=ratio(by_llm, proposed),
        model_usage=model_usage(spent),
        model_calls=model_call_counts(session, start, end),
    )
