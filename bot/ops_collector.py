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

The circuit breakers shared by the replicas (``opsgate_circuit_breaker_state{tool,target}``:
0 closed, 1 half-open, 2 open) are read from the database too, at most once per
``breakers_ttl_s`` (1 s): a breaker opens and closes within seconds, the 24 h figures do not.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from common import Clock
from orchestration.breakers import BreakerView, breaker_views
from orchestration.db import Database
from orchestration.enums import CallOutcome, PlannerKind
from orchestration.opsmetrics import OpsReport, ops_report
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
        self._lock = asyncio.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    @classmethod
    def over(cls, db: Database, *, clock: Clock, ttl_s: float = CACHE_TTL_S) -> "OpsCollector":
        """A collector of the last 24 hours of ``db``."""

        async def fetch() -> OpsReport:
            end = clock.now()
            return await db.run(lambda session: ops_report(session, end - WINDOW, end))

        async def breakers() -> list[BreakerView]:
            now = clock.now()
            return await db.run(lambda session: breaker_views(session, now=now))

        return cls(fetch, clock=clock, ttl_s=ttl_s, breakers=breakers)

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
