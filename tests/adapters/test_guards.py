"""The guards: grant check, timeout, rate limit, circuit breaker, and their stacking order."""

import asyncio
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict
from structlog.testing import capture_logs

from adapters import (
    ActionSpec,
    Admission,
    ArgsInvalid,
    BreakerPolicy,
    BreakerRecord,
    BreakerState,
    CircuitBreakerGuard,
    CircuitOpen,
    ErrorCode,
    Grant,
    GrantError,
    GrantGuard,
    GrantSigner,
    HostNotAllowed,
    RateLimited,
    RateLimitGuard,
    TimeoutGuard,
    ToolCall,
    ToolFailed,
    ToolResult,
    ToolSpec,
    ToolTimeout,
    UnknownAction,
    guarded,
)
from adapters.guards import (
    BreakerEvent,
    InvalidTransition,
    admit_call,
    after_call,
    breaker_transition,
)
from adapters.testing import FakeSleep, FakeTool, InMemoryBreakerStore, ok_result
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


def limiter(
    fake: FakeTool, clock: FakeClock, sleep: FakeSleep, *, read_wait: float = 30.0
) -> RateLimitGuard:
    return RateLimitGuard(
        fake,
        per_second=4,
        burst=2,
        max_wait_s=1.1,
        read_max_wait_s=read_wait,
        clock=clock,
        sleep=sleep,
    )


def timed_tool(clock: FakeClock) -> tuple[FakeTool, list[float]]:
    """A FakeTool that notes the fake time of every call it receives."""
    seen: list[float] = []

    def answer(call: ToolCall) -> ToolResult:
        seen.append(clock.monotonic())
        return ok_result(call)

    return FakeTool(responses=answer), seen


async def test_rate_limit_refuses_a_write_at_once_when_its_slot_is_past_max_wait(
    clock: FakeClock,
) -> None:
    sleep = FakeSleep(clock)
    fake = FakeTool()
    guard = limiter(fake, clock, sleep)
    outcomes = await asyncio.gather(
        *(guard.invoke(make_call("fake.write"), None) for _ in range(40)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, RateLimited)]
    # A burst of 2, then one slot every 0.25 s within the 1.1 s a write may wait.
    assert len(fake.calls) == 6
    assert len(refused) == 34
    assert "4 calls per second" in refused[0].message
    assert "within 1.1 s" in refused[0].message
    assert max(sleep.waits) <= 1.1  # refused ones never waited


async def test_rate_limit_lets_40_reads_wait_for_their_slots_and_never_early(
    clock: FakeClock,
) -> None:
    sleep = FakeSleep(clock)
    fake, seen = timed_tool(clock)
    guard = limiter(fake, clock, sleep)
    start = clock.monotonic()
    results = await asyncio.gather(*(guard.invoke(make_call("fake.read"), None) for _ in range(40)))
    assert all(r.ok for r in results)
    assert len(seen) == 40
    # The n-th call (from 0) may not run before its slot: burst 2, then 4 per second.
    for n, at in enumerate(sorted(seen)):
        assert at - start >= max(0, n - 1) * 0.25 - 1e-9
    assert sorted(sleep.waits)[-1] == pytest.approx(38 * 0.25)


async def test_rate_limit_refuses_a_read_whose_slot_is_past_the_read_bound(
    clock: FakeClock,
) -> None:
    sleep = FakeSleep(clock)
    fake = FakeTool()
    guard = limiter(fake, clock, sleep, read_wait=0.3)
    outcomes = await asyncio.gather(
        *(guard.invoke(make_call("fake.read"), None) for _ in range(5)), return_exceptions=True
    )
    assert len(fake.calls) == 3
    assert sum(isinstance(o, RateLimited) for o in outcomes) == 2


async def test_rate_limit_frees_up_as_time_passes(clock: FakeClock) -> None:
    sleep = FakeSleep(clock)
    fake = FakeTool()
    guard = RateLimitGuard(fake, per_second=1, burst=2, max_wait_s=0, clock=clock, sleep=sleep)
    await guard.invoke(make_call("fake.write"), None)
    await guard.invoke(make_call("fake.write"), None)
    with pytest.raises(RateLimited):
        await guard.invoke(make_call("fake.write"), None)
    clock.advance(1)
    await guard.invoke(make_call("fake.write"), None)
    assert len(fake.calls) == 3
    assert sleep.waits == []


def test_rate_limit_refuses_nonsense_settings(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="per_second"):
        RateLimitGuard(FakeTool(), per_second=0, burst=1, max_wait_s=1, clock=clock)


# CircuitBreakerGuard

POLICY = BreakerPolicy(failure_threshold=2, reset_after_s=10, probe_lease_s=60)
KEY = "fake:*"


def by_host(call: ToolCall) -> str:
    return str(call.args.get("host", "?"))


def breaker(
    fake: FakeTool, store: InMemoryBreakerStore, policy: BreakerPolicy = POLICY
) -> CircuitBreakerGuard:
    return CircuitBreakerGuard(fake, store=store, policy=policy)


@pytest.fixture
def store(clock: FakeClock) -> InMemoryBreakerStore:
    return InMemoryBreakerStore(clock)


async def trip(guard: CircuitBreakerGuard, fake: FakeTool, times: int = 2, **args: str) -> None:
    fake.fail_times(times)
    for _ in range(times):
        with pytest.raises(ToolFailed, match="fake tool failure"):
            await guard.invoke(make_call(**args), None)


async def test_breaker_opens_after_threshold_and_refuses_without_calling(
    store: InMemoryBreakerStore,
) -> None:
    fake = FakeTool()
    guard = breaker(fake, store)
    await trip(guard, fake)
    assert store.state(KEY) is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match="probe call is let through in 10 s") as info:
        await guard.invoke(make_call(), None)
    assert not info.value.retryable
    assert len(fake.calls) == 2


async def test_breaker_goes_closed_open_half_open_closed(
    clock: FakeClock, store: InMemoryBreakerStore
) -> None:
    fake = FakeTool()
    guard = breaker(fake, store)
    await trip(guard, fake)
    clock.advance(9.9)
    with pytest.raises(CircuitOpen):
        await guard.invoke(make_call(), None)
    clock.advance(0.1)
    assert (await guard.invoke(make_call(), None)).ok
    assert store.get(KEY) == BreakerRecord(key=KEY)
    assert len(fake.calls) == 3


async def test_breaker_failed_probe_reopens_for_a_new_cool_down(
    clock: FakeClock, store: InMemoryBreakerStore
) -> None:
    fake = FakeTool()
    guard = breaker(fake, store)
    await trip(guard, fake)
    clock.advance(10)
    await trip(guard, fake, times=1)
    assert store.state(KEY) is BreakerState.OPEN
    assert store.get(KEY).opened_at == clock.now()
    clock.advance(9)
    with pytest.raises(CircuitOpen):
        await guard.invoke(make_call(), None)


async def test_breaker_lets_only_one_probe_through_while_half_open(
    clock: FakeClock, store: InMemoryBreakerStore
) -> None:
    gated = GatedTool()
    guard = breaker(gated, store)
    gated.release.set()
    await trip(guard, gated)
    gated.release.clear()
    gated.started.clear()
    clock.advance(10)
    probe = asyncio.create_task(guard.invoke(make_call(), None))
    await gated.started.wait()
    assert store.state(KEY) is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen, match="probe of \\* is running"):
        await guard.invoke(make_call(), None)
    gated.release.set()
    assert (await probe).ok
    assert store.state(KEY) is BreakerState.CLOSED
    assert len(gated.calls) == 3


async def test_breaker_probe_slot_is_taken_over_once_its_lease_has_passed(
    clock: FakeClock, store: InMemoryBreakerStore
) -> None:
    gated = GatedTool()
    guard = breaker(gated, store)
    gated.release.set()
    await trip(guard, gated)
    gated.release.clear()
    clock.advance(10)
    stuck = asyncio.create_task(guard.invoke(make_call(), None))  # its holder hangs (or died)
    await gated.started.wait()
    clock.advance(POLICY.probe_lease_s)
    gated.release.set()
    assert (await guard.invoke(make_call(), None)).ok  # a new probe, which closes the breaker
    assert store.state(KEY) is BreakerState.CLOSED
    await stuck  # the stale probe's outcome changes nothing
    assert store.state(KEY) is BreakerState.CLOSED


async def test_breaker_frees_probe_slot_when_probe_is_refused_not_failed(
    clock: FakeClock, store: InMemoryBreakerStore
) -> None:
    fake = FakeTool()
    guard = breaker(fake, store)
    await trip(guard, fake)
    clock.advance(10)
    fake.fail_times(1, HostNotAllowed("nope"))
    with pytest.raises(HostNotAllowed):
        await guard.invoke(make_call(), None)
    assert store.get(KEY).state is BreakerState.HALF_OPEN
    assert store.get(KEY).probe_until is None
    assert (await guard.invoke(make_call(), None)).ok
    assert store.state(KEY) is BreakerState.CLOSED


async def test_breaker_frees_probe_slot_when_the_probe_is_cancelled(
    clock: FakeClock, store: InMemoryBreakerStore
) -> None:
    gated = GatedTool()
    guard = breaker(gated, store)
    gated.release.set()
    await trip(guard, gated)
    gated.release.clear()
    clock.advance(10)
    probe = asyncio.create_task(guard.invoke(make_call(), None))
    await gated.started.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert store.get(KEY).probe_until is None
    gated.release.set()
    assert (await guard.invoke(make_call(), None)).ok


async def test_breaker_counts_not_ok_results_of_state_changing_calls_as_failures(
    store: InMemoryBreakerStore,
) -> None:
    guard = breaker(FakeTool(responses=failed_result), store)
    await guard.invoke(make_call("fake.write"), None)
    await guard.invoke(make_call("fake.write"), None)
    assert store.state(KEY) is BreakerState.OPEN


async def test_a_read_that_answered_never_counts_against_its_target(
    store: InMemoryBreakerStore,
) -> None:
    """A health probe answering 'down' reports the incident; pausing probes would blind it."""
    guard = breaker(FakeTool(responses=failed_result), store)
    for _ in range(5):
        await guard.invoke(make_call("fake.read"), None)
    assert store.state(KEY) is BreakerState.CLOSED


@pytest.mark.parametrize(
    "error",
    [
        HostNotAllowed("nope"),
        RateLimited("busy"),
        ArgsInvalid("bad"),
        GrantError("no", code=ErrorCode.GRANT_EXPIRED),
    ],
)
async def test_breaker_ignores_refusals_that_are_not_the_targets_fault(
    store: InMemoryBreakerStore, error: Exception
) -> None:
    fake = FakeTool()
    guard = breaker(fake, store)
    fake.fail_times(5, error)
    for _ in range(5):
        with pytest.raises(type(error)):
            await guard.invoke(make_call(), None)
    assert store.get(KEY) == BreakerRecord(key=KEY)


async def test_breaker_counts_timeouts(store: InMemoryBreakerStore) -> None:
    fake = FakeTool()
    guard = breaker(fake, store)
    fake.fail_times(2, ToolTimeout("slow"))
    for _ in range(2):
        with pytest.raises(ToolTimeout):
            await guard.invoke(make_call(), None)
    assert store.state(KEY) is BreakerState.OPEN


async def test_breaker_success_resets_consecutive_failures(store: InMemoryBreakerStore) -> None:
    fake = FakeTool()
    guard = breaker(fake, store)
    await trip(guard, fake, times=1)
    assert store.get(KEY).failures == 1
    await guard.invoke(make_call(), None)
    assert store.get(KEY).failures == 0
    await trip(guard, fake, times=1)
    assert store.state(KEY) is BreakerState.CLOSED


async def test_a_failing_target_does_not_pause_a_healthy_one(store: InMemoryBreakerStore) -> None:
    fake = FakeTool(target=by_host)
    guard = breaker(fake, store)
    await trip(guard, fake, host="sick.internal")
    with pytest.raises(CircuitOpen, match=r"sick\.internal kept failing"):
        await guard.invoke(make_call(host="sick.internal"), None)
    assert (await guard.invoke(make_call(host="fine.internal"), None)).ok
    assert store.state("fake:sick.internal") is BreakerState.OPEN
    assert store.state("fake:fine.internal") is BreakerState.CLOSED


async def test_two_replicas_sharing_a_store_share_the_breaker(
    store: InMemoryBreakerStore,
) -> None:
    fake_a, fake_b = FakeTool(target=by_host), FakeTool(target=by_host)
    replica_a, replica_b = breaker(fake_a, store), breaker(fake_b, store)
    await trip(replica_a, fake_a, host="sick.internal")
    with pytest.raises(CircuitOpen):
        await replica_b.invoke(make_call(host="sick.internal"), None)
    assert fake_b.calls == []


async def test_breaker_logs_state_changes(store: InMemoryBreakerStore) -> None:
    fake = FakeTool()
    guard = breaker(fake, store)
    with capture_logs() as logs:
        await trip(guard, fake)
    assert [(e["event"], e["key"], e["after"]) for e in logs] == [
        ("circuit_breaker_changed", KEY, "open")
    ]


def test_breaker_transition_table_refuses_undefined_moves() -> None:
    assert breaker_transition(BreakerState.CLOSED, BreakerEvent.TRIPPED) is BreakerState.OPEN
    with pytest.raises(InvalidTransition):
        breaker_transition(BreakerState.CLOSED, BreakerEvent.PROBE_SUCCEEDED)


def test_admit_and_after_call_are_pure_decisions(clock: FakeClock) -> None:
    now = clock.now()
    opened = BreakerRecord(key=KEY, state=BreakerState.OPEN, failures=2, opened_at=now)
    refused, write = admit_call(opened, now=now + timedelta(seconds=4), policy=POLICY)
    assert (refused.allowed, refused.probe_in_s, write) == (False, 6.0, None)
    probe, claimed = admit_call(opened, now=now + timedelta(seconds=10), policy=POLICY)
    assert probe.probing
    assert claimed is not None
    assert claimed.state is BreakerState.HALF_OPEN
    assert claimed.probe_until == now + timedelta(seconds=70)
    # A result from a probe whose claim was taken over changes nothing.
    taken = BreakerRecord(
        key=KEY, state=BreakerState.HALF_OPEN, probe_until=now + timedelta(seconds=99)
    )
    assert after_call(taken, probe, ok=True, now=now, policy=POLICY) is None
    closed = after_call(claimed, probe, ok=True, now=now, policy=POLICY)
    assert closed == BreakerRecord(key=KEY)


def test_breaker_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        BreakerPolicy(failure_threshold=0, reset_after_s=1, probe_lease_s=1)


# guarded()


def stack(
    fake: FakeTool, signer: GrantSigner, clock: FakeClock, store: InMemoryBreakerStore
) -> GrantGuard:
    return guarded(
        fake,
        signer=signer,
        clock=clock,
        breakers=store,
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


async def test_guarded_stacks_grant_breaker_rate_timeout_secrets_incident_tool(
    signer: GrantSigner, clock: FakeClock, store: InMemoryBreakerStore
) -> None:
    fake = FakeTool()
    tool = stack(fake, signer, clock, store)
    assert guard_layers(tool) == [
        "GrantGuard",
        "CircuitBreakerGuard",
        "RateLimitGuard",
        "TimeoutGuard",
        "SecretGuard",
        "IncidentGuard",
        "FakeTool",
    ]
    assert tool.spec is fake.spec
    call = make_call("fake.nuke", target="all")
    assert (await tool.invoke(call, grant_for(call, signer, clock))).ok


async def test_guarded_grant_refusals_never_reach_the_breaker(
    signer: GrantSigner, clock: FakeClock, store: InMemoryBreakerStore
) -> None:
    fake = FakeTool()
    tool = stack(fake, signer, clock, store)
    for _ in range(5):
        with pytest.raises(GrantError):
            await tool.invoke(make_call(), None)
    assert store.records == {}
    assert fake.calls == []


async def test_guarded_timeouts_trip_the_breaker(
    signer: GrantSigner, clock: FakeClock, store: InMemoryBreakerStore
) -> None:
    slow = GatedTool()
    tool = guarded(
        slow,
        signer=signer,
        clock=clock,
        breakers=store,
        timeout_s=0.02,
        breaker_threshold=2,
        breaker_reset_s=10,
    )
    call = make_call()
    grant = grant_for(call, signer, clock)
    for _ in range(2):
        with pytest.raises(ToolTimeout):
            await tool.invoke(call, grant)
    with pytest.raises(CircuitOpen):
        await tool.invoke(call, grant)


async def test_guarded_probe_lease_covers_the_rate_wait_and_the_timeout(
    signer: GrantSigner, clock: FakeClock, store: InMemoryBreakerStore
) -> None:
    tool = guarded(
        FakeTool(),
        signer=signer,
        clock=clock,
        breakers=store,
        timeout_s=7,
        rate_max_wait_s=1,
        rate_read_max_wait_s=20,
    )
    assert isinstance(tool.inner, CircuitBreakerGuard)
    assert tool.inner._policy.probe_lease_s >= 20 + 7


async def test_guard_spec_is_the_inner_spec() -> None:
    fake = FakeTool(name="svc")
    assert isinstance(TimeoutGuard(fake, seconds=1).spec, ToolSpec)
    assert TimeoutGuard(fake, seconds=1).spec.name == "svc"


# Property: whatever happens, the breaker stays consistent and admits one live probe at most

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("call")),
        st.tuples(st.just("finish"), st.integers(0, 20), st.sampled_from([True, False, None])),
        st.tuples(st.just("wait"), st.sampled_from([0.5, 5.0, 10.0, 60.0])),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_breaker_decisions_keep_their_invariants(ops: list[tuple[object, ...]]) -> None:
    now = FakeClock().now()
    record = BreakerRecord(key=KEY)
    running: list[Admission] = []
    for op in ops:
        if op[0] == "wait":
            now += timedelta(seconds=float(op[1]))  # type: ignore[arg-type]
        elif op[0] == "call":
            admission, claimed = admit_call(record, now=now, policy=POLICY)
            record = claimed or record
            if admission.allowed:
                running.append(admission)
        elif running:
            admission = running.pop(int(op[1]) % len(running))  # type: ignore[call-overload]
            ok = op[2]
            assert ok is None or isinstance(ok, bool)
            record = after_call(record, admission, ok=ok, now=now, policy=POLICY) or record
        if record.state is BreakerState.CLOSED:
            assert record.failures < POLICY.failure_threshold
            assert record.opened_at is None
            assert record.probe_until is None
        elif record.state is BreakerState.OPEN:
            assert record.opened_at is not None
            assert record.probe_until is None
        # Probes whose lease has not run out: never two at once.
        live = [a for a in running if a.probe_token is not None and a.probe_token > now]
        assert len(live) <= 1
