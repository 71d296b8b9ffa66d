"""The forecasts' history (``step_cost_stats``): kept by triggers, always equal to a recomputation
from every finished step, whichever way steps are inserted, finished, re-costed or deleted."""

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, insert, select, text, update
from sqlmodel import Session

from orchestration.budgets import past_step_costs, past_step_costs_scanned
from orchestration.db import Database
from orchestration.models import Step, StepCostStat
from orchestration.store import alembic_config

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STEPS = Step.__table__  # type: ignore[attr-defined]
STATS = StepCostStat.__table__  # type: ignore[attr-defined]
ACTIONS = ("http.get", "http.post", "shell.run", "fake.read")
STATUSES = ("pending", "running", "succeeded", "failed", "compensated", "cancelled", "in_doubt")


def step_row(*, tool_action: str, status: str, cost: float) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "plan_id": uuid.uuid4().hex,
        "position": 0,
        "key": "probe",
        "kind": "runbook",
        "title": "Probe",
        "tool_action": tool_action,
        "args": {},
        "args_hash": "h",
        "declared_risk": "low",
        "risk": "low",
        "read_only": True,
        "idempotent": True,
        "status": status,
        "decision_code": "",
        "decision_reason": "",
        "quorum": 0,
        "exclude_requester": False,
        "attempts": 1,
        "estimate_usd": 0.0,
        "cost_usd": cost,
        "tokens": 0,
        "duration_ms": 1.0,
        "started_at": AT,
    }


def assert_equal_to_recomputation(db: Database) -> None:
    with Session(db.engine) as session:
        kept = past_step_costs(session, ACTIONS)
        scanned = past_step_costs_scanned(session, ACTIONS)
        assert kept.keys() == scanned.keys()
        for action, avg in scanned.items():
            assert kept[action] == pytest.approx(avg, rel=1e-9, abs=1e-12), action
        counts = session.connection().execute(
            select(STATS.c.tool_action, STATS.c.finished, STATS.c.total_usd)
        )
        per_action: dict[str, int] = {}
        for action, finished, total in counts:
            assert finished >= 0
            if finished == 0:
                assert total == 0.0  # an emptied shard carries no rounding residue
            per_action[action] = per_action.get(action, 0) + finished
        recount = session.connection().execute(
            text(
                "SELECT tool_action, count(*) FROM steps "
                "WHERE status IN ('succeeded', 'failed') GROUP BY tool_action"
            )
        )
        assert {a: n for a, n in per_action.items() if n} == dict(recount.all())


@pytest.fixture
def db(db_url: str) -> Database:
    database = Database(db_url)
    database.create_schema()
    yield database  # type: ignore[misc]
    database.engine.dispose()


def test_the_triggers_exist_at_head(db: Database) -> None:
    """A later revision that rebuilds ``steps`` on SQLite would drop them: this catches it."""
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            found = connection.execute(
                text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'steps'::regclass")
            ).scalars()
            assert "steps_cost_stats" in set(found)
        else:
            found = connection.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            assert {
                "steps_cost_stats_insert",
                "steps_cost_stats_update",
                "steps_cost_stats_delete",
            } <= set(found)


def test_inserts_finishes_recosts_renames_and_deletes_keep_the_aggregate_exact(
    db: Database,
) -> None:
    """Random work on ``steps``, several rows per transaction; checked after every batch."""
    rng = random.Random(11)
    ids: list[str] = []
    for _batch in range(40):
        with db.engine.begin() as connection:
            for _ in range(rng.randint(1, 8)):
                op = rng.random()
                if op < 0.35 or not ids:
                    row = step_row(
                        tool_action=rng.choice(ACTIONS),
                        status=rng.choice(STATUSES),
                        cost=round(rng.uniform(0, 0.5), 6),
                    )
                    connection.execute(insert(STEPS), [row])
                    ids.append(row["id"])
                    continue
                target = rng.choice(ids)
                where = STEPS.c.id == target
                if op < 0.6:
                    connection.execute(
                        update(STEPS).where(where).values(status=rng.choice(STATUSES))
                    )
                elif op < 0.75:
                    cost = round(rng.uniform(0, 0.5), 6)
                    connection.execute(update(STEPS).where(where).values(cost_usd=cost))
                elif op < 0.82:
                    action = rng.choice(ACTIONS)
                    connection.execute(update(STEPS).where(where).values(tool_action=action))
                elif op < 0.9:  # status and cost in one statement, as the finish path writes
                    connection.execute(
                        update(STEPS)
                        .where(where)
                        .values(status="succeeded", cost_usd=STEPS.c.cost_usd + 0.125)
                    )
                elif op < 0.95:  # a write that changes nothing the aggregate counts
                    connection.execute(update(STEPS).where(where).values(attempts=3))
                else:
                    connection.execute(delete(STEPS).where(where))
                    ids.remove(target)
        assert_equal_to_recomputation(db)


def test_a_rolled_back_finish_leaves_the_aggregate_as_it_was(db: Database) -> None:
    row = step_row(tool_action="http.get", status="succeeded", cost=0.25)
    with db.engine.begin() as connection:
        connection.execute(insert(STEPS), [row])

    def failing_unit() -> None:
        with db.engine.begin() as connection:
            failed = step_row(tool_action="http.get", status="failed", cost=1)
            connection.execute(insert(STEPS), [failed])
            raise RuntimeError("the unit of work failed")

    with pytest.raises(RuntimeError):
        failing_unit()
    with Session(db.engine) as session:
        assert past_step_costs(session, ["http.get"]) == {"http.get": 0.25}
    assert_equal_to_recomputation(db)


def test_the_migration_fills_the_aggregate_from_steps_finished_before_it(db_url: str) -> None:
    db = Database(db_url)
    with db.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0008")
    rows = [
        step_row(tool_action=action, status=status, cost=cost)
        for action, status, cost in [
            ("http.get", "succeeded", 0.1),
            ("http.get", "failed", 0.3),
            ("http.get", "running", 9.0),
            ("shell.run", "compensated", 5.0),
            ("shell.run", "succeeded", 0.5),
        ]
    ]
    with db.engine.begin() as connection:
        connection.execute(insert(STEPS), rows)
    db.create_schema()
    with Session(db.engine) as session:
        costs = past_step_costs(session, ACTIONS)
    assert costs == pytest.approx({"http.get": 0.2, "shell.run": 0.5})
    assert_equal_to_recomputation(db)
    db.engine.dispose()
