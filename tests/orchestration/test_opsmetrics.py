"""Every operational figure against a seeded week, checked by hand-computed numbers."""

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlmodel import Session

from orchestration.db import Database
from orchestration.digest import build_digest
from orchestration.opsmetrics import OpsReport, mean, ops_report, ratio, utc_days
from tests.orchestration.history import DAY, END, START, TZ, at, seed_history


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.start()
    await database.run(seed_history)
    yield database
    await database.close()


async def report_of(db: Database) -> OpsReport:
    return await db.run(lambda session: ops_report(session, START, END))


def test_ratio_and_mean_say_none_when_there_is_nothing_to_measure() -> None:
    assert ratio(1, 0) is None
    assert ratio(0, 4) == 0
    assert mean([]) is None
    assert mean([1.0, 3.0]) == 2.0


def test_cache_counts_the_utc_days_whose_midnight_is_in_the_window() -> None:
    assert utc_days(START, END) == ["2026-01-05"]
    assert utc_days(at("2026-01-05 00:00"), at("2026-01-07 00:00")) == ["2026-01-05", "2026-01-06"]
    assert utc_days(at("2026-01-05 10:00"), at("2026-01-05 12:00")) == []


async def test_spend_by_role_tool_runbook_and_channel_in_the_local_day(db: Database) -> None:
    report = await report_of(db)
    # p1 0.0203 + p2 0.0101 + p3 0.0001 + p4 0.9001 + p7 (0.0010 at 00:30 Paris + 0.0001);
    # p7's 0.0002 at 23:30Z on the 5th is the 6th in Paris, p0's 0.01 is the 4th.
    assert report.spend.usd == pytest.approx(0.9317)
    assert report.spend.tokens == 3400
    roles = {a.key: a.usd for a in report.by_role}
    assert roles == pytest.approx({"planner": 0.92, "executor": 0.0107, "researcher": 0.001})
    assert [a.key for a in report.by_role] == ["planner", "executor", "researcher"]
    tools = {a.key: a.usd for a in report.by_tool}
    assert tools == pytest.approx({"llm": 0.92, "shell": 0.01, "prometheus": 0.001, "http": 0.0007})
    runbooks = {a.key: a.usd for a in report.by_runbook}
    assert runbooks == pytest.approx(
        {"web-restart": 0.9215, "db-failover": 0.0101, "cache-flush": 0.0001}
    )
    channels = {a.key: a.usd for a in report.by_channel}
    assert channels == pytest.approx({"C0INC": 0.9216, "C0DB": 0.0101})


async def test_costliest_plans_top_five_with_runbook_incident_and_status(db: Database) -> None:
    report = await report_of(db)
    rows = [(p.plan_id, p.runbook_id, p.incident_text, p.status) for p in report.costliest]
    assert rows == [
        ("p4", "web-restart", "search-api 5xx", "halted"),
        ("p1", "web-restart", "checkout-api is down", "succeeded"),
        ("p2", "db-failover", "billing-db is unhealthy", "failed"),
        ("p7", "web-restart", "web-api is down", "waiting"),
        ("p3", "cache-flush", "cache-api is down", "halted"),
    ]
    assert [p.usd for p in report.costliest] == pytest.approx(
        [0.9001, 0.0203, 0.0101, 0.0011, 0.0001]
    )
    assert report.costliest[0].tokens == 1900


async def test_budget_warnings_and_stops(db: Database) -> None:
    report = await report_of(db)
    assert report.budget_warning_count == 1  # the soft limit of p4 (a step approval is not one)
    assert [(w.plan_id, w.kind) for w in report.budget_warnings] == [("p4", "warning")]
    assert report.budget_warnings[0].reason == "Spent 80% of the $1.00 budget."
    assert report.budget_stop_count == 2  # p4's hard limit, p5 blocked by its forecast
    assert [(e.plan_id, e.kind, e.runbook_id) for e in report.budget_stops] == [
        ("p4", "stop", "web-restart"),
        ("p5", "blocked", "web-restart"),
    ]
    assert report.budget_stops[1].reason == "forecast $2.5000 > budget $1.0000"


async def test_operational_formulas_by_hand(db: Database) -> None:
    r = await report_of(db)
    # Cache: 30+5 hits of 50 lookups on 2026-01-05 UTC.
    assert (r.cache_hits, r.cache_misses, r.cache_hit_rate) == (35, 15, pytest.approx(0.7))
    # MTTR: i1 30 min and i2 2 h resolved; i3 was cancelled, not resolved.
    assert r.incidents_opened == 7
    assert r.incidents_resolved == 2
    assert r.mttr_s == pytest.approx((1800 + 7200) / 2)
    # Cohort: p1..p4 finished in the window; p6 is shadow, p5 blocked and p7 waiting.
    assert (r.plans_finished, r.plans_succeeded) == (4, 1)
    # Actions (runbook steps that ran): p1 3/3, p2 1/2 (failover compensated), p3 1/1, p4 1/1.
    assert (r.actions_succeeded, r.actions_executed) == (6, 7)
    assert r.action_success_rate == pytest.approx(6 / 7)
    # Escalation: p2 (approval + escalated), p3 (approval), p4 (budget approval) of 4.
    assert (r.plans_escalated, r.escalation_rate) == (3, 0.75)
    # Cost per successful action: 0.0203 + 0.0101 + 0.0001 + 0.9001 over 6.
    assert r.finished_plans_usd == pytest.approx(0.9306)
    assert r.cost_per_successful_action_usd == pytest.approx(0.9306 / 6)
    # False positives: state-changing steps decided: p1 restart ok, p2 failover compensated,
    # p3 flush rejected (p4's restart was skipped, never decided) -> 2 / 3.
    assert (r.changes_false_positive, r.changes_decided) == (2, 3)
    assert r.false_positive_rate == pytest.approx(2 / 3)
    # Lead time: 20, 45, 10 and 5 minutes.
    assert r.change_lead_time_s == pytest.approx((1200 + 2700 + 600 + 300) / 4)


async def test_an_empty_window_has_no_figures_rather_than_zeros(db: Database) -> None:
    empty = await db.run(
        lambda s: ops_report(s, START - timedelta(days=30), START - timedelta(days=29))
    )
    assert empty.spend.usd == 0
    assert empty.costliest == ()
    for name in (
        "mttr_s",
        "action_success_rate",
        "escalation_rate",
        "cost_per_successful_action_usd",
        "false_positive_rate",
        "change_lead_time_s",
        "cache_hit_rate",
    ):
        assert getattr(empty, name) is None, name


async def test_the_digest_trend_is_seven_local_days_ending_with_the_day(db: Database) -> None:
    def work(session: Session) -> list[tuple[str, float]]:
        digest = build_digest(session, day=DAY, tz=TZ)
        assert (digest.report.start, digest.report.end) == (START, END)
        return [(d.day.isoformat(), d.usd) for d in digest.report.trend]

    trend = await db.run(work)
    assert [day for day, _ in trend] == [
        "2025-12-30",
        "2025-12-31",
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
        "2026-01-04",
        "2026-01-05",
    ]
    # 2025-12-29's $5 is outside; the 4th has p0's 0.01 (its 23:30Z entry belongs to the 5th).
    assert [usd for _, usd in trend] == pytest.approx([0, 0, 0.03, 0, 0, 0.01, 0.9317])
