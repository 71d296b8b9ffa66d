"""The outbox relay: in order per channel, retried without loss, once across replicas."""

import asyncio
from datetime import datetime

from sqlmodel import Session

from common import FakeClock
from orchestration.db import Database
from orchestration.models import OutboxMessage
from orchestration.outbox import DeliveryDropped, DeliveryRetry, OutboxRelay


class Recorder:
    """A notifier that records deliveries, can fail on demand and is slow enough to overlap."""

    def __init__(self, log: list[tuple[str, int]], name: str) -> None:
        self.log = log
        self.name = name
        self.fail: dict[int, BaseException] = {}

    async def deliver(self, message: OutboxMessage) -> None:
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
