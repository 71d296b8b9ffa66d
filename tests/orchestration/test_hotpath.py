"""The hot path in SQLAlchemy Core: few statements, the same records as the ORM path.

An approved step is two units of work (the vote that reaches quorum and claims the step; the
result recorded with the next step's approval opened); a low-risk step is one. These tests
count what the engine sends, compare what the Core path stores with what the ORM path stores
for the same plans, and check the in-memory knowledge versions and the reconnect that
replaced the pool's pre-ping.
"""

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlmodel import Session, col, select

from adapters import GrantSigner
from adapters.testing import NoopTool
from common import FakeClock
from orchestration import stepflow
from orchestration.approvals import votes
from orchestration.config import ToolLimits
from orchestration.control import ControlPlane
from orchestration.db import Database
from orchestration.enums import ApprovalState, VoteChoice
from orchestration.knowledge import Document, publish_documents
from orchestration.models import Approval, Knowledge, OutboxMessage, Plan, Step
from orchestration.toolbox import build_registry
from tests.orchestration.helpers import APPROVER_A, REQUESTER, make_config, make_control

STEPS = 3
# Upper bounds per unit of work, BEGIN and COMMIT not counted (the ORM path sent 13 and 17).
VOTE_UNIT_MAX = 9  # read (PostgreSQL: lock + read), vote, 3 updates, 3 batched inserts
FINISH_UNIT_MAX = 12  # read (PostgreSQL: lock + read), 3 updates, upsert, 5 batched inserts


def runbook(action: str) -> str:
    lines = [
        f"id: hot-{action}",
        "version: 1",
        "title: hot path",
        "match:",
        f"  keywords: [hot{action}]",
        "steps:",
    ]
    for i in range(STEPS):
        risk = "low" if action == "read" else "medium"
        lines += [
            f"  - id: s{i}",
            f"    title: step {i}",
            f"    tool: noop.{action}",
            f"    args: {{n: {i}}}",
            f"    risk: {risk}",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture
async def control(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[ControlPlane]:
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "write.yaml").write_text(runbook("write"))
    (folder / "read.yaml").write_text(runbook("read"))
    config = make_config(folder, approvers=[REQUESTER, APPROVER_A])
    signer = GrantSigner(b"k" * 32)
    limits = ToolLimits(rate_per_s=1e6, burst=100000)
    tools = build_registry(config, signer=signer, clock=clock, extra=[(NoopTool(), limits)])
    cp = await make_control(db_url, config, clock, tools=tools, signer=signer)
    yield cp
    await cp.close()


@contextmanager
def recorded(db: Database) -> Iterator[list[list[str]]]:
    """The statements sent, one list per transaction (SQLite's BEGIN IMMEDIATE left out)."""
    units: list[list[str]] = []

    def begin(_conn: Any) -> None:
        units.append([])

    def statement(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        if not sql.startswith("BEGIN"):
            units[-1].append(" ".join(sql.split()))

    event.listen(db.engine, "begin", begin)
    event.listen(db.engine, "before_cursor_execute", statement)
    try:
        yield units
    finally:
        event.remove(db.engine, "begin", begin)
        event.remove(db.engine, "before_cursor_execute", statement)


async def pending_nonce(control: ControlPlane, plan_id: str) -> str:
    return await control.db.run(
        lambda s: s.exec(
            select(Approval.nonce).where(
                Approval.plan_id == plan_id, Approval.state == ApprovalState.PENDING.value
            )
        ).one()
    )


async def test_an_approved_step_is_two_short_units_with_no_knowledge_query(
    control: ControlPlane,
) -> None:
    opened = await control.open_incident(text="hotwrite", requester=REQUESTER)
    nonce = await pending_nonce(control, opened.plan_id)
    with recorded(control.db) as units:
        out = await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    assert out.accepted, out
    assert len(units) == 2, units  # the vote (claims the step), then result + next approval
    vote_unit, finish_unit = units
    assert len(vote_unit) <= VOTE_UNIT_MAX, vote_unit
    assert len(finish_unit) <= FINISH_UNIT_MAX, finish_unit
    everything = vote_unit + finish_unit
    # No per-step staleness query (the old OR/GROUP BY over knowledge), no ORM per-row inserts.
    assert not [s for s in everything if s.startswith("SELECT knowledge.")], everything
    for table in ("audit_events", "outbox", "spans"):
        inserts = [s for s in finish_unit if s.startswith(f"INSERT INTO {table} ")]
        assert len(inserts) == 1, (table, finish_unit)
    # The next step waits for its approval: the plan moved on in that same unit.
    view = await control.plan_view(opened.plan_id)
    assert [s.status for s in view.steps] == ["succeeded", "awaiting_approval", "pending"]


async def test_a_low_risk_step_is_one_unit(control: ControlPlane) -> None:
    opened = await control.open_incident(text="hotread", requester=REQUESTER, run=False)
    with recorded(control.db) as units:
        await control.advance(opened.plan_id)
    # The first step's start, then one unit per step (its result and the next one's start),
    # the last also finishing the plan.
    assert len(units) == STEPS + 1, units
    for unit in units[1:-1]:
        assert len(unit) <= FINISH_UNIT_MAX, unit
    view = await control.plan_view(opened.plan_id)
    assert view.status == "succeeded"


def no_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every unit down the ORM path."""
    monkeypatch.setattr(stepflow, "_finish_core", lambda *_a, **_k: stepflow._SLOW)
    monkeypatch.setattr(votes, "_approve_core", lambda *_a, **_k: None)


_VOLATILE = {"approval_id", "nonce", "grant_id", "correlation_id", "expires_at", "idempotency_key"}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in sorted(value.items()) if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


async def stored(control: ControlPlane, plan_id: str) -> dict[str, Any]:
    """What a plan left behind, without ids and random values."""

    def work(session: Session) -> dict[str, Any]:
        steps = session.exec(
            select(Step).where(Step.plan_id == plan_id).order_by(col(Step.position))
        ).all()
        plan = session.get(Plan, plan_id)
        assert plan is not None
        outbox = session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.plan_id == plan_id)
            .order_by(col(OutboxMessage.id))
        ).all()
        approvals = session.exec(
            select(Approval)
            .where(Approval.plan_id == plan_id)
            .order_by(col(Approval.created_at), col(Approval.step_id))
        ).all()
        return {
            "plan": (plan.status, plan.status_reason, plan.spent_usd, plan.no_progress),
            "steps": [
                (
                    s.status,
                    s.attempts,
                    s.decision_code,
                    s.risk,
                    s.quorum,
                    s.result,
                    s.error_code,
                    s.lease_owner,
                    s.started_at,
                    s.finished_at,
                )
                for s in steps
            ],
            "approvals": [(a.state, a.quorum, a.reason, a.decided_at) for a in approvals],
            "outbox": [(m.kind, m.step_id is None, _stable(m.payload)) for m in outbox],
        }

    found = await control.db.run(work)
    trail = await control.audit_trail(plan_id)
    found["audit"] = [
        (e.event, e.actor, e.role, e.code, e.step_id is None, _stable(e.detail)) for e in trail
    ]
    found["spans"] = sorted(
        (s.kind, s.name, s.status, _stable(s.attributes)) for s in await control.spans(plan_id)
    )
    found["costs"] = [(c.tool, c.usd, c.role) for c in await control.costs(plan_id)]
    return found


async def approve_all(control: ControlPlane, plan_id: str) -> None:
    for _ in range(STEPS):
        nonce = await pending_nonce(control, plan_id)
        out = await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
        assert out.accepted, out


async def test_the_core_path_stores_what_the_orm_path_stores(
    control: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = []
    for core in (True, False):
        if not core:
            no_core(monkeypatch)
        written = await control.open_incident(text="hotwrite", requester=REQUESTER)
        await approve_all(control, written.plan_id)
        read = await control.open_incident(text="hotread", requester=REQUESTER)
        results.append(
            (await stored(control, written.plan_id), await stored(control, read.plan_id))
        )
    (core_write, core_read), (orm_write, orm_read) = results
    assert core_write["plan"][0] == "succeeded"
    assert core_read["plan"][0] == "succeeded"
    for key in core_write:
        assert core_write[key] == orm_write[key], key
        assert core_read[key] == orm_read[key], key


async def test_a_version_stored_by_another_replica_makes_the_next_vote_stale(
    control: ControlPlane, clock: FakeClock
) -> None:
    opened = await control.open_incident(text="hotwrite", requester=REQUESTER)
    nonce = await pending_nonce(control, opened.plan_id)

    def publish_elsewhere(session: Session) -> None:
        # What another replica does with its newer file; this replica's snapshot and
        # in-memory versions do not know about it yet.
        stored_body = session.exec(
            select(Knowledge.body)
            .where(Knowledge.kind == "runbook", Knowledge.key == "hot-write")
            .order_by(col(Knowledge.version).desc())
        ).first()
        assert stored_body is not None
        body = dict(stored_body) | {"title": "hot path, edited elsewhere"}
        publish_documents(session, [Document("runbook", "hot-write", body)], now=clock.now())

    await control.db.run(publish_elsewhere)
    out = await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    assert not out.accepted
    assert out.code == "plan_stale"
    view = await control.plan_view(opened.plan_id)
    assert view.status == "stale"
    assert [s.status for s in view.steps] == ["skipped"] * STEPS


async def test_the_pool_sends_no_pings_and_a_connection_lost_before_commit_is_redone(
    db_url: str,
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no server connection to lose")
    db = Database(db_url, pool_size=1)
    try:
        assert db.engine.pool._pre_ping is False  # type: ignore[attr-defined]
        await db.run(lambda s: s.connection().execute(text("CREATE TABLE lost (v int)")))
        pid = await db.run(lambda s: s.connection().execute(text("SELECT pg_backend_pid()")).one())
        killer = Database(db_url, pool_size=1)
        try:
            await killer.run(
                lambda s: s.connection().execute(
                    text("SELECT pg_terminate_backend(:pid)"), {"pid": pid[0]}
                )
            )
        finally:
            await killer.close()
        await asyncio.sleep(0.2)  # the server closes the pooled connection's socket
        # The pooled connection is dead; the unit runs again on a fresh one, exactly once.
        await db.run(lambda s: s.connection().execute(text("INSERT INTO lost VALUES (1)")))
        rows = await db.run(lambda s: s.connection().execute(text("SELECT v FROM lost")).all())
        assert [r[0] for r in rows] == [1]
    finally:
        await db.close()
