"""Steps through the guards: rate-limited reads wait or retry, one idempotency key per step."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from sqlmodel import select

from adapters import GrantSigner, RateLimited, ToolCall, ToolRegistry, ToolResult
from adapters.guards import Sleep
from adapters.testing import FakeSleep, FakeTool, ok_result
from common import FakeClock, args_hash
from orchestration.config import ToolLimits
from orchestration.control import ControlPlane
from orchestration.enums import VoteChoice
from orchestration.executor import Executor, Ticket, idempotency_key
from orchestration.models import Approval
from orchestration.toolbox import build_registry
from tests.orchestration.fakeplans import FAKE_RUNBOOK, control_with, pending_nonce, steps_yaml
from tests.orchestration.helpers import APPROVER_A, REQUESTER, make_config, make_control

# A few calls per second: a burst of 2, then 3 per second.
TIGHT = ToolLimits(rate_per_s=3, burst=2, rate_max_wait_s=0.5)


async def frozen_sleep(_seconds: float) -> None:
    """Time stands still: every call of a burst meets the limiter at the same instant."""
    await asyncio.sleep(0)


async def tight_control(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    *steps: dict[str, str],
    sleep: Sleep | None = None,
) -> ControlPlane:
    folder = tmp_path / "rb"
    folder.mkdir(exist_ok=True)
    (folder / "fake.yaml").write_text(FAKE_RUNBOOK.format(steps=steps_yaml(*steps)))
    config = make_config(folder, approvers=[REQUESTER, APPROVER_A])
    signer = GrantSigner(b"s" * 32)
    tools = build_registry(
        config,
        signer=signer,
        clock=clock,
        sleep=sleep or FakeSleep(clock),
        extra=[(fake, TIGHT)],
    )
    return await make_control(db_url, config, clock, tools=tools, signer=signer)


async def test_forty_plans_at_once_against_a_tight_rate_limit_all_succeed(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane]
) -> None:
    seen: list[float] = []

    def answer(call: ToolCall) -> ToolResult:
        seen.append(clock.monotonic())
        return ok_result(call)

    fake = FakeTool(responses=answer)
    cp = await tight_control(db_url, tmp_path, clock, fake, {"tool": "fake.read"})
    planes.append(cp)
    start = clock.monotonic()
    opened = await asyncio.gather(
        *(cp.open_incident(text=f"fakefix {n}", requester=REQUESTER) for n in range(40))
    )
    views = [await cp.plan_view(o.plan_id) for o in opened]
    assert [v.status for v in views] == ["succeeded"] * 40
    assert all(v.steps[0].attempts == 1 for v in views)
    assert len(fake.calls) == 40
    # The reads waited for their slots instead of failing, and none ran before its slot.
    for n, at in enumerate(sorted(seen)):
        assert at - start >= max(0, n - 1) / 3 - 1e-9


async def test_writes_over_the_rate_limit_are_asked_again_then_fail_clearly(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane]
) -> None:
    fake = FakeTool()
    cp = await tight_control(
        db_url, tmp_path, clock, fake, {"tool": "fake.write", "risk": "medium"}, sleep=frozen_sleep
    )
    planes.append(cp)
    opened = [await cp.open_incident(text=f"fakefix {n}", requester=REQUESTER) for n in range(6)]
    nonces = await cp.db.run(lambda s: list(s.exec(select(Approval.nonce))))
    assert len(nonces) == 6
    # Approved at once: a burst of 2, then 3 per second, and a write waits at most 0.5 s.
    await asyncio.gather(
        *(cp.vote(nonce=n, voter=APPROVER_A, choice=VoteChoice.APPROVE) for n in nonces)
    )
    steps = [(await cp.plan_view(o.plan_id)).steps[0] for o in opened]
    refused = [s for s in steps if s.error_code == "rate_limited"]
    assert len(fake.calls) == 3  # refused before they were sent: no write went out twice
    assert len(refused) == 3
    # Time stands still here, so every attempt is refused again; each was never sent.
    assert all(s.attempts == 3 and s.status == "failed" for s in refused)
    assert "3 calls per second" in (refused[0].error or "")
    assert "within 0.5 s" in (refused[0].error or "")


async def test_a_rate_limited_read_is_retried_with_the_same_key(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    fake.fail_times(2, RateLimited("busy"))
    cp = await control_with(db_url, tmp_path, clock, fake, {"tool": "fake.read"})
    planes.append(cp)
    opened = await cp.open_incident(text="fakefix", requester=REQUESTER)
    view = await cp.plan_view(opened.plan_id)
    assert view.status == "succeeded"
    assert view.steps[0].attempts == 3
    assert {c.idempotency_key for c in fake.calls} == {f"opsgate-{view.steps[0].id}"}


async def test_a_rate_limited_write_is_asked_again_because_it_was_never_sent(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    fake.fail_times(1, RateLimited("busy"))
    cp = await control_with(db_url, tmp_path, clock, fake, {"tool": "fake.write", "risk": "medium"})
    planes.append(cp)
    opened = await cp.open_incident(text="fakefix", requester=REQUESTER)
    await cp.vote(nonce=await pending_nonce(cp), voter=APPROVER_A, choice=VoteChoice.APPROVE)
    view = await cp.plan_view(opened.plan_id)
    assert len(fake.calls) == 2  # the fake stands for the guard: its refusal sent nothing
    assert view.steps[0].status == "succeeded"


# One idempotency key per step


class KeyedService:
    """A local target that answers 503 ``failures`` times, then 200, and notes each key."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.keys: list[str | None] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.keys.append(request.headers.get("Idempotency-Key"))
        if len(self.keys) <= self.failures:
            return web.Response(status=503, text="busy")
        return web.json_response({"ok": True})


@pytest.fixture
async def keyed() -> AsyncIterator[tuple[KeyedService, int]]:
    service = KeyedService(failures=2)
    app = web.Application()
    app.router.add_get("/health", service.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield service, runner.addresses[0][1]
    await runner.cleanup()


async def test_the_target_sees_the_same_key_on_every_attempt(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    keyed: tuple[KeyedService, int],
    planes: list[ControlPlane],
) -> None:
    service, port = keyed
    folder = tmp_path / "rb"
    folder.mkdir()
    step = {
        "tool": "http.get",
        "args": {"url": f"http://127.0.0.1:{port}/health"},
        "expect": {"status": 200},
    }
    (folder / "fake.yaml").write_text(FAKE_RUNBOOK.format(steps=steps_yaml(step)))
    config = make_config(folder, adapters={"http": {"cache_ttl_s": 0}})
    cp = await make_control(db_url, config, clock)
    planes.append(cp)
    opened = await cp.open_incident(text="fakefix", requester=REQUESTER)
    view = await cp.plan_view(opened.plan_id)
    assert view.status == "succeeded"
    assert view.steps[0].attempts == 3
    key = f"opsgate-{view.steps[0].id}"
    assert service.keys == [key, key, key]
    spans = [s for s in await cp.spans(opened.plan_id) if s.kind == "tool_call"]
    assert [s.attributes["idempotency_key"] for s in spans] == [key, key, key]


async def test_a_rerun_of_a_step_keeps_its_key(clock: FakeClock, fake: FakeTool) -> None:
    """The key depends on the step alone: a later run of the same step (attempt 4) sends it too."""
    signer = GrantSigner(b"s" * 32)
    registry: ToolRegistry = build_registry(
        make_config(Path("unused")),
        signer=signer,
        clock=clock,
        extra=[(fake, ToolLimits(rate_per_s=1000, burst=1000))],
    )

    async def no_sleep(_seconds: float) -> None:
        await asyncio.sleep(0)

    executor = Executor(
        tools=registry,
        clock=clock,
        max_attempts=3,
        backoff_initial_s=0,
        backoff_max_s=0,
        sleep=no_sleep,
    )
    grant = signer.issue(
        grant_id="g",
        tool="fake",
        action="read",
        args_hash=args_hash("fake.read", {}),
        expires_at=clock.now() + timedelta(minutes=1),
    )
    for first_attempt in (1, 4):
        ticket = Ticket(
            step_id="s1",
            tool_action="fake.read",
            args={},
            idempotent=True,
            expect=None,
            grant=grant,
            correlation_id="c",
            first_attempt=first_attempt,
        )
        outcome = await executor.run(ticket)
        assert [a.idempotency_key for a in outcome.attempts] == ["opsgate-s1"]
    assert [c.idempotency_key for c in fake.calls] == ["opsgate-s1", "opsgate-s1"]
    assert idempotency_key("s1") == "opsgate-s1"
