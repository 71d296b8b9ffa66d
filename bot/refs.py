"""Where opsgate's messages live in Slack: channel and ts per incident root, card and delivery.

A bot-owned table in the control plane's database, so a restart still knows which message
to thread under or update, and a re-delivered outbox message is not posted twice.
"""

from collections.abc import Callable
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, Session, SQLModel

from orchestration.db import Database, upsert


class SlackRef(SQLModel, table=True):
    """A posted Slack message: ``incident:<id>``, ``approval:<id>`` or ``outbox:<id>``."""

    __tablename__ = "slack_refs"
    key: str = Field(primary_key=True)
    channel: str
    ts: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


_REFS = SlackRef.__table__  # type: ignore[attr-defined]


class Refs:
    """Read and write message references."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> SlackRef | None:
        """The reference stored under ``key``."""
        return await self._db.run(lambda s: s.get(SlackRef, key))

    @staticmethod
    def store(session: Session, ref: SlackRef) -> None:
        """Store (or replace) ``ref`` in the caller's transaction (one upsert, no read)."""
        values = {"key": ref.key, "channel": ref.channel, "ts": ref.ts, "payload": ref.payload}
        upsert(session, _REFS, values, keys=["key"])

    async def run(self, record: Callable[[Session], None]) -> None:
        """Run ``record`` (e.g. a delivery's ``store`` calls) in a unit of its own."""
        await self._db.run(record)

    async def put(
        self, key: str, *, channel: str, ts: str, payload: dict[str, Any] | None = None
    ) -> None:
        """Store (or replace) a reference, in a unit of its own."""
        ref = SlackRef(key=key, channel=channel, ts=ts, payload=payload or {})
        await self._db.run(lambda s: Refs.store(s, ref))
