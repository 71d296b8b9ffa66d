"""The sql tool: the parser wall, the server's read-only wall, timeouts, row caps, secrets.

PostgreSQL tests run against the local server (``OPSGATE_TEST_DATABASE_URL``) in a schema of
their own; SQLite tests against a file.
"""

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from adapters import GrantSigner, guarded
from adapters.errors import ArgsInvalid, ErrorCode, GrantError, StatementRefused, ToolTimeout
from adapters.sql import SqlDatabase, SqlTool, check_statement, run_readonly
from adapters.testing import InMemoryBreakerStore
from common import FakeClock
from common.redaction import redact_text
from tests.adapters.conftest import grant_for, make_call
from tests.conftest import _pg_available, pg_url

READS = [
    "SELECT 1",
    "select id, total from orders where total > 10 order by id limit 5",
    "WITH big AS (SELECT * FROM orders WHERE total > 10) SELECT count(*) FROM big",
    "SELECT 1 UNION ALL SELECT 2",
    "EXPLAIN SELECT * FROM orders",
    "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM orders",
    "EXPLAIN ANALYZE VERBOSE SELECT 1",
]
WRITES = [
    ("DELETE FROM orders", "DELETE"),
    ("INSERT INTO orders VALUES (9, 1)", "INSERT"),
    ("UPDATE orders SET total = 0", "UPDATE"),
    ("DROP TABLE orders", "DROP"),
    ("SELECT 1; DELETE FROM orders", "one statement"),
    ("WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone", "writes"),
    ("SELECT * INTO copy FROM orders", "INTO"),
    ("SELECT * FROM orders FOR UPDATE", "row locks"),
    ("EXPLAIN ANALYZE DELETE FROM orders", "DELETE"),
    ("SELECT pg_terminate_backend(42)", "pg_terminate_backend"),
    ("SELECT set_config('default_transaction_read_only', 'off', false)", "set_config"),
    ("COPY orders TO STDOUT", "COPY"),
    ("SET default_transaction_read_only = off", "SET"),
    ("VACUUM", "VACUUM"),
    ("", "empty"),
]


@pytest.mark.parametrize("statement", READS)
def test_parser_accepts_single_reads(statement: str) -> None:
    assert check_statement(statement) == statement


@pytest.mark.parametrize(("statement", "why"), WRITES)
def test_parser_refuses_anything_that_is_not_one_read(statement: str, why: str) -> None:
    with pytest.raises(StatementRefused) as caught:
        check_statement(statement)
    assert caught.value.code == ErrorCode.STATEMENT_REFUSED
    assert why.lower() in caught.value.message.lower()


@pytest.fixture
def pg_dsn() -> Iterator[tuple[str, str]]:
    """A DSN of the local PostgreSQL and a fresh schema holding ``orders`` (3 rows)."""
    base = pg_url()
    problem = _pg_available(base)
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {base}: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    dsn = base.replace("postgresql+psycopg://", "postgresql://", 1)
    schema = f"sql_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".orders (id int primary key, total numeric)')
        conn.execute(f'INSERT INTO "{schema}".orders VALUES (1, 5), (2, 15.5), (3, 30)')
    yield dsn, schema
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _count(dsn: str, schema: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}".orders').fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def sqlite_file(tmp_path: Path) -> str:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id integer primary key, total real)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(1, 5.0), (2, 15.5), (3, 30.0)])
    return f"sqlite:///{path}"


def _tool(dsn_ref: str, **limits: object) -> SqlTool:
    return SqlTool(databases={"shop": SqlDatabase.model_validate({"dsn": dsn_ref, **limits})})


@pytest.mark.postgres
async def test_postgres_query_returns_capped_rows_through_a_secret_dsn(
    pg_dsn: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema = pg_dsn
    monkeypatch.setenv("OPSGATE_SECRET_SHOP_DSN", dsn)
    tool = _tool("${secret:SHOP_DSN}", max_rows=2)
    call = make_call(
        "sql.query", database="shop", query=f'SELECT id, total FROM "{schema}".orders ORDER BY id'
    )
    result = await tool.invoke(call, None)
    assert result.output["columns"] == ["id", "total"]
    assert result.output["rows"] == [[1, "5"], [2, "15.5"]]
    assert result.output["truncated"] is True
    assert "capped at 2" in result.summary
    explained = await tool.invoke(
        make_call("sql.query", database="shop", query=f'EXPLAIN SELECT * FROM "{schema}".orders'),
        None,
    )
    assert "Scan" in str(explained.output["rows"])


@pytest.mark.postgres
async def test_postgres_server_refuses_a_write_that_bypasses_the_parser(
    pg_dsn: tuple[str, str],
) -> None:
    """The second wall: the read-only transaction itself refuses the write."""
    dsn, schema = pg_dsn
    for statement in (
        f'DELETE FROM "{schema}".orders',
        f'WITH gone AS (DELETE FROM "{schema}".orders RETURNING *) SELECT * FROM gone',
    ):
        with pytest.raises(StatementRefused) as caught:
            await run_readonly(dsn, statement, timeout_s=5, max_rows=10)
        assert caught.value.code == ErrorCode.READ_ONLY_VIOLATION
        assert "read-only transaction" in caught.value.message
    assert _count(dsn, schema) == 3


@pytest.mark.postgres
async def test_postgres_statement_timeout(pg_dsn: tuple[str, str]) -> None:
    dsn, _schema = pg_dsn
    with pytest.raises(ToolTimeout):
        await run_readonly(dsn, "SELECT pg_sleep(30)", timeout_s=0.2, max_rows=1)


@pytest.mark.postgres
async def test_parser_refusal_never_reaches_the_server(
    pg_dsn: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema = pg_dsn
    monkeypatch.setenv("OPSGATE_SECRET_SHOP_DSN", dsn)
    tool = _tool("${secret:SHOP_DSN}")
    reached: list[str] = []

    async def spy(*args: object, **kwargs: object) -> None:
        reached.append("server")

    monkeypatch.setattr("adapters.sql.run_readonly", spy)
    call = make_call("sql.query", database="shop", query=f'DELETE FROM "{schema}".orders')
    with pytest.raises(ArgsInvalid, match="DELETE"):
        await tool.invoke(call, None)
    assert reached == []
    assert _count(dsn, schema) == 3


async def test_sqlite_query_and_server_refusal(sqlite_file: str) -> None:
    tool = _tool(sqlite_file, max_rows=10)
    result = await tool.invoke(
        make_call("sql.query", database="shop", query="SELECT count(*) AS n FROM orders"), None
    )
    assert result.output == {
        "database": "shop",
        "columns": ["n"],
        "rows": [[3]],
        "row_count": 1,
        "truncated": False,
    }
    with pytest.raises(StatementRefused) as caught:
        await run_readonly(sqlite_file, "DELETE FROM orders", timeout_s=5, max_rows=1)
    assert caught.value.code == ErrorCode.READ_ONLY_VIOLATION
    with sqlite3.connect(sqlite_file.removeprefix("sqlite:///")) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (3,)


async def test_sqlite_timeout_interrupts(sqlite_file: str) -> None:
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    )
    with pytest.raises(ToolTimeout):
        await run_readonly(sqlite_file, endless, timeout_s=0.2, max_rows=1)


def test_dsn_must_be_a_secret_reference() -> None:
    with pytest.raises(ValueError, match="secret reference"):
        SqlDatabase(dsn="postgresql://app:hunter2@db/orders")
    assert SqlDatabase(dsn="${secret:ORDERS}").dsn == "${secret:ORDERS}"


async def test_missing_secret_and_unknown_database(monkeypatch: pytest.MonkeyPatch) -> None:
    tool = _tool("${secret:SHOP_DSN}")
    with pytest.raises(Exception, match="OPSGATE_SECRET_SHOP_DSN") as caught:
        await tool.invoke(make_call("sql.query", database="shop", query="SELECT 1"), None)
    assert getattr(caught.value, "code", None) == ErrorCode.SECRET_MISSING
    with pytest.raises(ArgsInvalid, match="no database 'other'"):
        await tool.invoke(make_call("sql.query", database="other", query="SELECT 1"), None)


async def test_guarded_query_needs_a_grant_and_keeps_the_dsn_out(
    sqlite_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_SECRET_SHOP_DSN", sqlite_file)
    clock = FakeClock()
    signer = GrantSigner(b"k" * 32)
    tool = guarded(
        _tool("${secret:SHOP_DSN}"),
        signer=signer,
        clock=clock,
        breakers=InMemoryBreakerStore(clock),
    )
    call = make_call("sql.query", database="shop", query="SELECT * FROM missing_table")
    with pytest.raises(GrantError):
        await tool.invoke(call, None)
    with pytest.raises(Exception, match="missing_table") as caught:
        await tool.invoke(call, grant_for(call, signer, clock))
    assert sqlite_file not in str(caught.value)
    assert redact_text(sqlite_file) != sqlite_file  # resolved, hence registered for redaction
