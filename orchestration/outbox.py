"""The outbox relay: delivers queued chat messages in order, per channel, without loss.

Every state change queues its message in the same commit (``records.emit``). The relay hands
pending messages to a ``Notifier`` (the chat surface implements it) oldest first. A channel
whose message fails stops there until its retry time, so order within a channel holds; other
channels go on. Nothing is marked delivered before the notifier returns, so a crash or restart
re-delivers at most the message in flight (notifiers make delivery idempotent by message id).
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlmodel import Session, col, select

from common import Clock
from orchestration.db import Database
from orchestration.models import OutboxMessage
from orchestration.telemetry import get_logger

log = get_logger("opsgate.outbox")

MAX_BACKOFF_S = 300.0


class DeliveryRetry(Exception):
    """The notifier could not deliver now; try again after ``after_s`` seconds."""

    def __init__(self, message: str, *, after_s: float | None = None) -> None:
        super().__init__(message)
        self.after_s = after_s


class DeliveryDropped(Exception):
    """The message can never be delivered (e.g. the channel is gone): record it and move on."""


class Notifier(Protocol):
    """Delivers one outbox message to the chat surface (raise DeliveryRetry to retry)."""

    async def deliver(self, message: OutboxMessage) -> None: ...


@dataclass(frozen=True)
class DrainResult:
    """What one pass delivered and deferred."""

    delivered: int
    deferred: int


class OutboxRelay:
    """Drains the outbox through a notifier; run ``drain()`` on a loop or after each change."""

    def __init__(
        self,
        *,
        db: Database,
        notifier: Notifier,
        clock: Clock,
        batch: int = 200,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._clock = clock
        self._batch = batch
        self._lock = asyncio.Lock()
        self._pace = pace
        self.wakeup = asyncio.Event()

    async def pending(self) -> list[OutboxMessage]:
        """Undelivered messages whose retry time has come, oldest first."""
        now = self._clock.now()

        def work(session: Session) -> list[OutboxMessage]:
            return list(
                session.exec(
                    select(OutboxMessage)
                    .where(col(OutboxMessage.delivered_at).is_(None))
                    .order_by(col(OutboxMessage.id))
                    .limit(self._batch)
                )
            )

        rows = await self._db.run(work)
        blocked: set[str] = set()
        ready = []
        for row in rows:
            if row.channel in blocked:
                continue
            if row.next_attempt_at is not None and row.next_attempt_at > now:
                blocked.add(row.channel)  # keep the channel's order: nothing after it goes first
                continue
            ready.append(row)
        return ready

    async def drain(self) -> DrainResult:
        """Deliver what is ready; channels are served concurrently, each in order."""
        async with self._lock:
            ready = await self.pending()
            by_channel: dict[str, list[OutboxMessage]] = {}
            for row in ready:
                by_channel.setdefault(row.channel, []).append(row)
            results = await asyncio.gather(
                *(self._drain_channel(rows) for rows in by_channel.values())
            )
            delivered = sum(r[0] for r in results)
            deferred = sum(r[1] for r in results)
            return DrainResult(delivered=delivered, deferred=deferred)

    async def _drain_channel(self, rows: list[OutboxMessage]) -> tuple[int, int]:
        delivered = 0
        for index, row in enumerate(rows):
            try:
                await self._notifier.deliver(row)
            except DeliveryRetry as exc:
                await self._defer(row, str(exc), exc.after_s)
                return delivered, len(rows) - index
            except DeliveryDropped as exc:
                log.error("outbox_message_dropped", outbox_id=row.id, kind=row.kind, error=str(exc))
                await self._mark_delivered(row, error=f"dropped: {exc}")
                continue
            except Exception as exc:
                log.exception("outbox_delivery_failed", outbox_id=row.id, kind=row.kind)
                await self._defer(row, f"{type(exc).__name__}: {exc}", None)
                return delivered, len(rows) - index
            await self._mark_delivered(row)
            delivered += 1
        return delivered, 0

    async def _mark_delivered(self, row: OutboxMessage, *, error: str | None = None) -> None:
        now = self._clock.now()

        def work(session: Session) -> None:
            stored = session.get(OutboxMessage, row.id)
            if stored is not None:
                stored.delivered_at = now
                stored.attempts += 1
                stored.last_error = error
                session.add(stored)

        await self._db.run(work)

    async def _defer(self, row: OutboxMessage, error: str, after_s: float | None) -> None:
        attempts = row.attempts + 1
        delay = after_s if after_s is not None else min(2.0**attempts, MAX_BACKOFF_S)
        retry_at = self._clock.now() + timedelta(seconds=delay)
        log.warning(
            "outbox_delivery_deferred",
            outbox_id=row.id,
            kind=row.kind,
            attempts=attempts,
            retry_in_s=delay,
            error=error,
        )

        def work(session: Session) -> None:
            stored = session.get(OutboxMessage, row.id)
            if stored is not None:
                stored.attempts = attempts
                stored.next_attempt_at = retry_at
                stored.last_error = error[:500]
                session.add(stored)

        await self._db.run(work)

    async def run_forever(self, *, idle_s: float = 0.5) -> None:
        """Drain whenever woken (after a change) or every ``idle_s`` seconds."""
        while True:
            try:
                if self._pace is not None:
                    await self._pace()  # let the caller's interactive work go first
                await self.drain()
            except Exception:
                log.exception("outbox_drain_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=idle_s)
            self.wakeup.clear()
