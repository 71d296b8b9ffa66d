"""Circuit breakers shared by every replica through the ``breakers`` table.

:class:`DbBreakerStore` is the control plane's :class:`adapters.BreakerStore`. It decides with the
same pure functions as the in-memory store (``adapters.guards.admit_call`` / ``after_call``) and
writes every change as a compare-and-set on the row it read, so two replicas never both claim a
half-open probe and concurrent failures are all counted.

Healthy path: a call to a healthy target costs no database work. Each process reads the rows
that are not settled (open, half-open, or closed with failures counted) at most once per
``cache_s`` (1 s), in one query for every target, and decides from that copy. It writes only
when a failure is counted, when a success resets a non-zero count, and when the state changes
(trip, probe claim, probe result). Cached state is trusted only where staleness is harmless:

- closed (cached): a replica may call a target up to ``cache_s`` after another replica opened
  its breaker. Those few calls are bounded by the timeout and rate limit; their failures are
  not counted twice (the write reads the row first) and teach this replica the new state.
- open, cool-down not over (cached): refused. Only a probe closes a breaker, and no probe is
  due before the cool-down ends, so this refusal can never be out of date.
- half-open, or open with the cool-down over: the database is asked, so no replica refuses a
  call because a probe elsewhere closed the breaker a moment ago.

A success may leave another replica's failures uncounted-for within the same window, so
"consecutive failures" across replicas is approximate by at most one second of calls.

If the database cannot be reached the store fails open (calls go through, nothing is
recorded) and logs ``breaker_store_unavailable``: a breaker protects targets, it must not stop
the control plane.
"""

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, Table, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from adapters import Admission, BreakerPolicy, BreakerRecord, BreakerState
from adapters.guards import admit_call, after_call, log_breaker_change
from common import Clock
from orchestration.db import Database
from orchestration.models import BreakerState as BreakerRow
from orchestration.telemetry import get_logger

log = get_logger("opsgate.breakers")

CACHE_S = 1.0
CAS_TRIES = 10
T = TypeVar("T")
_TABLE: Table = BreakerRow.__table__  # type: ignore[attr-defined]

# Prometheus: 0 closed, 1 half-open, 2 open.
GAUGE_VALUE: Mapping[BreakerState, int] = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
}


class _Contended(Exception):
    """Other writers kept changing the row between our read and our compare-and-set."""


def _record(row: Any) -> BreakerRecord:
    return BreakerRecord(
        key=row.key,
        state=BreakerState(row.state),
        failures=row.failures,
        opened_at=row.opened_at,
        probe_until=row.probe_until,
    )


def read_breaker(session: Session, key: str) -> BreakerRecord | None:
    """The stored breaker of ``key``, or None when it has no row."""
    row = session.connection().execute(select(_TABLE).where(_TABLE.c.key == key)).first()
    return _record(row) if row is not None else None


def unsettled_breakers(session: Session) -> dict[str, BreakerRecord]:
    """Every breaker that is not closed with a zero count, by key."""
    query = select(_TABLE).where(or_(_TABLE.c.state != BreakerState.CLOSED, _TABLE.c.failures > 0))
    return {row.key: _record(row) for row in session.connection().execute(query)}


def _same(column: ColumnElement[Any], value: object) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def compare_and_set(
    session: Session, seen: BreakerRecord | None, new: BreakerRecord, *, now: datetime
) -> bool:
    """Write ``new`` only if the row still holds ``seen`` (None: there is no row); True if so."""
    values = {
        "state": new.state.value,
        "failures": new.failures,
        "opened_at": new.opened_at,
        "probe_until": new.probe_until,
        "updated_at": now,
    }
    if seen is None:
        pg = session.get_bind().dialect.name == "postgresql"
        build = postgresql.insert if pg else sqlite.insert
        statement: Any = (
            build(_TABLE)
            .values(key=new.key, **values)
            .on_conflict_do_nothing(index_elements=["key"])
        )
    else:
        statement = (
            update(_TABLE)
            .where(
                _TABLE.c.key == seen.key,
                _TABLE.c.state == seen.state.value,
                _TABLE.c.failures == seen.failures,
                _same(_TABLE.c.opened_at, seen.opened_at),
                _same(_TABLE.c.probe_until, seen.probe_until),
            )
            .values(**values)
        )
    # RETURNING rather than rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING.
    written = session.connection().execute(statement.returning(_TABLE.c.key)).first()
    return written is not None


def _transact(
    session: Session,
    key: str,
    decide: Callable[[BreakerRecord], tuple[T, BreakerRecord | None]],
    *,
    now: datetime,
) -> tuple[BreakerRecord, T, BreakerRecord | None]:
    """Read, decide, compare-and-set (again on a lost race); returns (read, value, written)."""
    for _ in range(CAS_TRIES):
        stored = read_breaker(session, key)
        fresh = stored or BreakerRecord(key=key)
        value, new = decide(fresh)
        if new is None or compare_and_set(session, stored, new, now=now):
            return fresh, value, new
    raise _Contended(key)


class DbBreakerStore:
    """Breakers in the database, read through a per-process copy at most ``cache_s`` old."""

    def __init__(self, db: Database, *, clock: Clock, cache_s: float = CACHE_S) -> None:
        """Share breakers through ``db``; decide from a copy refreshed every ``cache_s``."""
        if not 0 < cache_s <= CACHE_S:
            raise ValueError(f"cache_s must be in (0, {CACHE_S:g}] seconds")
        self._db = db
        self._clock = clock
        self._cache_s = cache_s
        self._rows: dict[str, BreakerRecord] = {}
        self._read_at: float | None = None  # monotonic start of the last refresh
        self._written: dict[str, tuple[float, BreakerRecord]] = {}  # our writes since then
        self._lock = asyncio.Lock()
        self.writes = 0  # compare-and-sets that took effect (the healthy path makes none)

    async def admit(self, key: str, *, policy: BreakerPolicy) -> Admission:
        """Decide on a call to ``key``; claiming a probe is a compare-and-set in the database."""
        cached = await self._cached(key)
        now = self._clock.now()
        admission, claim = admit_call(cached, now=now, policy=policy)
        if claim is None and cached.state is not BreakerState.HALF_OPEN:
            return admission
        try:
            before, fresh_admission, written = await self._write(
                key, lambda fresh: admit_call(fresh, now=now, policy=policy), now=now
            )
        except _Contended:
            return admission if claim is None else _busy(cached)
        except Exception as exc:  # a breaker must not stop the control plane: fail open
            log.warning("breaker_store_unavailable", key=key, error=repr(exc))
            return Admission(key=key, allowed=True, record=cached)
        if written is not None:
            log_breaker_change(before, written)
        return fresh_admission

    async def record(self, admission: Admission, *, ok: bool | None, policy: BreakerPolicy) -> None:
        """Apply a call's outcome; nothing is written when the cached copy says nothing changes."""
        now = self._clock.now()
        key = admission.key
        if not admission.probing:
            cached = self._lookup(key)
            if after_call(cached, admission, ok=ok, now=now, policy=policy) is None:
                return

        def decide(fresh: BreakerRecord) -> tuple[None, BreakerRecord | None]:
            return None, after_call(fresh, admission, ok=ok, now=now, policy=policy)

        try:
            before, _, written = await self._write(key, decide, now=now)
        except _Contended:
            log.warning("breaker_write_contended", key=key, ok=ok)
            return
        except Exception as exc:  # fail open, as in admit
            log.warning("breaker_store_unavailable", key=key, error=repr(exc))
            return
        if written is not None:
            log_breaker_change(before, written)

    async def _write(
        self,
        key: str,
        decide: Callable[[BreakerRecord], tuple[T, BreakerRecord | None]],
        *,
        now: datetime,
    ) -> tuple[BreakerRecord, T, BreakerRecord | None]:
        before, value, written = await self._db.run(
            lambda session: _transact(session, key, decide, now=now)
        )
        self.writes += written is not None
        self._written[key] = (self._clock.monotonic(), written or before)
        return before, value, written

    async def _cached(self, key: str) -> BreakerRecord:
        if not self._fresh():
            async with self._lock:  # one refresh at a time; the others use its result
                if not self._fresh():
                    await self._refresh()
        return self._lookup(key)

    def _fresh(self) -> bool:
        return self._read_at is not None and self._clock.monotonic() - self._read_at < self._cache_s

    async def _refresh(self) -> None:
        started = self._clock.monotonic()
        try:
            rows = await self._db.run(unsettled_breakers)
        except Exception as exc:  # keep the last copy and try again after cache_s
            log.warning("breaker_store_unavailable", error=repr(exc))
            rows = self._rows
        self._rows = rows
        self._read_at = started
        # A write that committed before this read began is in ``rows``; keep only later ones.
        self._written = {k: w for k, w in self._written.items() if w[0] >= started}

    def _lookup(self, key: str) -> BreakerRecord:
        written = self._written.get(key)
        if written is not None:
            return written[1]
        return self._rows.get(key) or BreakerRecord(key=key)


def _busy(record: BreakerRecord) -> Admission:
    """A refusal for a call that kept losing the race for the probe slot: others are probing."""
    probing = dataclasses.replace(record, state=BreakerState.HALF_OPEN)
    return Admission(key=record.key, allowed=False, record=probing)


class BreakerView(BaseModel):
    """One breaker as the status reply and ``/metrics`` show it."""

    model_config = ConfigDict(frozen=True)

    key: str
    tool: str
    target: str
    state: BreakerState
    failures: int
    opened_at: datetime | None
    probe_at: datetime | None  # open: when the next probe may go
    probe_in_s: float | None  # open: seconds from the query until then (0: due)
    probing: bool  # half-open and a probe holds the slot

    @property
    def gauge(self) -> int:
        """The state as a number: 0 closed, 1 half-open, 2 open."""
        return GAUGE_VALUE[self.state]


DEFAULT_RESET_S = 30.0


def breaker_views(
    session: Session,
    *,
    now: datetime,
    reset_after_s: Mapping[str, float] | None = None,
    default_reset_s: float = DEFAULT_RESET_S,
) -> list[BreakerView]:
    """Every stored breaker, by key; ``reset_after_s`` gives each tool's cool-down."""
    reset_after_s = reset_after_s or {}
    views = []
    for row in session.connection().execute(select(_TABLE).order_by(_TABLE.c.key)):
        record = _record(row)
        tool, _, target = record.key.partition(":")
        probe_at = probe_in_s = None
        if record.state is BreakerState.OPEN and record.opened_at is not None:
            probe_at = record.opened_at + timedelta(
                seconds=reset_after_s.get(tool, default_reset_s)
            )
            probe_in_s = max((probe_at - now).total_seconds(), 0.0)
        views.append(
            BreakerView(
                key=record.key,
                tool=tool,
                target=target,
                state=record.state,
                failures=record.failures,
                opened_at=record.opened_at,
                probe_at=probe_at,
                probe_in_s=probe_in_s,
                probing=record.state is BreakerState.HALF_OPEN
                and record.probe_until is not None
                and now < record.probe_until,
            )
        )
    return views
