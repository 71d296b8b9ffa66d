"""Does opening an incident (and running its step) cost more as history grows?

DESIGN target (issue 11 item 4): opening an incident and every step cost the same with 10,
1,000 and 100,000 finished plans in the database, within 10%.

For each backend it builds one database per history size, each filled in bulk
(``bench.bulk``: resolved incidents with a succeeded plan of two succeeded steps, their cost
entries, audit events and delivered outbox messages, all before today), and one control plane
on each. Then, interleaved round by round across the sizes (the same moment of a noisy machine
for all of them), it measures ``--ops`` times: open an incident whose plan is one low-risk step
on the same tool action as the history, and run that step to the plan's end.
Figures per size: wall ms and this process's CPU ms per incident (medians over rounds), the
statements each incident sends (counted with SQLAlchemy events: a figure noise cannot move),
and the ratio to the smallest size (median of the per-round ratios). Beside them, for
contrast, the time of the forecast query the hot path used to run (an average over every
finished step) on the same database.

Each measured incident adds one finished plan, so a size grows by ``rounds x ops`` during the
run (10 ends at 10 + 140 with the defaults): that is growth the figures include.

Run: ``python -m bench.history [--sizes 10,1000,100000] [--rounds 7] [--ops 20] [--no-pg]
[--json]``.
"""

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from bench.bulk import finished_plans, load, tables
from bench.step_overhead import (
    REQUESTER,
    StatementCounter,
    build,
    drop_pg_schema,
    fresh_pg_schema,
    runbook,
)
from orchestration.budgets import past_step_costs, past_step_costs_scanned
from orchestration.control import ControlPlane
from orchestration.telemetry import configure_logging

CHANNEL = "C0BENCH"
ACTION = "noop.read"
TARGET = 1.10


def fill(control: ControlPlane, plans: int) -> None:
    """``plans`` finished plans of history, in bulk."""
    rows = finished_plans(plans, channel=CHANNEL, tool_action=ACTION, newest=datetime.now(UTC))
    for name, table in tables().items():
        load(control.db.engine, table, rows[name])
    if control.db.engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load; without it the planner guesses from nothing.
        with control.db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")


async def one_incident(control: ControlPlane) -> None:
    opened = await control.open_incident(
        text="benchread", requester=REQUESTER, channel=CHANNEL, run=False
    )
    await control.advance(opened.plan_id)
    view = await control.plan_view(opened.plan_id)
    assert view.status == "succeeded", view.status_reason


async def measure(control: ControlPlane, ops: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per incident over ``ops`` incidents."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(ops):
        await one_incident(control)
    return (
        (time.perf_counter() - wall) * 1000 / ops,
        (time.process_time() - cpu) * 1000 / ops,
    )


async def statements_per_incident(control: ControlPlane, ops: int) -> float:
    counter = StatementCounter(control.db.engine)
    try:
        for _ in range(ops):
            await one_incident(control)
    finally:
        counter.close()
    return sum(counter.statements.values()) / ops


def forecast_queries_ms(control: ControlPlane) -> tuple[float, float]:
    """(maintained aggregate, full scan) ms for the forecast of one tool action."""

    def timed(query: Any) -> float:
        with Session(control.db.engine) as session:
            query(session, [ACTION])  # warm
            start = time.perf_counter()
            for _ in range(5):
                query(session, [ACTION])
            return (time.perf_counter() - start) * 1000 / 5

    return timed(past_step_costs), timed(past_step_costs_scanned)


async def run_backend(
    name: str, urls: list[str], *, sizes: list[int], rounds: int, ops: int, say: Any
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "read.yaml").write_text(runbook(1, "read"))
        controls = []
        for url, size in zip(urls, sizes, strict=True):
            control = await build(url, folder)
            started = time.perf_counter()
            fill(control, size)
            say(f"  {name}: {size} finished plans loaded in {time.perf_counter() - started:.1f} s")
            controls.append(control)
        try:
            for control in controls:
                await measure(control, 3)  # warm: statement caches, the pool
            wall: dict[int, list[float]] = {s: [] for s in sizes}
            cpu: dict[int, list[float]] = {s: [] for s in sizes}
            for number in range(rounds):
                for size, control in zip(sizes, controls, strict=True):
                    w, c = await measure(control, ops)
                    wall[size].append(w)
                    cpu[size].append(c)
                say(
                    f"  round {number + 1}/{rounds}: "
                    + ", ".join(f"{s}: {wall[s][-1]:.2f} ms" for s in sizes)
                )
            statements = {
                size: await statements_per_incident(control, 5)
                for size, control in zip(sizes, controls, strict=True)
            }
            forecasts = {
                size: forecast_queries_ms(control)
                for size, control in zip(sizes, controls, strict=True)
            }
        finally:
            for control in controls:
                await control.close()
    base = sizes[0]
    out: dict[str, Any] = {}
    for size in sizes:
        out[str(size)] = {
            "wall_ms": round(statistics.median(wall[size]), 3),
            "cpu_ms": round(statistics.median(cpu[size]), 3),
            "wall_x_smallest": round(
                statistics.median(a / b for a, b in zip(wall[size], wall[base], strict=True)), 3
            ),
            "cpu_x_smallest": round(
                statistics.median(a / b for a, b in zip(cpu[size], cpu[base], strict=True)), 3
            ),
            "statements": round(statements[size], 2),
            "forecast_kept_ms": round(forecasts[size][0], 3),
            "forecast_scan_ms": round(forecasts[size][1], 3),
            "rounds_wall_ms": [round(x, 3) for x in wall[size]],
        }
    say(f"\n{name}: open an incident and run its one step (median of {rounds} rounds x {ops})")
    say(
        f"  {'finished plans':>14} {'wall ms':>8} {'x':>6} {'CPU ms':>8} {'x':>6} "
        f"{'stmts':>6} {'forecast now':>13} {'(full scan)':>12}"
    )
    for size in sizes:
        r = out[str(size)]
        say(
            f"  {size:>14} {r['wall_ms']:>8.2f} {r['wall_x_smallest']:>6.3f} {r['cpu_ms']:>8.2f} "
            f"{r['cpu_x_smallest']:>6.3f} {r['statements']:>6.1f} "
            f"{r['forecast_kept_ms']:>10.3f} ms {r['forecast_scan_ms']:>9.3f} ms"
        )
    worst = max(max(out[str(s)]["wall_x_smallest"], out[str(s)]["cpu_x_smallest"]) for s in sizes)
    out["worst_x_smallest"] = worst
    out["within_target"] = worst <= TARGET
    say(f"  worst ratio to the smallest size: {worst:.3f} (target <= {TARGET})")
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,1000,100000")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=20)
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
    sizes = [int(s) for s in args.sizes.split(",")]

    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    results: dict[str, Any] = {}
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            urls = [f"sqlite:///{tmp}/history-{size}.db" for size in sizes]
            results["sqlite"] = await run_backend(
                "SQLite", urls, sizes=sizes, rounds=args.rounds, ops=args.ops, say=say
            )
    if not args.no_pg:
        base = args.pg.replace("postgresql://", "postgresql+psycopg://", 1)
        schemas = [fresh_pg_schema(base) for _ in sizes]
        try:
            results["postgres"] = await run_backend(
                "PostgreSQL",
                [url for _, url in schemas],
                sizes=sizes,
                rounds=args.rounds,
                ops=args.ops,
                say=say,
            )
        finally:
            for schema, _ in schemas:
                drop_pg_schema(base, schema)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
