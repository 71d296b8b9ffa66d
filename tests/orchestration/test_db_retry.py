"""Contention: a unit of work that loses a deadlock or a lock runs again whole, in a fresh
transaction; after the last attempt the database's error reaches the caller unchanged."""

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session
from structlog.testing import capture_logs

from orchestration.db import Database, append_row
from orchestration.models import AuditEvent, CacheCounter

AUDIT = AuditEvent.__table__  # type: ignore[attr-defined]
COUNTERS = CacheCounter.__table__  # type: ignore[attr-defined]
AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BUMP = text("UPDATE cache_counters SET hits = hits + 1 WHERE tool_action = :key")
postgres_only = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def audit_row(event: str) -> dict[str, Any]:
    return {
        "at": AT,
        "event": event,
        "actor": "test",
        "role": "auditor",
        "correlation_id": "c",
        "detail": {},
    }


async def two_counters(db: Database) -> None:
    def work(session: Session) -> None:
        session.connection().execute(
            insert(COUNTERS),
            [{"day": "d", "tool_action": key, "hits": 0, "misses": 0} for key in ("a", "b")],
        )

    await db.run(work)


async def hits(db: Database) -> dict[str, int]:
    def work(session: Session) -> dict[str, int]:
        rows = session.connection().execute(select(COUNTERS.c.tool_action, COUNTERS.c.hits))
        return {str(key): int(count) for key, count in rows}

    return await db.run(work)


async def audit_events(db: Database) -> list[str]:
    def work(session: Session) -> list[str]:
        rows = session.connection().execute(select(AUDIT.c.event).order_by(AUDIT.c.event))
        return [event for (event,) in rows]

    return await db.run(work)


def retried(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] == "unit_of_work_retried"]


@postgres_only
async def test_a_real_deadlock_is_retried_and_both_units_complete(db_url: str) -> None:
    """Two units lock two rows in opposite order; PostgreSQL aborts one, which runs again."""
    db = Database(db_url, pool_size=2)
    await db.start()
    await two_counters(db)
    both_hold_one = threading.Barrier(2, timeout=30)
    calls = {"ab": 0, "ba": 0}

    def unit(name: str, first: str, second: str) -> Any:
        def work(session: Session) -> int:
            calls[name] += 1
            append_row(session, AUDIT, audit_row(f"{name}_done"))  # must be written once
            connection = session.connection()
            connection.execute(BUMP, {"key": first})
            if calls[name] == 1:
                both_hold_one.wait()  # each holds its first row; the second lock deadlocks
            connection.execute(BUMP, {"key": second})
            return calls[name]

        work.__qualname__ = f"deadlock_{name}"
        return work

    with capture_logs() as logs:
        results = await asyncio.gather(db.run(unit("ab", "a", "b")), db.run(unit("ba", "b", "a")))
    assert sorted(results) == [1, 2]  # one ran once, the deadlock's victim ran again
    assert calls == {"ab": 1, "ba": 2} or calls == {"ab": 2, "ba": 1}
    assert await hits(db) == {"a": 2, "b": 2}  # both units' whole effect, once each
    assert await audit_events(db) == ["ab_done", "ba_done"]  # the victim's queued row is gone
    [line] = retried(logs)
    assert line["sqlstate"] == "40P01"
    assert line["attempt"] == 1
    assert line["work"] in {"deadlock_ab", "deadlock_ba"}
    await db.close()


def backend_waits_for_a_lock(engine: Engine, pid: int) -> bool:
    with engine.connect() as connection:
        query = text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
        return connection.execute(query, {"pid": pid}).scalar() == "Lock"


@postgres_only
async def test_a_unit_that_always_deadlocks_gives_up_after_the_last_attempt(db_url: str) -> None:
    """A partner deadlocks every attempt and never loses (its deadlock_timeout is long)."""
    attempts = 3
    db = Database(db_url, pool_size=2, retry_attempts=attempts)
    await db.start()
    await two_counters(db)
    partner_engine = create_engine(make_url(db.url))
    round_start = threading.Barrier(2, timeout=30)
    partner_pid: list[int] = []
    calls = 0

    def partner() -> None:
        with partner_engine.connect() as connection:
            partner_pid.append(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            connection.commit()
            for _ in range(attempts):
                transaction = connection.begin()
                connection.execute(text("SET LOCAL deadlock_timeout = '60s'"))
                connection.execute(BUMP, {"key": "b"})
                round_start.wait()
                connection.execute(BUMP, {"key": "a"})  # waits until the unit is aborted
                transaction.rollback()

    def work(session: Session) -> None:
        nonlocal calls
        calls += 1
        connection = session.connection()
        connection.execute(text("SET LOCAL deadlock_timeout = '100ms'"))  # it detects first
        connection.execute(BUMP, {"key": "a"})
        round_start.wait()
        for _ in range(3000):  # the partner waits for row a: our wait for b closes the cycle
            if backend_waits_for_a_lock(partner_engine, partner_pid[0]):
                break
            time.sleep(0.01)
        connection.execute(BUMP, {"key": "b"})

    thread = threading.Thread(target=partner)
    thread.start()
    with capture_logs() as logs, pytest.raises(DBAPIError) as failed:
        await db.run(work)
    thread.join(30)
    assert not thread.is_alive()
    assert getattr(failed.value.orig, "sqlstate", None) == "40P01"  # the error itself
    assert calls == attempts
    assert [line["attempt"] for line in retried(logs)] == [1, 2]
    assert await hits(db) == {"a": 0, "b": 0}
    partner_engine.dispose()
    await db.close()


def sqlite_path(url: str) -> str:
    database = make_url(url).database
    assert database is not None
    return database


async def hold_sqlite_write_lock(url: str) -> sqlite3.Connection:
    """Another process's writer: it holds SQLite's write lock until it rolls back."""
    holder = sqlite3.connect(sqlite_path(url), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_locked_sqlite_database_is_retried_until_the_writer_is_gone(db_url: str) -> None:
    db = Database(db_url, busy_timeout_ms=20, retry_attempts=50)
    await db.start()
    holder = await hold_sqlite_write_lock(db_url)
    calls = 0

    def work(session: Session) -> int:
        nonlocal calls
        calls += 1
        append_row(session, AUDIT, audit_row("written_once"))
        return int(session.connection().execute(select(func.count()).select_from(AUDIT)).scalar())

    with capture_logs() as logs:
        running = asyncio.create_task(db.run(work))
        for _ in range(3000):
            if retried(logs):
                break
            await asyncio.sleep(0.01)
        holder.rollback()  # the other writer finishes; the next attempt gets the lock
        assert await running == 0
    holder.close()
    assert calls >= 2
    assert {line["sqlstate"] for line in retried(logs)} == {"SQLITE_BUSY"}
    assert await audit_events(db) == ["written_once"]  # queued rows of failed attempts gone
    await db.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_sqlite_database_locked_for_good_gives_up_after_the_last_attempt(
    db_url: str,
) -> None:
    db = Database(db_url, busy_timeout_ms=10, retry_attempts=3)
    await db.start()
    holder = await hold_sqlite_write_lock(db_url)
    calls = 0

    def work(session: Session) -> None:
        nonlocal calls
        calls += 1
        session.connection().execute(text("SELECT 1"))

    with capture_logs() as logs, pytest.raises(DBAPIError) as failed:
        await db.run(work)
    holder.rollback()
    holder.close()
    assert isinstance(failed.value.orig, sqlite3.OperationalError)
    assert "database is locked" in str(failed.value.orig)
    assert calls == 3
    assert len(retried(logs)) == 2
    await db.close()


async def test_errors_that_are_not_contention_are_raised_at_once(db_url: str) -> None:
    db = Database(db_url)
    await db.start()
    await two_counters(db)
    calls = 0

    def duplicate(session: Session) -> None:
        nonlocal calls
        calls += 1
        session.connection().execute(
            insert(COUNTERS), [{"day": "d", "tool_action": "a", "hits": 0, "misses": 0}]
        )

    with capture_logs() as logs, pytest.raises(IntegrityError):
        await db.run(duplicate)
    assert calls == 1
    assert retried(logs) == []

    def broken(session: Session) -> None:
        raise ValueError("not the database's fault")

    with pytest.raises(ValueError, match="not the database's fault"):
        await db.run(broken)
    await db.close()


async def test_a_unit_of_work_sees_the_callers_log_context(db_url: str) -> None:
    """Lines logged on the worker thread (e.g. a retry) carry the request's correlation id."""
    db = Database(db_url)
    await db.start()
    structlog.contextvars.bind_contextvars(correlation_id="corr-42")
    try:
        seen = await db.run(lambda _session: structlog.contextvars.get_contextvars())
    finally:
        structlog.contextvars.clear_contextvars()
    assert seen["correlation_id"] == "corr-42"
    await db.close()
