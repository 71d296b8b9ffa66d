"""The database: one engine, schema creation with a version, and async units of work.

Every public method of the store is async. A unit of work is a plain function taking a
SQLModel ``Session``; :meth:`Database.run` executes it inside one transaction on a worker
thread, so the event loop never blocks and a whole unit costs one thread hop and one commit.
SQLite gets a single worker (one writer at a time, ``BEGIN IMMEDIATE`` so a read-then-write
never deadlocks); PostgreSQL gets a pool of workers and relies on row locks
(``SELECT ... FOR UPDATE``) for the few compare-and-set decisions.
"""

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, event, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session, SQLModel, create_engine

from orchestration import models
from orchestration.errors import ConfigError

T = TypeVar("T")

DEFAULT_SQLITE_DIR = Path(".opsgate")


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


def append_row(session: Session, table: Table, row: dict[str, Any]) -> None:
    """Queue an insert-only row; it is written with one multi-row INSERT before the commit.

    Audit events, spans and outbox messages are never read back in the unit of work that
    writes them, so batching them skips the ORM's per-object cost on the hot path.
    """
    pending: dict[Table, list[dict[str, Any]]] = session.info.setdefault(_APPEND_KEY, {})
    pending.setdefault(table, []).append(row)


def flush_appends(session: Session) -> None:
    """Write the queued insert-only rows now (before reading them back in the same unit)."""
    pending: dict[Table, list[dict[str, Any]]] = session.info.pop(_APPEND_KEY, {})
    for table, rows in pending.items():
        session.connection().execute(insert(table), rows)


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
    statement = build(table).values(**values)
    changes = update if update is not None else {k: v for k, v in values.items() if k not in keys}
    session.connection().execute(
        statement.on_conflict_do_update(index_elements=keys, set_=changes, where=where)
    )


class Database:
    """An engine plus the worker threads that run units of work on it."""

    def __init__(self, url: str | None = None, *, pool_size: int = 8) -> None:
        self.url = _normalise(url or default_url())
        self.dialect = make_url(self.url).get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        if self.is_sqlite:
            self.engine = self._sqlite_engine()
            workers = 1
        else:
            self.engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True
            )
            workers = pool_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="opsgate-db")

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
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # every commit durable
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Python's sqlite3 is in autocommit mode (isolation_level=None); we issue BEGIN
            # IMMEDIATE ourselves so a transaction takes the write lock up front.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def create_schema(self) -> int:
        """Create missing tables and record the schema version; returns the stored version."""
        SQLModel.metadata.create_all(self.engine)
        with Session(self.engine) as session:
            info = session.get(models.SchemaInfo, 1)
            if info is None:
                session.add(models.SchemaInfo(id=1, version=models.SCHEMA_VERSION))
                session.commit()
                return models.SCHEMA_VERSION
            if info.version > models.SCHEMA_VERSION:
                raise ConfigError(
                    f"the database schema is version {info.version}, newer than this opsgate "
                    f"({models.SCHEMA_VERSION}); upgrade opsgate",
                    code="schema_too_new",
                )
            return info.version

    async def start(self) -> None:
        """Create the schema on first start (in a worker thread)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.create_schema)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in one transaction on a worker thread; commit, or roll back."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_sync, work)

    def _run_sync(self, work: Callable[[Session], T]) -> T:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            result = work(session)
            flush_appends(session)
            return result

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
