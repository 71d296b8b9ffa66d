"""The outbox relay: delivers queued chat messages in order, per channel, without loss.

Every state change queues its message in the same commit (``records.emit``). The relay hands
pending messages to a ``Notifier`` (the chat surface implements it) oldest first. A channel
whose message fails stops there until its retry time, so order within a channel holds; other
channels go on. Nothing is marked delivered before the notifier returns, so a crash or restart
re-delivers at most the message in flight (notifiers make delivery idempotent by message id).

Several relays (replicas) share one database: a channel is delivered by the relay holding its
lease. The lease is short (``LEASE_S``) and renewed while its relay delivers: with each
message marked delivered (same commit) and by a keeper task during a long wait (a slow or
paced Slack call). So a relay that dies frees its channels within seconds, and a live one is
never overtaken; a relay that finds its lease taken stops that channel after the message in
flight.

Commits per pass over a channel: one to take the lease and read the channel's queue, then one
per message, which marks it delivered, stores what the notifier asks to keep with it (the
``Record`` it returns, e.g. where the message was posted) and renews the lease, or, for the
last message, releases it. A notifier is told which messages of the channel follow in the
same pass (``later``), so it can leave to a later message work that one redoes anyway; its
``pass_over(channel)``, if it has one, is called when the pass ends, so what a later message
did not get to do (it was deferred or dropped) is done then. When the delivered mark cannot be
committed, the notifier's record is kept with a deferral instead, so the retry knows what was
posted. The lease is released when the pass ends whatever ends it (an error, a cancellation).
"""

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete as core_delete
from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, delete, select

from common import Clock
from orchestration.db import Database
from orchestration.models import OutboxLease, OutboxMessage
from orchestration.telemetry import get_logger, redact_text

log = get_logger("opsgate.outbox")

MAX_BACKOFF_S = 300.0
LEASE_S = 10.0  # a relay that died frees its channels after this long
_LEASES = OutboxLease.__table__  # type: ignore[attr-defined]
_MESSAGES = OutboxMessage.__table__  # type: ignore[attr-defined]

# What a notifier keeps of a delivery, written in the commit that records the delivery (or its
# deferral): e.g. the ts of the posted message, so a retry never posts it again.
Record = Callable[[Session], None]


class DeliveryRetry(Exception):
    """The notifier could not deliver now; try again after ``after_s`` seconds.

    ``record``: what already happened (a message posted before a follow-up failed), kept in
    the commit that defers the message.
    """

    def __init__(
        self, message: str, *, after_s: float | None = None, record: Record | None = None
    ) -> None:
        super().__init__(message)
        self.after_s = after_s
        self.record = record


class DeliveryDropped(Exception):
    """The message can never be delivered (e.g. the channel is gone): record it and move on."""

    def __init__(self, message: str, *, record: Record | None = None) -> None:
        super().__init__(message)
        self.record = record


class Notifier(Protocol):
    """Delivers one outbox message to the chat surface (raise DeliveryRetry to retry).

    ``later``: the channel's messages queued after this one in the same pass, oldest first.
    Returns what to keep with the delivery (written in the commit that marks it delivered), or
    None.
    """

    async def deliver(
        self, message: OutboxMessage, *, later: Sequence[OutboxMessage] = ()
    ) -> Record | None: ...


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
        lease_s: float = LEASE_S,
        renew_every_s: float | None = None,
    ) -> None:
        """A relay of its own id; ``drain()`` or ``run_forever()`` puts it to work.

        Args:
            lease_s: how long a channel's lease lasts unless renewed.
            renew_every_s: how often a long delivery renews it (default: a third of the lease).
        """
        self._db = db
        self._notifier = notifier
        self._clock = clock
        self._batch = batch
        self._lock = asyncio.Lock()
        self._pace = pace
        self._lease_for = timedelta(seconds=lease_s)
        self._renew_every_s = renew_every_s if renew_every_s is not None else lease_s / 3
        self.relay_id = uuid.uuid4().hex
        self.wakeup = asyncio.Event()

    def _queue(self, session: Session, channel: str | None = None) -> list[OutboxMessage]:
        """Undelivered messages, oldest first, at most a batch (of one channel)."""
        query = select(OutboxMessage).where(col(OutboxMessage.delivered_at).is_(None))
        if channel is not None:
            query = query.where(OutboxMessage.channel == channel)
        return list(session.exec(query.order_by(col(OutboxMessage.id)).limit(self._batch)))

    async def pending(self) -> list[OutboxMessage]:
        """Undelivered messages whose retry time has come, oldest first."""
        now = self._clock.now()
        rows = await self._db.run(self._queue)
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
        """Deliver what is ready; channels are served concurrently, each in order.

        Several relays (replicas) may drain one database: a channel is delivered by whichever
        relay holds its lease, so no message goes out twice and the order holds.
        """
        async with self._lock:
            channels = sorted({row.channel for row in await self.pending()})
            results = await asyncio.gather(*(self._drain_leased(c) for c in channels))
            delivered = sum(r[0] for r in results)
            deferred = sum(r[1] for r in results)
            return DrainResult(delivered=delivered, deferred=deferred)

    async def _drain_leased(self, channel: str) -> tuple[int, int]:
        rows = await self._db.run(lambda s: self._lease_and_read(s, channel))
        if rows is None:
            return 0, 0  # another relay is delivering this channel
        rows = self._ready(rows)
        done, lost = asyncio.Event(), asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(channel, done=done, lost=lost))

        async def stop_keeper() -> None:
            # Wait for the keeper rather than cancel it: a renewal in flight must not commit
            # after the lease is released.
            done.set()
            await keeper

        released = False
        try:
            delivered, deferred, released = await self._drain_channel(rows, lost, stop_keeper)
            if not lost.is_set():
                await self._pass_over(channel)
            return delivered, deferred
        finally:
            await stop_keeper()
            if not released and not lost.is_set():
                # Also after an error or a cancellation: the next relay need not wait LEASE_S.
                try:
                    await self._db.run(lambda s: self._unlease(s, channel))
                except Exception:
                    log.exception("outbox_unlease_failed", channel=channel)

    async def _pass_over(self, channel: str) -> None:
        """Tell the notifier the pass over ``channel`` ended (what it left to a later message
        that did not go out, it does now); its failure is logged, not the pass's."""
        finish = getattr(self._notifier, "pass_over", None)
        if finish is None:
            return
        try:
            await finish(channel)
        except Exception:
            log.exception("outbox_pass_over_failed", channel=channel)

    def _lease(self, session: Session, channel: str) -> bool:
        """Take (or extend) ``channel``'s lease unless another live relay holds it: one upsert
        whose RETURNING row exists only when it inserted or updated, i.e. the lease is ours."""
        now = self._clock.now()
        until = now + self._lease_for
        build = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        statement = (
            build(_LEASES)
            .values(channel=channel, holder=self.relay_id, until=until)
            .on_conflict_do_update(
                index_elements=["channel"],
                set_={"holder": self.relay_id, "until": until},
                where=(_LEASES.c.until < now) | (_LEASES.c.holder == self.relay_id),
            )
            .returning(_LEASES.c.holder)
        )
        return session.connection().execute(statement).first() is not None

    def _lease_and_read(self, session: Session, channel: str) -> list[OutboxMessage] | None:
        """Take ``channel``'s lease and read its queue in one commit; None: another relay has
        it. (The queue is read under the lease: what another relay delivered is gone from it.)"""
        if not self._lease(session, channel):
            return None
        return self._queue(session, channel)

    def _ready(self, rows: list[OutboxMessage]) -> list[OutboxMessage]:
        """The leading rows of one channel whose retry time has come (order is kept)."""
        now = self._clock.now()
        for index, row in enumerate(rows):
            if row.next_attempt_at is not None and row.next_attempt_at > now:
                return rows[:index]
        return rows

    def _renew(self, session: Session, channel: str) -> bool:
        """Extend this relay's lease; False when another relay holds the channel now."""
        renewed = session.connection().execute(
            update(_LEASES)
            .where(_LEASES.c.channel == channel, _LEASES.c.holder == self.relay_id)
            .values(until=self._clock.now() + self._lease_for)
        )
        return renewed.rowcount == 1

    async def _keep_lease(self, channel: str, *, done: asyncio.Event, lost: asyncio.Event) -> None:
        """Renew the lease every ``renew_every_s`` until ``done`` (covers one long delivery)."""
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=self._renew_every_s)
                return
            try:
                held = await self._db.run(lambda s: self._renew(s, channel))
            except Exception:
                log.exception("outbox_lease_renewal_failed", channel=channel)
                continue  # the next renewal (or the next message) tries again
            if not held:
                self._lost(channel, lost)
                return

    def _lost(self, channel: str, lost: asyncio.Event) -> None:
        if not lost.is_set():
            log.warning("outbox_lease_lost", channel=channel, relay=self.relay_id)
        lost.set()

    def _unlease(self, session: Session, channel: str) -> None:
        session.exec(
            delete(OutboxLease).where(
                col(OutboxLease.channel) == channel, col(OutboxLease.holder) == self.relay_id
            )
        )

    async def _drain_channel(
        self,
        rows: list[OutboxMessage],
        lost: asyncio.Event,
        stop_keeper: Callable[[], Awaitable[None]],
    ) -> tuple[int, int, bool]:
        """Deliver ``rows`` in order: (delivered, deferred, lease released)."""
        delivered = 0
        for index, row in enumerate(rows):
            if lost.is_set():
                return delivered, len(rows) - index, False  # another relay has the channel now
            later = rows[index + 1 :]
            error: str | None = None
            try:
                record = await self._notifier.deliver(row, later=later)
            except DeliveryRetry as exc:
                await self._defer(row, str(exc), exc.after_s, record=exc.record)
                return delivered, len(rows) - index, False
            except DeliveryDropped as exc:
                log.error("outbox_message_dropped", outbox_id=row.id, kind=row.kind, error=str(exc))
                record, error = exc.record, redact_text(f"dropped: {exc}")
            except Exception as exc:
                log.exception("outbox_delivery_failed", outbox_id=row.id, kind=row.kind)
                await self._defer(row, f"{type(exc).__name__}: {exc}", None)
                return delivered, len(rows) - index, False
            last = not later
            if last:
                await stop_keeper()  # the last commit releases the lease
            try:
                await self._mark_delivered(row, lost, error=error, record=record, release=last)
            except Exception as exc:
                # Delivered, but not recorded: keep what the notifier keeps (so a retry knows
                # it was posted) with a deferral, and stop the pass.
                log.exception("outbox_mark_failed", outbox_id=row.id, kind=row.kind)
                await self._defer(row, f"delivered, not recorded: {exc}", 0.0, record=record)
                return delivered, len(rows) - index, False
            if error is None:
                delivered += 1
            if last:
                return delivered, 0, not lost.is_set()
        return delivered, 0, False

    async def _mark_delivered(
        self,
        row: OutboxMessage,
        lost: asyncio.Event,
        *,
        error: str | None = None,
        record: Record | None = None,
        release: bool = False,
    ) -> None:
        """Record the delivery (and what the notifier keeps of it), and renew the channel's
        lease, or release it (``release``), in the same commit."""
        now = self._clock.now()

        def work(session: Session) -> bool:
            session.connection().execute(
                update(_MESSAGES)
                .where(_MESSAGES.c.id == row.id)
                .values(delivered_at=now, attempts=_MESSAGES.c.attempts + 1, last_error=error)
            )
            if record is not None:
                record(session)
            if release:
                released = session.connection().execute(
                    core_delete(_LEASES).where(
                        _LEASES.c.channel == row.channel, _LEASES.c.holder == self.relay_id
                    )
                )
                return released.rowcount == 1
            return self._renew(session, row.channel)

        if not await self._db.run(work):
            self._lost(row.channel, lost)

    async def _defer(
        self, row: OutboxMessage, error: str, after_s: float | None, *, record: Record | None = None
    ) -> None:
        attempts = row.attempts + 1
        error = redact_text(error)
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
            session.connection().execute(
                update(_MESSAGES)
                .where(_MESSAGES.c.id == row.id)
                .values(attempts=attempts, next_attempt_at=retry_at, last_error=error[:500])
            )
            if record is not None:
                record(session)

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
