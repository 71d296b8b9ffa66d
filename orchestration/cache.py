"""Cache for repeated reads: read-only tool results reused for a TTL per tool.

Safety rule: a successful state-changing call of a tool clears that tool's cached reads, so a
verification after a restart never sees the answer from before it. A cached answer that fails
a step's ``expect`` is retried against the tool itself (see the Executor). Hits and misses are
counted per UTC day and tool action.
"""

from datetime import datetime, timedelta

from sqlmodel import Session, col, delete

from adapters import ToolResult
from orchestration.db import upsert
from orchestration.models import CacheCounter, CacheEntry


def lookup(session: Session, *, key: str, now: datetime) -> ToolResult | None:
    """The cached result under ``key`` (an args hash) if it has not expired."""
    entry = session.get(CacheEntry, key)
    if entry is None or entry.expires_at <= now:
        return None
    return ToolResult.model_validate(entry.value)


def store(
    session: Session,
    *,
    key: str,
    tool_action: str,
    result: ToolResult,
    now: datetime,
    ttl_s: float,
) -> None:
    """Remember ``result`` under ``key`` for ``ttl_s`` seconds (one upsert, no read)."""
    values = {
        "key": key,
        "tool_action": tool_action,
        "value": result.model_dump(mode="json"),
        "expires_at": now + timedelta(seconds=ttl_s),
    }
    upsert(session, CacheEntry.__table__, values, keys=["key"])  # type: ignore[attr-defined]


def invalidate_tool(session: Session, tool: str) -> None:
    """Forget every cached read of ``tool`` (after it changed something)."""
    session.exec(delete(CacheEntry).where(col(CacheEntry.tool_action).startswith(f"{tool}.")))


def count(session: Session, *, now: datetime, tool_action: str, hit: bool) -> None:
    """Add one hit or miss to today's counter of ``tool_action`` (an atomic upsert)."""
    table = CacheCounter.__table__  # type: ignore[attr-defined]
    column = "hits" if hit else "misses"
    upsert(
        session,
        table,
        {
            "day": now.date().isoformat(),
            "tool_action": tool_action,
            "hits": int(hit),
            "misses": int(not hit),
        },
        keys=["day", "tool_action"],
        update={column: getattr(table.c, column) + 1},
    )
