"""The daily digest over a big day: ``--rows`` cost rows in its window (1,000,000 by default).

DESIGN target (issue 11 item 4): ``opsgate digest`` over 1,000,000 cost rows in its window in
under 2 s end to end, on SQLite and on PostgreSQL.

For each backend it fills a fresh database in bulk (``bench.bulk``: SQLite ``executemany``,
PostgreSQL ``COPY``): ``--rows`` cost entries spread over the reported day across roles, tools,
runbooks, channels and ``--plans`` plans (with their incidents, finished that day), and a tenth
as many on each of the 6 days before it (the 7-day trend). Then it measures:
  * ``build_ms``: ``orchestration.digest.build_digest`` in this process (median of
    ``--repeat``), and the statements it sends;
  * ``cli_ms``: ``opsgate digest --dry-run --date DAY`` as a subprocess, start to exit (median
    of ``--repeat``): the figure the target is about. ``cli_import_ms`` is the same command's
    start alone (``opsgate digest --help``), the part that is Python importing modules.
It checks that the digest's totals equal a direct ``SUM`` over the day's rows.

Run: ``python -m bench.digest [--rows 1000000] [--repeat 3] [--no-pg] [--json]``.
"""

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from bench.bulk import cost_row, load, tables
from bench.step_overhead import StatementCounter, drop_pg_schema, fresh_pg_schema
from orchestration.db import Database
from orchestration.digest import build_digest, day_window
from orchestration.models import CostEntry
from orchestration.telemetry import configure_logging

DAY = date(2026, 3, 10)
TZ = UTC
ROLES = ("executor", "planner", "verifier", "auditor")
TOOLS = tuple(f"tool{n}" for n in range(12))
RUNBOOKS = tuple(f"runbook-{n}" for n in range(30))
CHANNELS = tuple(f"C0CHAN{n}" for n in range(8))
TARGET_S = 2.0
ROOT = Path(__file__).resolve().parent.parent


def plan_rows(count: int, start: datetime) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """``count`` plans (and incidents) finished in the day starting at ``start``."""
    out: dict[str, list[dict[str, Any]]] = {"incidents": [], "plans": []}
    ids = []
    for n in range(count):
        at = start + timedelta(seconds=n * 86_000 / count)
        iid, pid = uuid.uuid4().hex, uuid.uuid4().hex
        ids.append(pid)
        out["incidents"].append(
            {
                "id": iid,
                "text": f"incident {n}",
                "requester": "UREQ",
                "channel": CHANNELS[n % len(CHANNELS)],
                "status": "resolved",
                "source": "slack",
                "correlation_id": iid,
                "created_at": at,
                "resolved_at": at + timedelta(seconds=60),
            }
        )
        out["plans"].append(
            {
                "id": pid,
                "incident_id": iid,
                "version": 1,
                "runbook_id": RUNBOOKS[n % len(RUNBOOKS)],
                "runbook_version": 1,
                "knowledge_pins": {},
                "params": {},
                "plan_hash": "h",
                "status": "succeeded" if n % 7 else "failed",
                "status_reason": "",
                "mode": "live",
                "requester": "UREQ",
                "channel": CHANNELS[n % len(CHANNELS)],
                "budget_usd": 1.0,
                "budget_tokens": 0,
                "soft_ratio": 0.8,
                "soft_acknowledged": False,
                "spent_usd": 0.0,
                "spent_tokens": 0,
                "forecast_usd": 0.0,
                "denials": 0,
                "no_progress": 0,
                "correlation_id": iid,
                "created_at": at,
                "finished_at": at + timedelta(seconds=30),
            }
        )
    return ids, out


def costs(count: int, start: datetime, plans: list[str], seed: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for _ in range(count):
        yield cost_row(
            at=start + timedelta(seconds=rng.random() * 86_399),
            plan_id=rng.choice(plans),
            channel=rng.choice(CHANNELS),
            role=rng.choice(ROLES),
            tool=rng.choice(TOOLS),
            runbook_id=rng.choice(RUNBOOKS),
            usd=round(rng.random() / 100, 6),
            tokens=rng.randrange(0, 500),
        )


def fill(db: Database, rows: int, plans: int) -> None:
    start, _ = day_window(DAY, TZ)
    ids, plan_table = plan_rows(plans, start)
    for name in ("incidents", "plans"):
        load(db.engine, tables()[name], plan_table[name])
    entries = tables()["cost_entries"]
    load(db.engine, entries, costs(rows, start, ids, seed=1))
    for back in range(1, 7):
        day_start, _ = day_window(DAY - timedelta(days=back), TZ)
        load(db.engine, entries, costs(rows // 10, day_start, ids, seed=1 + back))
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")  # what autovacuum does after a bulk load


def direct_total(db: Database) -> float:
    start, end = day_window(DAY, TZ)
    with Session(db.engine) as session:
        total = session.exec(
            select(func.sum(CostEntry.usd)).where(CostEntry.at >= start, CostEntry.at < end)  # type: ignore[arg-type]
        ).one()
    return float(total[0] or 0)


def build_ms(db: Database, repeat: int) -> tuple[float, float, float]:
    """(median ms, statements, spend total) of ``build_digest``."""
    times = []
    total = 0.0
    for _ in range(repeat):
        with Session(db.engine) as session:
            start = time.perf_counter()
            digest = build_digest(session, day=DAY, tz=TZ)
            times.append((time.perf_counter() - start) * 1000)
            total = digest.report.spend.usd
    counter = StatementCounter(db.engine)
    try:
        with Session(db.engine) as session:
            build_digest(session, day=DAY, tz=TZ)
    finally:
        counter.close()
    return statistics.median(times), float(sum(counter.statements.values())), total


def cli_ms(url: str, repeat: int, folder: Path, *args: str) -> float:
    config = folder / "opsgate.yaml"
    config.write_text("digest:\n  timezone: UTC\n  channel: C0OPS\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSGATE_"))},
        "OPSGATE_DATABASE_URL": url,
        "OPSGATE_CONFIG": str(config),
        "PYTHONPATH": str(ROOT),
    }
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", *args],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        times.append((time.perf_counter() - start) * 1000)
        assert done.returncode == 0, done.stderr
    return statistics.median(times)


def run_backend(
    name: str, url: str, *, rows: int, plans: int, repeat: int, say: Any
) -> dict[str, Any]:
    db = Database(url)
    db.create_schema()
    started = time.perf_counter()
    fill(db, rows, plans)
    loaded = time.perf_counter() - started
    say(f"  {name}: {rows} + 6 x {rows // 10} cost rows loaded in {loaded:.0f} s")
    try:
        build, statements, total = build_ms(db, repeat)
        expected = direct_total(db)
        assert abs(total - expected) < 1e-6 * max(1.0, expected), (total, expected)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            cli = cli_ms(url, repeat, folder, "digest", "--dry-run", "--date", DAY.isoformat())
            start_only = cli_ms(url, repeat, folder, "digest", "--help")
    finally:
        db.engine.dispose()
    result = {
        "rows_in_window": rows,
        "build_ms": round(build, 1),
        "statements": statements,
        "cli_ms": round(cli, 1),
        "cli_import_ms": round(start_only, 1),
        "within_target": cli <= TARGET_S * 1000,
    }
    say(
        f"  {name}: build_digest {build:.0f} ms ({statements:.0f} statements); "
        f"opsgate digest --dry-run {cli:.0f} ms end to end (of which starting Python and "
        f"importing: {start_only:.0f} ms); target < {TARGET_S * 1000:.0f} ms"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--plans", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
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
            results["sqlite"] = run_backend(
                "SQLite",
                f"sqlite:///{tmp}/digest.db",
                rows=args.rows,
                plans=args.plans,
                repeat=args.repeat,
                say=say,
            )
    if not args.no_pg:
        base = args.pg.replace("postgresql://", "postgresql+psycopg://", 1)
        schema, url = fresh_pg_schema(base)
        try:
            results["postgres"] = run_backend(
                "PostgreSQL", url, rows=args.rows, plans=args.plans, repeat=args.repeat, say=say
            )
        finally:
            drop_pg_schema(base, schema)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
