"""Budgets that bite: soft wait, channel daily cap, forecasts from past runs."""

from pathlib import Path

from adapters.testing import FakeTool
from common import FakeClock
from orchestration.control import ControlPlane
from tests.orchestration.fakeplans import control_with, result
from tests.orchestration.helpers import REQUESTER


async def test_soft_budget_card_expires_after_the_configured_minutes_and_stops_the_plan(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    fake._queue.extend([result(True, cost=0.9)])
    cp = await control_with(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read"},
        {"tool": "fake.read"},
        budgets={"plan_usd": 1.0, "soft_wait_minutes": 5},
    )
    planes.append(cp)
    opened = await cp.open_incident(text="fakefix", requester=REQUESTER, channel="C1")
    assert (await cp.plan_view(opened.plan_id)).status == "waiting"
    clock.advance(4 * 60)
    assert await cp.expire_approvals() == 0
    clock.advance(61)
    assert await cp.expire_approvals() == 1
    view = await cp.plan_view(opened.plan_id)
    assert view.status == "halted"
    assert "soft budget" in view.status_reason
    assert len(fake.calls) == 1


async def test_channel_daily_cap_blocks_new_plans_and_stops_running_ones(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    fake._queue.extend([result(True, cost=0.45), result(True, cost=0.45)])
    step = {"tool": "fake.read", "cost_usd": 0.3}
    cp = await control_with(
        db_url,
        tmp_path,
        clock,
        fake,
        step,
        step,
        step,
        budgets={"plan_usd": 10, "channel_daily_usd": 1.0},
    )
    planes.append(cp)
    first = await cp.open_incident(text="fakefix", requester=REQUESTER, channel="C1")
    view = await cp.plan_view(first.plan_id)
    assert view.status == "halted"
    assert "daily cap" in view.status_reason
    assert len(fake.calls) == 2  # 0.9 spent; the third step (0.3) would pass the 1.0 cap

    second = await cp.open_incident(text="fakefix", requester=REQUESTER, channel="C1")
    assert second.status == "blocked"
    assert "daily cap" in second.reason
    other = await cp.open_incident(text="fakefix", requester=REQUESTER, channel="C2", run=False)
    assert other.status == "proposed"  # the cap is per channel

    clock.advance(24 * 3600)  # a new UTC day
    again = await cp.open_incident(text="fakefix", requester=REQUESTER, channel="C1", run=False)
    assert again.status == "proposed"


async def test_forecast_learns_from_past_runs(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    fake._queue.extend([result(True, cost=0.6)])
    cp = await control_with(
        db_url, tmp_path, clock, fake, {"tool": "fake.read"}, budgets={"plan_usd": 1.0}
    )
    planes.append(cp)
    first = await cp.open_incident(text="fakefix", requester=REQUESTER)
    assert (await cp.plan_view(first.plan_id)).status == "succeeded"
    second = await cp.open_incident(text="fakefix", requester=REQUESTER, run=False)
    view = await cp.plan_view(second.plan_id)
    assert view.forecast_usd == 0.6  # the past run's cost, not the tool's default of 0


async def test_forecast_over_budget_is_blocked_with_the_figure_shown(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    fake._queue.extend([result(True, cost=0.6), result(True, cost=0.6)])
    cp = await control_with(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read"},
        {"tool": "fake.read"},
        budgets={"plan_usd": 1.0},
    )
    planes.append(cp)
    await cp.open_incident(text="fakefix", requester=REQUESTER)  # teaches: a read costs 0.6
    blocked = await cp.open_incident(text="fakefix", requester=REQUESTER)
    assert blocked.status == "blocked"
    assert "$" in blocked.reason
    assert "forecast" in blocked.reason
