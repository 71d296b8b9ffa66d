"""Retention over a big backlog: ``--rows`` audit events past their age, archived and deleted.

DESIGN target (issue 16 item 6): the retention job archives and deletes a million old rows in
bounded batches without blocking live work.

For each backend it fills a fresh database in bulk (``bench.bulk``) with ``--rows`` audit events
500 days old, then runs :func:`orchestration.retention.run_streams` while a live writer commits
one audit event at a time, as the control plane does. It reports:
  * the run's wall time and rows per second, its batches and its longest delete transaction;
  * the live writer's commit latency (p50, p99, max) before the run and during it, and their
    ratio: how much the run slowed live work;
  * that the archive holds every row once and the table holds only the live rows.

Run: ``python -m bench.retention [--rows 1000000] [--batch 1000] [--no-pg] [--json]``.
"""

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, func, insert, select, text

from bench.bulk import load
from orchestration.config import RetentionConfig
from orchestration.db import Database
from orchestration.models import AuditEvent
from orchestration.retention import read_archive, run_streams
from orchestration.telemetry import configure_logging

AUDIT = AuditEvent.__table__  # type: ignore[attr-defined]
NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=500)


def _rows(count: int) -> Any:
    for i in range(count):
        yield {
            "at": OLD + timedelta(milliseconds=i),
            "event": "step_succeeded",
            "actor": "opsgate",
            "role": "executor",
            "correlation_id": f"c{i % 5000}",
            "incident_id": None,
            "plan_id": f"p{i % 20000}",
            "step_id": None,
            "nonce": None,
            "code": None,
            "detail": {"summary": "answered 200", "attempt": 1},
        }


def _live_row() -> dict[str, Any]:
    return {
        "at": datetime.now(UTC),
        "event": "tool_called",
        "actor": "opsgate",
        "role": "executor",
        "correlation_id": "live",
        "detail": {},
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _live(db: Database, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        await db.run(lambda s: s.connection().execute(insert(AUDIT), [_live_row()]))
        out.append((time.perf_counter() - began) * 1000)
        await asyncio.sleep(0.005)  # a busy control plane: about 200 events a second


async def _measure(db: Database, config: RetentionConfig) -> dict[str, Any]:
    before: list[float] = []
    stop = asyncio.Event()
    writer = asyncio.create_task(_live(db, stop, before))
    await asyncio.sleep(3)
    stop.set()
    await writer
    during: list[float] = []
    stop = asyncio.Event()
    writer = asyncio.create_task(_live(db, stop, during))
    report = await run_streams(db, config, now=NOW)
    stop.set()
    await writer
    audit = next(s for s in report.streams if s.stream == "audit")
    return {
        "deleted": audit.deleted,
        "batches": audit.batches,
        "seconds": round(report.seconds, 2),
        "rows_per_s": round(audit.deleted / report.seconds),
        "longest_batch_ms": round(audit.longest_batch_ms, 1),
        "live_before_ms": {
            "p50": round(statistics.median(before), 2),
            "p99": round(_pct(before, 0.99), 2),
            "n": len(before),
        },
        "live_during_ms": {
            "p50": round(statistics.median(during), 2),
            "p99": round(_pct(during, 0.99), 2),
            "max": round(max(during), 1),
            "n": len(during),
        },
        "live_p99_ratio": round(_pct(during, 0.99) / _pct(before, 0.99), 2),
        "live_rows_kept": len(before) + len(during),
    }


def run_backend(name: str, url: str, *, rows: int, batch: int, say: Any) -> dict[str, Any]:
    db = Database(url)
    db.create_schema()
    try:
        started = time.perf_counter()
        load(db.engine, AUDIT, _rows(rows))
        say(f"  {name}: {rows} old audit events loaded in {time.perf_counter() - started:.0f} s")
        with tempfile.TemporaryDirectory() as tmp:
            config = RetentionConfig.model_validate(
                {"archive": Path(tmp), "batch_rows": batch, "days": {"audit": 400}}
            )
            result = asyncio.run(_measure(db, config))
            archived = sum(1 for _ in read_archive(config.archive, "audit"))
            size = sum(p.stat().st_size for p in Path(tmp).rglob("*.gz"))
        with db.engine.connect() as conn:
            left = conn.execute(select(func.count()).select_from(AUDIT)).scalar_one()
        assert result["deleted"] == rows == archived, (result, archived)
        assert left == result["live_rows_kept"], (left, result)
        result["archive_mb"] = round(size / 1e6, 1)
    finally:
        db.engine.dispose()
    say(
        f"  {name}: {result['deleted']} rows archived and deleted in {result['seconds']} s "
        f"({result['rows_per_s']} rows/s, {result['batches']} batches, longest delete "
        f"{result['longest_batch_ms']} ms, archive {result['archive_mb']} MB); live commit p99 "
        f"{result['live_before_ms']['p99']} ms before, {result['live_during_ms']['p99']} ms "
        f"during ({result['live_p99_ratio']}x), max {result['live_during_ms']['max']} ms"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "OPSGATE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    configure_logging(json=True, level=logging.WARNING)

    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    results: dict[str, Any] = {}
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/retention.db"
            results["sqlite"] = run_backend(
                "SQLite", url, rows=args.rows, batch=args.batch, say=say
            )
    if not args.no_pg:
        schema = f"bench_{uuid.uuid4().hex[:10]}"  # a schema of its own, dropped after
        admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in args.pg else "?"
        url = f"{args.pg}{sep}options={quote(f'-csearch_path={schema}')}"
        try:
            results["postgres"] = run_backend(
                "PostgreSQL", url, rows=args.rows, batch=args.batch, say=say
            )
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
