"""``opsgate demo`` with real Prometheus and Alertmanager: the alert is Prometheus's, the probe
queries it, the restart is silenced in Alertmanager and the silence expired afterwards."""

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from bot.demo.runner import SERVICE, DemoHandles
from bot.ids import ActionId
from bot.sandbox.workspace import Message
from tests.bot.demo_helpers import free_port, running_demo
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


def root_text(demo: DemoHandles) -> str:
    roots = demo.sandbox.fake.messages(demo.sandbox.channel_id)
    return roots[0].text if roots else ""


async def test_the_alert_comes_from_prometheus_and_the_restart_is_silenced(
    demo: DemoHandles,
) -> None:
    assert demo.monitoring is not None
    # Prometheus's rule fires, Alertmanager's webhook opens the incident; the probe is a
    # Prometheus query of the error rate, and it finds the service unhealthy.
    await eventually(lambda: "Step succeeded: Read checkout-api's error rate" in text(demo), 90)
    (probe,) = [m for m in thread(demo) if m.text.startswith("Step succeeded: Read")]
    assert "prometheus.query" in str(probe.blocks)
    assert 'sum(rate(demo_http_errors_total{service="checkout-api"}[10s]))' in str(probe.blocks)
    assert "unhealthy" in str(probe.blocks)
    assert "*Requester*\\nalertmanager" in str(thread(demo)[0].blocks)

    await approve(demo, "Silence checkout-api", SAM)
    await eventually(lambda: "Step succeeded: Silence" in text(demo))
    (silence,) = await live_silences(demo)
    assert silence["createdBy"] == "opsgate"
    assert silence["matchers"] == [
        {"name": "service", "value": SERVICE, "isRegex": False, "isEqual": True}
    ]

    await approve(demo, "Restart checkout-api", SAM, ALEX)
    await eventually(lambda: demo.service.state.restarts.get(SERVICE) == 1)
    await approve(demo, "Expire the silence", RILEY)
    await eventually(lambda: "Step succeeded: Expire the silence" in text(demo))
    assert await live_silences(demo) == []
    # The alert resolves once the error rate falls; the plan has ended, so the incident closes.
    await eventually(lambda: "Resolved" in root_text(demo), 120)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], "Alerts: real Prometheus http://127.0.0.1:"),
        (["--builtin-alerts"], "Alerts: a built-in watcher (asked for with --builtin-alerts)"),
    ],
)
def test_the_banner_says_where_alerts_come_from(
    flags: list[str], expected: str, tmp_path: Path
) -> None:
    """``opsgate demo`` as a process: its banner names the alert source; SIGTERM stops it and
    the Prometheus and Alertmanager it started."""
    require_monitoring()
    command = [sys.executable, "-m", "bot.cli", "demo", "--no-browser", "--port", str(free_port())]
    command += ["--break-after", "3600", *flags]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path, text=True
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Alerts:" in line:
                break
        assert expected in "".join(lines), "".join(lines)
        children = _children(proc.pid)
        assert bool(children) == (not flags), children
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert "opsgate demo stopped." in out
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"{pid} still runs"


def _children(pid: int) -> list[int]:
    """The Prometheus and Alertmanager processes started by ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            comm = Path(f"/proc/{child}/comm").read_text().strip()
            if comm.startswith("prometheus"):
                found.append(int(child))
    return found


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    return True
