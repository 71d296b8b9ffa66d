"""The http tool against a real local aiohttp server on an ephemeral port."""

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters import (
    ArgsInvalid,
    BreakerState,
    CircuitOpen,
    GrantSigner,
    HostNotAllowed,
    HttpTool,
    ToolCall,
    ToolFailed,
    ToolResult,
    ToolTimeout,
    guarded,
)
from adapters.http import HTTP_SPEC, _host_allowed
from adapters.testing import InMemoryBreakerStore
from common import FakeClock
from tests.adapters.conftest import grant_for, make_call

BIG = "x" * 5000


async def health_ok(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def health_down(_: web.Request) -> web.Response:
    return web.Response(status=503, text="unavailable")


async def big(_: web.Request) -> web.Response:
    return web.json_response({"data": BIG})


async def echo(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"got": body, "auth": request.headers.get("Authorization")})


async def key(request: web.Request) -> web.Response:
    return web.json_response({"key": request.headers.get("Idempotency-Key")})


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="as asked")


async def redirect(_: web.Request) -> web.Response:
    raise web.HTTPFound("http://evil.example.com/")


async def odd_charset(_: web.Request) -> web.Response:
    return web.Response(body=b"caf\xc3\xa9", headers={"Content-Type": "text/plain; charset=bogus"})


async def slow(_: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="late")


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/svc/x/health", health_ok)
    app.router.add_get("/svc/y/health", health_down)
    app.router.add_get("/big", big)
    app.router.add_post("/echo", echo)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/slow", slow)
    app.router.add_get("/odd", odd_charset)
    app.router.add_get("/key", key)
    app.router.add_post("/key", key)
    app.router.add_get("/status/{code}", status)
    app.router.add_post("/status/{code}", status)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[HttpTool]:
    tool = HttpTool(allow_hosts=["127.0.0.1"], max_body_bytes=1000)
    yield tool
    await tool.aclose()


async def get(tool: HttpTool, url: str, **args: Any) -> ToolResult:
    return await tool.invoke(make_call("http.get", url=url, **args), None)


async def test_get_200_is_recorded_with_parsed_json(http: HttpTool, base_url: str) -> None:
    result = await get(http, f"{base_url}/svc/x/health")
    assert result.ok
    assert result.status == 200
    assert result.output["json"] == {"status": "ok"}
    assert result.output["truncated"] is False
    assert result.summary.startswith(f"GET {base_url}/svc/x/health -> 200 (")
    assert result.model_dump_json()


async def test_get_503_is_a_recorded_result_not_an_error(http: HttpTool, base_url: str) -> None:
    result = await get(http, f"{base_url}/svc/y/health")
    assert result.ok
    assert result.status == 503
    assert result.output["body"] == "unavailable"
    assert result.output["json"] is None
    assert "-> 503" in result.summary


async def test_body_over_the_cap_is_truncated_and_flagged(http: HttpTool, base_url: str) -> None:
    result = await get(http, f"{base_url}/big")
    assert len(result.output["body"]) == 1000
    assert result.output["truncated"] is True
    assert result.output["json"] is None


async def test_post_sends_json_and_never_echoes_request_headers(
    http: HttpTool, base_url: str
) -> None:
    call = make_call(
        "http.post", url=f"{base_url}/echo", json={"a": 1}, headers={"Authorization": "Bearer s3"}
    )
    result = await http.invoke(call, None)
    assert result.output["json"] == {"got": {"a": 1}, "auth": "Bearer s3"}
    assert "headers" not in result.output
    assert "Bearer" not in result.summary


async def test_unknown_charset_falls_back_to_utf8(http: HttpTool, base_url: str) -> None:
    assert (await get(http, f"{base_url}/odd")).output["body"] == "café"


async def test_redirects_are_recorded_not_followed(http: HttpTool, base_url: str) -> None:
    result = await get(http, f"{base_url}/redirect")
    assert result.status == 302


async def test_host_not_allowed_is_refused_without_connecting() -> None:
    opened: list[int] = []

    def factory() -> aiohttp.ClientSession:
        opened.append(1)
        raise AssertionError("no session may be opened")

    tool = HttpTool(allow_hosts=["127.0.0.1", "*.example.com"], session_factory=factory)
    for url in ["http://10.0.0.1/", "http://example.com.evil.org/", "http://localhost:9000/"]:
        with pytest.raises(HostNotAllowed):
            await get(tool, url)
    assert opened == []


def test_host_patterns_match_exact_names_and_subdomains_only() -> None:
    patterns = ["127.0.0.1", "*.example.com"]
    assert _host_allowed("127.0.0.1", patterns)
    assert _host_allowed("api.example.com", patterns)
    assert _host_allowed("A.B.EXAMPLE.COM.", patterns)
    assert not _host_allowed("example.com", patterns)
    assert not _host_allowed("badexample.com", patterns)
    assert not _host_allowed("127.0.0.10", patterns)


def test_allow_hosts_refuses_urls_and_ports() -> None:
    for pattern in ["http://a.com", "a.com:80", "*", "a.*.com"]:
        with pytest.raises(ValueError, match="allow_hosts"):
            HttpTool(allow_hosts=[pattern])


async def test_connection_refused_raises_retryable_tool_failed(http: HttpTool) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ToolFailed) as info:
        await get(http, f"http://127.0.0.1:{port}/")
    assert info.value.retryable


async def test_slow_server_raises_tool_timeout(http: HttpTool, base_url: str) -> None:
    with pytest.raises(ToolTimeout):
        await get(http, f"{base_url}/slow", timeout_s=0.1)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/x",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1/",
        "not a url",
        "http://",
    ],
)
async def test_non_http_urls_and_urls_with_credentials_are_invalid(
    http: HttpTool, url: str
) -> None:
    with pytest.raises(ArgsInvalid, match="url"):
        await get(http, url)


async def test_get_refuses_a_body_and_unknown_fields(http: HttpTool) -> None:
    with pytest.raises(ArgsInvalid, match="json"):
        await get(http, "http://127.0.0.1/", json={"a": 1})


def test_from_config_builds_tool_and_explains_bad_config() -> None:
    tool = HttpTool.from_config({"allow_hosts": ["127.0.0.1"], "cost_per_call_usd": 0.01})
    assert tool.spec.cost_per_call_usd == 0.01
    assert set(tool.spec.actions) == {"get", "post"}
    with pytest.raises(ValueError, match="allow_hosts: Field required"):
        HttpTool.from_config({"timeout_s": 3})


async def test_cost_per_call_is_reported(base_url: str) -> None:
    tool = HttpTool(allow_hosts=["127.0.0.1"], cost_per_call_usd=0.002)
    try:
        assert (await get(tool, f"{base_url}/svc/x/health")).cost_usd == 0.002
    finally:
        await tool.aclose()


# Idempotency key


async def test_the_calls_idempotency_key_is_sent_as_a_header(http: HttpTool, base_url: str) -> None:
    for action in ("get", "post"):
        args = {"url": f"{base_url}/key"}
        call = ToolCall(tool="http", action=action, args=args, idempotency_key="opsgate-s1")
        result = await http.invoke(call, None)
        assert result.output["json"] == {"key": "opsgate-s1"}
        assert "opsgate-s1" not in result.summary


async def test_no_header_without_a_key(http: HttpTool, base_url: str) -> None:
    call = ToolCall(tool="http", action="get", args={"url": f"{base_url}/key"}, idempotency_key="")
    assert (await http.invoke(call, None)).output["json"] == {"key": None}


@pytest.mark.parametrize("name", ["Idempotency-Key", "idempotency-key", " IDEMPOTENCY-KEY"])
async def test_runbook_headers_may_not_set_the_idempotency_key(
    http: HttpTool, base_url: str, name: str
) -> None:
    with pytest.raises(ArgsInvalid, match="opsgate sets the Idempotency-Key header itself"):
        await get(http, f"{base_url}/key", headers={name: "mine"})


# Circuit breaker: per host, 5xx and transport errors count


def test_breaker_target_is_the_urls_host() -> None:
    call = make_call("http.get", url="https://Checkout.Internal.:8443/health?x=1")
    assert HTTP_SPEC.target(call) == "checkout.internal"


@pytest.mark.parametrize(
    ("code", "failed"), [(200, False), (404, False), (429, False), (500, True), (503, True)]
)
def test_only_server_errors_count_as_the_host_failing(code: int, failed: bool) -> None:
    result = ToolResult(ok=True, status=code, output={}, summary="", duration_ms=0, cost_usd=0)
    assert HTTP_SPEC.failed(result) is failed


async def test_a_host_answering_5xx_is_paused_while_another_host_is_still_called(
    base_url: str, clock: FakeClock
) -> None:
    store = InMemoryBreakerStore(clock)
    signer = GrantSigner(b"k" * 32)
    http = HttpTool(allow_hosts=["127.0.0.1", "localhost"])
    tool = guarded(
        http, signer=signer, clock=clock, breakers=store, breaker_threshold=2, rate_per_s=100
    )
    port = base_url.rsplit(":", 1)[1]

    async def call(url: str, action: str = "http.get") -> ToolResult:
        request = make_call(action, url=url)
        return await tool.invoke(request, grant_for(request, signer, clock))

    try:
        for _ in range(3):
            assert (await call(f"{base_url}/status/404", "http.post")).status == 404
        for _ in range(3):  # a probe answering 503 reports the target's state
            assert (await call(f"{base_url}/status/503")).status == 503
        assert store.state("http:127.0.0.1") is BreakerState.CLOSED
        for _ in range(2):
            assert (await call(f"{base_url}/status/503", "http.post")).status == 503
        with pytest.raises(CircuitOpen, match=r"127\.0\.0\.1 kept failing"):
            await call(f"{base_url}/svc/x/health")
        healthy = await call(f"http://localhost:{port}/svc/x/health")
        assert healthy.status == 200
        assert store.state("http:localhost") is BreakerState.CLOSED
    finally:
        await http.aclose()


async def test_connection_errors_count_as_the_host_failing(clock: FakeClock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = InMemoryBreakerStore(clock)
    signer = GrantSigner(b"k" * 32)
    http = HttpTool(allow_hosts=["127.0.0.1"])
    tool = guarded(http, signer=signer, clock=clock, breakers=store, breaker_threshold=2)
    request = make_call("http.get", url=f"http://127.0.0.1:{port}/")
    try:
        for _ in range(2):
            with pytest.raises(ToolFailed):
                await tool.invoke(request, grant_for(request, signer, clock))
        assert store.state("http:127.0.0.1") is BreakerState.OPEN
    finally:
        await http.aclose()
