"""The ``sql`` tool: read-only queries on configured PostgreSQL and SQLite databases.

Two walls stand between a runbook and a write:

1. :func:`check_statement` parses the text with ``sqlglot`` and refuses anything that is not a
   single ``SELECT`` (set operations and ``WITH ... SELECT`` included) or an ``EXPLAIN`` of one:
   no second statement, no data-modifying CTE, no ``SELECT ... INTO``, no row locks, no
   function that acts on the server (``pg_terminate_backend``, ``set_config``, ...). A refused
   statement never reaches a server (``statement_refused``).
2. :func:`run_readonly` runs it in a transaction the server itself holds read-only: PostgreSQL
   gets ``default_transaction_read_only=on`` for the connection and ``BEGIN READ ONLY``;
   SQLite opens the file with ``mode=ro`` and ``PRAGMA query_only``. A write the parser missed
   is refused by the server (``read_only_violation``).

Every query runs under a statement timeout (PostgreSQL's ``statement_timeout``; SQLite is
interrupted) and returns at most ``max_rows`` rows (``truncated`` says when more were there).
A database is named in the config with its DSN as a ``${secret:NAME}`` reference, resolved at
call time (:mod:`adapters.secrets`); the DSN never appears in a result, an error or a log.
"""

import asyncio
import dataclasses
import datetime as dt
import sqlite3
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import sqlglot
from psycopg import sql as pgsql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlglot import exp
from sqlglot.errors import SqlglotError

from adapters.base import (
    ActionSpec,
    Grant,
    ToolCall,
    ToolResult,
    ToolSpec,
    parse_args,
    summarise_validation_error,
)
from adapters.errors import ArgsInvalid, StatementRefused, ToolFailed, ToolTimeout
from adapters.secrets import SecretSource, resolve_setting
from adapters.settings.sql import SqlConfig, SqlDatabase
from common import Risk
from common.redaction import redact_text

MAX_QUERY_CHARS = 20_000
# Functions that act on the server or the session even inside a read-only transaction.
_FORBIDDEN_FUNCTIONS = (
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_file_write",
    "lo_import",
    "lo_export",
    "set_config",
    "dblink",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_try_advisory_lock",
    "pg_notify",
    "pg_sleep",
    "load_extension",
    "writefile",
    "readfile",
)
_EXPLAIN_OPTIONS = {"ANALYZE", "VERBOSE", "QUERY", "PLAN"}
_PG_READ_ONLY_SQLSTATE = "25006"
_PG_TIMEOUT_SQLSTATE = "57014"


class Dialect:
    """The SQL dialects the tool speaks (sqlglot's names)."""

    POSTGRES = "postgres"
    SQLITE = "sqlite"


def dialect_of(dsn: str) -> str:
    """``postgres`` for a ``postgresql://`` DSN, ``sqlite`` for ``sqlite:///path``."""
    scheme = dsn.partition(":")[0].lower()
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return Dialect.POSTGRES
    if scheme == "sqlite":
        return Dialect.SQLITE
    raise ValueError("the DSN must start with postgresql:// or sqlite:///")


def _explained(text: str, dialect: str) -> str | None:
    """The statement an ``EXPLAIN`` explains (its options dropped); None when not an EXPLAIN."""
    tokens = sqlglot.tokenize(text, read=dialect)
    if not tokens or tokens[0].text.upper() != "EXPLAIN":
        return None
    # sqlglot reads EXPLAIN as a command: the rest of the text is one token; read it again.
    rest = tokens[1].text if len(tokens) > 1 else ""
    tokens = sqlglot.tokenize(rest, read=dialect)
    index = 0
    if tokens and tokens[0].text == "(":  # EXPLAIN (ANALYZE, FORMAT JSON) ...
        depth = 0
        while index < len(tokens):
            depth += {"(": 1, ")": -1}.get(tokens[index].text, 0)
            index += 1
            if depth == 0:
                break
    while index < len(tokens) and tokens[index].text.upper() in _EXPLAIN_OPTIONS:
        index += 1
    if index >= len(tokens):
        raise StatementRefused("EXPLAIN needs a statement to explain")
    return rest[tokens[index].start :]


def _plain_query(statement: str, dialect: str) -> bool:
    """True for one SELECT the parser accepts (it may then run in a server-side cursor)."""
    try:
        check_statement(statement, dialect=dialect)
    except StatementRefused:
        return False
    return _explained(statement, dialect) is None


def check_statement(text: str, *, dialect: str = Dialect.POSTGRES) -> str:
    """Return ``text`` if it is one read-only query; raise :class:`StatementRefused` otherwise.

    Accepted: ``SELECT`` (with ``UNION``/``INTERSECT``/``EXCEPT``), ``WITH ... SELECT`` whose
    CTEs only read, and ``EXPLAIN`` of such a statement.
    """
    try:
        inner = _explained(text, dialect)
    except SqlglotError as exc:
        raise StatementRefused(f"the statement could not be parsed: {str(exc)[:200]}") from None
    if inner is not None:
        if _explained(inner, dialect) is not None:
            raise StatementRefused("EXPLAIN EXPLAIN is not a statement")
        check_statement(inner, dialect=dialect)
        return text
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except SqlglotError as exc:
        raise StatementRefused(f"the statement could not be parsed: {str(exc)[:200]}") from None
    if not statements:
        raise StatementRefused("the query is empty")
    if len(statements) > 1:
        raise StatementRefused(f"only one statement may run; this text holds {len(statements)}")
    (statement,) = statements
    if not isinstance(statement, exp.Select | exp.SetOperation):
        raise StatementRefused(
            f"only SELECT, WITH ... SELECT and EXPLAIN may run, not {_kind(statement)}"
        )
    for node in statement.walk():
        _refuse_writing(node)
    return text


def _refuse_writing(node: exp.Expr) -> None:
    """Raise :class:`StatementRefused` when ``node`` writes, locks or acts on the server."""
    if isinstance(node, exp.DML | exp.DDL | exp.Command | exp.Copy | exp.Merge):
        raise StatementRefused(f"the query contains {_kind(node)}, which writes")
    if isinstance(node, exp.Lock):
        raise StatementRefused("the query takes row locks (FOR UPDATE / FOR SHARE)")
    if isinstance(node, exp.Select) and node.args.get("into") is not None:
        raise StatementRefused("SELECT ... INTO creates a table")
    if isinstance(node, exp.Func):
        name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
        if name.startswith(_FORBIDDEN_FUNCTIONS):
            raise StatementRefused(f"the query calls {name}(), which acts on the server")


def _kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return type(node).__name__.upper()


class SqlQueryArgs(BaseModel):
    """Arguments of ``sql.query``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database: str = Field(min_length=1, max_length=64)
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    max_rows: int | None = Field(default=None, ge=1, le=10_000)

    @field_validator("query")
    @classmethod
    def _read_only(cls, value: str) -> str:
        # The same check runs again at call time in the database's own dialect.
        try:
            check_statement(value)
        except StatementRefused as exc:
            raise ValueError(exc.message) from None
        return value


SQL_SPEC = ToolSpec(
    name="sql",
    target_of=lambda call: str(call.args.get("database", "?")),
    actions={
        "query": ActionSpec(
            name="query",
            args_model=SqlQueryArgs,
            risk=Risk.LOW,
            read_only=True,
            idempotent=True,
            description="run one SELECT / WITH ... SELECT / EXPLAIN in a read-only transaction",
        ),
    },
)


@dataclasses.dataclass(frozen=True, slots=True)
class Rows:
    """What a query returned, capped."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)  # Decimal (exact: a float would round money), UUID, intervals, ...


async def run_readonly(dsn: str, statement: str, *, timeout_s: float, max_rows: int) -> Rows:
    """Run ``statement`` in a server-side read-only transaction; no parser check here.

    Raises:
        StatementRefused: the server refused a write (``read_only_violation``).
        ToolTimeout: the statement ran past ``timeout_s``.
        ToolFailed: any other database error (the DSN is never part of the message).
    """
    if dialect_of(dsn) == Dialect.SQLITE:
        return await asyncio.to_thread(
            _sqlite_readonly, dsn, statement, timeout_s=timeout_s, max_rows=max_rows
        )
    return await _postgres_readonly(dsn, statement, timeout_s=timeout_s, max_rows=max_rows)


async def _postgres_readonly(dsn: str, statement: str, *, timeout_s: float, max_rows: int) -> Rows:
    dsn = dsn.replace("postgresql+psycopg://", "postgresql://", 1)
    timeout_ms = max(1, round(timeout_s * 1000))
    options = f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}"
    try:
        conn = await psycopg.AsyncConnection.connect(
            dsn, options=options, connect_timeout=max(2, round(timeout_s))
        )
    except psycopg.Error as exc:
        raise ToolFailed(f"could not connect to the database: {_pg_reason(exc)}") from None
    try:
        async with conn:
            await conn.execute("BEGIN READ ONLY")
            # A named (server-side) cursor sends only the rows asked for; it can hold only a
            # query (not EXPLAIN, nor what the parser refused and a test sends anyway).
            cursor = (
                conn.cursor(name=f"opsgate_{uuid.uuid4().hex[:12]}")
                if _plain_query(statement, Dialect.POSTGRES)
                else conn.cursor()
            )
            async with cursor:
                await cursor.execute(pgsql.SQL(statement))
                fetched = await cursor.fetchmany(max_rows + 1)
                columns = [c.name for c in cursor.description or ()]
            await conn.rollback()
    except psycopg.Error as exc:
        if exc.sqlstate == _PG_READ_ONLY_SQLSTATE:
            raise StatementRefused(
                f"the server refused it: {_pg_reason(exc)}", code="read_only_violation"
            ) from None
        if exc.sqlstate == _PG_TIMEOUT_SQLSTATE:
            raise ToolTimeout(f"the query ran past its {timeout_s:g} s statement timeout") from None
        raise ToolFailed(
            f"the database refused the query: {_pg_reason(exc)}", retryable=False
        ) from None
    return Rows(
        columns=columns,
        rows=[[_json_value(v) for v in row] for row in fetched[:max_rows]],
        truncated=len(fetched) > max_rows,
    )


def _pg_reason(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    return redact_text(primary or str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[
        :300
    ]


def _sqlite_readonly(dsn: str, statement: str, *, timeout_s: float, max_rows: int) -> Rows:
    path = dsn.split(":///", 1)[1] if ":///" in dsn else dsn.removeprefix("sqlite:")
    deadline = time.monotonic() + timeout_s
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error as exc:
        raise ToolFailed(f"could not open the database: {exc}", retryable=False) from None
    try:
        conn.execute("PRAGMA query_only = ON")
        # Called every 1000 VM steps: a non-zero answer interrupts the statement.
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        cursor = conn.execute(statement)
        fetched = cursor.fetchmany(max_rows + 1)
        columns = [c[0] for c in cursor.description or ()]
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise ToolTimeout(f"the query ran past its {timeout_s:g} s statement timeout") from None
        if "readonly" in str(exc) or "read-only" in str(exc) or "query_only" in str(exc):
            raise StatementRefused(
                f"the server refused it: {exc}", code="read_only_violation"
            ) from None
        raise ToolFailed(f"the database refused the query: {exc}", retryable=False) from None
    except sqlite3.Error as exc:
        raise ToolFailed(f"the database refused the query: {exc}", retryable=False) from None
    finally:
        conn.close()
    return Rows(
        columns=columns,
        rows=[[_json_value(v) for v in row] for row in fetched[:max_rows]],
        truncated=len(fetched) > max_rows,
    )


class SqlTool:
    """Runs read-only queries on the databases named in its config."""

    def __init__(
        self,
        *,
        databases: Mapping[str, SqlDatabase | Mapping[str, Any]],
        cost_per_call_usd: float = 0.0,
        secrets: SecretSource | None = None,
    ) -> None:
        """Read the databases in ``databases`` (name -> DSN reference and limits)."""
        self._databases = {
            name: db if isinstance(db, SqlDatabase) else SqlDatabase.model_validate(db)
            for name, db in databases.items()
        }
        self._secrets = secrets or SecretSource()
        self._spec = dataclasses.replace(SQL_SPEC, cost_per_call_usd=cost_per_call_usd)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> "SqlTool":
        """Build the tool from the ``adapters.sql`` config section; bad config -> ValueError."""
        try:
            config = SqlConfig.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(
                f"adapters.sql config is invalid: {summarise_validation_error(exc)}"
            ) from None
        return cls(databases=config.databases, cost_per_call_usd=config.cost_per_call_usd)

    @property
    def spec(self) -> ToolSpec:
        """The ``sql`` tool's one action: ``query``."""
        return self._spec

    def database_names(self) -> Sequence[str]:
        """The configured database names, sorted."""
        return sorted(self._databases)

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Check the statement, then run it read-only; grants are checked by the guards."""
        args = parse_args(self._spec.action(call.action), call.args)
        assert isinstance(args, SqlQueryArgs)
        database = self._databases.get(args.database)
        if database is None:
            raise ArgsInvalid(
                f"no database {args.database!r} is configured for sql; configured: "
                f"{', '.join(self.database_names()) or 'none'}"
            )
        dsn = await resolve_setting(database.dsn, self._secrets)
        try:
            dialect = dialect_of(dsn)
        except ValueError as exc:
            raise ToolFailed(f"database {args.database!r}: {exc}", retryable=False) from None
        check_statement(args.query, dialect=dialect)
        cap = min(args.max_rows or database.max_rows, database.max_rows)
        started = time.perf_counter()
        rows = await run_readonly(
            dsn, args.query, timeout_s=database.statement_timeout_s, max_rows=cap
        )
        duration_ms = (time.perf_counter() - started) * 1000
        more = f" (capped at {cap}; more rows exist)" if rows.truncated else ""
        return ToolResult(
            ok=True,
            status=None,
            output={
                "database": args.database,
                "columns": rows.columns,
                "rows": rows.rows,
                "row_count": len(rows.rows),
                "truncated": rows.truncated,
            },
            summary=f"{args.database}: {len(rows.rows)} row(s){more} ({duration_ms:.0f} ms)",
            duration_ms=duration_ms,
            cost_usd=self._spec.cost_per_call_usd,
        )
