"""Shared fixtures: env cleanup, a fresh database per test (SQLite and PostgreSQL), fake clock."""

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import structlog
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text

from common import FakeClock

# Property tests check behaviour, not speed: on a loaded CI machine an example may take long.
settings.register_profile(
    "opsgate", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("opsgate")

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_url() -> str:
    """The PostgreSQL server tests use."""
    url = os.environ.get("OPSGATE_TEST_DATABASE_URL", PG_DEFAULT)
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _pg_available(url: str) -> str | None:
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's opsgate or Slack settings."""
    for name in list(os.environ):
        if name.startswith(("OPSGATE_", "SLACK_")) and name != "OPSGATE_TEST_DATABASE_URL":
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Each test starts and ends with structlog's defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when told to."""
    return FakeClock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new schema on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'opsgate.db'}"
        return
    base = pg_url()
    problem = _pg_available(base)
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {base}: {problem}")
        pytest.skip(f"PostgreSQL unreachable at {base}: {problem}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
