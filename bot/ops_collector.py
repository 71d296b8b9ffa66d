"""The operational metrics at ``GET /metrics``: a Prometheus collector over the last 24 hours.

``collect()`` is synchronous (prometheus-client calls it while rendering), so the scrape handler
first awaits :meth:`OpsCollector.refresh`, which recomputes the :class:`OpsReport` in a database
worker at most once per ``ttl_s``; scrapes in between cost nothing. A figure with nothing to
measure has no sample (Prometheus' way of saying "unknown"), rather than a misleading 0.

The agents' figures come from the same report: ``opsgate_llm_tokens`` and ``opsgate_llm_usd``
``{role,model}`` (what the Researcher and the LLM Planner spent), ``opsgate_llm_calls``
``{role,model,outcome}`` (ok, retried, failed, budget_stopped; every outcome of a role and model
that made any call has a sample, 0 included, so ratios need no ``or vector(0)``) and
``opsgate_plans_proposed{planner}`` (runbook, llm). Being read from the database, every replica
serves the same figures.

With rollout scopes configured, each scope's stage and evidence since its stage began:
``opsgate_rollout_stage{scope}`` (0 shadow, 1 supervised, 2 gated), ``..._days_in_stage``,
``..._judged_incidents``, ``..._false_positive_ratio`` and ``..._false_negative_ratio``
``{scope,severity}``, ``..._agreement_ratio``, ``..._cost_per_action_usd`` and
``..._exit_criteria_met`` (formulas: ``orchestration.rollout.evidence``).

The circuit breakers shared by the replicas (``opsgate_circuit_breaker_state{tool,target}``:
0 closed, 1 half-open, 2 open) are read from the database too, at most once per
``breakers_ttl_s`` (1 s): a breaker opens and closes within seconds, the 24 h figures do not.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from common import Clock, Mode
from orchestration.breakers import BreakerView, breaker_views
from orchestration.db import Database
from orchestration.enums import CallOutcome, PlannerKind
from orchestration.opsmetrics import OpsReport, ops_report
from orchestration.rollout.report import scope_status
from orchestration.rollout.settings import RolloutConfig
from orchestration.telemetry import get_logger

log = get_logger("opsgate.metrics")

WINDOW = timedelta(hours=24)
CACHE_TTL_S = 30.0
BREAKERS_TTL_S = 1.0
BREAKER_STATE = "opsgate_circuit_breaker_state"

GAUGES: tuple[tuple[str, str, str], ...] = (
    ("opsgate_mttr_seconds", "mttr_s", "Mean time to resolve incidents resolved in the last 24 h"),
    (
        "opsgate_action_success_ratio",
        "action_success_rate",
        "Executed actions that succeeded and were not compensated, last 24 h",
    ),
    (
        "opsgate_escalation_ratio",
        "escalation_rate",
        "Finished plans where humans had to take over (halted, denied, failed, in doubt, timed "
        "out; not designed approvals), last 24 h",
    ),
    (
        "opsgate_cost_per_successful_action_usd",
        "cost_per_successful_action_usd",
        "Spend of finished plans per successful action, last 24 h",
    ),
    (
        "opsgate_false_positive_ratio",
        "false_positive_rate",
        "State-changing actions rejected or compensated, last 24 h",
    ),
    (
        "opsgate_change_lead_time_seconds",
        "change_lead_time_s",
        "Mean time from plan created to final state, last 24 h",
    ),
    ("opsgate_cache_hit_ratio", "cache_hit_rate", "Read-only tool cache hit ratio, last UTC day"),
)
SPEND = "opsgate_spend_usd"
LLM_TOKENS = "opsgate_llm_tokens"
LLM_USD = "opsgate_llm_usd"
LLM_CALLS = "opsgate_llm_calls"
PLANS_PROPOSED = "opsgate_plans_proposed"
ROLLOUT_STAGE = "opsgate_rollout_stage"
ROLLOUT_DAYS = "opsgate_rollout_days_in_stage"
ROLLOUT_JUDGED = "opsgate_rollout_judged_incidents"
ROLLOUT_FP = "opsgate_rollout_false_positive_ratio"
ROLLOUT_FN = "opsgate_rollout_false_negative_ratio"
ROLLOUT_AGREEMENT = "opsgate_rollout_agreement_ratio"
ROLLOUT_CPA = "opsgate_rollout_cost_per_action_usd"
ROLLOUT_READY = "opsgate_rollout_exit_criteria_met"


class OpsCollector(Collector):
    """Serves the last cached report; :meth:`refresh` keeps it at most ``ttl_s`` old."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[OpsReport]],
        *,
        clock: Clock,
        ttl_s: float = CACHE_TTL_S,
        breakers: Callable[[], Awaitable[list[BreakerView]]] | None = None,
        breakers_ttl_s: float = BREAKERS_TTL_S,
        rollout: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._ttl_s = ttl_s
        self._report: OpsReport | None = None
        self._at: float | None = None
        self._fetch_breakers = breakers
        self._breakers_ttl_s = breakers_ttl_s
        self._breakers: list[BreakerView] = []
        self._breakers_at: float | None = None
        self._fetch_rollout = rollout
        self._rollout: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    @classmethod
    def over(
        cls,
        db: Database,
        *,
        clock: Clock,
        ttl_s: float = CACHE_TTL_S,
        rollout: RolloutConfig | None = None,
        mode: Mode = Mode.SUPERVISED,
    ) -> "OpsCollector":
        """A collector of the last 24 hours of ``db`` (and of the rollout scopes, if any)."""

        async def fetch() -> OpsReport:
            end = clock.now()
            return await db.run(lambda session: ops_report(session, end - WINDOW, end))

        async def breakers() -> list[BreakerView]:
            now = clock.now()
            return await db.run(lambda session: breaker_views(session, now=now))

        async def stages() -> list[dict[str, Any]]:
            assert rollout is not None
            now = clock.now()
            rows = await db.run(lambda s: scope_status(s, rollout, default=mode, now=now))
            return [r.as_json() for r in rows]

        scoped = rollout is not None and bool(rollout.scopes)
        return cls(
            fetch, clock=clock, ttl_s=ttl_s, breakers=breakers, rollout=stages if scoped else None
        )

    @property
    def report(self) -> OpsReport | None:
        """The cached report, if any."""
        return self._report

    async def refresh(self) -> None:
        """Recompute the report once older than ``ttl_s``, the breakers once older than 1 s."""
        async with self._lock:
            now = self._clock.monotonic()
            if self._at is None or now - self._at >= self._ttl_s:
                try:
                    self._report = await self._fetch()
                except Exception as exc:  # a scrape must not fail because the database is down
                    log.warning("ops_metrics_failed", error=repr(exc))
                    self._report = None
                if self._fetch_rollout is not None:
                    try:
                        self._rollout = await self._fetch_rollout()
                    except Exception as exc:
                        log.warning("rollout_metrics_failed", error=repr(exc))
                        self._rollout = []
                self._at = now
            due = self._breakers_at is None or now - self._breakers_at >= self._breakers_ttl_s
            if self._fetch_breakers is not None and due:
                try:
                    self._breakers = await self._fetch_breakers()
                except Exception as exc:  # no sample beats a stale one
                    log.warning("breaker_metrics_failed", error=repr(exc))
                    self._breakers = []
                self._breakers_at = now

    def collect(self) -> Iterable[Metric]:
        """The gauges of the cached report."""
        report = self._report
        for name, field, doc in GAUGES:
            gauge = GaugeMetricFamily(name, doc)
            value = getattr(report, field) if report is not None else None
            if value is not None:
                gauge.add_metric([], float(value))
            yield gauge
        spend = GaugeMetricFamily(
            SPEND, "Spend in USD over the last 24 h by dimension", labels=["dimension", "key"]
        )
        if report is not None:
            spend.add_metric(["total", "total"], report.spend.usd)
            for dimension, amounts in (
                ("role", report.by_role),
                ("tool", report.by_tool),
                ("runbook", report.by_runbook),
                ("channel", report.by_channel),
            ):
                for amount in amounts:
                    spend.add_metric([dimension, amount.key], amount.usd)
        yield spend
        yield from _agent_metrics(report)
        yield from _rollout_metrics(self._rollout)
        state = GaugeMetricFamily(
            BREAKER_STATE,
            "Circuit breaker of each tool and target: 0 closed, 1 half-open, 2 open",
            labels=["tool", "target"],
        )
        for breaker in self._breakers:
            state.add_metric([breaker.tool, breaker.target], breaker.gauge)
        yield state


def _agent_metrics(report: OpsReport | None) -> Iterable[Metric]:
    """The agents' tokens, USD and calls by role and model, and the plans by planner."""
    labels = ["role", "model"]
    tokens = GaugeMetricFamily(
        LLM_TOKENS, "Tokens of the agents' model calls over the last 24 h", labels=labels
    )
    usd = GaugeMetricFamily(
        LLM_USD, "USD of the agents' model calls over the last 24 h", labels=labels
    )
    calls = GaugeMetricFamily(
        LLM_CALLS,
        "The agents' model calls over the last 24 h by outcome (budget_stopped: not made)",
        labels=[*labels, "outcome"],
    )
    plans = GaugeMetricFamily(
        PLANS_PROPOSED, "Plans proposed over the last 24 h by planner", labels=["planner"]
    )
    if report is not None:
        for use in report.model_usage:
            tokens.add_metric([use.role, use.model], use.tokens)
            usd.add_metric([use.role, use.model], use.usd)
        counted = {(c.role, c.model, c.outcome): c.calls for c in report.model_calls}
        for role, model in sorted({(c.role, c.model) for c in report.model_calls}):
            for outcome in CallOutcome:
                calls.add_metric(
                    [role, model, outcome.value], counted.get((role, model, outcome.value), 0)
                )
        plans.add_metric([PlannerKind.RUNBOOK.value], report.plans_by_runbook)
        plans.add_metric([PlannerKind.LLM.value], report.plans_by_llm)
    yield from (tokens, usd, calls, plans)


STAGE_GAUGE = {Mode.SHADOW.value: 0, Mode.SUPERVISED.value: 1, Mode.GATED.value: 2}


def _rollout_metrics(rows: list[dict[str, Any]]) -> Iterable[Metric]:
    """Each rollout scope's stage and evidence (``ScopeStatus.as_json`` rows)."""
    stage = GaugeMetricFamily(
        ROLLOUT_STAGE,
        "Stage of each rollout scope: 0 shadow, 1 supervised, 2 gated",
        labels=["scope"],
    )
    days = GaugeMetricFamily(
        ROLLOUT_DAYS, "Days each scope has been in its stage", labels=["scope"]
    )
    judged = GaugeMetricFamily(
        ROLLOUT_JUDGED, "Judged incidents of each scope in its stage", labels=["scope"]
    )
    fp = GaugeMetricFamily(
        ROLLOUT_FP,
        "False positives / proposals of each scope in its stage, by severity (effective risk)",
        labels=["scope", "severity"],
    )
    fn = GaugeMetricFamily(
        ROLLOUT_FN,
        "Changes humans made that opsgate did not propose / changes humans made, by severity",
        labels=["scope", "severity"],
    )
    agree = GaugeMetricFamily(
        ROLLOUT_AGREEMENT, "Judged incidents with no FP and no FN / judged", labels=["scope"]
    )
    cpa = GaugeMetricFamily(
        ROLLOUT_CPA,
        "Cost per action (recorded, or forecast in shadow) in the stage",
        labels=["scope"],
    )
    ready = GaugeMetricFamily(
        ROLLOUT_READY, "1 when every exit criterion of the scope's stage is met", labels=["scope"]
    )
    for row in rows:
        scope = str(row["scope"])
        stage.add_metric([scope], STAGE_GAUGE.get(str(row["stage"]), -1))
        days.add_metric([scope], float(row["days"]))
        judged.add_metric([scope], float(row["incidents"]))
        for family, key in ((fp, "fp"), (fn, "fn")):
            for severity, (count, total) in row[key].items():
                if total:
                    family.add_metric([scope, severity], count / total)
        agreed, total = row["agreement"]
        if total:
            agree.add_metric([scope], agreed / total)
        if row["cost_per_action_usd"] is not None:
            cpa.add_metric([scope], float(row["cost_per_action_usd"]))
        if row["next_stage"] is not None:
            ready.add_metric([scope], 1.0 if row["ready"] else 0.0)
    yield from (stage, days, judged, fp, fn, agree, cpa, ready)
