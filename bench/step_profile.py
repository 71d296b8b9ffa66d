"""Where an approved step's time goes: the step_overhead benchmark's approved steps, profiled.

``python -m bench.step_profile [--steps 100] [--rounds 3] [--pg URL]`` runs the approved steps
of ``bench.step_overhead`` on SQLite (or PostgreSQL with ``--pg``), first unprofiled (the real
wall and CPU time per step, medians over ``--rounds``), then once more under ``cProfile`` on
both threads that do the work: the event loop and the database worker. Each function's own
time is put in one bucket (the commit, the driver's statements, SQLAlchemy's engine, its ORM
session, redaction, policies, JSON, the adapters, opsgate's own units of work, ...). The two
threads take turns (the loop waits in ``epoll`` while the worker runs a unit), so the buckets
other than that waiting add up to the profiled wall time; they are scaled to the unprofiled
wall time per step, so each figure reads as "about this many ms of a real step". The commit
and the driver's statements include waiting for the disk or the server.

The scaling assumes the profiler slows every bucket alike, which it does not quite (it
inflates many small Python calls more than one long C call such as the commit, so those are
understated); the figures say where the time goes, not to the tenth of a millisecond.
"""

import argparse
import asyncio
import cProfile
import logging
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import step_overhead
from orchestration.db import Database
from orchestration.telemetry import configure_logging

# (bucket, test on pstats' (file, line, function) key); the first that matches takes it.
Test = Callable[[tuple[str, int, str]], bool]
_C_STATEMENTS = {
    "<method 'execute' of 'sqlite3.Cursor' objects>",
    "<method 'executemany' of 'sqlite3.Cursor' objects>",
    "<method 'fetchall' of 'sqlite3.Cursor' objects>",
}


def _in(*parts: str) -> Test:
    return lambda key: any(part in key[0] for part in parts)


BUCKETS: list[tuple[str, Test]] = [
    ("waiting (event loop idle)", lambda k: "'poll' of 'select.epoll'" in k[2]),
    ("database commit (disk flush)", lambda k: k[2].startswith("<method 'commit' of")),
    ("database statements (driver)", lambda k: k[2] in _C_STATEMENTS or "psycopg" in k[0]),
    ("SQLAlchemy ORM session", _in("sqlalchemy/orm", "sqlmodel")),
    ("SQLAlchemy engine and Core", _in("sqlalchemy")),
    ("redaction", _in("common/redaction")),
    ("policies", _in("/policies/")),
    ("pydantic", lambda k: "pydantic" in k[0] or "SchemaSerializer" in k[2] or "validate" in k[2]),
    ("JSON", _in("/json/")),
    ("logging", _in("structlog", "/logging/")),
    ("tool call (adapters, guards, grants)", _in("/adapters/")),
    ("votes and approvals", _in("orchestration/approvals")),
    (
        "step units (stepflow, rows, records)",
        _in(
            "stepflow",
            "rows.py",
            "records.py",
            "orchestration/db.py",
            "lifecycle",
            "grants.py",
            "auditor",
            "runtime",
            "authority",
            "cache.py",
            "observe",
            "rollout",
        ),
    ),
    ("control plane and executor", _in("control.py", "executor.py", "telemetry.py", "tenacity")),
    ("asyncio and thread handoff", _in("asyncio", "concurrent/futures", "threading", "selectors")),
    ("benchmark driver", _in("/bench/")),
]


def buckets(profile: cProfile.Profile) -> dict[str, float]:
    """Seconds of own time per bucket (``other`` for the rest)."""
    out: dict[str, float] = {}
    stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for key, (_cc, _nc, own, _cum, _callers) in stats.items():
        name = next((bucket for bucket, test in BUCKETS if test(key)), "other")
        out[name] = out.get(name, 0.0) + own
    return out


async def measure(url: str, *, steps: int, rounds: int) -> dict[str, Any]:
    """Unprofiled wall and CPU per approved step, then one profiled round's buckets."""
    worker = cProfile.Profile()
    profiling = False
    original = Database._run_sync

    def profiled(self: Database, work: Any) -> Any:
        if not profiling or getattr(work, "__module__", "") == step_overhead.__name__:
            return original(self, work)  # the driver's own nonce lookup is not the step's
        worker.enable()
        try:
            return original(self, work)
        finally:
            worker.disable()

    Database._run_sync = profiled  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "write.yaml").write_text(step_overhead.runbook(steps, "write"))
            (folder / "read.yaml").write_text(step_overhead.runbook(steps, "read"))
            control = await step_overhead.build(url.format(tmp=tmp), folder)
            try:
                await step_overhead.approved_steps(control, steps)  # warm
                walls, cpus = [], []
                for _ in range(rounds):
                    wall, cpu = await step_overhead.approved_steps(control, steps)
                    walls.append(wall)
                    cpus.append(cpu)
                loop = cProfile.Profile()
                profiling = True
                started = time.perf_counter()
                loop.enable()
                await step_overhead.approved_steps(control, steps)
                loop.disable()
                profiled_wall = time.perf_counter() - started
                profiling = False
            finally:
                await control.close()
    finally:
        Database._run_sync = original  # type: ignore[method-assign]
    return {
        "wall_ms": statistics.median(walls),
        "cpu_ms": statistics.median(cpus),
        "profiled_wall_ms": profiled_wall * 1000 / steps,
        "worker": buckets(worker),
        "loop": buckets(loop),
        "steps": steps,
    }


def report(name: str, result: dict[str, Any]) -> None:
    """Print each bucket as ms of a real step (the profiled shares scaled to real CPU)."""
    steps = result["steps"]
    work = {
        thread: {k: v for k, v in result[thread].items() if not k.startswith("waiting")}
        for thread in ("worker", "loop")
    }
    profiled = sum(sum(b.values()) for b in work.values())
    scale = result["wall_ms"] / (profiled * 1000 / steps)
    print(
        f"\n{name}: approved step {result['wall_ms']:.3f} ms wall, {result['cpu_ms']:.3f} ms CPU "
        f"(median); profiled {result['profiled_wall_ms']:.3f} ms wall, scaled by {scale:.2f}"
    )
    for thread in ("worker", "loop"):
        total = sum(work[thread].values()) * 1000 / steps * scale
        print(f"  {thread} thread: {total:.3f} ms")
        for bucket, seconds in sorted(work[thread].items(), key=lambda kv: -kv[1]):
            ms = seconds * 1000 / steps * scale
            if ms >= 0.005:
                print(f"    {bucket:<40} {ms:6.3f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", help="also profile on this PostgreSQL URL (a fresh schema)")
    args = parser.parse_args()
    configure_logging(json=True, level=logging.WARNING)
    result = await measure("sqlite:///{tmp}/bench.db", steps=args.steps, rounds=args.rounds)
    report("SQLite", result)
    if args.pg:
        base = args.pg.replace("postgresql://", "postgresql+psycopg://", 1)
        schema, url = step_overhead.fresh_pg_schema(base)
        try:
            report("PostgreSQL", await measure(url, steps=args.steps, rounds=args.rounds))
        finally:
            step_overhead.drop_pg_schema(base, schema)


if __name__ == "__main__":
    asyncio.run(main())
