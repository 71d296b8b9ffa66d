"""Budget figures read from the store: past step costs for forecasts, a channel's spend today.

The decisions themselves are the Auditor's pure functions (``orchestration.auditor``).
"""

from collections.abc import Iterable
from datetime import datetime, time

from sqlmodel import Session, col, func, select

from orchestration.auditor import EPSILON_USD
from orchestration.enums import StepStatus
from orchestration.models import CostEntry, Step, StepCostStat


def past_step_costs(session: Session, tool_actions: Iterable[str]) -> dict[str, float]:
    """Average cost of finished steps per tool action: what past runs say a step costs.

    Read from ``step_cost_stats`` (at most 16 rows per action, kept by triggers on ``steps``),
    never from the steps themselves: opening an incident costs the same with 10 or 100,000
    finished plans in the database.
    """
    names = sorted(set(tool_actions))
    if not names:
        return {}
    finished = func.sum(StepCostStat.finished)
    rows = session.exec(
        select(StepCostStat.tool_action, func.sum(StepCostStat.total_usd), finished)
        .where(col(StepCostStat.tool_action).in_(names))
        .group_by(col(StepCostStat.tool_action))
    )
    return {name: float(total) / int(n) for name, total, n in rows if n}


def past_step_costs_scanned(session: Session, tool_actions: Iterable[str]) -> dict[str, float]:
    """:func:`past_step_costs` recomputed from every finished step (tests and benches compare)."""
    names = sorted(set(tool_actions))
    if not names:
        return {}
    rows = session.exec(
        select(Step.tool_action, func.avg(Step.cost_usd))
        .where(
            col(Step.tool_action).in_(names),
            col(Step.status).in_([StepStatus.SUCCEEDED.value, StepStatus.FAILED.value]),
        )
        .group_by(col(Step.tool_action))
    )
    return {name: float(avg) for name, avg in rows if avg is not None}


def channel_spent_today(session: Session, channel: str, now: datetime) -> float:
    """USD spent by plans of ``channel`` since 00:00 UTC today."""
    start = datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)
    total = session.exec(
        select(func.sum(CostEntry.usd)).where(
            CostEntry.channel == channel, col(CostEntry.at) >= start
        )
    ).one()
    return float(total or 0.0)


def forecast_refusal(
    *,
    forecast_usd: float,
    budget_usd: float,
    channel_spent_usd: float,
    channel_cap_usd: float | None,
) -> tuple[str, str] | None:
    """(code, reason) when a plan must be blocked before it starts, else None."""
    if budget_usd > 0 and forecast_usd > budget_usd + EPSILON_USD:
        return "budget_forecast", (
            f"Blocked before it started: the forecast cost ${forecast_usd:.4f} exceeds the plan "
            f"budget ${budget_usd:.4f}."
        )
    if (
        channel_cap_usd is not None
        and channel_spent_usd + forecast_usd > channel_cap_usd + EPSILON_USD
    ):
        return "channel_daily_cap", (
            f"Blocked before it started: this channel spent ${channel_spent_usd:.4f} today and "
            f"the forecast is ${forecast_usd:.4f}, over the daily cap ${channel_cap_usd:.4f}."
        )
    return None
