"""The digest's claim: one winner per channel and day, take-over of failed or abandoned claims."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlmodel import Session

from common import FakeClock
from orchestration.config import OpsgateConfig
from orchestration.db import Database
from orchestration.digest import (
    claim,
    day_window,
    digest_run,
    due_day,
    mark_failed,
    mark_posted,
    previous_day,
)
from tests.orchestration.history import TZ

DAY = date(2026, 1, 5)
CHANNEL = "C0OPS"
STALE = timedelta(minutes=10)


@pytest.fixture
async def dbs(db_url: str) -> AsyncIterator[tuple[Database, Database]]:
    """Two replicas' databases: two engines on one database."""
    first, second = Database(db_url), Database(db_url)
    await first.start()
    await second.start()
    yield first, second
    await first.close()
    await second.close()


async def try_claim(db: Database, replica: str, now: datetime, day: date = DAY) -> bool:
    return await db.run(
        lambda s: claim(s, channel=CHANNEL, day=day, replica_id=replica, now=now, stale_after=STALE)
    )


def test_day_window_follows_the_local_calendar_including_dst() -> None:
    assert day_window(DAY, TZ) == (
        datetime(2026, 1, 4, 23, tzinfo=UTC),
        datetime(2026, 1, 5, 23, tzinfo=UTC),
    )
    start, end = day_window(date(2026, 3, 29), TZ)  # clocks go forward: a 23-hour day
    assert end - start == timedelta(hours=23)


def test_due_day_is_yesterday_once_the_local_time_is_reached() -> None:
    nine = time(9, 0)
    assert due_day(datetime(2026, 1, 6, 7, 59, tzinfo=UTC), at=nine, tz=TZ) is None  # 08:59 Paris
    assert due_day(datetime(2026, 1, 6, 8, 0, tzinfo=UTC), at=nine, tz=TZ) == DAY
    assert previous_day(datetime(2026, 1, 5, 23, 30, tzinfo=UTC), TZ) == DAY  # 00:30 on the 6th


async def test_one_of_two_replicas_racing_the_same_day_wins(
    dbs: tuple[Database, Database], clock: FakeClock
) -> None:
    a, b = dbs
    for offset in range(5):
        day = DAY + timedelta(days=offset)
        won = await asyncio.gather(
            try_claim(a, "A", clock.now(), day), try_claim(b, "B", clock.now(), day)
        )
        assert sorted(won) == [False, True]
    # Other channels and days are independent claims.
    assert await try_claim(a, "A", clock.now(), DAY - timedelta(days=1))


async def test_a_losing_claim_leaves_the_transaction_usable(dbs: tuple[Database, Database]) -> None:
    a, _ = dbs
    now = datetime(2026, 1, 6, 8, tzinfo=UTC)

    def work(session: Session) -> tuple[bool, bool, str]:
        first = claim(session, channel=CHANNEL, day=DAY, replica_id="A", now=now, stale_after=STALE)
        second = claim(
            session, channel=CHANNEL, day=DAY, replica_id="B", now=now, stale_after=STALE
        )
        row = digest_run(session, channel=CHANNEL, day=DAY)
        assert row is not None
        return first, second, row.claimed_by

    assert await a.run(work) == (True, False, "A")


async def test_an_abandoned_claim_is_taken_over_after_the_timeout(
    dbs: tuple[Database, Database], clock: FakeClock
) -> None:
    a, b = dbs
    assert await try_claim(a, "A", clock.now())  # then A crashes before posting
    clock.advance(9 * 60)
    assert not await try_claim(b, "B", clock.now())  # A may still be posting
    clock.advance(61)
    assert await try_claim(b, "B", clock.now())
    # A wakes up late: the claim is B's now, A cannot mark it.
    assert not await a.run(
        lambda s: mark_posted(s, channel=CHANNEL, day=DAY, replica_id="A", now=clock.now())
    )
    assert await b.run(
        lambda s: mark_posted(s, channel=CHANNEL, day=DAY, replica_id="B", now=clock.now())
    )
    row = await b.run(lambda s: digest_run(s, channel=CHANNEL, day=DAY))
    assert row is not None
    assert (row.claimed_by, row.posted_at, row.error) == ("B", clock.now(), None)


async def test_a_failed_post_is_retried_at_once_and_a_posted_one_never(
    dbs: tuple[Database, Database], clock: FakeClock
) -> None:
    a, b = dbs
    assert await try_claim(a, "A", clock.now())
    assert await a.run(
        lambda s: mark_failed(s, channel=CHANNEL, day=DAY, replica_id="A", error="ratelimited")
    )
    assert await try_claim(b, "B", clock.now())  # the error frees it for the next run
    assert not await try_claim(a, "A", clock.now())  # one take-over at a time
    await b.run(lambda s: mark_posted(s, channel=CHANNEL, day=DAY, replica_id="B", now=clock.now()))
    clock.advance(86_400)
    assert not await try_claim(a, "A", clock.now())
    assert not await try_claim(b, "B", clock.now())
    # A failure to mark after posting does not reopen it either.
    assert not await a.run(
        lambda s: mark_failed(s, channel=CHANNEL, day=DAY, replica_id="B", error="late")
    )


def test_digest_config_checks_time_and_zone_and_falls_back_to_the_ops_channel() -> None:
    config = OpsgateConfig.model_validate(
        {"slack": {"ops_channel": "C0OPS"}, "digest": {"time": "9:05", "timezone": "Europe/Paris"}}
    )
    assert config.digest_channel() == "C0OPS"
    assert (config.digest.time, config.digest.at, str(config.digest.tz)) == (
        "09:05",
        time(9, 5),
        "Europe/Paris",
    )
    assert OpsgateConfig().digest_channel() is None  # no channel, no digest
    off = {"slack": {"ops_channel": "C0OPS"}, "digest": {"enabled": False}}
    assert OpsgateConfig.model_validate(off).digest_channel() is None
    for bad in (
        {"time": "25:00"},
        {"time": "09:00:30"},
        {"time": 545},
        {"timezone": "Mars/Olympus"},
    ):
        with pytest.raises(ValidationError):
            OpsgateConfig.model_validate({"digest": bad})


def test_the_digest_reads_its_own_day_once_not_again_for_the_trend(db_url: str) -> None:
    """Each scan of a window's cost rows is seconds at a million rows: the report's day is
    also the trend's last day, and its sums are reused, not read twice."""
    from sqlalchemy import event  # noqa: PLC0415 - this test only

    from orchestration.digest import build_digest  # noqa: PLC0415

    db = Database(db_url)
    db.create_schema()
    scans: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if "FROM cost_entries" in statement and "GROUP BY" in statement:
            scans.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    with Session(db.engine) as session:
        digest = build_digest(session, day=DAY, tz=TZ)
    db.engine.dispose()
    assert len(digest.report.trend) == 7
    # the day's spend by dimension, 6 earlier trend days, the costliest plans: 8, not 9
    assert len(scans) == 8, scans


def test_the_digest_reads_cost_entries_from_covering_indexes_on_sqlite(tmp_path: Path) -> None:
    """Every read of ``cost_entries`` the digest makes is answered by an index alone on SQLite
    (no table lookup per row): a column added to one of these queries must join the index."""
    from sqlalchemy import event  # noqa: PLC0415 - this test only

    from orchestration.digest import build_digest  # noqa: PLC0415

    db = Database(f"sqlite:///{tmp_path / 'opsgate.db'}")
    db.create_schema()
    reads: list[tuple[str, Any]] = []

    def seen(_conn: object, _cursor: object, statement: str, params: Any, *_rest: object) -> None:
        if "FROM cost_entries" in statement:
            reads.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", seen)
    with Session(db.engine) as session:
        build_digest(session, day=DAY, tz=TZ)
    event.remove(db.engine, "before_cursor_execute", seen)
    assert reads
    with db.engine.connect() as connection:
        for statement, params in reads:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
            scans = [row[-1] for row in plan if "cost_entries" in row[-1]]
            assert scans, plan
            assert all("USING COVERING INDEX" in scan for scan in scans), (statement, scans)
    db.engine.dispose()
