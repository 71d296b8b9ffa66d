"""Writes every state transition leaves behind: audit event, trace span, outbox message.

They are called inside a unit of work, so they commit atomically with the change they describe.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session

from common import Role
from orchestration.db import SPANS_KEY, append_row
from orchestration.enums import SpanKind
from orchestration.models import AuditEvent, OutboxMessage, Span
from orchestration.telemetry import get_logger, sanitise

log = get_logger("opsgate.audit")
_AUDIT: Table = AuditEvent.__table__  # type: ignore[attr-defined]
_OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
_SPANS: Table = Span.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Ctx:
    """Who is acting, and on what: carried through one unit of work."""

    correlation_id: str
    now: datetime
    actor: str = "opsgate"
    role: Role = Role.SYSTEM
    incident_id: str | None = None
    plan_id: str | None = None
    channel: str = ""


def audit(
    session: Session,
    ctx: Ctx,
    event: str,
    *,
    step_id: str | None = None,
    nonce: str | None = None,
    code: str | None = None,
    actor: str | None = None,
    role: Role | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit event (and log it as one line)."""
    row = {
        "at": ctx.now,
        "event": event,
        "actor": actor or ctx.actor,
        "role": (role or ctx.role).value,
        "correlation_id": ctx.correlation_id,
        "incident_id": ctx.incident_id,
        "plan_id": ctx.plan_id,
        "step_id": step_id,
        "nonce": nonce,
        "code": code,
        "detail": sanitise(detail or {}),
    }
    append_row(session, _AUDIT, row)
    fields = {k: v for k, v in row.items() if k not in ("at", "event", "detail")}
    log.info(event, **fields, **row["detail"])


def emit(
    session: Session,
    ctx: Ctx,
    kind: str,
    payload: dict[str, Any],
    *,
    step_id: str | None = None,
) -> None:
    """Queue one message for the chat surface (delivered later, in order)."""
    append_row(
        session,
        _OUTBOX,
        {
            "kind": kind,
            "channel": ctx.channel,
            "incident_id": ctx.incident_id,
            "plan_id": ctx.plan_id,
            "step_id": step_id,
            # ``actor``: who caused the message; the surface lets reasons mention only them.
            "payload": sanitise(
                {"actor": ctx.actor, **payload, "correlation_id": ctx.correlation_id}
            ),
            "created_at": ctx.now,
            "attempts": 0,
            "next_attempt_at": None,
            "delivered_at": None,
            "last_error": None,
        },
    )


def span(
    session: Session,
    ctx: Ctx,
    *,
    kind: SpanKind,
    name: str,
    started_at: datetime,
    ended_at: datetime | None,
    parent_id: str | None = None,
    step_id: str | None = None,
    status: str = "ok",
    attributes: dict[str, Any] | None = None,
    span_id: str | None = None,
) -> str:
    """Record one span; returns its id."""
    sid = span_id or uuid.uuid4().hex[:16]
    duration = (ended_at - started_at).total_seconds() * 1000 if ended_at else 0.0
    row = {
        "id": sid,
        "trace_id": ctx.correlation_id,
        "parent_id": parent_id,
        "kind": kind.value,
        "name": name,
        "plan_id": ctx.plan_id,
        "step_id": step_id,
        "started_at": started_at,
        "ended_at": ended_at,
        "duration_ms": duration,
        "status": status,
        "attributes": sanitise(attributes or {}),
    }
    append_row(session, _SPANS, row)
    exported = session.info.get(SPANS_KEY)
    if exported is not None:  # exported once the unit commits (orchestration.otlp)
        exported.append({**row, "role": ctx.role.value, "incident_id": ctx.incident_id})
    return sid
