"""Circuit breakers shared through the database: replicas agree, one probe, a lean healthy path."""

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event
from structlog.testing import capture_logs

from adapters import Admission, BreakerPolicy, BreakerState, GrantSigner
from common import FakeClock
from orchestration.breakers import (
    CACHE_S,
    DbBreakerStore,
    breaker_views,
    read_breaker,
)
from orchestration.control import ControlPlane
from orchestration.db import Database
from orchestration.toolbox import build_registry
from tests.orchestration.helpers import (
    REQUESTER,
    DemoService,
    make_config,
    make_control,
    write_runbook,
)

POLICY = BreakerPolicy(failure_threshold=3, reset_after_s=30, probe_lease_s=60)
KEY = "http:checkout.internal"


class Replica:
    """One process's view: its own engine and worker threads, and its own breaker cache."""

    def __init__(self, db_url: str, clock: FakeClock) -> None:
        self.db = Database(db_url)
        self.store = DbBreakerStore(self.db, clock=clock)
        self.commits = 0

        @event.listens_for(self.db.engine, "commit")
        def _count(_conn: object) -> None:
            self.commits += 1

    async def fail(self, times: int = 1, key: str = KEY) -> None:
        for _ in range(times):
            admission = await self.store.admit(key, policy=POLICY)
            assert admission.allowed
            await self.store.record(admission, ok=False, policy=POLICY)


@pytest.fixture
async def replicas(db_url: str, clock: FakeClock) -> AsyncIterator[Callable[[], Replica]]:
    made: list[Replica] = []
    first = True

    def make() -> Replica:
        nonlocal first
        replica = Replica(db_url, clock)
        if first:
            replica.db.create_schema()
            first = False
        made.append(replica)
        return replica

    yield make
    for replica in made:
        await replica.db.close()


async def test_a_breaker_opened_by_one_replica_refuses_calls_on_another(
    replicas: Callable[[], Replica], clock: FakeClock
) -> None:
    a, b = replicas(), replicas()
    assert (await b.store.admit(KEY, policy=POLICY)).allowed  # b reads: all closed
    await a.fail(3)
    stored = await a.db.run(lambda s: read_breaker(s, KEY))
    assert stored is not None
    assert (stored.state, stored.failures) == (BreakerState.OPEN, 3)
    # b trusts its copy for at most CACHE_S: a closed copy may let a call through meanwhile.
    assert (await b.store.admit(KEY, policy=POLICY)).allowed
    clock.advance(CACHE_S)
    refused = await b.store.admit(KEY, policy=POLICY)
    assert not refused.allowed
    assert refused.probe_in_s == pytest.approx(30 - CACHE_S)


async def test_a_breaker_pauses_only_its_own_target(
    replicas: Callable[[], Replica], clock: FakeClock
) -> None:
    a = replicas()
    await a.fail(3)
    assert not (await a.store.admit(KEY, policy=POLICY)).allowed
    assert (await a.store.admit("http:payments.internal", policy=POLICY)).allowed
    assert (await a.store.admit("shell:checkout.internal", policy=POLICY)).allowed


async def test_failures_from_two_replicas_at_once_are_all_counted(
    replicas: Callable[[], Replica],
) -> None:
    a, b = replicas(), replicas()
    many = BreakerPolicy(failure_threshold=100, reset_after_s=30, probe_lease_s=60)

    async def fail(replica: Replica) -> None:
        admission = await replica.store.admit(KEY, policy=many)
        await replica.store.record(admission, ok=False, policy=many)

    await asyncio.gather(*(fail(r) for r in [a, b] * 10))
    stored = await a.db.run(lambda s: read_breaker(s, KEY))
    assert stored is not None
    assert stored.failures == 20


async def test_only_one_replica_claims_the_half_open_probe(
    replicas: Callable[[], Replica], clock: FakeClock
) -> None:
    a, b, c = replicas(), replicas(), replicas()
    await a.fail(3)
    clock.advance(30)
    admissions = await asyncio.gather(*(r.store.admit(KEY, policy=POLICY) for r in [a, b, c] * 4))
    probes = [adm for adm in admissions if adm.probing]
    assert len(probes) == 1
    assert sum(adm.allowed for adm in admissions) == 1
    refused = [adm for adm in admissions if not adm.allowed]
    assert all(adm.record.state is BreakerState.HALF_OPEN for adm in refused)


async def test_a_probe_that_succeeds_closes_the_breaker_for_every_replica_at_once(
    replicas: Callable[[], Replica], clock: FakeClock
) -> None:
    a, b = replicas(), replicas()
    await a.fail(3)
    clock.advance(CACHE_S)
    assert not (await b.store.admit(KEY, policy=POLICY)).allowed  # b's copy: open
    clock.advance(30)
    probe = await a.store.admit(KEY, policy=POLICY)
    assert probe.probing
    with capture_logs() as logs:
        await a.store.record(probe, ok=True, policy=POLICY)
    assert [(e["before"], e["after"]) for e in logs] == [("half_open", "closed")]
    # b's copy is not fresh enough to refuse once the cool-down is over: it asks the database.
    assert (await b.store.admit(KEY, policy=POLICY)).allowed
    stored = await a.db.run(lambda s: read_breaker(s, KEY))
    assert stored is not None
    assert (stored.state, stored.failures) == (BreakerState.CLOSED, 0)


async def test_a_failed_probe_reopens_for_everyone(
    replicas: Callable[[], Replica], clock: FakeClock
) -> None:
    a, b = replicas(), replicas()
    await a.fail(3)
    clock.advance(30)
    probe = await b.store.admit(KEY, policy=POLICY)
    assert probe.probing
    await b.store.record(probe, ok=False, policy=POLICY)
    clock.advance(CACHE_S)
    refused = await a.store.admit(KEY, policy=POLICY)
    assert not refused.allowed
    assert refused.record.state is BreakerState.OPEN
    assert refused.probe_in_s == pytest.approx(30 - CACHE_S)


async def test_a_probe_whose_replica_died_frees_the_slot_when_its_lease_passes(
    replicas: Callable[[], Replica], clock: FakeClock
) -> None:
    a, b = replicas(), replicas()
    await a.fail(3)
    clock.advance(30)
    lost = await a.store.admit(KEY, policy=POLICY)  # a dies before recording anything
    assert lost.probing
    assert not (await b.store.admit(KEY, policy=POLICY)).allowed
    clock.advance(POLICY.probe_lease_s)
    again = await b.store.admit(KEY, policy=POLICY)
    assert again.probing
    await a.store.record(lost, ok=True, policy=POLICY)  # a late word from the old probe: ignored
    stored = await a.db.run(lambda s: read_breaker(s, KEY))
    assert stored is not None
    assert stored.state is BreakerState.HALF_OPEN
    assert stored.probe_until == again.probe_token


async def test_an_unknown_probe_outcome_frees_the_slot_for_another_replica(
    replicas: Callable[[], Replica], clock: FakeClock
) -> None:
    a, b = replicas(), replicas()
    await a.fail(3)
    clock.advance(30)
    probe = await a.store.admit(KEY, policy=POLICY)
    await a.store.record(probe, ok=None, policy=POLICY)  # refused inside, or cancelled
    assert (await b.store.admit(KEY, policy=POLICY)).probing


async def test_healthy_calls_cost_no_commit_beyond_one_read_per_second(
    replicas: Callable[[], Replica], clock: FakeClock
) -> None:
    a = replicas()
    before = a.commits
    for _ in range(200):
        admission = await a.store.admit(KEY, policy=POLICY)
        await a.store.record(admission, ok=True, policy=POLICY)
    assert a.commits - before == 1  # the one read of the unsettled breakers
    clock.advance(CACHE_S)
    for _ in range(200):
        admission = await a.store.admit(KEY, policy=POLICY)
        await a.store.record(admission, ok=True, policy=POLICY)
    assert a.commits - before == 2
    assert a.store.writes == 0
    assert await a.db.run(lambda s: read_breaker(s, KEY)) is None


async def test_only_failures_resets_and_state_changes_are_written(
    replicas: Callable[[], Replica],
) -> None:
    a = replicas()
    ok = await a.store.admit(KEY, policy=POLICY)
    await a.fail(2)
    assert a.store.writes == 2
    await a.store.record(ok, ok=True, policy=POLICY)  # resets a non-zero count
    assert a.store.writes == 3
    await a.store.record(ok, ok=True, policy=POLICY)  # nothing to reset
    await a.store.record(ok, ok=None, policy=POLICY)  # unknown outcome of a normal call
    assert a.store.writes == 3
    stored = await a.db.run(lambda s: read_breaker(s, KEY))
    assert stored is not None
    assert stored.failures == 0


async def test_concurrent_admissions_share_one_refresh(replicas: Callable[[], Replica]) -> None:
    a = replicas()
    before = a.commits
    await asyncio.gather(*(a.store.admit(f"http:h{i}", policy=POLICY) for i in range(50)))
    assert a.commits - before == 1


async def test_the_store_fails_open_when_the_database_is_gone(
    replicas: Callable[[], Replica], clock: FakeClock
) -> None:
    a = replicas()
    await a.fail(3)
    clock.advance(30)
    await a.db.close()
    with capture_logs() as logs:
        admission = await a.store.admit(KEY, policy=POLICY)
        await a.store.record(admission, ok=False, policy=POLICY)
    assert admission.allowed
    assert not admission.probing
    assert "breaker_store_unavailable" in [e["event"] for e in logs]


async def test_cache_window_is_at_most_a_second(db_url: str, clock: FakeClock) -> None:
    db = Database(db_url)
    try:
        with pytest.raises(ValueError, match="cache_s"):
            DbBreakerStore(db, clock=clock, cache_s=5)
    finally:
        await db.close()


async def test_views_say_when_the_next_probe_goes_and_who_is_probing(
    replicas: Callable[[], Replica], clock: FakeClock
) -> None:
    a = replicas()
    await a.fail(3)
    await a.fail(1, key="shell:restart")
    opened_at = clock.now()
    clock.advance(18)
    now = clock.now()
    views = await a.db.run(
        lambda s: breaker_views(s, now=now, reset_after_s={"http": 30.0}, default_reset_s=60.0)
    )
    by_key = {v.key: v for v in views}
    http = by_key[KEY]
    assert (http.tool, http.target, http.state, http.gauge) == (
        "http",
        "checkout.internal",
        BreakerState.OPEN,
        2,
    )
    assert http.opened_at == opened_at
    assert http.probe_at == opened_at + timedelta(seconds=30)
    assert http.probe_in_s == pytest.approx(12)
    assert (by_key["shell:restart"].state, by_key["shell:restart"].gauge) == (
        BreakerState.CLOSED,
        0,
    )
    clock.advance(12)
    probe: Admission = await a.store.admit(KEY, policy=POLICY)
    assert probe.probing
    now = clock.now()
    [half] = [v for v in await a.db.run(lambda s: breaker_views(s, now=now)) if v.key == KEY]
    assert (half.state, half.gauge, half.probing) == (BreakerState.HALF_OPEN, 1, True)


async def test_probes_of_a_down_service_never_trip_the_shared_breaker(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane]
) -> None:
    """Probe steps answered 503 for many incidents: every next incident still probes."""
    service = await DemoService().start()
    try:
        write_runbook(tmp_path / "rb", service.port)
        config = make_config(
            tmp_path / "rb",
            adapters={"http": {"breaker_threshold": 2, "cache_ttl_s": 0}},
            execution={"max_attempts": 1, "backoff_initial_s": 0, "backoff_max_s": 0},
        )
        signer = GrantSigner(b"k" * 32)
        db = Database(db_url)
        store = DbBreakerStore(db, clock=clock)
        tools = build_registry(config, signer=signer, clock=clock, breakers=store)
        cp = await make_control(db_url, config, clock, tools=tools, signer=signer)
        planes.append(cp)
        for n in range(4):
            opened = await cp.open_incident(text=f"svc-{n} is down", requester=REQUESTER)
            view = await cp.plan_view(opened.plan_id)
            assert view.steps[0].status == "succeeded"  # the call worked: it answered 503
        stored = await cp.db.run(lambda s: read_breaker(s, "http:127.0.0.1"))
        assert stored is None or stored.state is BreakerState.CLOSED
        assert service.health_checks == 4
    finally:
        await db.close()
        await service.stop()
