"""The http tool against a real local aiohttp server on an ephemeral port."""

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters import ArgsInvalid, HostNotAllowed, HttpTool, ToolFailed, ToolResult, ToolTimeout
from adapters.http import _host_allowed
from tests.adapters.conftest import make_call

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
