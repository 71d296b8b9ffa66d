"""``opsgate demo`` with real Prometheus and Alertmanager: the alert is Prometheus's, the probe
queries it, the restart is silenced in Alertmanager and the silence expired afterwards."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from bot.demo.runner import SERVICE, DemoHandles
from bot.ids import ActionId
from bot.sandbox.workspace import Message
from tests.bot.demo_helpers import running_demo
from tests.monitoring import require_monitoring

RILEY, SAM, ALEX = "U0RILEY01", "U0SAM0002", "U0ALEX003"


@pytest.fixture
async def demo() -> AsyncIterator[DemoHandles]:
    require_monitoring()
    async with running_demo(break_after_s=0.2, real_monitoring=True) as handles:
        yield handles


async def eventually(check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def thread(demo: DemoHandles) -> list[Message]:
    fake = demo.sandbox.fake
    roots = fake.messages(demo.sandbox.channel_id)
    return fake.thread(demo.sandbox.channel_id, roots[0].ts) if roots else []


def text(demo: DemoHandles) -> str:
    return "\n".join(m.text + str(m.blocks) for m in thread(demo))


def card(demo: DemoHandles, title: str) -> Message | None:
    """The approval card of the step called ``title`` while it still has buttons."""
    for message in thread(demo):
        buttons = any(b.get("type") == "actions" for b in message.blocks or [])
        if buttons and title in message.text + str(message.blocks):
            return message
    return None


async def approve(demo: DemoHandles, title: str, *voters: str) -> None:
    await eventually(lambda: card(demo, title) is not None)
    for voter in voters:
        found = card(demo, title)
        assert found is not None
        clicked = await demo.sandbox.click(voter, ts=found.ts, action_id=ActionId.APPROVE.value)
        assert clicked["status"] == 200


async def live_silences(demo: DemoHandles) -> list[dict[str, object]]:
    assert demo.monitoring is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{demo.monitoring.alertmanager_url}/api/v2/silences") as resp,
    ):
        found = await resp.json()
    return [s for s in found if s["status"]["state"] in {"active", "pending"}]


async def test_the_alert_comes_from_prometheus_and_the_restart_is_silenced(
    demo: DemoHandles,
) -> None:
    await eventually(lambda: "error rate in Prometheus" in text(demo), timeout_s=90)
    await eventually(lambda: "Read checkout-api's error rate" in text(demo))
    probe = text(demo)
    assert "sum(rate(demo_http_errors_total" in probe

    await approve(demo, "Silence checkout-api", SAM)
    await eventually(lambda: "silenced as" in text(demo))
    (silence,) = await live_silences(demo)
    assert silence["createdBy"] == "opsgate"
    assert silence["matchers"] == [
        {"name": "service", "value": SERVICE, "isRegex": False, "isEqual": True}
    ]

    await approve(demo, "Restart checkout-api", SAM, ALEX)
    await eventually(lambda: demo.service.state.restarts.get(SERVICE) == 1)
    await approve(demo, "Expire the silence", RILEY)
    await eventually(lambda: "expired silence" in text(demo))
    assert await live_silences(demo) == []
