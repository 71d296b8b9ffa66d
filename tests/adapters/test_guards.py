"""The guards: grant check, timeout, rate limit, circuit breaker, and their stacking order."""

import asyncio

import pytest
from pydantic import BaseModel, ConfigDict
from structlog.testing import capture_logs

from adapters import (
    ActionSpec,
    ArgsInvalid,
    BreakerState,
    CircuitBreakerGuard,
    CircuitOpen,
    Grant,
    GrantError,
    GrantGuard,
    GrantSigner,
    HostNotAllowed,
    RateLimited,
    RateLimitGuard,
    TimeoutGuard,
    ToolCall,
    ToolResult,
    ToolSpec,
    ToolTimeout,
    UnknownAction,
    guarded,
)
from adapters.guards import BreakerEvent, InvalidTransition, breaker_transition
from adapters.testing import FakeTool, ok_result
from common import FakeClock, Risk
from tests.adapters.conftest import grant_for, make_call


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int


def failed_result(call: ToolCall) -> ToolResult:
    return ok_result(call).model_copy(update={"ok": False})


class GatedTool(FakeTool):
    """A FakeTool whose calls wait until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        self.started.set()
        await self.release.wait()
        return await super().invoke(call, grant)


# GrantGuard


async def test_grant_guard_runs_a_granted_call(signer: GrantSigner, clock: FakeClock) -> None:
    fake = FakeTool()
    call = make_call("fake.write", target="db")
    result = await GrantGuard(fake, signer=signer, clock=clock).invoke(
        call, grant_for(call, signer, clock)
    )
    assert result.ok
    assert fake.calls == [call]


async def test_grant_guard_refuses_without_grant_before_calling_tool(
    signer: GrantSigner, clock: FakeClock
) -> None:
    fake = FakeTool()
    with pytest.raises(GrantError) as info:
        await GrantGuard(fake, signer=signer, clock=clock).invoke(make_call(), None)
    assert info.value.code == "grant_missing"
    assert fake.calls == []


async def test_grant_guard_refuses_expired_grant_on_fake_clock(
    signer: GrantSigner, clock: FakeClock
) -> None:
    fake = FakeTool()
    guard = GrantGuard(fake, signer=signer, clock=clock)
    call = make_call()
    grant = grant_for(call, signer, clock, ttl_s=10)
    await guard.invoke(call, grant)
    clock.advance(10)
    with pytest.raises(GrantError, match="expired") as info:
        await guard.invoke(call, grant)
    assert info.value.code == "grant_expired"
    assert len(fake.calls) == 1


async def test_grant_guard_refuses_unknown_action(signer: GrantSigner, clock: FakeClock) -> None:
    call = make_call("fake.explode")
    with pytest.raises(UnknownAction, match=r"fake\.read"):
        await GrantGuard(FakeTool(), signer=signer, clock=clock).invoke(
            call, grant_for(call, signer, clock)
        )


async def test_grant_guard_refuses_call_addressed_to_another_tool(
    signer: GrantSigner, clock: FakeClock
) -> None:
    call = make_call("other.read")
    with pytest.raises(UnknownAction):
        await GrantGuard(FakeTool(), signer=signer, clock=clock).invoke(
            call, grant_for(call, signer, clock)
        )


async def test_grant_guard_refuses_invalid_args_before_calling_tool(
    signer: GrantSigner, clock: FakeClock
) -> None:
    action = ActionSpec(
        name="count", args_model=Strict, risk=Risk.LOW, read_only=True, idempotent=True
    )
    fake = FakeTool(actions={"count": action})
    call = make_call("fake.count", count="many")
    with pytest.raises(ArgsInvalid, match="count:"):
        await GrantGuard(fake, signer=signer, clock=clock).invoke(
            call, grant_for(call, signer, clock)
        )
    assert fake.calls == []


# TimeoutGuard


async def test_timeout_guard_cancels_slow_call_with_tool_timeout() -> None:
    slow = GatedTool()
    with pytest.raises(ToolTimeout, match=r"0\.05 s"):
        await TimeoutGuard(slow, seconds=0.05).invoke(make_call(), None)
    assert slow.started.is_set()


async def test_timeout_guard_passes_fast_call_through() -> None:
    assert (await TimeoutGuard(FakeTool(), seconds=1).invoke(make_call(), None)).ok


# RateLimitGuard


async def test_rate_limit_allows_a_burst_then_refuses_beyond_max_wait() -> None:
    fake = FakeTool()
    guard = RateLimitGuard(fake, per_second=1, burst=2, max_wait_s=0.05)
    await guard.invoke(make_call(), None)
    await guard.invoke(make_call(), None)
    with pytest.raises(RateLimited, match="1 calls per second"):
        await guard.invoke(make_call(), None)
    assert len(fake.calls) == 2


async def test_rate_limit_waits_for_a_slot_within_max_wait() -> None:
    fake = FakeTool()
    guard = RateLimitGuard(fake, per_second=50, burst=1, max_wait_s=1.0)
    await asyncio.gather(*(guard.invoke(make_call(), None) for _ in range(3)))
    assert len(fake.calls) == 3


# CircuitBreakerGuard


def breaker(fake: FakeTool, clock: FakeClock, threshold: int = 2) -> CircuitBreakerGuard:
    return CircuitBreakerGuard(fake, failure_threshold=threshold, reset_after_s=10, clock=clock)


async def trip(guard: CircuitBreakerGuard, fake: FakeTool, times: int = 2) -> None:
    fake.fail_times(times)
    for _ in range(times):
        with pytest.raises(Exception, match="fake tool failure"):
            await guard.invoke(make_call(), None)


async def test_breaker_opens_after_threshold_and_refuses_without_calling(
    clock: FakeClock,
) -> None:
    fake = FakeTool()
    guard = breaker(fake, clock)
    await trip(guard, fake)
    assert guard.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as info:
        await guard.invoke(make_call(), None)
    assert not info.value.retryable
    assert len(fake.calls) == 2


async def test_breaker_goes_closed_open_half_open_closed(clock: FakeClock) -> None:
    fake = FakeTool()
    guard = breaker(fake, clock)
    assert guard.state is BreakerState.CLOSED
    await trip(guard, fake)
    assert guard.state is BreakerState.OPEN
    clock.advance(9.9)
    assert guard.state is BreakerState.OPEN
    clock.advance(0.1)
    assert guard.state is BreakerState.HALF_OPEN
    assert (await guard.invoke(make_call(), None)).ok
    assert guard.state is BreakerState.CLOSED


async def test_breaker_failed_probe_reopens(clock: FakeClock) -> None:
    fake = FakeTool()
    guard = breaker(fake, clock)
    await trip(guard, fake)
    clock.advance(10)
    await trip(guard, fake, times=1)
    assert guard.state is BreakerState.OPEN
    clock.advance(9)
    with pytest.raises(CircuitOpen):
        await guard.invoke(make_call(), None)


async def test_breaker_lets_only_one_probe_through_while_half_open(clock: FakeClock) -> None:
    gated = GatedTool()
    guard = breaker(gated, clock)
    gated.release.set()
    await trip(guard, gated)
    gated.release.clear()
    gated.started.clear()
    clock.advance(10)
    probe = asyncio.create_task(guard.invoke(make_call(), None))
    await gated.started.wait()
    with pytest.raises(CircuitOpen, match="probe"):
        await guard.invoke(make_call(), None)
    gated.release.set()
    assert (await probe).ok
    assert guard.state is BreakerState.CLOSED
    assert len(gated.calls) == 3


async def test_breaker_frees_probe_slot_when_probe_is_refused_not_failed(
    clock: FakeClock,
) -> None:
    fake = FakeTool()
    guard = breaker(fake, clock)
    await trip(guard, fake)
    clock.advance(10)
    fake.fail_times(1, HostNotAllowed("nope"))
    with pytest.raises(HostNotAllowed):
        await guard.invoke(make_call(), None)
    assert guard.state is BreakerState.HALF_OPEN
    assert (await guard.invoke(make_call(), None)).ok
    assert guard.state is BreakerState.CLOSED


async def test_breaker_counts_not_ok_results_as_failures(clock: FakeClock) -> None:
    fake = FakeTool(responses=failed_result)
    guard = breaker(fake, clock)
    await guard.invoke(make_call(), None)
    await guard.invoke(make_call(), None)
    assert guard.state is BreakerState.OPEN


async def test_breaker_ignores_non_retryable_errors(clock: FakeClock) -> None:
    fake = FakeTool()
    guard = breaker(fake, clock)
    fake.fail_times(5, HostNotAllowed("nope"))
    for _ in range(5):
        with pytest.raises(HostNotAllowed):
            await guard.invoke(make_call(), None)
    assert guard.state is BreakerState.CLOSED


async def test_breaker_success_resets_consecutive_failures(clock: FakeClock) -> None:
    fake = FakeTool()
    guard = breaker(fake, clock)
    await trip(guard, fake, times=1)
    await guard.invoke(make_call(), None)
    await trip(guard, fake, times=1)
    assert guard.state is BreakerState.CLOSED


async def test_breaker_logs_state_changes(clock: FakeClock) -> None:
    fake = FakeTool()
    guard = breaker(fake, clock)
    with capture_logs() as logs:
        await trip(guard, fake)
    assert [(e["event"], e["after"]) for e in logs] == [("circuit_breaker_changed", "open")]


def test_breaker_transition_table_refuses_undefined_moves() -> None:
    assert breaker_transition(BreakerState.CLOSED, BreakerEvent.TRIPPED) is BreakerState.OPEN
    with pytest.raises(InvalidTransition):
        breaker_transition(BreakerState.CLOSED, BreakerEvent.PROBE_SUCCEEDED)


# guarded()


def stack(fake: FakeTool, signer: GrantSigner, clock: FakeClock) -> GrantGuard:
    return guarded(
        fake,
        signer=signer,
        clock=clock,
        timeout_s=1,
        rate_per_s=100,
        burst=10,
        breaker_threshold=2,
        breaker_reset_s=10,
    )


def guard_layers(guard: object) -> list[str]:
    names = []
    while hasattr(guard, "inner"):
        names.append(type(guard).__name__)
        guard = guard.inner
    return [*names, type(guard).__name__]


async def test_guarded_stacks_grant_breaker_rate_timeout_tool(
    signer: GrantSigner, clock: FakeClock
) -> None:
    fake = FakeTool()
    tool = stack(fake, signer, clock)
    assert guard_layers(tool) == [
        "GrantGuard",
        "CircuitBreakerGuard",
        "RateLimitGuard",
        "TimeoutGuard",
        "FakeTool",
    ]
    assert tool.spec is fake.spec
    call = make_call("fake.nuke", target="all")
    assert (await tool.invoke(call, grant_for(call, signer, clock))).ok


async def test_guarded_grant_refusals_never_reach_the_breaker(
    signer: GrantSigner, clock: FakeClock
) -> None:
    fake = FakeTool()
    tool = stack(fake, signer, clock)
    for _ in range(5):
        with pytest.raises(GrantError):
            await tool.invoke(make_call(), None)
    assert isinstance(tool.inner, CircuitBreakerGuard)
    assert tool.inner.state is BreakerState.CLOSED
    assert fake.calls == []


async def test_guarded_timeouts_trip_the_breaker(signer: GrantSigner, clock: FakeClock) -> None:
    slow = GatedTool()
    tool = guarded(
        slow, signer=signer, clock=clock, timeout_s=0.02, breaker_threshold=2, breaker_reset_s=10
    )
    call = make_call()
    grant = grant_for(call, signer, clock)
    for _ in range(2):
        with pytest.raises(ToolTimeout):
            await tool.invoke(call, grant)
    with pytest.raises(CircuitOpen):
        await tool.invoke(call, grant)


async def test_guard_spec_is_the_inner_spec() -> None:
    fake = FakeTool(name="svc")
    assert isinstance(TimeoutGuard(fake, seconds=1).spec, ToolSpec)
    assert TimeoutGuard(fake, seconds=1).spec.name == "svc"
