"""Plain rows for the hot-path units of work: read with one Core SELECT, written back as one UPDATE.

The ORM costs more than the work on the hot path (identity map, attribute events, a flush per
object). The units of work in :func:`orchestration.stepflow.finish_and_next` and
:func:`orchestration.approvals.votes.cast_vote` read the plan, the step and the approval into
these dataclasses instead, run the same transition helpers on them as on the ORM objects, and
write only the columns that changed (:func:`write_changes`). They carry the columns those units
use; a unit that needs anything else takes the ORM path.
"""

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Label, Row, Table

from orchestration.db import update_row
from orchestration.models import Approval, Plan, Step

PLANS: Table = Plan.__table__  # type: ignore[attr-defined]
STEPS: Table = Step.__table__  # type: ignore[attr-defined]
APPROVALS: Table = Approval.__table__  # type: ignore[attr-defined]

R = TypeVar("R", "PlanRow", "StepRow", "ApprovalRow")


@dataclass(slots=True)
class PlanRow:
    """The columns of ``plans`` the hot path reads or changes."""

    id: str
    incident_id: str
    version: int
    runbook_id: str
    knowledge_pins: dict[str, int]
    plan_hash: str
    status: str
    status_reason: str
    mode: str
    requester: str
    channel: str
    budget_usd: float
    budget_tokens: int
    soft_ratio: float
    soft_acknowledged: bool
    spent_usd: float
    spent_tokens: int
    denials: int
    no_progress: int
    correlation_id: str


@dataclass(slots=True)
class StepRow:
    """The columns of ``steps`` the hot path reads or changes."""

    id: str
    plan_id: str
    position: int
    key: str
    kind: str
    title: str
    tool_action: str
    args: dict[str, Any]
    args_hash: str
    declared_risk: str
    risk: str
    read_only: bool
    idempotent: bool
    expect: dict[str, Any] | None
    observe: dict[str, Any] | None
    compensate: dict[str, Any] | None
    compensates_step: str | None
    status: str
    decision_code: str
    decision_reason: str
    quorum: int
    exclude_requester: bool
    attempts: int
    result: dict[str, Any] | None
    error_code: str | None
    error: str | None
    estimate_usd: float
    cost_usd: float
    tokens: int
    duration_ms: float
    started_at: datetime | None
    finished_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    canary_step: str | None
    rollout: dict[str, Any] | None


@dataclass(slots=True)
class ApprovalRow:
    """The columns of ``approvals`` the hot path reads or changes."""

    id: str
    nonce: str
    purpose: str
    plan_id: str
    plan_version: int
    step_id: str | None
    args_hash: str
    quorum: int
    exclude_requester: bool
    requester: str
    state: str
    reason: str
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None


_TABLES: dict[type, Table] = {PlanRow: PLANS, StepRow: STEPS, ApprovalRow: APPROVALS}
_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in (PlanRow, StepRow, ApprovalRow)
}


def columns(cls: type[R], prefix: str) -> list[Label[Any]]:
    """The SELECT list for ``cls``, each column labelled ``prefix + name``."""
    table = _TABLES[cls]
    return [table.c[name].label(prefix + name) for name in _NAMES[cls]]


def take(cls: type[R], row: "Row[*tuple[Any, ...]]", prefix: str) -> R:
    """``cls`` from the columns of ``row`` labelled with ``prefix``."""
    mapping = row._mapping
    return cls(*(mapping[prefix + name] for name in _NAMES[cls]))


def snapshot(obj: "PlanRow | StepRow | ApprovalRow") -> tuple[Any, ...]:
    """The values of ``obj`` now, to compare with after a change (:func:`write_changes`)."""
    return tuple(getattr(obj, name) for name in _NAMES[type(obj)])


def write_changes(
    conn: Connection, obj: "PlanRow | StepRow | ApprovalRow", before: tuple[Any, ...]
) -> bool:
    """``UPDATE ... SET <changed columns> WHERE id = obj.id``; False when nothing changed."""
    names = _NAMES[type(obj)]
    changed = {
        name: value
        for name, old in zip(names, before, strict=True)
        if (value := getattr(obj, name)) != old or type(value) is not type(old)
    }
    if not changed:
        return False
    update_row(conn, _TABLES[type(obj)], obj.id, changed)
    return True
