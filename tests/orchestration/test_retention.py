"""Retention: old rows archived as whole gzip JSON Lines files, then deleted in bounded batches,
on SQLite and PostgreSQL; nothing young or unfinished touched; a crash between archive and
delete loses nothing; one run a day across replicas; ``opsgate audit`` reads the archive."""

import asyncio
import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlmodel import Session

from common.clock import FakeClock
from orchestration import retention
from orchestration.config import RetentionConfig
from orchestration.db import Database
from orchestration.models import AuditEvent, CostEntry, InboxItem, OutboxMessage, Span
from orchestration.retention import RetentionJob, read_archive, run_streams
from orchestration.trail import Scope, timeline

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=500)
YOUNG = NOW - timedelta(days=1)
AUDIT = AuditEvent.__table__  # type: ignore[attr-defined]
SPANS = Span.__table__  # type: ignore[attr-defined]
COSTS = CostEntry.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
INBOX = InboxItem.__table__  # type: ignore[attr-defined]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.create_schema()
    yield database
    database.engine.dispose()


def _audit_rows(n: int, at: datetime, plan_id: str = "p-old") -> list[dict[str, Any]]:
    return [
        {
            "at": at + timedelta(seconds=i),
            "event": "step_succeeded",
            "actor": "opsgate",
            "role": "executor",
            "correlation_id": "c-" + plan_id,
            "plan_id": plan_id,
            "detail": {"n": i},
        }
        for i in range(n)
    ]


def _seed(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(AUDIT), _audit_rows(230, OLD) + _audit_rows(20, YOUNG, "p-young"))
        conn.execute(
            insert(SPANS),
            [
                {
                    "id": uuid.uuid4().hex,
                    "trace_id": "t",
                    "kind": "tool_call",
                    "name": "http.get",
                    "started_at": at,
                    "attributes": {},
                }
                for at in [OLD] * 70 + [YOUNG] * 5
            ],
        )
        conn.execute(
            insert(COSTS),
            [
                {
                    "at": at,
                    "plan_id": "p",
                    "role": "executor",
                    "tool": "http",
                    "runbook_id": "rb",
                    "usd": 0.01,
                }
                for at in [OLD] * 40 + [YOUNG] * 3
            ],
        )
        conn.execute(
            insert(OUTBOX),
            [
                {"kind": "post", "payload": {}, "created_at": OLD, "delivered_at": delivered}
                for delivered in [OLD] * 12 + [None] * 4  # undelivered: never aged out
            ],
        )
        conn.execute(
            insert(INBOX),
            [
                {
                    "key": f"k{i}",
                    "kind": "open",
                    "payload": {},
                    "received_at": OLD,
                    "done_at": OLD if i < 9 else None,
                }
                for i in range(11)
            ],
        )


def _count(db: Database, table: Any) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _config(tmp_path: Path, **changes: Any) -> RetentionConfig:
    settings: dict[str, Any] = {"archive": tmp_path / "archive", "batch_rows": 50, "pause_s": 0}
    return RetentionConfig.model_validate(settings | changes)


def test_old_rows_are_archived_whole_then_deleted_in_bounded_batches(
    db: Database, tmp_path: Path
) -> None:
    _seed(db)
    config = _config(tmp_path)
    report = asyncio.run(run_streams(db, config, now=NOW))
    by = {s.stream: s for s in report.streams}
    assert {k: (v.archived, v.deleted) for k, v in by.items()} == {
        "audit": (230, 230),
        "spans": (70, 70),
        "costs": (40, 40),
        "outbox": (12, 12),
        "inbox": (9, 9),
    }
    assert by["audit"].batches == 5  # 230 rows in batches of at most 50
    # what is young or unfinished stays
    assert _count(db, AUDIT) == 20
    assert _count(db, SPANS) == 5
    assert _count(db, COSTS) == 3
    assert _count(db, OUTBOX) == 4
    assert _count(db, INBOX) == 2
    # every file is a whole gzip JSON Lines file; together they hold each archived row once
    files = sorted((tmp_path / "archive").rglob("*.jsonl.gz"))
    assert len(files) == sum(s.batches for s in report.streams)
    assert not list((tmp_path / "archive").rglob("*.partial"))
    lines = []
    for path in files:
        if path.name.startswith("audit-"):
            with gzip.open(path, "rt") as text:
                lines += [json.loads(line) for line in text]
    assert len(lines) == 230
    assert sorted(r["detail"]["n"] for r in lines) == list(range(230))
    assert {r["plan_id"] for r in read_archive(config.archive, "audit")} == {"p-old"}
    # nothing left to do: a second run deletes nothing and writes nothing
    again = asyncio.run(run_streams(db, config, now=NOW))
    assert again.deleted == 0
    assert len(sorted((tmp_path / "archive").rglob("*.jsonl.gz"))) == len(files)


def test_a_stream_kept_forever_is_not_touched(db: Database, tmp_path: Path) -> None:
    _seed(db)
    config = _config(tmp_path, days={"audit": None, "spans": None})
    asyncio.run(run_streams(db, config, now=NOW))
    assert _count(db, AUDIT) == 250
    assert _count(db, SPANS) == 75
    assert _count(db, COSTS) == 3


def test_a_crash_between_archive_and_delete_loses_nothing_and_archives_once(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(db)
    config = _config(tmp_path)
    real = retention._delete
    calls = {"n": 0}

    def dies_on_the_second_batch(*args: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed between the archive file and the delete")
        return real(*args)

    monkeypatch.setattr(retention, "_delete", dies_on_the_second_batch)
    with pytest.raises(RuntimeError):
        asyncio.run(run_streams(db, config, now=NOW))
    assert _count(db, AUDIT) == 250 - 50  # only the first batch was deleted
    monkeypatch.setattr(retention, "_delete", real)
    asyncio.run(run_streams(db, config, now=NOW))
    assert _count(db, AUDIT) == 20
    archived = list(read_archive(config.archive, "audit"))
    assert len(archived) == 230  # the second batch's file was rewritten, never doubled
    assert len({r["id"] for r in archived}) == 230


def test_one_replica_runs_the_day_and_the_others_do_nothing(db: Database, tmp_path: Path) -> None:
    _seed(db)
    config = _config(tmp_path)
    clock = FakeClock(NOW)
    jobs = [RetentionJob(db, config, clock, replica_id=f"r{i}") for i in range(3)]

    async def all_at_once() -> list[Any]:
        return list(await asyncio.gather(*(j.run_once() for j in jobs)))

    reports = asyncio.run(all_at_once())
    assert sum(r is not None for r in reports) == 1
    assert asyncio.run(jobs[0].run_once()) is None  # done today
    assert _count(db, AUDIT) == 20


def test_the_scheduled_call_waits_for_the_configured_time(db: Database, tmp_path: Path) -> None:
    _seed(db)
    clock = FakeClock(NOW.replace(hour=2, minute=0))
    job = RetentionJob(db, _config(tmp_path, time="03:30"), clock, replica_id="r")
    assert asyncio.run(job.run_due()) is None
    assert _count(db, AUDIT) == 250
    clock.advance(2 * 3600)
    assert asyncio.run(job.run_due()) is not None
    assert _count(db, AUDIT) == 20


def test_the_audit_timeline_reads_the_archive_too(db: Database, tmp_path: Path) -> None:
    _seed(db)
    config = _config(tmp_path)
    scope = Scope(label="plan p-old", plan_ids=("p-old",))
    with Session(db.engine) as session:
        assert len(timeline(session, scope)) == 230
    asyncio.run(run_streams(db, config, now=NOW))
    with Session(db.engine) as session:
        assert timeline(session, scope) == []
        archived = timeline(session, scope, archive=config.archive)
    assert len(archived) == 230
    assert [e.detail["n"] for e in archived] == list(range(230))  # oldest first


def test_live_writes_go_on_while_a_big_run_deletes(db: Database, tmp_path: Path) -> None:
    """The run is many short transactions: live inserts commit between its batches."""
    with db.engine.begin() as conn:
        conn.execute(insert(AUDIT), _audit_rows(6000, OLD))
    config = _config(tmp_path, batch_rows=500)
    live: list[datetime] = []
    finished: list[datetime] = []

    async def both() -> None:
        async def run() -> None:
            await run_streams(db, config, now=NOW)
            finished.append(datetime.now(UTC))

        async def write() -> None:
            while not finished:
                await db.run(lambda s: s.connection().execute(insert(AUDIT), _audit_rows(1, NOW)))
                live.append(datetime.now(UTC))
                await asyncio.sleep(0)

        await asyncio.gather(run(), write())

    asyncio.run(both())
    during = [t for t in live if t < finished[0]]
    assert len(during) >= 3  # live work committed while the run was deleting
    assert _count(db, AUDIT) == len(live)  # every old row gone, every live row kept


# --- the archive in an S3-compatible bucket (moto's S3 server stands in) -------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    import boto3  # noqa: PLC0415 - these tests only
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    monkeypatch.setenv("OPSGATE_SECRET_ARCHIVE_KEY_ID", "testing-key-id")
    monkeypatch.setenv("OPSGATE_SECRET_ARCHIVE_SECRET", "testing-secret-0123456789")
    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing-key-id",
        aws_secret_access_key="testing-secret-0123456789",
    )
    yield url, client
    server.stop()


def _bucketed(tmp_path: Path, url: str, name: str = "ops-archive") -> RetentionConfig:
    return _config(
        tmp_path,
        bucket={
            "name": name,
            "prefix": "prod",
            "endpoint_url": url,
            "access_key_id": "${secret:ARCHIVE_KEY_ID}",
            "secret_access_key": "${secret:ARCHIVE_SECRET}",
        },
    )


def test_with_a_bucket_the_files_go_there_and_audit_reads_them_back(
    db: Database, tmp_path: Path, s3: tuple[str, Any]
) -> None:
    url, client = s3
    client.create_bucket(Bucket="ops-archive")
    _seed(db)
    config = _bucketed(tmp_path, url)
    report = asyncio.run(run_streams(db, config, now=NOW))
    assert _count(db, AUDIT) == 20
    listed = client.list_objects_v2(Bucket="ops-archive", Prefix="prod/audit/")["Contents"]
    assert len(listed) == 5  # one object per batch
    assert all(f.startswith("s3://ops-archive/prod/") for s in report.streams for f in s.files)
    assert not list((tmp_path / "archive").rglob("*.jsonl.gz"))  # staging copies removed
    assert len(list(read_archive(config, "audit"))) == 230
    scope = Scope(label="plan p-old", plan_ids=("p-old",))
    with Session(db.engine) as session:
        assert len(timeline(session, scope, archive=config)) == 230


def test_an_upload_the_bucket_refuses_deletes_nothing(
    db: Database, tmp_path: Path, s3: tuple[str, Any]
) -> None:
    url, _client = s3  # the bucket was never created: S3 answers NoSuchBucket
    _seed(db)
    with pytest.raises(Exception, match=r"NoSuchBucket|does not exist"):
        asyncio.run(run_streams(db, _bucketed(tmp_path, url, name="missing-bucket"), now=NOW))
    assert _count(db, AUDIT) == 250  # nothing deleted that is not archived


def test_bucket_credentials_must_be_secret_references(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="secret reference"):
        _config(
            tmp_path,
            bucket={"name": "b-1", "access_key_id": "AKIA0000", "secret_access_key": "x" * 20},
        )
