#!/usr/bin/env python3
# The LangGraph peer benchmark as its authors wrote it; it runs in a venv of its own (see below).
"""Peer benchmark: per-step overhead of LangGraph durable human-in-the-loop execution.

What it measures
    One "plan" is a LangGraph StateGraph with N step nodes in sequence. Each step
    node asks for approval with ``interrupt({"step": i, "args": ...})``; once the
    driver resumes it with ``Command(resume={"approved": True, "by": "U1"})`` the
    node runs a no-op tool and appends a record to the graph state. Every plan
    runs under its own thread_id against a durable checkpointer, so each
    approval round-trip is: load checkpoint -> re-run node past interrupt() ->
    write node output -> run next node up to its interrupt() -> save checkpoint.

    The driver runs M plans x N steps and reports wall time, approved steps per
    second, microseconds per step, checkpoints stored per plan and peak RSS.
    One warm-up plan runs before measuring; each repetition uses fresh thread
    ids in the same database, and the median over repetitions is reported.

    Modes: "sequential" drives one plan to completion before starting the next;
    "interleaved" opens all M plans first, then approves one step of each plan
    per round (many plans awaiting approval at once). Both run on one thread.

    Durability: "sync" (the default here) makes LangGraph persist each
    checkpoint before the next node starts, which matches "recorded before it
    runs"; "async" is LangGraph's own default and overlaps the write with the
    next node. Either way the checkpoint is saved before invoke() returns at an
    interrupt.

Requirements (Python >= 3.10)
    pip install langgraph langgraph-checkpoint-sqlite
    pip install langgraph-checkpoint-postgres "psycopg[binary]"   # postgres only

How to run
    python langgraph_hitl.py --backend memory --steps 10 --plans 200
    python langgraph_hitl.py --backend sqlite --steps 10 --plans 200 --db /tmp/lg.sqlite
    python langgraph_hitl.py --backend postgres --steps 10 --plans 200 \\
        --db postgresql://user:pass@127.0.0.1:5432/dbname

    With --backend sqlite and no --db, a temporary file is used and removed at
    the end. SqliteSaver commits each checkpoint and each batch of writes on its
    own; it sets journal_mode=WAL and leaves synchronous at SQLite's default,
    which the script prints. --json prints one machine-readable result line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import operator
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from importlib import metadata
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

APPROVAL = {"approved": True, "by": "U1"}


# --------------------------------------------------------------------------- graph


class PlanState(TypedDict):
    plan_id: str
    records: Annotated[list[dict[str, Any]], operator.add]


def noop_tool(args: dict[str, Any]) -> dict[str, Any]:
    """Stands in for a state-changing tool call; does no work."""
    return {"ok": True}


def make_step(i: int):
    def step(state: PlanState) -> dict[str, Any]:
        args = {"target": f"svc-{i}", "action": "restart"}
        # First execution raises GraphInterrupt here; on resume the node runs
        # again from the top and interrupt() returns the resume payload.
        decision = interrupt({"step": i, "args": args})
        if not decision.get("approved"):
            return {"records": [{"step": i, "status": "rejected", "by": decision.get("by")}]}
        result = noop_tool(args)
        return {"records": [{"step": i, "status": "done", "by": decision["by"], "result": result}]}

    return step


def build_graph(n_steps: int, checkpointer: BaseCheckpointSaver):
    builder = StateGraph(PlanState)
    previous = START
    for i in range(n_steps):
        name = f"step_{i}"
        builder.add_node(name, make_step(i))
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder.compile(checkpointer=checkpointer)


# --------------------------------------------------------------------------- driver


def start_plan(graph, thread_id: str, durability: str) -> dict[str, Any]:
    config = {"configurable": {"thread_id": thread_id}}
    return graph.invoke({"plan_id": thread_id, "records": []}, config, durability=durability)


def approve_next(graph, thread_id: str, durability: str) -> dict[str, Any]:
    config = {"configurable": {"thread_id": thread_id}}
    return graph.invoke(Command(resume=APPROVAL), config, durability=durability)


def expect(ok: bool, detail: Any) -> None:
    """Correctness check that survives python -O."""
    if not ok:
        raise RuntimeError(f"unexpected graph output: {detail!r}")


def check_interrupt(out: dict[str, Any], expected_step: int) -> None:
    pending = out.get("__interrupt__", [])
    expect(len(pending) == 1 and pending[0].value["step"] == expected_step, pending)


def check_done(out: dict[str, Any], n_steps: int) -> None:
    expect("__interrupt__" not in out, out)
    records = out["records"]
    expect([r["step"] for r in records] == list(range(n_steps)), records)
    expect(all(r["status"] == "done" and r["by"] == "U1" for r in records), records)


def run_sequential(graph, thread_ids: list[str], n_steps: int, durability: str) -> None:
    for tid in thread_ids:
        out = start_plan(graph, tid, durability)
        for i in range(n_steps):
            check_interrupt(out, i)
            out = approve_next(graph, tid, durability)
        check_done(out, n_steps)


def run_interleaved(graph, thread_ids: list[str], n_steps: int, durability: str) -> None:
    outs = {tid: start_plan(graph, tid, durability) for tid in thread_ids}
    for i in range(n_steps):
        for tid in thread_ids:
            check_interrupt(outs[tid], i)
            outs[tid] = approve_next(graph, tid, durability)
    for out in outs.values():
        check_done(out, n_steps)


RUNNERS = {"sequential": run_sequential, "interleaved": run_interleaved}


# --------------------------------------------------------------------------- backends


@contextlib.contextmanager
def open_checkpointer(backend: str, db: str | None) -> Iterator[tuple[BaseCheckpointSaver, str]]:
    """Yield (checkpointer, description of its durability settings)."""
    if backend == "memory":
        yield InMemorySaver(), "in-process dict, not durable"
        return

    if backend == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        tmpdir = None
        if db is None:
            tmpdir = tempfile.mkdtemp(prefix="lgbench-")
            db = os.path.join(tmpdir, "checkpoints.sqlite")
        if db == ":memory:" or db.startswith("file::memory:"):
            sys.exit("--backend sqlite needs a file path, not an in-memory database")
        try:
            with SqliteSaver.from_conn_string(db) as saver:
                saver.setup()
                journal = saver.conn.execute("PRAGMA journal_mode").fetchone()[0]
                sync = saver.conn.execute("PRAGMA synchronous").fetchone()[0]
                sync_name = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync)
                yield saver, f"file {db}; journal_mode={journal}, synchronous={sync_name}"
        finally:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
        return

    if backend == "postgres":
        from langgraph.checkpoint.postgres import PostgresSaver

        if not db:
            sys.exit("--backend postgres needs --db postgresql://...")
        with PostgresSaver.from_conn_string(db) as saver:
            saver.setup()
            settings = {
                name: saver.conn.execute(f"SHOW {name}").fetchone()[name]
                for name in ("synchronous_commit", "fsync", "wal_sync_method")
            }
            yield saver, ", ".join(f"{k}={v}" for k, v in settings.items())
        return

    raise ValueError(backend)


def versions(backend: str) -> dict[str, str]:
    packages = ["langgraph", "langgraph-checkpoint"]
    packages += {
        "sqlite": ["langgraph-checkpoint-sqlite"],
        "postgres": ["langgraph-checkpoint-postgres", "psycopg"],
    }.get(backend, [])
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "?"
    if backend == "sqlite":
        import sqlite3

        found["sqlite"] = sqlite3.sqlite_version
    return found


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="approval steps per plan (N)")
    parser.add_argument("--plans", type=int, default=200, help="plans per repetition (M)")
    parser.add_argument("--backend", choices=["memory", "sqlite", "postgres"], default="sqlite")
    parser.add_argument("--db", help="sqlite file path or postgres URL")
    parser.add_argument("--mode", choices=sorted(RUNNERS), default="sequential")
    parser.add_argument(
        "--durability",
        choices=["sync", "async"],
        default="sync",
        help="LangGraph durability mode (its own default is async)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="measured repetitions")
    parser.add_argument("--json", action="store_true", help="also print one JSON result line")
    args = parser.parse_args()
    if min(args.steps, args.plans, args.repeat) < 1:
        parser.error("--steps, --plans and --repeat must be at least 1")

    run = RUNNERS[args.mode]
    total_steps = args.steps * args.plans
    run_id = uuid.uuid4().hex[:8]

    with open_checkpointer(args.backend, args.db) as (saver, durability_info):
        graph = build_graph(args.steps, saver)

        run(graph, [f"{run_id}-warmup"], args.steps, args.durability)

        timings = []
        for rep in range(args.repeat):
            thread_ids = [f"{run_id}-r{rep}-p{p}" for p in range(args.plans)]
            t0 = time.perf_counter()
            run(graph, thread_ids, args.steps, args.durability)
            elapsed = time.perf_counter() - t0
            timings.append(elapsed)
            print(
                f"rep {rep}: {elapsed:.3f} s  {total_steps / elapsed:10.1f} steps/s  "
                f"{elapsed / total_steps * 1e6:8.1f} us/step"
            )

        sample = {"configurable": {"thread_id": thread_ids[-1]}}
        checkpoints_per_plan = sum(1 for _ in saver.list(sample))

    median = statistics.median(timings)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result = {
        "backend": args.backend,
        "mode": args.mode,
        "durability": args.durability,
        "steps": args.steps,
        "plans": args.plans,
        "repeat": args.repeat,
        "median_s": round(median, 4),
        "steps_per_s": round(total_steps / median, 1),
        "us_per_step": round(median / total_steps * 1e6, 1),
        "checkpoints_per_plan": checkpoints_per_plan,
        "peak_rss_mib": round(peak_rss_mib, 1),
        "storage": durability_info,
        "versions": versions(args.backend),
    }
    print(
        f"{args.backend}/{args.mode}/durability={args.durability}: "
        f"{args.plans} plans x {args.steps} steps, median of {args.repeat}: "
        f"{result['steps_per_s']} steps/s, {result['us_per_step']} us/step, "
        f"{checkpoints_per_plan} checkpoints/plan, peak RSS {result['peak_rss_mib']} MiB"
    )
    print(f"storage: {durability_info}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
