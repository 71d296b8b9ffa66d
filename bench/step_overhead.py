"""Control-plane overhead per step, with a no-op tool, on SQLite and PostgreSQL.

For each backend it measures, in the same run:
  * baseline: one durable commit (a one-row INSERT in its own transaction, through the same
    worker-thread path the control plane uses);
  * approved step: policy, approval record, one approver's vote, quorum, grant, audit events,
    spans, outbox messages, result and cost persisted (three commits per step);
  * auto step: a low-risk step that runs without approval (two commits per step).
Figures: ms per step, steps per second, and the ratio to one durable commit.

Run: ``make bench`` or ``python -m bench.step_overhead [--steps 200] [--pg URL]``.
"""

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

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


async def approved_steps_ms(control: ControlPlane, n: int) -> float:
    opened = await control.open_incident(text="benchwrite", requester=REQUESTER, run=False)
    lookup = 0.0
    start = time.perf_counter()
    await control.advance(opened.plan_id)
    for _ in range(n):
        t0 = time.perf_counter()
        nonce = await control.db.run(
            lambda s: s.exec(
                select(Approval.nonce).where(
                    Approval.plan_id == opened.plan_id,
                    Approval.state == ApprovalState.PENDING.value,
                )
            ).one()
        )
        lookup += time.perf_counter() - t0
        out = await control.vote(nonce=nonce, voter=APPROVER, choice=VoteChoice.APPROVE)
        assert out.accepted, out
    total = time.perf_counter() - start - lookup
    view = await control.plan_view(opened.plan_id)
    assert view.status == "succeeded", view.status_reason
    return total * 1000 / n


async def auto_steps_ms(control: ControlPlane, n: int) -> float:
    opened = await control.open_incident(text="benchread", requester=REQUESTER, run=False)
    start = time.perf_counter()
    await control.advance(opened.plan_id)
    total = time.perf_counter() - start
    view = await control.plan_view(opened.plan_id)
    assert view.status == "succeeded", view.status_reason
    return total * 1000 / n


async def run_backend(name: str, url: str, steps: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "write.yaml").write_text(runbook(steps, "write"))
        (folder / "read.yaml").write_text(runbook(steps, "read"))
        control = await build(url, folder)
        try:
            commit, approved, auto = [], [], []
            for _ in range(rounds):
                commit.append(await durable_commit_ms(control.db, 200))
                approved.append(await approved_steps_ms(control, steps))
                auto.append(await auto_steps_ms(control, steps))
        finally:
            await control.close()
    result = {
        "commit_ms": statistics.median(commit),
        "approved_ms": statistics.median(approved),
        "auto_ms": statistics.median(auto),
    }
    print(f"\n{name}")
    print(f"  durable commit (baseline)  {result['commit_ms']:.3f} ms")
    for key, label in (("approved_ms", "approved step"), ("auto_ms", "low-risk step")):
        ms = result[key]
        print(
            f"  {label:<26} {ms:.3f} ms   {1000 / ms:8.0f} steps/s   "
            f"{ms / result['commit_ms']:.2f}x one durable commit"
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "OPSGATE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    # Audit events are stored in the database either way; console log lines are not the
    # control plane's cost, so the benchmark logs warnings only.
    configure_logging(json=True, level=logging.WARNING)
    print(
        f"control-plane overhead per step, no-op tool, {args.steps} steps x {args.rounds} "
        "rounds (median)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        await run_backend(
            "SQLite (WAL, synchronous=FULL)", f"sqlite:///{tmp}/bench.db", args.steps, args.rounds
        )
    if not args.no_pg:
        base = args.pg.replace("postgresql://", "postgresql+psycopg://", 1)
        schema, url = fresh_pg_schema(base)
        try:
            await run_backend("PostgreSQL", url, args.steps, args.rounds)
        finally:
            drop_pg_schema(base, schema)


if __name__ == "__main__":
    asyncio.run(main())
