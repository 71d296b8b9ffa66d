"""One timeline from the audit events, tool-call spans and cost entries of a scope."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import or_
from sqlmodel import Session, col, select

from orchestration.config import RetentionConfig
from orchestration.enums import SpanKind
from orchestration.errors import NotFound
from orchestration.models import AuditEvent, CostEntry, Incident, Plan, Span, Step
from orchestration.retention import read_archive

# What of a recorded response the timeline shows: metadata, not the body.
_RESPONSE_KEYS = ("ok", "status", "summary", "duration_ms", "cost_usd", "tokens", "error_code")


class Entry(BaseModel):
    """One record of the timeline."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    source: str  # audit | tool_call | cost
    event: str
    actor: str = ""
    role: str = ""
    correlation_id: str = ""
    incident_id: str | None = None
    plan_id: str | None = None
    step_id: str | None = None
    nonce: str | None = None
    code: str | None = None
    detail: dict[str, Any] = {}

    def line(self) -> dict[str, Any]:
        """The entry as one JSON object (a line of JSON Lines)."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Scope:
    """What a timeline covers: the plans of one incident, one plan, or one correlation id."""

    label: str
    plan_ids: tuple[str, ...] = ()
    incident_id: str | None = None
    correlation_id: str | None = None


def resolve(
    session: Session, ref: str | None = None, *, correlation_id: str | None = None
) -> Scope:
    """The scope ``ref`` names (an incident or plan id, or a unique prefix of one), or the
    correlation id's. NotFound says what was not found."""
    if correlation_id:
        plans = session.exec(select(Plan.id).where(Plan.correlation_id == correlation_id)).all()
        return Scope(
            label=f"correlation id {correlation_id}",
            plan_ids=tuple(plans),
            correlation_id=correlation_id,
        )
    ref = (ref or "").strip().lower()
    if not ref:
        raise NotFound("name a plan or incident id, or give --correlation-id")
    incidents = list(
        session.exec(select(Incident.id).where(col(Incident.id).startswith(ref)).limit(2))
    )
    found = list(session.exec(select(Plan).where(col(Plan.id).startswith(ref)).limit(2)))
    if len(incidents) + len(found) > 1:
        raise NotFound(f"{ref!r} names more than one plan or incident; give more characters")
    if incidents:
        ids = session.exec(
            select(Plan.id).where(Plan.incident_id == incidents[0]).order_by(col(Plan.version))
        ).all()
        return Scope(
            label=f"incident {incidents[0]}", plan_ids=tuple(ids), incident_id=incidents[0]
        )
    if found:
        plan = found[0]
        return Scope(label=f"plan {plan.id}", plan_ids=(plan.id,), incident_id=plan.incident_id)
    raise NotFound(f"no plan or incident {ref!r}")


def timeline(
    session: Session, scope: Scope, *, archive: "Path | RetentionConfig | None" = None
) -> list[Entry]:
    """Every record of ``scope``, oldest first; at equal times, a tool call follows the
    start of its step and a cost entry the step's result (a clock's resolution is coarse).

    With ``archive`` (``retention``, or its folder), audit events that retention moved out of the
    database are read from there too.
    """
    stored = list(_audit(session, scope))
    merged = _archived_audit(archive, scope) + stored if archive is not None else stored
    for call in _calls(session, scope):
        _insert_after(merged, call, ("step_started", "tool_called"))
    for cost in _costs(session, scope):
        _insert_after(merged, cost, ("step_succeeded", "step_failed"))
    return sorted(merged, key=lambda e: e.at)  # stable: the causal order within one instant


def _insert_after(entries: list[Entry], entry: Entry, events: tuple[str, ...]) -> None:
    """Put ``entry`` after the last earlier record of its step among ``events``."""
    index = len(entries)
    for i in range(len(entries) - 1, -1, -1):
        other = entries[i]
        if other.step_id == entry.step_id and other.event in events and other.at <= entry.at:
            index = i + 1
            break
    entries.insert(index, entry)


def _in_scope(row: dict[str, Any], scope: Scope) -> bool:
    if scope.correlation_id:
        return bool(row.get("correlation_id") == scope.correlation_id)
    if scope.incident_id and row.get("incident_id") == scope.incident_id:
        return True
    return row.get("plan_id") in scope.plan_ids


def _archived_audit(archive: "Path | RetentionConfig", scope: Scope) -> list[Entry]:
    """Audit events of ``scope`` in the retention archive (older than any still stored)."""
    return [
        Entry(
            at=datetime.fromisoformat(row["at"]),
            source="audit",
            event=row["event"],
            actor=row.get("actor") or "",
            role=row.get("role") or "",
            correlation_id=row.get("correlation_id") or "",
            incident_id=row.get("incident_id"),
            plan_id=row.get("plan_id"),
            step_id=row.get("step_id"),
            nonce=row.get("nonce"),
            code=row.get("code"),
            detail=row.get("detail") or {},
        )
        for row in read_archive(archive, "audit")
        if _in_scope(row, scope)
    ]


def _audit(session: Session, scope: Scope) -> Iterable[Entry]:
    query = select(AuditEvent)
    if scope.correlation_id:
        query = query.where(AuditEvent.correlation_id == scope.correlation_id)
    elif scope.incident_id:
        query = query.where(
            or_(
                col(AuditEvent.incident_id) == scope.incident_id,
                col(AuditEvent.plan_id).in_(list(scope.plan_ids)),
            )
        )
    else:
        query = query.where(col(AuditEvent.plan_id).in_(list(scope.plan_ids)))
    for event in session.exec(query.order_by(col(AuditEvent.id))):
        yield Entry(
            at=event.at,
            source="audit",
            event=event.event,
            actor=event.actor,
            role=event.role,
            correlation_id=event.correlation_id,
            incident_id=event.incident_id,
            plan_id=event.plan_id,
            step_id=event.step_id,
            nonce=event.nonce,
            code=event.code,
            detail=event.detail,
        )


def _calls(session: Session, scope: Scope) -> Iterable[Entry]:
    if not scope.plan_ids:
        return
    steps = {
        s.id: s
        for s in session.exec(select(Step).where(col(Step.plan_id).in_(list(scope.plan_ids))))
    }
    incidents = dict(
        session.exec(
            select(Plan.id, Plan.incident_id).where(col(Plan.id).in_(list(scope.plan_ids)))
        ).all()
    )
    spans = session.exec(
        select(Span)
        .where(col(Span.plan_id).in_(list(scope.plan_ids)), Span.kind == SpanKind.TOOL_CALL.value)
        .order_by(col(Span.started_at))
    )
    for sp in spans:
        step = steps.get(sp.step_id or "")
        attrs = sp.attributes
        response = attrs.get("response") or {}
        result = response.get("result") if isinstance(response, dict) else None
        error = response.get("error") if isinstance(response, dict) else None
        detail: dict[str, Any] = {
            "tool": sp.name,
            "attempt": attrs.get("attempt"),
            "status": sp.status,
            "duration_ms": round(sp.duration_ms, 1),
            "request": {
                "args": step.args if step else None,
                "idempotency_key": attrs.get("idempotency_key"),
            },
            "response": (
                {k: result.get(k) for k in _RESPONSE_KEYS if k in result}
                if isinstance(result, dict)
                else error
                if isinstance(error, dict)
                else {"summary": attrs.get("summary")}
            ),
        }
        if attrs.get("in_doubt_check"):
            detail["in_doubt_check"] = True
        if attrs.get("late"):
            detail["late"] = True
        yield Entry(
            at=sp.started_at,
            source="tool_call",
            event="tool_called",
            actor="executor",
            role="executor",
            correlation_id=sp.trace_id,
            incident_id=incidents.get(sp.plan_id or ""),
            plan_id=sp.plan_id,
            step_id=sp.step_id,
            code=None if sp.status == "ok" else sp.status,
            detail=detail,
        )


def _costs(session: Session, scope: Scope) -> Iterable[Entry]:
    if not scope.plan_ids:
        return
    traces = dict(
        session.exec(
            select(Plan.id, Plan.correlation_id).where(col(Plan.id).in_(list(scope.plan_ids)))
        ).all()
    )
    rows = session.exec(
        select(CostEntry)
        .where(col(CostEntry.plan_id).in_(list(scope.plan_ids)))
        .order_by(col(CostEntry.id))
    )
    for row in rows:
        yield Entry(
            at=row.at,
            source="cost",
            event="cost_recorded",
            actor=row.role,
            role=row.role,
            correlation_id=traces.get(row.plan_id, ""),
            incident_id=row.incident_id,
            plan_id=row.plan_id,
            step_id=row.step_id,
            detail={
                "tool": row.tool,
                "usd": row.usd,
                "tokens": row.tokens,
                "duration_ms": round(row.duration_ms, 1),
                "runbook": row.runbook_id,
            },
        )
