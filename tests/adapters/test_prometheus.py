"""The prometheus adapter against a real Prometheus, and its error mapping against a stand-in."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from adapters import (
    ArgsInvalid,
    ErrorCode,
    GrantError,
    GrantSigner,
    ToolFailed,
    guarded,
    validate_args,
)
from adapters.errors import RequestRefused
from adapters.prometheus import PROMETHEUS_SPEC, PrometheusTool, sparkline
from adapters.testing import InMemoryBreakerStore
from common import FakeClock
from tests.adapters.conftest import LiveMonitoring, grant_for, make_call
from tests.orchestration.helpers import serve_locally


def tool(url: str, **extra: Any) -> PrometheusTool:
    return PrometheusTool.from_config({"base_url": url, "cost_per_call_usd": 0.002, **extra})


async def until(check: Any, *, timeout_s: float = 60.0) -> Any:
    """Poll ``check`` (an async callable) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.3)


async def _scraped(prom: PrometheusTool) -> bool:
    result = await prom.invoke(make_call("prometheus.query", query="demo_http_errors_total"), None)
    return bool(result.output["json"]["result"])


async def test_query_returns_the_value_whole_and_summarised(
    live_monitoring: LiveMonitoring,
) -> None:
    """A vector answer: the summary names value and labels; output keeps Prometheus's data."""
    prom = tool(live_monitoring.prometheus_url)
    try:
        assert await until(lambda: _scraped(prom)), "Prometheus never scraped the demo service"
        result = await prom.invoke(
            make_call("prometheus.query", query='demo_http_errors_total{service="api"}'), None
        )
        assert result.ok
        assert result.status == 200
        data = result.output["json"]
        assert data["resultType"] == "vector"
        assert data["result"][0]["metric"]["service"] == "api"
        value = float(data["result"][0]["value"][1])
        assert value > 0
        assert result.summary.startswith('demo_http_errors_total{service="api"} = ')
        assert 'service="api"' in result.summary
        assert result.cost_usd == pytest.approx(0.002)

        total = await prom.invoke(
            make_call("prometheus.query", query="sum(demo_http_errors_total)"), None
        )
        assert total.summary.startswith("sum(demo_http_errors_total) = ")
        assert "{" not in total.summary, "a series without labels shows no empty braces"
        scalar = await prom.invoke(make_call("prometheus.query", query="1 + 1"), None)
        assert scalar.summary == "1 + 1 = 2"
        empty = await prom.invoke(make_call("prometheus.query", query="absent_metric_x"), None)
        assert empty.output["json"]["result"] == []
        assert "no series" in empty.summary
    finally:
        await prom.aclose()


async def test_query_range_summarises_each_series_as_a_sparkline(
    live_monitoring: LiveMonitoring,
) -> None:
    """A matrix answer: one sparkline line per series with min, max and last; data kept whole."""
    prom = tool(live_monitoring.prometheus_url)
    try:
        call = make_call(
            "prometheus.query_range", query="demo_http_errors_total", range="1m", step="1s"
        )

        async def samples() -> Any:
            result = await prom.invoke(call, None)
            return result if len(result.output["json"]["result"]) == 1 else None

        result = await until(samples)
        assert result, "the range never held the demo service's series"
        data = result.output["json"]
        assert data["resultType"] == "matrix"
        assert data["result"][0]["values"], "the range holds samples"
        head, line = result.summary.splitlines()[:2]
        assert head == "demo_http_errors_total over 1m: 1 series"
        assert any(ch in line for ch in "▁▂▃▄▅▆▇█")
        assert "min " in line
        assert "last " in line
        assert 'service="api"' in line
    finally:
        await prom.aclose()


async def test_targets_and_alerts(live_monitoring: LiveMonitoring) -> None:
    """targets counts healthy targets; alerts shows the error-rate rule once it fires."""
    prom = tool(live_monitoring.prometheus_url)
    try:
        targets = await prom.invoke(make_call("prometheus.targets"), None)
        assert targets.summary.startswith("targets: 1 up")
        assert targets.output["json"]["activeTargets"][0]["health"] == "up"

        async def firing() -> Any:
            result = await prom.invoke(make_call("prometheus.alerts"), None)
            alerts = result.output["json"]["alerts"]
            return result if any(a["state"] == "firing" for a in alerts) else None

        result = await until(firing)
        assert result, "the error-rate rule never fired"
        assert "firing" in result.summary
        assert "ServiceErrorRate" in result.summary
    finally:
        await prom.aclose()


async def test_a_query_prometheus_refuses_is_a_clear_non_retryable_failure(
    live_monitoring: LiveMonitoring,
) -> None:
    """Prometheus's {"status":"error","errorType":"bad_data"} answer (400) -> RequestRefused."""
    prom = tool(live_monitoring.prometheus_url)
    try:
        with pytest.raises(RequestRefused) as caught:
            await prom.invoke(make_call("prometheus.query", query="rate(up["), None)
        assert caught.value.code == ErrorCode.REQUEST_REFUSED
        assert not caught.value.retryable
        assert "bad_data" in caught.value.message
        assert "HTTP 400" in caught.value.message
    finally:
        await prom.aclose()


async def test_prometheus_calls_need_a_grant(live_monitoring: LiveMonitoring) -> None:
    """Through the guard stack, a read without a grant is refused; with one it runs."""
    clock = FakeClock()
    signer = GrantSigner(b"g" * 32)
    guarded_tool = guarded(
        tool(live_monitoring.prometheus_url),
        signer=signer,
        clock=clock,
        breakers=InMemoryBreakerStore(clock),
    )
    try:
        call = make_call("prometheus.query", query="up")
        with pytest.raises(GrantError) as caught:
            await guarded_tool.invoke(call, None)
        assert caught.value.code == ErrorCode.GRANT_MISSING
        result = await guarded_tool.invoke(call, grant_for(call, signer, clock))
        assert result.ok
    finally:
        await guarded_tool.aclose()


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A server answering as a failing Prometheus would, recording each request's headers."""
    seen: list[dict[str, Any]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append({"headers": dict(request.headers), "query": dict(request.query)})
        query = request.query.get("query", "")
        if query == "slow":
            body = {"status": "error", "errorType": "timeout", "error": "query timed out"}
            return web.json_response(body, status=503)
        if query == "html":
            return web.Response(text="<html>proxy error</html>", status=502)
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": []}}
        )

    app = web.Application()
    app.router.add_get("/prom/api/v1/query", answer)
    runner, port = await serve_locally(app)
    yield f"http://127.0.0.1:{port}/prom", seen
    await runner.cleanup()


async def test_server_side_errors_are_retryable_and_non_api_answers_are_named(
    stand_in: tuple[str, list[dict[str, Any]]],
) -> None:
    """A 503 timeout answer is a retryable ToolFailed; an HTML 502 says it is not the API."""
    url, _seen = stand_in
    prom = tool(url)
    try:
        with pytest.raises(ToolFailed) as slow:
            await prom.invoke(make_call("prometheus.query", query="slow"), None)
        assert slow.value.retryable
        assert "timeout: query timed out" in slow.value.message
        with pytest.raises(ToolFailed) as html:
            await prom.invoke(make_call("prometheus.query", query="html"), None)
        assert "not a Prometheus API answer" in html.value.message
    finally:
        await prom.aclose()


async def test_header_secrets_are_resolved_at_call_time_and_never_kept(
    stand_in: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``headers`` in config hold ${secret:NAME}; the value is sent, the result never holds it."""
    url, seen = stand_in
    monkeypatch.setenv("OPSGATE_SECRET_PROM_TOKEN", "s3cr3t-prom-token-value")
    prom = tool(url, headers={"Authorization": "Bearer ${secret:PROM_TOKEN}"})
    try:
        result = await prom.invoke(make_call("prometheus.query", query="up"), None)
        assert seen[-1]["headers"]["Authorization"] == "Bearer s3cr3t-prom-token-value"
        assert "s3cr3t" not in result.model_dump_json()
    finally:
        await prom.aclose()


def test_args_are_checked_before_any_request() -> None:
    """Durations must be Prometheus-style, and a range holds at most 1000 points per series."""
    spec = PROMETHEUS_SPEC.action("query_range")
    assert validate_args(spec, {"query": "up"})["range"] == "15m"
    for bad in (
        {"query": "up", "range": "15 minutes"},
        {"query": "up", "range": "1d", "step": "1s"},
    ):
        with pytest.raises(ArgsInvalid):
            validate_args(spec, bad)
    assert all(PROMETHEUS_SPEC.action(a).read_only for a in PROMETHEUS_SPEC.actions)


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1, None, 1]) == "▁ ▁"
    assert sparkline([]) == ""
