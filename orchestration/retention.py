"""Retention: rows past their age are archived as compressed JSON Lines, then deleted in batches.

Streams (``retention.days``): ``audit`` (``audit_events``, by ``at``), ``spans`` (by
``started_at``), ``costs`` (``cost_entries``, by ``at``; the cost rollups follow through their
triggers), ``outbox`` (delivered messages, by ``delivered_at``) and ``inbox`` (finished requests,
the dedupe rows, by ``done_at``). Rows whose age column is null (an undelivered message, a
request still in flight) are never touched.

One batch is one short unit of work, so live work never waits behind the job for long:

1. read up to ``batch_rows`` of the oldest rows past the cutoff (an index on the age column);
2. write them to ``<archive>/<stream>/<YYYY-MM>/<stream>-<first age>-<first key>.jsonl.gz``
   (a temporary file, fsynced, then renamed: a file in the archive is always whole);
3. delete exactly those keys, still past the cutoff, in their own transaction;
4. pause ``pause_s``, then the next batch.

With ``retention.bucket`` (an S3-compatible bucket, through boto3) the file is uploaded to
``<prefix>/<stream>/<YYYY-MM>/<name>`` before the delete, and the local copy (a staging file)
is removed once the upload is acknowledged; an upload that fails fails the run before anything
is deleted.

A crash between 2 and 3 leaves the rows in place; the next run selects them again and rewrites
the same file name, so nothing is lost and readers (:func:`read_archive`) drop duplicates by key.
The daily run is claimed once across replicas through ``digest_runs`` (channel ``@retention``),
with the digest's claim rules (:func:`orchestration.digest.claim`).
"""

import asyncio
import gzip
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, delete, select
from sqlmodel import Session

from adapters.secrets import SecretSource
from common import Clock
from orchestration.config import ArchiveBucket, RetentionConfig
from orchestration.db import Database
from orchestration.digest import claim, mark_failed, mark_posted
from orchestration.models import AuditEvent, CostEntry, InboxItem, OutboxMessage, Span
from orchestration.telemetry import get_logger

log = get_logger("opsgate.retention")

CLAIM_CHANNEL = "@retention"  # the job's row in digest_runs (no Slack channel starts with @)


@dataclass(frozen=True)
class Stream:
    """One kind of row the job ages out."""

    name: str
    table: Table
    key: str
    age: str


def _table(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]


STREAMS: tuple[Stream, ...] = (
    Stream("audit", _table(AuditEvent), "id", "at"),
    Stream("spans", _table(Span), "id", "started_at"),
    Stream("costs", _table(CostEntry), "id", "at"),
    Stream("outbox", _table(OutboxMessage), "id", "delivered_at"),
    Stream("inbox", _table(InboxItem), "key", "done_at"),
)


@dataclass
class StreamReport:
    """What one stream's run did."""

    stream: str
    cutoff: datetime
    archived: int = 0
    deleted: int = 0
    batches: int = 0
    files: list[str] = field(default_factory=list)
    longest_batch_ms: float = 0.0  # the longest delete transaction: how long live work waited


@dataclass
class RetentionReport:
    """What a run did, per stream."""

    streams: list[StreamReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def deleted(self) -> int:
        """Rows deleted in all streams."""
        return sum(s.deleted for s in self.streams)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (per stream: archived, deleted, batches, files)."""
        return {
            "seconds": round(self.seconds, 3),
            "streams": {
                s.stream: {
                    "cutoff": s.cutoff.isoformat(),
                    "archived": s.archived,
                    "deleted": s.deleted,
                    "batches": s.batches,
                    "files": len(s.files),
                    "longest_batch_ms": round(s.longest_batch_ms, 1),
                }
                for s in self.streams
            },
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _write_archive(folder: Path, stream: Stream, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` as one gzip JSON Lines file; whole or not at all (fsync, then rename)."""
    first = rows[0]
    at: datetime = first[stream.age]
    stamp = at.strftime("%Y%m%dT%H%M%S%f")
    key = "".join(ch for ch in str(first[stream.key]) if ch.isalnum())[:40]
    target = folder / stream.name / at.strftime("%Y-%m") / f"{stream.name}-{stamp}-{key}.jsonl.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as out:
            for row in rows:
                line = {k: _jsonable(v) for k, v in row.items()}
                out.write(json.dumps(line, ensure_ascii=False, default=str).encode() + b"\n")
        raw.flush()
        os.fsync(raw.fileno())
    partial.replace(target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename is on disk before the rows are deleted
    finally:
        os.close(directory)
    return target


def _oldest(engine: Engine, stream: Stream, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
    """The batch to archive, read on a connection of its own (off the database's writer
    thread: on SQLite's WAL a reader never waits for the writer, nor the writer for it)."""
    table = stream.table
    age, key = table.c[stream.age], table.c[stream.key]
    query = select(table).where(age.is_not(None), age < cutoff).order_by(age, key).limit(limit)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def _delete(session: Session, stream: Stream, cutoff: datetime, keys: list[Any]) -> int:
    table = stream.table
    age, key = table.c[stream.age], table.c[stream.key]
    done = session.connection().execute(delete(table).where(key.in_(keys), age < cutoff))
    return int(done.rowcount or 0)


async def run_streams(
    db: Database,
    config: RetentionConfig,
    *,
    now: datetime,
    streams: Iterable[Stream] = STREAMS,
) -> RetentionReport:
    """Archive and delete every stream's rows older than its days, in bounded batches."""
    started = time.perf_counter()
    report = RetentionReport()
    days = config.days.model_dump()
    for stream in streams:
        keep = days.get(stream.name)
        if keep is None:
            continue
        cutoff = now - timedelta(days=keep)
        done = StreamReport(stream=stream.name, cutoff=cutoff)
        report.streams.append(done)
        while True:
            rows = await asyncio.to_thread(_oldest, db.engine, stream, cutoff, config.batch_rows)
            if not rows:
                break
            path = await asyncio.to_thread(_write_archive, config.archive, stream, rows)
            where = str(path)
            if config.bucket is not None:
                where = await asyncio.to_thread(_upload, config, path)
            keys = [row[stream.key] for row in rows]
            began = time.perf_counter()
            deleted = await db.run(
                lambda s, st=stream, c=cutoff, k=keys: _delete(s, st, c, k)  # type: ignore[misc]
            )
            done.longest_batch_ms = max(done.longest_batch_ms, (time.perf_counter() - began) * 1e3)
            done.archived += len(rows)
            done.deleted += deleted
            done.batches += 1
            done.files.append(where)
            if len(rows) < config.batch_rows:
                break
            await asyncio.sleep(config.pause_s)
        if done.deleted:
            log.info(
                "retention_stream_done",
                stream=stream.name,
                deleted=done.deleted,
                batches=done.batches,
                cutoff=cutoff.isoformat(),
            )
    report.seconds = time.perf_counter() - started
    return report


class RetentionJob:
    """The daily run, claimed once across replicas (``digest_runs`` row ``@retention``)."""

    def __init__(self, db: Database, config: RetentionConfig, clock: Clock, replica_id: str):
        """Run against ``db`` with ``config``; claim as ``replica_id``."""
        self.db = db
        self.config = config
        self.clock = clock
        self.replica_id = replica_id

    def due(self) -> bool:
        """True once today's configured time (UTC) has come."""
        return self.clock.now().time() >= self.config.at

    async def run_due(self) -> RetentionReport | None:
        """The scheduled call: today's run when it is due and nobody did it yet."""
        if not self.config.enabled or not self.due():
            return None
        try:
            return await self.run_once()
        except Exception:  # recorded on the claim and logged; the next call retries
            return None

    async def run_once(self, day: date | None = None) -> RetentionReport | None:
        """Claim today's run (UTC) and do it; None when another replica holds or did it."""
        now = self.clock.now()
        day = day or now.date()
        stale = timedelta(minutes=self.config.claim_timeout_minutes)
        ours = await self.db.run(
            lambda s: claim(
                s,
                channel=CLAIM_CHANNEL,
                day=day,
                replica_id=self.replica_id,
                now=now,
                stale_after=stale,
            )
        )
        if not ours:
            return None
        try:
            report = await run_streams(self.db, self.config, now=now)
        except Exception as exc:
            error = repr(exc)[:500]
            log.warning("retention_failed", error=error)
            await self.db.run(
                lambda s: mark_failed(
                    s,
                    channel=CLAIM_CHANNEL,
                    day=day,
                    replica_id=self.replica_id,
                    error=error,
                )
            )
            raise
        await self.db.run(
            lambda s: mark_posted(
                s, channel=CLAIM_CHANNEL, day=day, replica_id=self.replica_id, now=self.clock.now()
            )
        )
        log.info("retention_done", deleted=report.deleted, seconds=round(report.seconds, 3))
        return report


def _s3(bucket: ArchiveBucket) -> Any:
    import boto3  # noqa: PLC0415 - only with a bucket configured

    secrets = SecretSource()
    return boto3.client(
        "s3",
        endpoint_url=bucket.endpoint_url,
        region_name=bucket.region,
        aws_access_key_id=secrets.resolve(bucket.access_key_id),
        aws_secret_access_key=secrets.resolve(bucket.secret_access_key),
    )


def _object_key(bucket: ArchiveBucket, relative: Path) -> str:
    return "/".join(p for p in (bucket.prefix.strip("/"), relative.as_posix()) if p)


def _upload(config: RetentionConfig, path: Path) -> str:
    """Put the file in the bucket, then remove the staging copy; the object's ``s3://`` name."""
    assert config.bucket is not None
    key = _object_key(config.bucket, path.relative_to(config.archive))
    _s3(config.bucket).upload_file(str(path), config.bucket.name, key)
    path.unlink()
    return f"s3://{config.bucket.name}/{key}"


def _archived_files(config: RetentionConfig | Path, stream: str) -> Iterator[bytes]:
    """The gzip files of ``stream``, oldest first: from the bucket when one is configured."""
    folder = config if isinstance(config, Path) else config.archive
    bucket = None if isinstance(config, Path) else config.bucket
    if bucket is not None:
        client = _s3(bucket)
        prefix = _object_key(bucket, Path(stream)) + "/"
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket.name, Prefix=prefix
        ):
            keys += [item["Key"] for item in page.get("Contents", [])]
        for key in sorted(k for k in keys if k.endswith(".jsonl.gz")):
            yield client.get_object(Bucket=bucket.name, Key=key)["Body"].read()
    root = folder / stream
    if root.is_dir():
        for path in sorted(root.glob("*/*.jsonl.gz")):
            yield path.read_bytes()


def read_archive(config: RetentionConfig | Path, stream: str) -> Iterator[dict[str, Any]]:
    """Every archived row of ``stream`` (the folder, and the bucket when one is configured),
    oldest file first, each key once."""
    key = next(s.key for s in STREAMS if s.name == stream)
    seen: set[Any] = set()
    for data in _archived_files(config, stream):
        for line in gzip.decompress(data).decode("utf-8").splitlines():
            row = json.loads(line)
            if row.get(key) in seen:
                continue
            seen.add(row.get(key))
            yield row
