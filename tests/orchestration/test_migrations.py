"""Schema migrations: empty to head is exactly the models' schema; old databases are adopted
without loss; a newer schema refuses to start; replicas that start together all migrate."""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    Table,
    UniqueConstraint,
    insert,
    inspect,
    select,
    text,
)
from sqlmodel import SQLModel
from structlog.testing import capture_logs

from bot import refs  # noqa: F401 - the Slack surface's slack_refs table is in the schema too
from orchestration import models
from orchestration.db import Database
from orchestration.errors import ConfigError
from orchestration.store import alembic_config, current_revision, head_revision, new_revision
from orchestration.store.__main__ import main as schema_tool
from orchestration.store.schema import MIGRATIONS

REPO = Path(__file__).resolve().parents[2]
AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
# What revision 0002 added to the schema of 27c05ea (the last release before migrations).
ADDED_STEP_COLUMNS = ("lease_owner", "lease_until", "in_doubt_check")
ADDED_TABLES = ("inbox", "breakers")


def differences(engine: Engine) -> list[Any]:
    """What the database lacks or has beyond ``SQLModel.metadata`` (empty: the same schema)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def tables(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def schema_info(metadata: MetaData) -> Table:
    return Table(
        "schema_info",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("version", Integer, nullable=False),
    )


def release_before_migrations() -> MetaData:
    """The tables ``create_all`` made at 27c05ea: today's models without what 0002 adds."""
    old = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        if table.name in ADDED_TABLES:
            continue
        if table.name != "steps":
            table.to_metadata(old)
            continue
        Table(
            "steps",
            old,
            *(
                Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
                for c in table.columns
                if c.name not in ADDED_STEP_COLUMNS
            ),
            UniqueConstraint("plan_id", "position"),
            Index("ix_steps_plan_id", "plan_id"),
        )
    schema_info(old)
    return old


def shared_schema_commit() -> MetaData:
    """What ``create_all`` made at e056562 (the shared-schema commit): today's models."""
    old = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        table.to_metadata(old)
    schema_info(old)
    return old


def old_release_then_shared_schema_commit() -> MetaData:
    """A 27c05ea database started once at e056562: create_all added tables, never columns."""
    old = release_before_migrations()
    for name in ADDED_TABLES:
        SQLModel.metadata.tables[name].to_metadata(old)
    return old


def seed_old_rows(engine: Engine, metadata: MetaData) -> None:
    t = metadata.tables
    with engine.begin() as connection:
        connection.execute(insert(t["schema_info"]), [{"id": 1, "version": 1}])
        connection.execute(
            insert(t["incidents"]),
            [
                {
                    "id": "inc-1",
                    "text": "checkout-api is down",
                    "requester": "U1",
                    "channel": "C1",
                    "status": "open",
                    "source": "slack",
                    "correlation_id": "corr-1",
                    "created_at": AT,
                }
            ],
        )
        connection.execute(
            insert(t["steps"]),
            [
                {
                    "id": "step-1",
                    "plan_id": "plan-1",
                    "position": 0,
                    "key": "probe",
                    "kind": "runbook",
                    "title": "Probe",
                    "tool_action": "http.get",
                    "args": {"url": "http://127.0.0.1:9000/health"},
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
                    "estimate_usd": 0.0,
                    "cost_usd": 0.001,
                    "tokens": 0,
                    "duration_ms": 3.5,
                    "started_at": AT,
                }
            ],
        )
        connection.execute(
            insert(t["audit_events"]),
            [
                {
                    "at": AT,
                    "event": f"event_{n}",
                    "actor": "U1",
                    "role": "auditor",
                    "correlation_id": "corr-1",
                    "detail": {"n": n},
                }
                for n in range(3)
            ],
        )
        connection.execute(
            insert(t["outbox"]),
            [
                {
                    "kind": "incident_opened",
                    "channel": "C1",
                    "payload": {"text": "hello"},
                    "created_at": AT,
                    "attempts": 0,
                }
            ],
        )


def test_the_head_read_from_the_revision_files_is_alembics_head() -> None:
    """``head_revision`` parses the files (no Alembic at start); it must agree with Alembic."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_an_empty_database_migrates_to_exactly_the_models_schema(db_url: str) -> None:
    """The guard that every model change comes with a revision: no difference either way."""
    db = Database(db_url)
    assert db.create_schema() == head_revision()
    assert differences(db.engine) == []
    with db.engine.connect() as connection:
        assert current_revision(connection) == head_revision()
    assert "schema_info" not in tables(db.engine)
    assert db.create_schema() == head_revision()  # a second start changes nothing
    db.engine.dispose()


def test_every_revision_downgrades_and_upgrades_again(db_url: str) -> None:
    db = Database(db_url)
    db.create_schema()
    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert tables(db.engine) == {"alembic_version"}
    db.create_schema()
    assert differences(db.engine) == []
    db.engine.dispose()


@pytest.mark.parametrize(
    "made_by",
    [release_before_migrations, shared_schema_commit, old_release_then_shared_schema_commit],
)
def test_a_database_from_before_migrations_is_stamped_and_upgraded_without_loss(
    db_url: str, made_by: Callable[[], MetaData]
) -> None:
    db = Database(db_url)
    old = made_by()
    old.create_all(db.engine)
    seed_old_rows(db.engine, old)
    with capture_logs() as logs:
        assert db.create_schema() == head_revision()
    migrated = next(line for line in logs if line["event"] == "schema_migrated")
    assert migrated["adopted"] is True
    assert migrated["before"] is None
    assert differences(db.engine) == []
    assert "schema_info" not in tables(db.engine)
    with db.engine.connect() as connection:
        steps = models.Step.__table__  # type: ignore[attr-defined]
        step = connection.execute(select(steps)).one()
        assert step.args == {"url": "http://127.0.0.1:9000/health"}
        assert step.read_only is True
        assert step.started_at == AT
        assert step.lease_owner is None
        assert step.in_doubt_check is None
        audit = models.AuditEvent.__table__  # type: ignore[attr-defined]
        events = connection.execute(select(audit).order_by(audit.c.id)).all()
        assert [e.event for e in events] == ["event_0", "event_1", "event_2"]
        assert [e.detail for e in events] == [{"n": 0}, {"n": 1}, {"n": 2}]
        incident = models.Incident.__table__  # type: ignore[attr-defined]
        assert connection.execute(select(incident.c.text)).scalar_one() == "checkout-api is down"
        outbox = models.OutboxMessage.__table__  # type: ignore[attr-defined]
        assert connection.execute(select(outbox.c.payload)).scalar_one() == {"text": "hello"}
    db.engine.dispose()


def test_a_database_at_a_revision_this_release_does_not_know_refuses_to_start(
    db_url: str,
) -> None:
    db = Database(db_url)
    db.create_schema()
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(ConfigError) as refused:
        db.create_schema()
    assert refused.value.code == "schema_too_new"
    assert "revision 0099" in refused.value.message
    assert f"up to {head_revision()}" in refused.value.message
    assert "newer opsgate" in refused.value.message
    with db.engine.connect() as connection:
        assert current_revision(connection) == "0099"  # left alone
    db.engine.dispose()


def test_a_schema_info_version_newer_than_the_old_releases_refuses_to_start(
    db_url: str,
) -> None:
    db = Database(db_url)
    old = release_before_migrations()
    old.create_all(db.engine)
    with db.engine.begin() as connection:
        connection.execute(insert(old.tables["schema_info"]), [{"id": 1, "version": 2}])
    with pytest.raises(ConfigError) as refused:
        db.create_schema()
    assert refused.value.code == "schema_too_new"
    assert "schema_info version 2" in refused.value.message
    assert "alembic_version" not in tables(db.engine)
    db.engine.dispose()


def test_opsgate_serve_says_plainly_that_the_schema_is_too_new_and_exits_1(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'opsgate.db'}"
    db = Database(url)
    db.create_schema()
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    db.engine.dispose()
    shutil.copytree(REPO / "runbooks", tmp_path / "runbooks")
    (tmp_path / "opsgate.yaml").write_text("runbooks: ./runbooks\napprovers: [U0APPROVER]\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSGATE_"))},
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": "secret",
        "OPSGATE_DATABASE_URL": url,
        "OPSGATE_CONFIG": str(tmp_path / "opsgate.yaml"),
        "OPSGATE_SLACK_API_URL": "http://127.0.0.1:9/api/",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "schema_too_new: the database schema is at revision 0099" in done.stderr
    assert "Traceback" not in done.stderr


STARTER = """
import sys, time
from pathlib import Path
from orchestration.db import Database
db = Database(sys.argv[1])
ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.001)
print(db.create_schema())
"""


@pytest.mark.parametrize("round_", range(3))
def test_replicas_starting_at_the_same_instant_on_an_empty_database_all_succeed(
    db_url: str, tmp_path: Path, round_: int
) -> None:
    """Four processes wait, imported and connected, for one signal; then all migrate at once."""
    replicas = 4
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, db_url, str(tmp_path / f"ready{n}"), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(replicas)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{n}").exists() for n in range(replicas)):
        assert time.monotonic() < deadline, "replicas did not get ready"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip().splitlines()[-1] == head_revision(), err
    # One replica migrated; the others waited for the lock and found the schema current.
    assert sum(out.count("schema_migrated") for out, _ in results) == 1
    db = Database(db_url)
    assert differences(db.engine) == []
    db.engine.dispose()


def test_a_revision_is_drafted_from_what_the_models_add(tmp_path: Path) -> None:
    """The draft revision uses plain SQLAlchemy types and follows the current head."""
    location = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, location)
    probe = Table(
        "zz_probe",
        SQLModel.metadata,
        Column("key", models.Incident.__table__.c.id.type, primary_key=True),  # type: ignore[attr-defined]
        Column("at", models.UTCDateTime(), nullable=False),
    )
    scratch = Database(f"sqlite:///{tmp_path / 'scratch.db'}")
    try:
        path = new_revision("probe table", scratch=scratch.engine, location=location)
    finally:
        SQLModel.metadata.remove(probe)
        scratch.engine.dispose()
    number = int(head_revision()) + 1
    assert path.name == f"{number:04d}_probe_table.py"
    body = path.read_text()
    assert f"revision = '{number:04d}'" in body
    assert f"down_revision: str | None = '{head_revision()}'" in body
    assert "op.create_table('zz_probe'" in body
    assert "sa.Column('key', sa.String(), nullable=False)" in body
    assert "sa.Column('at', sa.DateTime(timezone=True), nullable=False)" in body
    assert "sqlmodel" not in body
    assert "orchestration" not in body


def test_the_schema_tool_shows_the_database_revision_and_this_releases_head(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSGATE_DATABASE_URL", db_url)
    head = head_revision()
    assert schema_tool(["current"]) == 0
    assert capsys.readouterr().out == f"database: not migrated\nthis release: {head}\n"
    db = Database(db_url)
    db.create_schema()
    db.engine.dispose()
    capsys.readouterr()
    assert schema_tool(["current"]) == 0
    assert (
        capsys.readouterr().out == f"database: {head_revision()}\nthis release: {head_revision()}\n"
    )
