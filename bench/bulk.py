"""Bulk rows for the benchmarks: finished history and cost rows, fast on both databases.

SQLite gets one ``executemany`` per table in one transaction; PostgreSQL gets ``COPY ... FROM
STDIN`` (psycopg's copy protocol), the fastest way in. Rows go straight into the tables the
models define, so the benchmark databases look like ones opsgate filled itself; triggers fire as
they would (``step_cost_stats`` is kept by them on both databases).
"""

import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Engine, Table, insert

from orchestration.models import AuditEvent, CostEntry, Incident, OutboxMessage, Plan, Step

CHUNK = 20_000


def tables() -> dict[str, Table]:
    """The history tables by name."""
    models = (Incident, Plan, Step, CostEntry, AuditEvent, OutboxMessage)
    return {m.__tablename__: m.__table__ for m in models}  # type: ignore[attr-defined]


def load(engine: Engine, table: Table, rows: Iterable[dict[str, Any]]) -> int:
    """Insert ``rows`` (dicts with the same keys) into ``table``; return how many."""
    count = 0
    for chunk in _chunks(rows, CHUNK):
        count += len(chunk)
        if engine.dialect.name == "postgresql":
            _copy(engine, table, chunk)
        else:
            with engine.begin() as connection:
                connection.execute(insert(table), chunk)
    return count


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _copy(engine: Engine, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    from psycopg.types.json import Json  # noqa: PLC0415 - PostgreSQL only

    names = list(rows[0])
    json_columns = {c.name for c in table.columns if _is_json(c.type)}
    columns = ", ".join(f'"{n}"' for n in names)
    with engine.begin() as connection:
        raw: Any = connection.connection.dbapi_connection
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(
                    [
                        Json(row[n]) if n in json_columns and row[n] is not None else row[n]
                        for n in names
                    ]
                )


def _is_json(kind: Any) -> bool:
    impl = getattr(kind, "impl_instance", kind)  # TypeDecorator (RedactedJSON) or the type
    return isinstance(impl, JSON)


def finished_plans(
    count: int, *, channel: str, tool_action: str, newest: datetime
) -> dict[str, list[dict[str, Any]]]:
    """Rows of ``count`` resolved incidents, each with one succeeded plan of two succeeded
    steps, their cost entries, audit events and delivered outbox messages, one every minute
    back from ``newest`` (a day before it at the latest, so none of it is "today")."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in tables()}
    for n in range(count):
        at = newest - timedelta(days=1, minutes=n)
        iid, pid = uuid.uuid4().hex, uuid.uuid4().hex
        corr = uuid.uuid4().hex
        out["incidents"].append(
            {
                "id": iid,
                "text": f"history {n}",
                "requester": "UREQ",
                "channel": channel,
                "status": "resolved",
                "source": "slack",
                "correlation_id": corr,
                "created_at": at,
                "resolved_at": at + timedelta(seconds=30),
            }
        )
        out["plans"].append(
            {
                "id": pid,
                "incident_id": iid,
                "version": 1,
                "runbook_id": "history",
                "runbook_version": 1,
                "knowledge_pins": {},
                "params": {},
                "plan_hash": "h",
                "status": "succeeded",
                "status_reason": "",
                "mode": "live",
                "requester": "UREQ",
                "channel": channel,
                "budget_usd": 1.0,
                "budget_tokens": 0,
                "soft_ratio": 0.8,
                "soft_acknowledged": False,
                "spent_usd": 0.002,
                "spent_tokens": 0,
                "forecast_usd": 0.002,
                "denials": 0,
                "no_progress": 0,
                "correlation_id": corr,
                "created_at": at,
                "finished_at": at + timedelta(seconds=20),
            }
        )
        for position in range(2):
            sid = uuid.uuid4().hex
            out["steps"].append(
                {
                    "id": sid,
                    "plan_id": pid,
                    "position": position,
                    "key": f"s{position}",
                    "kind": "runbook",
                    "title": "history step",
                    "tool_action": tool_action,
                    "args": {"n": position},
                    "args_hash": "h",
                    "declared_risk": "low",
                    "risk": "low",
                    "read_only": True,
                    "idempotent": True,
                    "status": "succeeded",
                    "decision_code": "",
                    "decision_reason": "",
                    "quorum": 0,
                    "exclude_requester": False,
                    "attempts": 1,
                    "result": {"ok": True},
                    "estimate_usd": 0.001,
                    "cost_usd": 0.001,
                    "tokens": 0,
                    "duration_ms": 1.0,
                    "started_at": at,
                    "finished_at": at + timedelta(seconds=1),
                }
            )
            out["cost_entries"].append(cost_row(at=at, plan_id=pid, step_id=sid, channel=channel))
            out["outbox"].append(
                {
                    "kind": "step_finished",
                    "channel": channel,
                    "incident_id": iid,
                    "plan_id": pid,
                    "step_id": sid,
                    "payload": {"n": position},
                    "created_at": at,
                    "attempts": 1,
                    "delivered_at": at + timedelta(seconds=1),
                }
            )
        for event in ("incident_opened", "plan_proposed", "step_succeeded", "plan_finished"):
            out["audit_events"].append(
                {
                    "at": at,
                    "event": event,
                    "actor": "opsgate",
                    "role": "system",
                    "correlation_id": corr,
                    "incident_id": iid,
                    "plan_id": pid,
                    "detail": {},
                }
            )
    return out


def cost_row(
    *,
    at: datetime,
    plan_id: str,
    step_id: str | None = None,
    channel: str = "",
    role: str = "executor",
    tool: str = "http",
    runbook_id: str = "history",
    usd: float = 0.001,
    tokens: int = 0,
) -> dict[str, Any]:
    """One ``cost_entries`` row."""
    return {
        "at": at,
        "incident_id": None,
        "plan_id": plan_id,
        "step_id": step_id,
        "role": role,
        "tool": tool,
        "runbook_id": runbook_id,
        "channel": channel,
        "usd": usd,
        "tokens": tokens,
        "duration_ms": 1.0,
    }
