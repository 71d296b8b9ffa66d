"""``execution.max_concurrent_calls``: one process never has more tool calls in flight than
its slots; a waiting step runs once a slot frees, and cancelling its plan stops it waiting."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from common import FakeClock
from tests.orchestration.helpers import REQUESTER, make_config, make_control, serve_locally

RUNBOOK = """
id: probe-only
version: 1
title: Probe a service
match:
  keywords: ["slow"]
  patterns: ['(?P<service>[a-z][a-z0-9-]{{1,40}}) is slow']
steps:
  - id: probe
    title: Probe {{service}} health
    tool: http.get
    args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/health"}}
    risk: low
"""


@dataclass
class HeldService:
    """Answers a probe only when released; records how many calls were in flight at once."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    inflight: int = 0
    peak: int = 0
    seen: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    runner: web.AppRunner | None = None

    async def start(self) -> "HeldService":
        app = web.Application()
        app.router.add_get("/svc/{name}/health", self._health)
        self.runner, self.port = await serve_locally(app)
        return self

    async def _health(self, request: web.Request) -> web.Response:
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        self.seen.append(request.match_info["name"])
        self.arrived.set()
        try:
            await self.release.wait()
        finally:
            self.inflight -= 1
        return web.json_response({"status": "ok"})


@pytest.fixture
async def held() -> AsyncIterator[HeldService]:
    svc = await HeldService().start()
    yield svc
    if svc.runner is not None:
        await svc.runner.cleanup()


async def settle(predicate: object, *, rounds: int = 400) -> None:
    for _ in range(rounds):
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_calls_beyond_the_slots_wait_and_then_run(
    db_url: str, tmp_path: Path, clock: FakeClock, held: HeldService
) -> None:
    (tmp_path / "rb").mkdir()
    (tmp_path / "rb" / "probe.yaml").write_text(RUNBOOK.format(port=held.port))
    config = make_config(
        tmp_path / "rb",
        execution={"max_concurrent_calls": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.02},
    )
    control = await make_control(db_url, config, clock)
    try:
        opening = [
            asyncio.create_task(
                control.open_incident(text=f"svc-{n} is slow", requester=REQUESTER, channel="C1")
            )
            for n in range(5)
        ]
        await settle(lambda: len(held.seen) == 2)
        await asyncio.sleep(0.2)  # a third call would have arrived by now
        assert len(held.seen) == 2
        assert len(control.running_here()) == 5  # all five are claimed, three wait for a slot
        held.release.set()
        opened = await asyncio.gather(*opening)
        assert held.peak == 2
        assert sorted(held.seen) == [f"svc-{n}" for n in range(5)]
        for each in opened:
            view = await control.plan_view(each.plan_id)
            assert [s.status for s in view.steps] == ["succeeded"]
    finally:
        held.release.set()
        await control.close()


async def test_cancelling_a_plan_stops_a_step_waiting_for_a_slot(
    db_url: str, tmp_path: Path, clock: FakeClock, held: HeldService
) -> None:
    (tmp_path / "rb").mkdir()
    (tmp_path / "rb" / "probe.yaml").write_text(RUNBOOK.format(port=held.port))
    config = make_config(tmp_path / "rb", execution={"max_concurrent_calls": 1})
    control = await make_control(db_url, config, clock)
    try:
        first = asyncio.create_task(
            control.open_incident(text="svc-a is slow", requester=REQUESTER, channel="C1")
        )
        await held.arrived.wait()
        second = asyncio.create_task(
            control.open_incident(text="svc-b is slow", requester=REQUESTER, channel="C2")
        )
        await settle(lambda: len(control.running_here()) == 2)
        assert await control.close_incident(actor=REQUESTER, resolved=False, channel="C2")
        waiting = await second
        held.release.set()
        await first
        assert held.seen == ["svc-a"]  # the waiting probe was never sent
        view = await control.plan_view(waiting.plan_id)
        assert view.status == "cancelled"
        assert view.steps[0].status != "running"
    finally:
        held.release.set()
        await control.close()
