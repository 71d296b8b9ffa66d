"""``insert_new``: the rows it writes read back exactly as SQLAlchemy's own insert writes them,
and it names only the keys that were new (on SQLite it bypasses SQLAlchemy's statement path)."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from orchestration.db import Database, append_row, insert_new
from orchestration.models import InboxItem, Vote

INBOX = InboxItem.__table__  # type: ignore[attr-defined]
VOTES = Vote.__table__  # type: ignore[attr-defined]
AT = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.start()
    yield database
    await database.close()


def inbox_row(key: str, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "kind": "open_incident",
        "payload": {"text": "svc is down", "n": 1, "list": [1, "a"], "none": None},
        "received_at": AT,
        "owner": "host:1",
        "lease_until": AT + timedelta(seconds=10),
        "attempts": 1,
        "done_at": None,
        "last_error": None,
        **extra,
    }


async def test_rows_read_back_as_sqlalchemys_insert_writes_them(db: Database) -> None:
    fresh = await db.run(lambda s: insert_new(s, INBOX, [inbox_row("fast")], key="key"))
    assert fresh == {"fast"}
    await db.run(lambda s: s.connection().execute(insert(INBOX), [inbox_row("core")]))

    def both(session: Session) -> tuple[InboxItem, InboxItem]:
        got = {r.key: r for r in session.exec(select(InboxItem))}
        return got["fast"], got["core"]

    fast, core = await db.run(both)
    for name in ("kind", "payload", "received_at", "owner", "lease_until", "attempts"):
        assert getattr(fast, name) == getattr(core, name), name
    assert fast.done_at is None
    assert fast.last_error is None
    assert fast.received_at == AT  # aware UTC, microseconds kept


async def test_only_new_keys_are_named_across_chunks(db: Database) -> None:
    before = [inbox_row("k3"), inbox_row("k250")]
    await db.run(lambda s: insert_new(s, INBOX, before, key="key"))
    rows = [inbox_row(f"k{i}") for i in range(450)]  # more than one SQLite statement's rows
    fresh = await db.run(lambda s: insert_new(s, INBOX, rows, key="key"))
    assert fresh == {f"k{i}" for i in range(450)} - {"k3", "k250"}
    count = await db.run(lambda s: len(s.exec(select(InboxItem.key)).all()))
    assert count == 450
    assert await db.run(lambda s: insert_new(s, INBOX, [], key="key")) == set()


async def test_a_driver_error_reaches_the_caller_as_sqlalchemys(db: Database) -> None:
    """Rows sent past SQLAlchemy fail as SQLAlchemy errors (what retries and handlers catch)."""

    def work(session: Session) -> None:
        for _ in range(2):
            append_row(
                session,
                VOTES,
                {
                    "id": 7,
                    "approval_id": "a",
                    "voter": "U1",
                    "choice": "approve",
                    "reason": "",
                    "created_at": AT,
                },
            )

    with pytest.raises(IntegrityError):  # an appended row's primary key given twice
        await db.run(work)
