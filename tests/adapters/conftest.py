"""Shared helpers for adapter tests: a signer, a fake clock and grant factories."""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from adapters import Grant, GrantSigner, ToolCall
from bot.demo.monitoring import Monitoring, MonitoringSpec
from bot.demo.runner import free_port
from bot.demo.service import DemoService
from common import FakeClock, args_hash
from tests.monitoring import LoopThread, require_monitoring

KEY = b"test-key-0123456789abcdef"


@pytest.fixture
def signer() -> GrantSigner:
    return GrantSigner(KEY)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_call(tool_action: str = "fake.read", **args: Any) -> ToolCall:
    tool, _, action = tool_action.partition(".")
    return ToolCall(tool=tool, action=action, args=args, idempotency_key="k1", correlation_id="c1")


def grant_for(call: ToolCall, signer: GrantSigner, clock: FakeClock, *, ttl_s: float = 60) -> Grant:
    return signer.issue(
        grant_id="g1",
        tool=call.tool,
        action=call.action,
        args_hash=args_hash(call.tool_action, call.args),
        expires_at=clock.now() + timedelta(seconds=ttl_s),
    )


@dataclass
class LiveMonitoring:
    """A running Prometheus + Alertmanager pair scraping a demo service whose ``api`` breaks."""

    prometheus_url: str
    alertmanager_url: str
    service: DemoService
    loop: LoopThread


@pytest.fixture(scope="session")
def live_monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveMonitoring]:
    """Real servers for the adapter tests; the demo service's ``api`` is broken from the start,
    so its error rate is rising and the rule fires within seconds."""
    require_monitoring()
    loop = LoopThread()
    service = DemoService()
    service.break_service("api")
    folder = tmp_path_factory.mktemp("monitoring")

    async def start() -> tuple[web.AppRunner, Monitoring, asyncio.Task[None]]:
        runner = web.AppRunner(service.app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        traffic = asyncio.create_task(service.traffic(["api"], every_s=0.05))
        spec = MonitoringSpec(
            scrape_targets=[f"127.0.0.1:{port}"],
            webhook_url=f"http://127.0.0.1:{free_port()}/alerts/alertmanager",  # nobody listens
            webhook_token="t" * 20,
        )
        mon = Monitoring(spec, folder)
        await mon.start()
        return runner, mon, traffic

    runner, mon, traffic = loop.run(start())
    try:
        yield LiveMonitoring(mon.prometheus_url, mon.alertmanager_url, service, loop)
    finally:

        async def stop() -> None:
            traffic.cancel()
            await mon.stop()
            await runner.cleanup()

        loop.run(stop())
        loop.close()
