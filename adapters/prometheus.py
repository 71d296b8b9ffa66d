"""The ``prometheus`` tool: read-only queries of the Prometheus HTTP API v1.

Actions: ``query`` (``/api/v1/query``), ``query_range`` (``/api/v1/query_range``, a window that
ends now, so a runbook step means the same thing whenever it runs), ``alerts``
(``/api/v1/alerts``) and ``targets`` (``/api/v1/targets``). Every action is low risk, read-only
and idempotent, so the read cache may serve it.

A result keeps Prometheus's whole ``data`` under ``output.json`` (what the span and the step
record keep) and a short summary for Slack: a value, a small table, a unicode sparkline per
series of a range. An answer of ``{"status": "error", "errorType": ..., "error": ...}`` is a
step failure that says what Prometheus said: ``bad_data``/``execution`` answers (400, 422) are
:class:`RequestRefused` (the same query fails again), ``timeout``/``unavailable`` and other
5xx are :class:`ToolFailed` (retryable).

A step can judge a result with ``expect``/``healthy`` keys: ``json: {result: []}`` holds when
an alert-style query (``rate(errors[1m]) > 0.05``) selects nothing.
"""

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adapters.base import (
    ActionSpec,
    Grant,
    ToolCall,
    ToolResult,
    ToolSpec,
    parse_args,
    summarise_validation_error,
)
from adapters.errors import RequestRefused, ToolFailed
from adapters.httpapi import ApiAnswer, JsonApi
from adapters.secrets import SecretSource
from adapters.settings.prometheus import PrometheusConfig
from common import Risk

_DURATION = re.compile(r"^(\d{1,6})(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_POINTS = 1000  # per series of a range; Prometheus itself refuses more than 11,000
TABLE_ROWS = 8
SPARK = "▁▂▃▄▅▆▇█"


def duration_s(text: str) -> int:
    """Seconds in a Prometheus-style duration such as ``15m``; ValueError otherwise."""
    match = _DURATION.fullmatch(text)
    if match is None or int(match[1]) == 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 2h or 1d")
    return int(match[1]) * _UNIT_S[match[2]]


class QueryArgs(BaseModel):
    """Arguments of ``prometheus.query``: a PromQL expression evaluated now (or at ``time``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str = Field(min_length=1, max_length=4000)
    time: str | None = Field(default=None, description="RFC 3339 or Unix time; default now")


class QueryRangeArgs(BaseModel):
    """Arguments of ``prometheus.query_range``: ``query`` over the last ``range`` by ``step``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str = Field(min_length=1, max_length=4000)
    range: str = "15m"
    step: str = "30s"

    @field_validator("range", "step")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_s(value)
        return value

    @model_validator(mode="after")
    def _points(self) -> "QueryRangeArgs":
        """Refuse windows with more points per series than :data:`MAX_POINTS`."""
        points = duration_s(self.range) // duration_s(self.step)
        if points > MAX_POINTS:
            raise ValueError(
                f"range {self.range} at step {self.step} is {points} points per series; "
                f"at most {MAX_POINTS}: widen the step"
            )
        return self


class AlertsArgs(BaseModel):
    """Arguments of ``prometheus.alerts`` (none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetsArgs(BaseModel):
    """Arguments of ``prometheus.targets``: which targets to list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["active", "dropped", "any"] = "active"


def _read(name: str, model: type[BaseModel], description: str) -> ActionSpec:
    return ActionSpec(
        name=name,
        args_model=model,
        risk=Risk.LOW,
        read_only=True,
        idempotent=True,
        description=description,
    )


PROMETHEUS_SPEC = ToolSpec(
    name="prometheus",
    actions={
        "query": _read("query", QueryArgs, "evaluate a PromQL expression now"),
        "query_range": _read(
            "query_range", QueryRangeArgs, "evaluate a PromQL expression over a recent window"
        ),
        "alerts": _read("alerts", AlertsArgs, "list the alerts Prometheus's rules have active"),
        "targets": _read("targets", TargetsArgs, "list scrape targets and their health"),
    },
)


class PrometheusTool:
    """Queries one Prometheus server; answers are summarised for Slack and kept whole."""

    def __init__(
        self,
        *,
        config: PrometheusConfig,
        secrets: SecretSource | None = None,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        """Query the server at ``config.base_url``."""
        self._api = JsonApi(
            service="prometheus", config=config, secrets=secrets, session_factory=session_factory
        )
        self._now = now or (lambda: datetime.now(UTC))
        self._spec = dataclasses.replace(
            PROMETHEUS_SPEC, cost_per_call_usd=config.cost_per_call_usd
        )

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], **kwargs: Any) -> "PrometheusTool":
        """Build the tool from the ``adapters.prometheus`` section; bad config -> ValueError."""
        try:
            config = PrometheusConfig.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(
                f"adapters.prometheus config is invalid: {summarise_validation_error(exc)}"
            ) from None
        return cls(config=config, **kwargs)

    @property
    def spec(self) -> ToolSpec:
        """The ``prometheus`` tool's read-only actions."""
        return self._spec

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run the query; grants are checked by the guards."""
        action = self._spec.action(call.action)
        args = parse_args(action, call.args)
        if isinstance(args, QueryArgs):
            params = {"query": args.query}
            if args.time:
                params["time"] = args.time
            answer = await self._api.request("GET", "/api/v1/query", params=params)
            data = self._data(answer, call)
            return self._result(answer, data, _summarise_query(args.query, data))
        if isinstance(args, QueryRangeArgs):
            end = self._now().astimezone(UTC)
            start = end - timedelta(seconds=duration_s(args.range))
            params = {
                "query": args.query,
                "start": f"{start.timestamp():.3f}",
                "end": f"{end.timestamp():.3f}",
                "step": str(duration_s(args.step)),
            }
            answer = await self._api.request("GET", "/api/v1/query_range", params=params)
            data = self._data(answer, call)
            return self._result(answer, data, _summarise_range(args.query, args.range, data))
        if isinstance(args, AlertsArgs):
            answer = await self._api.request("GET", "/api/v1/alerts")
            data = self._data(answer, call)
            return self._result(answer, data, _summarise_alerts(data))
        assert isinstance(args, TargetsArgs)
        answer = await self._api.request("GET", "/api/v1/targets", params={"state": args.state})
        data = self._data(answer, call)
        return self._result(answer, data, _summarise_targets(data))

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._api.aclose()

    def _data(self, answer: ApiAnswer, call: ToolCall) -> dict[str, Any]:
        """The ``data`` of a success answer; an error answer raises with Prometheus's words."""
        doc = answer.document
        where = f"{call.tool_action} (HTTP {answer.status})"
        if not isinstance(doc, dict) or doc.get("status") not in {"success", "error"}:
            raise ToolFailed(
                f"{where}: not a Prometheus API answer: {answer.text[:200]!r}",
                retryable=answer.status >= 500,
            )
        if doc["status"] == "error":
            kind = str(doc.get("errorType") or "error")
            message = f"Prometheus refused {call.tool_action}: {kind}: {doc.get('error') or ''}"
            if answer.status >= 500 or kind in {"timeout", "canceled", "unavailable", "internal"}:
                raise ToolFailed(f"{message} (HTTP {answer.status})")
            raise RequestRefused(f"{message} (HTTP {answer.status})")
        data = doc.get("data")
        if not isinstance(data, dict):
            raise ToolFailed(f"{where}: the answer has no data object", retryable=False)
        if doc.get("warnings"):
            data = {**data, "warnings": list(doc["warnings"])}
        return data

    def _result(self, answer: ApiAnswer, data: dict[str, Any], summary: str) -> ToolResult:
        return ToolResult(
            ok=True,
            status=answer.status,
            output={"status": answer.status, "json": data, "url": answer.url},
            summary=summary,
            duration_ms=answer.duration_ms,
            cost_usd=self._spec.cost_per_call_usd,
        )


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def format_value(value: float | None) -> str:
    """A sample value for people: ``0.0523``, ``1.2e+06``, ``NaN``."""
    if value is None:
        return "?"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


def labels_text(metric: Mapping[str, Any]) -> str:
    """``name{a="1", b="2"}`` of a series, or ``{}`` for a series without labels."""
    name = str(metric.get("__name__", ""))
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{inner}}}" if inner or not name else name


def sparkline(values: Sequence[float | None]) -> str:
    """A unicode sparkline (``▁▃▇█``) of ``values``; gaps and NaN are spaces."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    span = high - low
    out = []
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(" ")
        else:
            index = 0 if span == 0 else round((v - low) / span * (len(SPARK) - 1))
            out.append(SPARK[index])
    return "".join(out)


def _more(total: int, shown: int) -> list[str]:
    return [f"... and {total - shown} more"] if total > shown else []


def _summarise_query(query: str, data: Mapping[str, Any]) -> str:
    kind = data.get("resultType")
    result = data.get("result")
    if kind in {"scalar", "string"} and isinstance(result, list) and len(result) == 2:
        return f"{query} = {format_value(_number(result[1])) if kind == 'scalar' else result[1]}"
    series = result if isinstance(result, list) else []
    if not series:
        return f"{query}: no series (empty result)"
    if len(series) == 1:
        value = _number((series[0].get("value") or [None, None])[1])
        metric = series[0].get("metric") or {}
        return f"{query} = {format_value(value)}" + (f"  {labels_text(metric)}" if metric else "")
    rows = [
        f"{format_value(_number((s.get('value') or [None, None])[1])):>10}  "
        f"{labels_text(s.get('metric') or {})}"
        for s in series[:TABLE_ROWS]
    ]
    return "\n".join([f"{query}: {len(series)} series", *rows, *_more(len(series), len(rows))])


def _summarise_range(query: str, window: str, data: Mapping[str, Any]) -> str:
    series = data.get("result") if isinstance(data.get("result"), list) else []
    assert isinstance(series, list)
    if not series:
        return f"{query} over {window}: no series (empty result)"
    lines = [f"{query} over {window}: {len(series)} series"]
    for s in series[:TABLE_ROWS]:
        values = [_number(point[1]) for point in s.get("values") or [] if len(point) == 2]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if finite:
            figures = (
                f"min {format_value(min(finite))} max {format_value(max(finite))} "
                f"last {format_value(values[-1])}"
            )
        else:
            figures = "no values"
        lines.append(f"{sparkline(values[-60:])}  {figures}  {labels_text(s.get('metric') or {})}")
    return "\n".join([*lines, *_more(len(series), len(lines) - 1)])


def _summarise_alerts(data: Mapping[str, Any]) -> str:
    alerts = data.get("alerts") if isinstance(data.get("alerts"), list) else []
    assert isinstance(alerts, list)
    if not alerts:
        return "no alerts are pending or firing"
    states: dict[str, int] = {}
    for alert in alerts:
        state = str(alert.get("state", "?"))
        states[state] = states.get(state, 0) + 1
    head = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    rows = [
        f"{alert.get('state', '?'):>8}  {labels_text(alert.get('labels') or {})}"
        for alert in alerts[:TABLE_ROWS]
    ]
    return "\n".join([f"alerts: {head}", *rows, *_more(len(alerts), len(rows))])


def _summarise_targets(data: Mapping[str, Any]) -> str:
    active = data.get("activeTargets") if isinstance(data.get("activeTargets"), list) else []
    dropped = data.get("droppedTargets") if isinstance(data.get("droppedTargets"), list) else []
    assert isinstance(active, list)
    assert isinstance(dropped, list)
    health: dict[str, int] = {}
    for target in active:
        state = str(target.get("health", "unknown"))
        health[state] = health.get(state, 0) + 1
    head = ", ".join(f"{n} {state}" for state, n in sorted(health.items())) or "no active targets"
    unhealthy = [t for t in active if t.get("health") != "up"]
    rows = [
        f"{t.get('health', '?'):>8}  {t.get('scrapeUrl', '?')}  {t.get('lastError') or ''}".rstrip()
        for t in unhealthy[:TABLE_ROWS]
    ]
    tail = [f"{len(dropped)} dropped"] if dropped else []
    return "\n".join([f"targets: {head}", *rows, *_more(len(unhealthy), len(rows)), *tail])
