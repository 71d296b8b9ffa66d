"""The database: one engine, schema migrations at start, and async units of work.

Every public method of the store is async. A unit of work is a plain function taking a
SQLModel ``Session``; :meth:`Database.run` executes it inside one transaction on a worker
thread, so the event loop never blocks and a whole unit costs one thread hop and one commit.
SQLite gets a single worker (one writer at a time, ``BEGIN IMMEDIATE`` so a read-then-write
never deadlocks); PostgreSQL gets a pool of workers and relies on row locks
(``SELECT ... FOR UPDATE``) for the few compare-and-set decisions. A unit that loses to
contention (a deadlock, a serialisation failure, SQLite's lock) runs again whole, in a fresh
transaction, so a unit of work must change nothing but the database it is given.
"""

import asyncio
import contextlib
import contextvars
import functools
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Insert, Table, Update, bindparam, event, insert, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine
from tenacity import RetryCallState, Retrying, stop_after_attempt, wait_random_exponential

from orchestration import store
from orchestration.telemetry import get_logger

log = get_logger("opsgate.db")

T = TypeVar("T")

DEFAULT_SQLITE_DIR = Path(".opsgate")
RETRY_ATTEMPTS = 4  # a unit of work runs at most this often when it loses to contention
RETRY_WAIT_MAX_S = 0.5
SQLITE_BUSY_TIMEOUT_MS = 5000
POOL_RECYCLE_S = 300  # PostgreSQL connections older than this are replaced at checkout
_COMMITTING = "opsgate_committing"


def default_url() -> str:
    """The database URL: ``OPSGATE_DATABASE_URL``, else a SQLite file under ``./.opsgate/``."""
    url = os.environ.get("OPSGATE_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{DEFAULT_SQLITE_DIR / 'opsgate.db'}"


def _normalise(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


_APPEND_KEY = "opsgate_append"
# session.info key: the spans a unit recorded, for ``Database.on_spans`` (set only when it is).
SPANS_KEY = "opsgate_spans"


def append_row(session: Session, table: Table, row: dict[str, Any]) -> None:
    """Queue an insert-only row; it is written with one multi-row INSERT before the commit.

    Audit events, spans and outbox messages are never read back in the unit of work that
    writes them, so batching them skips the ORM's per-object cost on the hot path.
    """
    pending: dict[Table, list[dict[str, Any]]] = session.info.setdefault(_APPEND_KEY, {})
    pending.setdefault(table, []).append(row)


_INSERTS: dict[Table, Insert] = {}


def flush_appends(session: Session) -> None:
    """Write the queued insert-only rows now (before reading them back in the same unit).

    One statement per table, built once per table: rebuilding it per unit cost more CPU than
    sending it.
    """
    pending: dict[Table, list[dict[str, Any]]] = session.info.pop(_APPEND_KEY, {})
    if not pending:
        return
    connection = session.connection()
    for table, rows in pending.items():
        if connection.dialect.name == "sqlite":
            _sqlite_insert_rows(connection, table, rows)
            continue
        statement = _INSERTS.get(table)
        if statement is None:
            statement = _INSERTS[table] = insert(table)
        connection.execute(statement, rows)


def _sqlite_insert_rows(connection: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    """``rows`` with one ``executemany`` per shape, straight to the driver.

    Values pass through the columns' bind processors, and a column a row leaves out gets its
    scalar default, as SQLAlchemy's own insert would give it (an integer primary key is left to
    SQLite). Through SQLAlchemy this cost several times the insert itself.
    """
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        shapes.setdefault(tuple(row), []).append(row)
    with _driver_cursor(connection) as cursor:
        for given, group in shapes.items():
            defaults = _scalar_defaults(table, given)
            names = given + tuple(defaults)
            processors = _bind_processors(connection.dialect, table, names)
            tail = tuple(defaults.values())
            values = [_bound((*(row[n] for n in given), *tail), processors) for row in group]
            _send(connection, cursor, _sqlite_insert(table, names), values, many=True)


def update_row(connection: Any, table: Table, row_id: Any, values: dict[str, Any]) -> None:
    """``UPDATE table SET <values> WHERE id = row_id``: one statement per set of columns.

    The hot path's row writes (:func:`orchestration.rows.write_changes`). SQLite gets it
    straight from the driver, the values through the columns' bind processors as SQLAlchemy's
    own UPDATE would send them; PostgreSQL through a Core statement built once per set.
    """
    names = tuple(values)
    if connection.dialect.name != "sqlite":
        connection.execute(_core_update(table, names), {"row_id": row_id, **values})
        return
    processors = _bind_processors(connection.dialect, table, (*names, "id"))
    params = _bound((*values.values(), row_id), processors)
    with _driver_cursor(connection) as cursor:
        _send(connection, cursor, _sqlite_update(table, names), params, many=False)


@functools.cache
def _core_update(table: Table, names: tuple[str, ...]) -> Update:
    # Built once: a statement built anew per call costs more CPU than running it.
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values({name: bindparam(name) for name in names})
    )


def _bound(values: Any, processors: list[Callable[[Any], Any] | None]) -> list[Any]:
    """``values`` as the driver takes them: each through its column's bind processor."""
    return [
        value if process is None else process(value)
        for value, process in zip(values, processors, strict=True)
    ]


def _driver_cursor(connection: Any) -> "contextlib.closing[Any]":
    """A cursor of the unit's own driver connection (inside its transaction), closed after."""
    return contextlib.closing(connection.connection.driver_connection.cursor())


@functools.cache
def _sqlite_update(table: Table, names: tuple[str, ...]) -> str:
    prepare = _SQLITE.identifier_preparer
    name = prepare.format_table(table)
    assignments = ", ".join(f"{prepare.quote(n)}=?" for n in names)
    return f"UPDATE {name} SET {assignments} WHERE {name}.id = ?"  # noqa: S608 - the table's names


def _send(connection: Any, cursor: Any, sql: str, values: Any, *, many: bool) -> None:
    """Send one statement to the driver as SQLAlchemy would: the engine's
    ``before_cursor_execute`` listeners (statement counters, tests) hear of it, and a driver
    error reaches the caller as SQLAlchemy's ``DBAPIError`` (contention retries and
    ``IntegrityError`` handlers see what they would have seen)."""
    if connection._has_events or connection.engine._has_events:
        connection.dispatch.before_cursor_execute(connection, cursor, sql, values, None, many)
    driver = connection.dialect.loaded_dbapi
    try:
        if many:
            cursor.executemany(sql, values)
        else:
            cursor.execute(sql, values)
    except driver.Error as exc:
        raise DBAPIError.instance(
            sql, values, exc, driver.Error, dialect=connection.dialect
        ) from exc


@functools.cache
def _scalar_defaults(table: Table, given: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in table.c:
        if column.name in given or column.default is None:
            continue
        if not column.default.is_scalar:
            raise ValueError(f"{table.name}.{column.name}: give it in every appended row")
        out[column.name] = column.default.arg  # type: ignore[attr-defined]
    return out


_SQLITE = sqlite.dialect()


def _quoted(table: Table, names: tuple[str, ...]) -> tuple[str, str]:
    """The table's and the columns' names as SQLAlchemy's SQLite compiler writes them."""
    prepare = _SQLITE.identifier_preparer
    return prepare.format_table(table), ", ".join(prepare.quote(n) for n in names)


@functools.cache
def _sqlite_insert(table: Table, names: tuple[str, ...]) -> str:
    name, columns = _quoted(table, names)
    marks = ", ".join("?" * len(names))
    return f"INSERT INTO {name} ({columns}) VALUES ({marks})"  # noqa: S608 - the table's names


def upsert(
    session: Session,
    table: Table,
    values: dict[str, Any],
    *,
    keys: list[str],
    update: dict[str, Any] | None = None,
    where: Any = None,
) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE: one atomic statement on SQLite and PostgreSQL.

    ``update`` gives the SET clause (default: every non-key value of ``values``); with
    ``where``, a conflicting row is updated only when the condition holds.
    """
    dialect = session.get_bind().dialect.name
    build = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if update is None and where is None:
        # The common form (SET every non-key column to the new row's value) is built once.
        key = (dialect, table, tuple(values), tuple(keys))
        cached = _UPSERTS.get(key)
        if cached is None:
            base = build(table).values({name: bindparam(name) for name in values})
            changed = {k: base.excluded[k] for k in values if k not in keys}
            cached = _UPSERTS[key] = base.on_conflict_do_update(index_elements=keys, set_=changed)
        session.connection().execute(cached, values)
        return
    statement = build(table).values(**values)
    changes = update if update is not None else {k: v for k, v in values.items() if k not in keys}
    session.connection().execute(
        statement.on_conflict_do_update(index_elements=keys, set_=changes, where=where)
    )


_UPSERTS: dict[tuple[str, Table, tuple[str, ...], tuple[str, ...]], Any] = {}


def insert_new(session: Session, table: Table, rows: list[dict[str, Any]], *, key: str) -> set[str]:
    """INSERT ... ON CONFLICT (key) DO NOTHING RETURNING key: the keys of ``rows`` that were new.

    Every row names the same columns. On SQLite the statement goes straight to the driver: one
    multi-row INSERT whose values pass through the columns' own bind processors (the stored
    form is the one SQLAlchemy writes), because SQLAlchemy's statement cache and parameter
    handling cost about three times the insert itself on a burst's batch of requests, and that
    batch is on the path of every ack. PostgreSQL takes the same statement through SQLAlchemy.
    """
    if not rows:
        return set()
    connection = session.connection()
    dialect = connection.dialect
    names = tuple(rows[0])
    if dialect.name != "sqlite":
        build = postgresql.insert(table).on_conflict_do_nothing(index_elements=[key])
        statement = build.returning(table.c[key])
        return set(connection.execute(statement, rows).scalars())
    processors = _bind_processors(dialect, table, names)
    fresh: set[str] = set()
    with _driver_cursor(connection) as cursor:
        for start in range(0, len(rows), _SQLITE_ROWS_PER_INSERT):
            chunk = rows[start : start + _SQLITE_ROWS_PER_INSERT]
            values = [v for row in chunk for v in _bound((row[n] for n in names), processors)]
            sql = _sqlite_insert_new(table, names, key, len(chunk))
            _send(connection, cursor, sql, values, many=False)
            fresh.update(found for (found,) in cursor.fetchall())
    return fresh


_SQLITE_ROWS_PER_INSERT = 200  # x columns stays far below SQLite's 32,766 parameters
_PROCESSORS: dict[tuple[str, Table, tuple[str, ...]], list[Callable[[Any], Any] | None]] = {}


def _bind_processors(
    dialect: Any, table: Table, names: tuple[str, ...]
) -> list[Callable[[Any], Any] | None]:
    cached = _PROCESSORS.get((dialect.name, table, names))
    if cached is None:
        cached = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
        _PROCESSORS[(dialect.name, table, names)] = cached
    return cached


@functools.cache
def _sqlite_insert_new(table: Table, names: tuple[str, ...], key: str, count: int) -> str:
    name, columns = _quoted(table, names)
    quoted_key = _SQLITE.identifier_preparer.quote(key)
    one = "(" + ", ".join("?" * len(names)) + ")"
    # Names come from the table's own columns, values only as parameters.
    return (
        f"INSERT INTO {name} ({columns}) VALUES {', '.join([one] * count)} "  # noqa: S608
        f"ON CONFLICT ({quoted_key}) DO NOTHING RETURNING {quoted_key}"
    )


class Database:
    """An engine plus the worker threads that run units of work on it."""

    def __init__(
        self,
        url: str | None = None,
        *,
        pool_size: int = 8,
        retry_attempts: int = RETRY_ATTEMPTS,
        busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    ) -> None:
        self.url = _normalise(url or default_url())
        self.retry_attempts = retry_attempts
        self._busy_timeout_ms = busy_timeout_ms
        self.dialect = make_url(self.url).get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        if self.is_sqlite:
            self.engine = self._sqlite_engine()
            workers = 1
        else:
            # No pre-ping (a round trip per checkout on the hot path): connections are
            # recycled before a server or proxy idle timeout would drop them, and a unit of
            # work that finds its connection dead before committing runs again (see _run_retried).
            self.engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=0, pool_recycle=POOL_RECYCLE_S
            )
            workers = pool_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="opsgate-db")
        # Given the spans each unit recorded once it has committed (the OTLP export); None:
        # spans are only stored.
        self.on_spans: Callable[[list[dict[str, Any]]], None] | None = None

    def _sqlite_engine(self) -> Engine:
        database = make_url(self.url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            self.url,
            connect_args={"check_same_thread": False, "isolation_level": None},
            poolclass=NullPool if database in (None, "", ":memory:") else None,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # First: switching a new file to WAL takes a lock that another process starting
            # at the same moment may hold.
            cur.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            _switch_to_wal(cur, within_s=self._busy_timeout_ms / 1000)
            cur.execute("PRAGMA synchronous=FULL")  # every commit durable
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Python's sqlite3 is in autocommit mode (isolation_level=None); we issue BEGIN
            # IMMEDIATE ourselves so a transaction takes the write lock up front.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def create_schema(self) -> str:
        """Migrate the schema to this release's revision; returns that revision.

        Safe when several processes start at once (see :func:`orchestration.store.migrate`).
        """
        migrated = store.migrate(self.engine)
        if migrated.before != migrated.after:
            log.info(
                "schema_migrated",
                before=migrated.before,
                after=migrated.after,
                adopted=migrated.adopted,
            )
        return migrated.after

    async def start(self) -> None:
        """Migrate the schema on start (in a worker thread)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.create_schema)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in one transaction on a worker thread; commit, or roll back.

        On contention the whole unit runs again in a fresh transaction (at most
        ``retry_attempts`` times, short jittered waits); then the last error propagates.
        """
        loop = asyncio.get_running_loop()
        # The worker logs with the caller's bound context (correlation id, plan id).
        call = functools.partial(contextvars.copy_context().run, self._run_retried, work)
        return await loop.run_in_executor(self._executor, call)

    def _run_retried(self, work: Callable[[Session], T]) -> T:
        try:
            return self._run_sync(work)  # the healthy path builds no retry machinery
        except DBAPIError as exc:
            if _lost_before_commit(exc):
                # The server closed this connection (restart, idle timeout) before the unit
                # committed: nothing of it was written. SQLAlchemy has invalidated the pool's
                # older connections; the unit runs once more, on a fresh one.
                log.warning("unit_of_work_reconnected", work=getattr(work, "__qualname__", "?"))
                return self._run_sync(work)
            if self.retry_attempts < 2 or store.contention_code(exc) is None:
                raise
            first_error = exc
        retrying = Retrying(
            stop=stop_after_attempt(self.retry_attempts),
            wait=wait_random_exponential(multiplier=0.02, max=RETRY_WAIT_MAX_S),
            retry=_is_contention,
            before_sleep=functools.partial(_log_retry, work),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number == 1:
                    raise first_error  # tenacity counts, logs and waits from the first attempt
                return self._run_sync(work)
        raise AssertionError("tenacity stops by returning or raising")

    def _run_sync(self, work: Callable[[Session], T]) -> T:
        # A fresh session per attempt: rows a failed attempt queued with append_row go with it.
        with Session(self.engine, expire_on_commit=False) as session:
            on_spans = self.on_spans
            if on_spans is not None:
                session.info[SPANS_KEY] = []
            try:
                with session.begin():
                    result = work(session)
                    flush_appends(session)
                    session.info[_COMMITTING] = True
                if on_spans is not None and session.info[SPANS_KEY]:
                    on_spans(session.info[SPANS_KEY])  # committed: a rolled-back unit sends none
                return result
            except DBAPIError as exc:
                # A connection lost during COMMIT leaves the outcome unknown: never re-run it.
                exc.opsgate_committing = session.info.get(_COMMITTING, False)  # type: ignore[attr-defined]
                raise

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""

        def _ping(session: Session) -> bool:
            session.connection().execute(text("SELECT 1"))
            return True

        try:
            return await self.run(_ping)
        except Exception:
            return False

    async def close(self) -> None:
        """Dispose the engine and stop the workers."""
        self._executor.shutdown(wait=True)
        self.engine.dispose()


def _lost_before_commit(exc: DBAPIError) -> bool:
    """True when ``exc`` is a dropped connection that happened before the unit's COMMIT."""
    return bool(exc.connection_invalidated) and not getattr(exc, "opsgate_committing", True)


def _is_contention(state: RetryCallState) -> bool:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return False
    return store.contention_code(outcome.exception()) is not None


def _log_retry(work: Callable[..., Any], state: RetryCallState) -> None:
    assert state.outcome is not None
    error = state.outcome.exception()
    log.warning(
        "unit_of_work_retried",
        sqlstate=store.contention_code(error),
        work=getattr(work, "__qualname__", repr(work)),
        attempt=state.attempt_number,
        wait_s=round(state.upcoming_sleep, 3),
        error=str(getattr(error, "orig", error)).splitlines()[0][:200],
    )


def _switch_to_wal(cursor: Any, *, within_s: float) -> None:
    """``PRAGMA journal_mode=WAL``, asked again while another process holds the new file.

    SQLite may answer "database is locked" at once, without its busy handler, when several
    processes open a new database together (replicas starting at the same instant).
    """
    deadline = time.monotonic() + within_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
