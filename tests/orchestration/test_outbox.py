"""The outbox relay: in order per channel, retried without loss, once across replicas; a
short lease, renewed while delivering, frees a dead relay's channels within seconds."""

import asyncio
import signal
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlmodel import Session, select
from structlog.testing import capture_logs

from common import FakeClock
from orchestration.db import Database
from orchestration.models import OutboxLease, OutboxMessage
from orchestration.outbox import DeliveryDropped, DeliveryRetry, OutboxRelay


class Recorder:
    """A notifier that records deliveries, can fail on demand and is slow enough to overlap."""

    def __init__(self, log: list[tuple[str, int]], name: str) -> None:
        self.log = log
        self.name = name
        self.fail: dict[int, BaseException] = {}

    async def deliver(self, message: OutboxMessage, *, later: object = ()) -> None:
        assert message.id is not None
        if message.id in self.fail:
            raise self.fail.pop(message.id)
        await asyncio.sleep(0.002)
        self.log.append((message.channel, message.id))


async def seed(db: Database, now: datetime, per_channel: int, channels: list[str]) -> None:
    def work(session: Session) -> None:
        for index in range(per_channel):
            for channel in channels:
                session.add(
                    OutboxMessage(
                        kind="step_finished", channel=channel, payload={"n": index}, created_at=now
                    )
                )

    await db.run(work)


async def test_two_relays_on_one_database_deliver_each_message_once_in_order(
    db_url: str, clock: FakeClock
) -> None:
    first, second = Database(db_url), Database(db_url)
    await first.start()
    channels = ["C1", "C2", "C3"]
    await seed(first, clock.now(), 20, channels)
    log: list[tuple[str, int]] = []
    relays = [
        OutboxRelay(db=db, notifier=Recorder(log, f"r{i}"), clock=clock)
        for i, db in enumerate((first, second))
    ]
    for _ in range(5):
        await asyncio.gather(*(relay.drain() for relay in relays))
    ids = [message_id for _, message_id in log]
    assert len(ids) == 60
    assert len(set(ids)) == 60  # nothing delivered twice
    for channel in channels:
        sent = [message_id for c, message_id in log if c == channel]
        assert sent == sorted(sent)  # in order within the channel
    assert await relays[0].pending() == []
    await first.close()
    await second.close()


async def test_a_failed_message_holds_its_channel_back_until_retried(
    db_url: str, clock: FakeClock
) -> None:
    db = Database(db_url)
    await db.start()
    await seed(db, clock.now(), 3, ["C1", "C2"])
    log: list[tuple[str, int]] = []
    notifier = Recorder(log, "r")
    relay = OutboxRelay(db=db, notifier=notifier, clock=clock)
    rows = await relay.pending()
    first_c1 = next(r for r in rows if r.channel == "C1")
    assert first_c1.id is not None
    notifier.fail[first_c1.id] = DeliveryRetry("slack 429", after_s=30)
    result = await relay.drain()
    assert result.delivered == 3  # C2 went on
    assert [c for c, _ in log] == ["C2", "C2", "C2"]
    clock.advance(10)
    assert (await relay.drain()).delivered == 0  # still waiting for Retry-After
    clock.advance(25)
    assert (await relay.drain()).delivered == 3
    assert [i for c, i in log if c == "C1"] == sorted(i for c, i in log if c == "C1")
    await db.close()


async def test_a_message_slack_can_never_take_is_recorded_and_skipped(
    db_url: str, clock: FakeClock
) -> None:
    db = Database(db_url)
    await db.start()
    await seed(db, clock.now(), 2, ["C1"])
    log: list[tuple[str, int]] = []
    notifier = Recorder(log, "r")
    relay = OutboxRelay(db=db, notifier=notifier, clock=clock)
    first = (await relay.pending())[0]
    assert first.id is not None
    notifier.fail[first.id] = DeliveryDropped("channel_not_found")
    assert (await relay.drain()).delivered == 1

    def errors(session: Session) -> list[str | None]:
        return [session.get(OutboxMessage, first.id).last_error]  # type: ignore[union-attr]

    assert (await db.run(errors))[0] == "dropped: channel_not_found"
    assert await relay.pending() == []
    await db.close()


REPO = Path(__file__).resolve().parents[2]
RELAY_THAT_DIES = """
import asyncio, os, signal, sys
from datetime import datetime
from common import FakeClock
from orchestration.db import Database
from orchestration.outbox import OutboxRelay


class DiesMidDelivery:
    async def deliver(self, message, *, later=()):
        os.kill(os.getpid(), signal.SIGKILL)  # a crash while the channel's lease is held


async def main():
    db = Database(sys.argv[1])
    await db.start()
    clock = FakeClock(datetime.fromisoformat(sys.argv[2]))
    relay = OutboxRelay(db=db, notifier=DiesMidDelivery(), clock=clock, lease_s=10)
    await relay.drain()


asyncio.run(main())
"""


async def lease_of(db: Database, channel: str) -> OutboxLease | None:
    return await db.run(lambda s: s.get(OutboxLease, channel))


async def test_a_relay_killed_while_delivering_frees_its_channel_after_the_lease(
    db_url: str, clock: FakeClock
) -> None:
    """Relay A is a real process killed mid-delivery; relay B delivers once the lease ends."""
    db = Database(db_url)
    await db.start()
    await seed(db, clock.now(), 5, ["C1"])
    dead = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", RELAY_THAT_DIES, db_url, clock.now().isoformat()),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(dead.communicate(), timeout=60)
    assert dead.returncode == -signal.SIGKILL, stderr.decode()
    lease = await lease_of(db, "C1")
    assert lease is not None  # nothing released it
    assert lease.until == clock.now() + timedelta(seconds=10)
    log: list[tuple[str, int]] = []
    survivor = OutboxRelay(db=db, notifier=Recorder(log, "b"), clock=clock, lease_s=10)
    clock.advance(9.9)
    assert (await survivor.drain()).delivered == 0  # the dead relay's lease still stands
    clock.advance(0.2)
    assert (await survivor.drain()).delivered == 5
    ids = [message_id for _, message_id in log]
    assert ids == sorted(ids)
    assert len(ids) == 5
    assert await lease_of(db, "C1") is None
    await db.close()


class SlowSlack:
    """Each delivery takes ``takes_s`` of fake time; a rival relay tries the channel meanwhile.

    With ``waits`` the first delivery is one long wait instead (like a paced or rate-limited
    call) that lasts ``waits`` times ``takes_s``; after each step the test waits until the
    lease was renewed, then lets the rival try.
    """

    def __init__(
        self,
        clock: FakeClock,
        log: list[tuple[str, int]],
        *,
        db: Database,
        takes_s: float,
        waits: int = 0,
    ) -> None:
        self.clock = clock
        self.log = log
        self.db = db
        self.takes_s = takes_s
        self.waits = waits
        self.rival: OutboxRelay | None = None
        self.rival_delivered: list[int] = []

    async def deliver(self, message: OutboxMessage, *, later: object = ()) -> None:
        assert message.id is not None
        assert self.rival is not None
        steps = self.waits if self.waits and not self.log else 1
        for _ in range(steps):
            self.clock.advance(self.takes_s)
            if self.waits:
                await self.renewed(message.channel)
            self.rival_delivered.append((await self.rival.drain()).delivered)
        self.log.append((message.channel, message.id))

    async def renewed(self, channel: str) -> None:
        """Until the lease reaches a full lease past the fake now (a generous deadline)."""
        deadline = time.monotonic() + 20
        while True:
            lease = await lease_of(self.db, channel)
            assert lease is not None
            if lease.until >= self.clock.now() + timedelta(seconds=10):
                return
            assert time.monotonic() < deadline, "the lease was not renewed during the wait"
            await asyncio.sleep(0.01)


async def test_a_live_relay_that_delivers_longer_than_its_lease_keeps_the_channel(
    db_url: str, clock: FakeClock
) -> None:
    """Six deliveries of 4 s each (24 s, the lease is 10 s): the rival never gets a message."""
    first, second = Database(db_url), Database(db_url)
    await first.start()
    await seed(first, clock.now(), 6, ["C1"])
    log: list[tuple[str, int]] = []
    rival_log: list[tuple[str, int]] = []
    slack = SlowSlack(clock, log, db=first, takes_s=4)
    # No keeper renewals (the fake clock moves, not real time): renewal with each message.
    relay = OutboxRelay(db=first, notifier=slack, clock=clock, lease_s=10, renew_every_s=3600)
    slack.rival = OutboxRelay(db=second, notifier=Recorder(rival_log, "b"), clock=clock)
    assert (await relay.drain()).delivered == 6
    assert slack.rival_delivered == [0] * 6
    assert rival_log == []
    ids = [message_id for _, message_id in log]
    assert ids == sorted(ids)
    assert len(ids) == 6
    assert await lease_of(first, "C1") is None  # released when done
    await first.close()
    await second.close()


async def test_a_long_wait_inside_one_delivery_renews_the_lease(
    db_url: str, clock: FakeClock
) -> None:
    """One delivery waits 5 x 4 s = 20 s (lease 10 s): the keeper renews, the rival waits."""
    first, second = Database(db_url), Database(db_url)
    await first.start()
    await seed(first, clock.now(), 3, ["C1"])
    log: list[tuple[str, int]] = []
    rival_log: list[tuple[str, int]] = []
    slack = SlowSlack(clock, log, db=first, takes_s=4, waits=5)
    relay = OutboxRelay(db=first, notifier=slack, clock=clock, lease_s=10, renew_every_s=0.01)
    slack.rival = OutboxRelay(db=second, notifier=Recorder(rival_log, "b"), clock=clock)
    assert (await relay.drain()).delivered == 3
    assert slack.rival_delivered == [0] * 7  # five during the long wait, one per later message
    assert rival_log == []
    ids = [message_id for _, message_id in log]
    assert ids == sorted(ids)
    assert len(ids) == 3
    await first.close()
    await second.close()


async def test_a_relay_that_lost_its_lease_stops_the_channel_after_the_message_in_flight(
    db_url: str, clock: FakeClock
) -> None:
    """A stalls past its lease without renewing; B takes over; A does not go on."""
    first, second = Database(db_url), Database(db_url)
    await first.start()
    await seed(first, clock.now(), 3, ["C1"])
    log: list[tuple[str, int]] = []
    rival_log: list[tuple[str, int]] = []
    slack = SlowSlack(clock, log, db=first, takes_s=11)
    relay = OutboxRelay(db=first, notifier=slack, clock=clock, lease_s=10, renew_every_s=3600)
    slack.rival = OutboxRelay(db=second, notifier=Recorder(rival_log, "b"), clock=clock)
    with capture_logs() as logs:
        result = await relay.drain()
    assert result.delivered == 1  # only the message in flight when the lease lapsed
    rival_ids = [message_id for _, message_id in rival_log]
    assert [message_id for _, message_id in log] == rival_ids[:1]
    assert rival_ids == sorted(rival_ids)
    assert len(rival_ids) == 3
    assert any(line["event"] == "outbox_lease_lost" for line in logs)
    assert await relay.pending() == []
    await first.close()
    await second.close()


class Keeper:
    """A notifier that asks the relay to keep a row per delivery, and sees what follows."""

    def __init__(self) -> None:
        self.later: list[list[int]] = []
        self.fail_after_post: set[int] = set()

    async def deliver(self, message: OutboxMessage, *, later: object = ()) -> object:
        assert message.id is not None
        self.later.append([m.id for m in later])  # type: ignore[attr-defined]
        lease = OutboxLease(
            channel=f"kept-{message.id}", holder="notifier", until=message.created_at
        )

        def record(session: Session) -> None:
            session.add(lease)

        if message.id in self.fail_after_post:
            self.fail_after_post.discard(message.id)
            raise DeliveryRetry("the follow-up failed", after_s=0, record=record)
        return record


async def test_a_pass_costs_one_commit_per_message_plus_one_and_keeps_what_the_notifier_asks(
    db_url: str, clock: FakeClock
) -> None:
    """Lease and queue in one commit; each message's delivered mark, the notifier's record and
    the lease renewal (release, for the last) in one more."""
    db = Database(db_url)
    await db.start()
    await seed(db, clock.now(), 4, ["C1"])
    notifier = Keeper()
    relay = OutboxRelay(db=db, notifier=notifier, clock=clock)
    ids = [r.id for r in await relay.pending()]
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append(1))
    assert (await relay.drain()).delivered == 4
    assert len(commits) == 1 + 1 + 4  # drain's overview read, lease + queue, one per message
    assert notifier.later == [ids[1:], ids[2:], ids[3:], []]  # each sees what follows it
    kept = await db.run(
        lambda s: sorted(r.channel for r in s.exec(select(OutboxLease)) if r.holder == "notifier")
    )
    assert kept == sorted(f"kept-{i}" for i in ids)
    assert await lease_of(db, "C1") is None  # released in the last message's commit
    await db.close()


async def test_what_was_posted_before_a_failed_follow_up_is_kept_with_the_deferral(
    db_url: str, clock: FakeClock
) -> None:
    db = Database(db_url)
    await db.start()
    await seed(db, clock.now(), 1, ["C1"])
    notifier = Keeper()
    relay = OutboxRelay(db=db, notifier=notifier, clock=clock)
    (row,) = await relay.pending()
    assert row.id is not None
    notifier.fail_after_post.add(row.id)
    assert (await relay.drain()).delivered == 0
    stored = await db.run(lambda s: s.get(OutboxMessage, row.id))
    assert stored is not None
    assert stored.delivered_at is None
    assert stored.attempts == 1
    assert await lease_of(db, f"kept-{row.id}") is not None  # kept in the deferral's commit
    await db.close()


class FailingRecord:
    """A notifier whose record fails ``fails`` times: the commit that would keep it fails."""

    def __init__(self, fails: int) -> None:
        self.fails = fails

    async def deliver(self, message: OutboxMessage, *, later: object = ()) -> object:
        def record(session: Session) -> None:
            if self.fails > 0:
                self.fails -= 1
                raise RuntimeError("the database refused the commit")
            session.add(
                OutboxLease(channel=f"kept-{message.id}", holder="n", until=message.created_at)
            )

        return record


async def test_a_delivery_whose_mark_cannot_be_committed_is_deferred_with_what_it_posted(
    db_url: str, clock: FakeClock
) -> None:
    db = Database(db_url)
    await db.start()
    await seed(db, clock.now(), 2, ["C1"])
    relay = OutboxRelay(db=db, notifier=FailingRecord(fails=1), clock=clock)
    first = (await relay.pending())[0]
    result = await relay.drain()
    assert (result.delivered, result.deferred) == (0, 2)  # the pass stops at the first
    stored = await db.run(lambda s: s.get(OutboxMessage, first.id))
    assert stored is not None
    assert stored.delivered_at is None
    assert stored.attempts == 1  # so the retry looks for what was posted ...
    assert await lease_of(db, f"kept-{first.id}") is not None  # ... and finds it
    assert await lease_of(db, "C1") is None  # the channel is free again
    await db.close()


async def test_the_lease_is_released_when_a_pass_ends_in_an_error(
    db_url: str, clock: FakeClock
) -> None:
    db = Database(db_url)
    await db.start()
    await seed(db, clock.now(), 1, ["C1"])
    relay = OutboxRelay(db=db, notifier=FailingRecord(fails=2), clock=clock)  # mark and defer
    with pytest.raises(RuntimeError):
        await relay.drain()
    assert await lease_of(db, "C1") is None  # no other relay waits out LEASE_S
    await db.close()
