"""Control-plane overhead per step, with a no-op tool, on SQLite and PostgreSQL.

For each backend it measures, in the same run and interleaved round by round:
  * baseline: one durable commit (a one-row INSERT in its own transaction, through the same
    worker-thread path the control plane uses);
  * approved step: the vote (admissibility, quorum, grant, the step claimed under its lease:
    one commit), the no-op call, then its result, cost, spans and audit recorded with the next
    step's approval opened (one commit): two commits per step;
  * auto step: a low-risk step that runs without approval (one commit per step: its result
    and the next step's start share it);
  * the LangGraph peer (``bench/langgraph_hitl.py``: durable interrupt/resume, one approval
    per step) on the same backend, when its venv exists (``make bench-peer-venv``).
Figures: medians over the rounds, in ms per step; ratios to one durable commit and to the
peer. After the timed rounds one instrumented round counts the statements per step
(``statements``), so the counting costs nothing in the figures.

Run: ``make bench`` or ``python -m bench.step_overhead [--steps 100] [--rounds 5] [--pg URL]``.
With ``--json`` it prints one JSON object and nothing else:
``{"sqlite": {"commit_ms", "approved_ms", "auto_ms", ...}, "postgres": {...}}``.
"""

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlmodel import Session, select, text

from adapters import GrantSigner
from adapters.testing import NoopTool
from common import SystemClock
from orchestration.config import OpsgateConfig, ToolLimits
from orchestration.control import ControlPlane
from orchestration.db import Database
from orchestration.enums import ApprovalState, VoteChoice
from orchestration.models import Approval
from orchestration.telemetry import configure_logging
from orchestration.toolbox import build_registry
from policies import default_pack

REQUESTER, APPROVER = "UREQ", "UAPP"
ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = Path(__file__).resolve().parent / "langgraph_hitl.py"
PEER_VENVS = (ROOT / ".venv-langgraph", ROOT.parent / ".venv-langgraph")


def runbook(steps: int, action: str) -> str:
    lines = [
        f"id: bench-{action}",
        "version: 1",
        "title: bench",
        "match:",
        f"  keywords: [bench{action}]",
        "steps:",
    ]
    for i in range(steps):
        lines += [
            f"  - id: s{i}",
            f"    title: step {i}",
            f"    tool: noop.{action}",
            f"    args: {{n: {i}}}",
            f"    risk: {'low' if action == 'read' else 'medium'}",
        ]
    return "\n".join(lines) + "\n"


async def build(url: str, folder: Path) -> ControlPlane:
    config = OpsgateConfig.model_validate(
        {
            "runbooks": str(folder),
            "approvers": [REQUESTER, APPROVER],
            "budgets": {"plan_usd": 0},
            "execution": {"no_progress_steps": 1000},
        }
    )
    clock = SystemClock()
    signer = GrantSigner(os.urandom(32))
    limits = ToolLimits(rate_per_s=1e6, burst=100000)
    tools = build_registry(config, signer=signer, clock=clock, extra=[(NoopTool(), limits)])
    control = ControlPlane(
        db=Database(url),
        config=config,
        tools=tools,
        pack=default_pack(),
        signer=signer,
        clock=clock,
    )
    await control.start()
    return control


async def durable_commit_ms(db: Database, n: int) -> float:
    def setup(session: Session) -> None:
        session.connection().execute(text("CREATE TABLE IF NOT EXISTS bench_commit (v TEXT)"))

    await db.run(setup)
    start = time.perf_counter()
    for i in range(n):
        await db.run(
            lambda s, i=i: s.connection().execute(
                text("INSERT INTO bench_commit (v) VALUES (:v)"), {"v": str(i)}
            )
        )
    return (time.perf_counter() - start) * 1000 / n


class Meter:
    """Wall time and this process's CPU time (every thread) over the measured parts only."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    @contextmanager
    def measuring(self) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu

    def per_step(self, n: int) -> tuple[float, float]:
        return self.wall * 1000 / n, self.cpu * 1000 / n


async def approved_steps(control: ControlPlane, n: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per approved step; the benchmark's own nonce lookups not counted."""
    opened = await control.open_incident(text="benchwrite", requester=REQUESTER, run=False)
    meter = Meter()
    with meter.measuring():
        await control.advance(opened.plan_id)
    for _ in range(n):
        nonce = await control.db.run(
            lambda s: s.exec(
                select(Approval.nonce).where(
                    Approval.plan_id == opened.plan_id,
                    Approval.state == ApprovalState.PENDING.value,
                )
            ).one()
        )
        with meter.measuring():
            out = await control.vote(nonce=nonce, voter=APPROVER, choice=VoteChoice.APPROVE)
        assert out.accepted, out
    view = await control.plan_view(opened.plan_id)
    assert view.status == "succeeded", view.status_reason
    return meter.per_step(n)


async def auto_steps(control: ControlPlane, n: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per low-risk step."""
    opened = await control.open_incident(text="benchread", requester=REQUESTER, run=False)
    meter = Meter()
    with meter.measuring():
        await control.advance(opened.plan_id)
    view = await control.plan_view(opened.plan_id)
    assert view.status == "succeeded", view.status_reason
    return meter.per_step(n)


async def approved_steps_ms(control: ControlPlane, n: int) -> float:
    return (await approved_steps(control, n))[0]


async def auto_steps_ms(control: ControlPlane, n: int) -> float:
    return (await auto_steps(control, n))[0]


def peer_python(given: str | None) -> str | None:
    """The LangGraph venv's interpreter: ``--peer-python`` or ``OPSGATE_LANGGRAPH_PYTHON``,
    else ``.venv-langgraph`` in or beside the repository; None when there is none (the peer
    is then skipped)."""
    given = given or os.environ.get("OPSGATE_LANGGRAPH_PYTHON")
    if given:
        return given if Path(given).exists() else None
    for venv in PEER_VENVS:
        python = venv / "bin" / "python"
        if python.exists():
            return str(python)
    return None


# Runs in the peer's venv: the peer script's own graph, checkpointer and sequential driver
# (durability "sync": each checkpoint stored before the next node), after one warm-up plan;
# wall and process CPU time over the measured plans only (imports and setup left out).
PEER_DRIVER = """
import json, sys, time, uuid
sys.path.insert(0, sys.argv[1])
import langgraph_hitl as lg
backend, db, steps, plans = sys.argv[2], sys.argv[3] or None, int(sys.argv[4]), int(sys.argv[5])
with lg.open_checkpointer(backend, db) as (saver, storage):
    graph = lg.build_graph(steps, saver)
    run = uuid.uuid4().hex[:8]
    lg.run_sequential(graph, [run + "-warm"], steps, "sync")
    wall, cpu = time.perf_counter(), time.process_time()
    lg.run_sequential(graph, [f"{run}-{p}" for p in range(plans)], steps, "sync")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
n = steps * plans
print(json.dumps({"ms": wall * 1000 / n, "cpu_ms": cpu * 1000 / n, "storage": storage}))
"""


def peer_round(
    python: str, backend: str, db: str | None, steps: int, plans: int
) -> tuple[float, float, str]:
    """One repetition of the LangGraph peer in its own process: (wall ms, CPU ms) per
    approved step and how its storage is set up."""
    command = [python, "-c", PEER_DRIVER, str(PEER_SCRIPT.parent), backend, db or ""]
    command += [str(steps), str(plans)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["ms"]), float(result["cpu_ms"]), str(result["storage"])


class StatementCounter:
    """Counts what the engine sends: statements, transactions and pool checkouts."""

    def __init__(self, engine: Any) -> None:
        self.statements: Counter[str] = Counter()
        self.begins = 0
        self.checkouts = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)
        event.listen(engine.pool, "checkout", self._checkout)
        self._engine = engine

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        words = statement.split()
        verb = words[0].upper()
        if verb == "BEGIN":
            return  # SQLite's BEGIN IMMEDIATE: counted with the transactions
        table = ""
        if verb in ("INSERT", "DELETE") and len(words) > 2:
            table = words[2]
        elif verb == "UPDATE" and len(words) > 1:
            table = words[1]
        self.statements[f"{verb} {table}".strip()] += 1

    def _begin(self, _conn: Any) -> None:
        self.begins += 1

    def _checkout(self, *_args: Any) -> None:
        self.checkouts += 1

    def reset(self) -> None:
        self.statements.clear()
        self.begins = self.checkouts = 0

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._statement)
        event.remove(self._engine, "begin", self._begin)
        event.remove(self._engine.pool, "checkout", self._checkout)

    def per_step(self, steps: int, *, lookups: int = 0) -> dict[str, Any]:
        """Per step, without the benchmark's own nonce lookups (one SELECT in its own unit)."""
        statements = dict(self.statements)
        if lookups:
            statements["SELECT"] = statements.get("SELECT", 0) - lookups
        total = sum(statements.values())
        transactions = self.begins - lookups
        return {
            "statements": round(total / steps, 2),
            "transactions": round(transactions / steps, 2),
            # What the server (or the SQLite library) is asked per step: each statement,
            # plus BEGIN and COMMIT of each transaction.
            "round_trips": round((total + 2 * transactions) / steps, 2),
            "checkouts": round((self.checkouts - lookups) / steps, 2),
            "by_kind": {k: round(v / steps, 2) for k, v in sorted(statements.items()) if v},
        }


async def count_statements(control: ControlPlane, steps: int) -> dict[str, Any]:
    """One instrumented round: what the engine sent per approved and per auto step."""
    counter = StatementCounter(control.db.engine)
    try:
        await approved_steps_ms(control, steps)  # warm: plan opening and first step apart
        counter.reset()
        await approved_steps_ms(control, steps)
        approved = counter.per_step(steps, lookups=steps)
        counter.reset()
        await auto_steps_ms(control, steps)
        auto = counter.per_step(steps)
    finally:
        counter.close()
    return {"approved_step": approved, "auto_step": auto}


async def run_backend(
    name: str,
    url: str,
    *,
    steps: int,
    rounds: int,
    peer: tuple[str, str, str | None] | None,
    peer_plans: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Interleaved rounds of: durable commit, approved steps, auto steps, the peer."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "write.yaml").write_text(runbook(steps, "write"))
        (folder / "read.yaml").write_text(runbook(steps, "read"))
        control = await build(url, folder)
        keys = ["commit_ms", "approved_ms", "approved_cpu_ms", "auto_ms", "auto_cpu_ms"]
        if peer is not None:
            keys += ["langgraph_ms", "langgraph_cpu_ms"]
        series: dict[str, list[float]] = {key: [] for key in keys}
        storage = ""
        try:
            await approved_steps_ms(control, steps)  # warm: caches, statement cache, the pool
            for number in range(rounds):
                series["commit_ms"].append(await durable_commit_ms(control.db, 200))
                wall, cpu = await approved_steps(control, steps)
                series["approved_ms"].append(wall)
                series["approved_cpu_ms"].append(cpu)
                wall, cpu = await auto_steps(control, steps)
                series["auto_ms"].append(wall)
                series["auto_cpu_ms"].append(cpu)
                if peer is not None:
                    python, backend, db = peer
                    wall, cpu, storage = await asyncio.to_thread(
                        peer_round, python, backend, db, 10, peer_plans
                    )
                    series["langgraph_ms"].append(wall)
                    series["langgraph_cpu_ms"].append(cpu)
                say(
                    f"  round {number + 1}/{rounds}: "
                    + ", ".join(f"{k} {v[-1]:.3f}" for k, v in series.items())
                )
            counted = await count_statements(control, steps)
        finally:
            await control.close()
    result: dict[str, Any] = {key: round(statistics.median(v), 4) for key, v in series.items()}
    result["rounds"] = {key: [round(x, 4) for x in v] for key, v in series.items()}
    result["steps"] = steps
    result["approved_x_commit"] = round(result["approved_ms"] / result["commit_ms"], 2)
    result["auto_x_commit"] = round(result["auto_ms"] / result["commit_ms"], 2)
    if peer is not None:
        # Ratios per round (the same moment of a noisy machine), then their median.
        for ours, theirs in (
            ("approved_ms", "langgraph_ms"),
            ("approved_cpu_ms", "langgraph_cpu_ms"),
        ):
            result[f"langgraph_x_{ours.removesuffix('_ms')}"] = round(
                statistics.median(
                    lg / mine for lg, mine in zip(series[theirs], series[ours], strict=True)
                ),
                2,
            )
        result["langgraph_storage"] = storage
    result["statements"] = counted
    say(f"\n{name}")
    say(f"  durable commit (baseline)  {result['commit_ms']:.3f} ms")
    for key, label in (("approved_ms", "approved step"), ("auto_ms", "low-risk step")):
        ms = result[key]
        say(
            f"  {label:<26} {ms:.3f} ms   {1000 / ms:8.0f} steps/s   "
            f"{ms / result['commit_ms']:.2f}x one durable commit"
        )
    say(
        f"  CPU per approved step      {result['approved_cpu_ms']:.3f} ms, per low-risk step "
        f"{result['auto_cpu_ms']:.3f} ms (this process, every thread)"
    )
    if peer is not None:
        lg = result["langgraph_ms"]
        say(
            f"  {'LangGraph approved step':<26} {lg:.3f} ms   {1000 / lg:8.0f} steps/s   "
            f"CPU {result['langgraph_cpu_ms']:.3f} ms"
        )
        say(
            f"  LangGraph / opsgate, approved step (median of round ratios): wall "
            f"{result['langgraph_x_approved']:.2f}x, CPU {result['langgraph_x_approved_cpu']:.2f}x"
        )
    for kind in ("approved_step", "auto_step"):
        c = counted[kind]
        say(
            f"  statements per {kind.replace('_', ' '):<13} {c['statements']:.1f} "
            f"in {c['transactions']:.1f} transactions, {c['round_trips']:.1f} round trips "
            f"with BEGIN and COMMIT"
        )
    return result


def fresh_pg_schema(base: str) -> tuple[str, str]:
    import uuid  # noqa: PLC0415
    from urllib.parse import quote  # noqa: PLC0415

    from sqlalchemy import create_engine  # noqa: PLC0415

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return schema, f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


def drop_pg_schema(base: str, schema: str) -> None:
    from sqlalchemy import create_engine  # noqa: PLC0415

    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "OPSGATE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--peer-python", help="python of the LangGraph venv")
    parser.add_argument("--no-peer", action="store_true", help="skip the LangGraph peer")
    parser.add_argument("--peer-plans", type=int, default=20, help="peer plans (10 steps each)")
    args = parser.parse_args()
    # Audit events are stored in the database either way; console log lines are not the
    # control plane's cost, so the benchmark logs warnings only.
    configure_logging(json=True, level=logging.WARNING)

    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    python = None if args.no_peer else peer_python(args.peer_python)
    say(
        f"control-plane overhead per step, no-op tool, {args.steps} steps x {args.rounds} "
        "rounds (median)"
        + ("" if python else "; LangGraph peer skipped (no venv: make bench-peer-venv)")
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        peer = (python, "sqlite", f"{tmp}/langgraph.sqlite") if python else None
        results["sqlite"] = await run_backend(
            "SQLite (WAL, synchronous=FULL)",
            f"sqlite:///{tmp}/bench.db",
            steps=args.steps,
            rounds=args.rounds,
            peer=peer,
            peer_plans=args.peer_plans,
            say=say,
        )
    if not args.no_pg:
        base = args.pg.replace("postgresql://", "postgresql+psycopg://", 1)
        schema, url = fresh_pg_schema(base)
        peer_schema, peer_url = fresh_pg_schema(base)
        try:
            libpq = peer_url.replace("postgresql+psycopg://", "postgresql://", 1)
            results["postgres"] = await run_backend(
                "PostgreSQL",
                url,
                steps=args.steps,
                rounds=args.rounds,
                peer=(python, "postgres", libpq) if python else None,
                peer_plans=args.peer_plans,
                say=say,
            )
        finally:
            drop_pg_schema(base, schema)
            drop_pg_schema(base, peer_schema)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
