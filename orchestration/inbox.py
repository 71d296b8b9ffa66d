"""The inbox: every request that got a 2xx, recorded before the 2xx, redone after a crash.

A request that does work (a slash command that opens, resolves or cancels; an event or an alert
that opens an incident) is one row of ``inbox``, keyed so that a replay maps to the same key
(the chat surface derives it: a hash of the request's signature, the event id, the alert's
fingerprint and start). Life of a row:

    recorded   owner = this process, lease_until = now + LEASE_S, attempts = 1 (the live try)
    done       done_at set by :func:`finish` in the same commit as the work's effect
    lapsed     not done and lease_until < now: a sweeper claims it (attempts + 1), redoes it
    abandoned  after MAX_ATTEMPTS tries: lease_until NULL (never claimed again), the row kept,
               the asker told in plain words through the outbox
    pruned     done rows older than RETENTION

Public functions:
    Inbox.record()   group commit: records arriving while a write is in flight share the next
                     transaction; True for a new request, False for a replay (audited)
    Inbox.sweep()    renew this process's leases, prune, claim lapsed rows for a redo
    Inbox.failed()   record a failed try: retried after a backoff, or abandoned
    finish()         in a unit of work: mark the request done (AlreadyDone when it was)
    refuse()         in a unit of work: mark it done and tell the asker why nothing happened
"""

import asyncio
import os
import socket
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from sqlalchemy import Table, delete, update
from sqlmodel import Session, col, select

from common import Clock, Role
from orchestration.db import Database, insert_new
from orchestration.models import InboxItem
from orchestration.records import Ctx, audit, emit
from orchestration.telemetry import get_logger, redact_text, sanitise

log = get_logger("opsgate.inbox")
_INBOX: Table = InboxItem.__table__  # type: ignore[attr-defined]

LEASE_S = 10.0  # renewed every sweep while this process works on the row
SWEEP_S = 2.0
MAX_ATTEMPTS = 5
RETRY_BASE_S = 2.0
RETRY_MAX_S = 60.0
RETENTION = timedelta(days=7)
PRUNE_EVERY = timedelta(hours=1)
MAX_BATCH = 200
CLAIM_LIMIT = 50
MAX_REQUEST_TEXT = 4000  # Slack's own limit on a slash command's text


class RequestKind(StrEnum):
    """What a recorded request asks for."""

    OPEN = "open_incident"
    RESOLVE = "resolve_incident"
    CANCEL = "cancel_incident"
    ALERTS = "alert_notification"  # one Alertmanager group's alerts: opens, updates, closes


class NoticeKind(StrEnum):
    """Why the asker hears back about a request (payload ``notice`` of a ``request_notice``)."""

    REFUSED = "refused"  # the control plane refused it (no runbook, rejected input)
    NO_OPEN_INCIDENT = "no_open_incident"  # resolve or cancel with nothing open
    ABANDONED = "abandoned"  # it failed MAX_ATTEMPTS times; nothing more will be tried
    # Resolve / cancel (see orchestration.closing): what became of it when it did not close.
    NO_SUCH_INCIDENT = "no_such_incident"  # the id or thread names no incident
    WHICH_INCIDENT = "which_incident"  # several open (or several ids match): which one?
    ALREADY_CLOSED = "already_closed"  # a no-op: the incident was closed before
    CLOSE_REFUSED = "close_refused"  # the policy pack does not let the asker close it


class Outcome(StrEnum):
    """What one try of a request came to."""

    DONE = "done"
    ALREADY_DONE = "already_done"  # another try (a replica, an earlier run) did it
    FAILED = "failed"  # left for the next try
    ABANDONED = "abandoned"


NOTICE_KIND = "request_notice"  # outbox message kind
# What an ack told the asker of an open request (``Request.announced``).
ANNOUNCED_OPENING = "opening"
ANNOUNCED_REFUSED = "refused"


class Request(BaseModel):
    """What is needed to redo a request: sanitised, no tokens, no response URLs."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    kind: RequestKind
    requester: str  # a Slack user id, or the alert source
    channel: str
    text: str = ""  # the incident text, or the reason of a resolve / cancel
    source: str = "slack"
    correlation_id: str
    private: bool = True  # replies go to the requester alone; False: to the channel
    # Resolve / cancel: which incident (an id or its prefix, else the incident of the thread,
    # else the channel's only open one), and what the ack already told the asker (a
    # ``closing.CloseOutcome`` value), so that the asker hears again only what differs.
    incident_ref: str | None = None
    thread_ts: str | None = None
    announced: str = ""
    # An incident mirrored from another system (``pagerduty:<id>``): an open request records
    # it on the incident; a resolve names the incident by it, and is quiet when none matches.
    external_ref: str | None = None
    # Alerts: the hash of the webhook's groupKey, and each alert of the notification as
    # {"fingerprint", "status", "name", "starts_at", "text"}.
    group_key: str | None = None
    alerts: tuple[dict[str, str], ...] = ()

    @field_validator("text")
    @classmethod
    def _clean(cls, value: str) -> str:
        return redact_text(value)[:MAX_REQUEST_TEXT]


class AlreadyDone(Exception):
    """The request was done by another try (or is unknown); its effect must not happen again."""


@dataclass
class _Pending:
    key: str
    request: Request
    detail: dict[str, Any]
    future: "asyncio.Future[bool]"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _ctx(request: Request, now: datetime) -> Ctx:
    return Ctx(
        correlation_id=request.correlation_id,
        now=now,
        actor=request.requester,
        role=Role.HUMAN if request.private else Role.SYSTEM,
        channel=request.channel,
    )


def write_batch(
    session: Session, batch: list[_Pending], *, owner: str, now: datetime, lease_s: float
) -> set[str]:
    """Insert the batch's new requests; audit the replays (same commit); return the new keys."""
    first: dict[str, _Pending] = {}
    for item in batch:
        first.setdefault(item.key, item)
    rows = [
        {
            "key": item.key,
            "kind": item.request.kind.value,
            "payload": item.request.model_dump(mode="json"),
            "received_at": now,
            "owner": owner,
            "lease_until": now + timedelta(seconds=lease_s),
            "attempts": 1,
            "done_at": None,
            "last_error": None,
        }
        for item in first.values()
    ]
    fresh = insert_new(session, _INBOX, rows, key="key")
    for item in batch:
        if item.key in fresh and first[item.key] is item:
            continue
        audit(
            session,
            _ctx(item.request, now),
            "request_replayed",
            detail={
                "key": item.key,
                "kind": item.request.kind.value,
                "channel": item.request.channel,
                **item.detail,
            },
        )
    return fresh


def finish(session: Session, key: str, *, now: datetime) -> Request:
    """Mark ``key`` done in the caller's unit of work; AlreadyDone when it is done or unknown.

    The row is locked until the caller commits, so two tries of one request serialise here and
    the second finds it done.
    """
    row = session.exec(select(InboxItem).where(InboxItem.key == key).with_for_update()).first()
    if row is None or row.done_at is not None:
        raise AlreadyDone(key)
    row.done_at = now
    session.add(row)
    return Request.model_validate(row.payload)


def notify(
    session: Session,
    request: Request,
    *,
    now: datetime,
    notice: NoticeKind,
    incident_id: str | None = None,
    **detail: Any,
) -> None:
    """Queue a plain-words reply about ``request`` for its asker (private) or its channel
    (in ``incident_id``'s thread when given)."""
    ctx = _ctx(request, now)
    emit(
        session,
        replace(ctx, incident_id=incident_id) if incident_id else ctx,
        NOTICE_KIND,
        {
            "notice": notice.value,
            "user": request.requester if request.private else None,
            "request": request.kind.value,
            "text": request.text,
            **detail,
        },
    )


def refuse(
    session: Session,
    key: str,
    *,
    now: datetime,
    notice: NoticeKind,
    code: str,
    message: str = "",
) -> None:
    """Mark ``key`` done and tell a private asker why nothing happened (same commit), unless
    the ack told them already."""
    request = finish(session, key, now=now)
    if request.private and request.announced != ANNOUNCED_REFUSED:
        notify(session, request, now=now, notice=notice, code=code, message=message)


def claim_due(
    session: Session, *, owner: str, now: datetime, lease_s: float, limit: int = CLAIM_LIMIT
) -> list[InboxItem]:
    """Take over rows not done whose lease lapsed (skipping rows another sweeper holds)."""
    rows = session.exec(
        select(InboxItem)
        .where(col(InboxItem.done_at).is_(None), col(InboxItem.lease_until) < now)
        .order_by(col(InboxItem.received_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.owner = owner
        row.lease_until = now + timedelta(seconds=lease_s)
        row.attempts += 1
        session.add(row)
    return list(rows)


def abandon(session: Session, row: InboxItem, *, now: datetime, reason: str) -> None:
    """Stop trying ``row``: kept (lease cleared), audited, logged, the asker told."""
    row.lease_until = None
    row.last_error = reason[:500]
    session.add(row)
    try:
        request = Request.model_validate(row.payload)
    except ValidationError:
        log.error("request_unreadable", key=row.key, attempts=row.attempts, error=reason)
        return
    audit(
        session,
        _ctx(request, now),
        "request_abandoned",
        detail={"key": row.key, "kind": row.kind, "attempts": row.attempts, "error": reason},
    )
    notify(session, request, now=now, notice=NoticeKind.ABANDONED, attempts=row.attempts)
    log.error("request_abandoned", key=row.key, kind=row.kind, attempts=row.attempts)


def fail(session: Session, key: str, *, owner: str, now: datetime, error: str) -> Outcome:
    """Record a failed try of ``key``: retry after a backoff, or abandon it after the last."""
    row = session.exec(select(InboxItem).where(InboxItem.key == key).with_for_update()).first()
    if row is None or row.done_at is not None:
        return Outcome.ALREADY_DONE
    if row.attempts >= MAX_ATTEMPTS:
        abandon(session, row, now=now, reason=error)
        return Outcome.ABANDONED
    row.last_error = error[:500]
    if row.owner == owner:  # a sweeper elsewhere may hold it by now: leave its lease alone
        backoff = min(RETRY_BASE_S * 2 ** (row.attempts - 1), RETRY_MAX_S)
        row.lease_until = now + timedelta(seconds=backoff)
    session.add(row)
    return Outcome.FAILED


class Inbox:
    """This process's side of the inbox: the group-commit writer, its leases, the sweeper."""

    def __init__(
        self, *, db: Database, clock: Clock, owner: str | None = None, lease_s: float = LEASE_S
    ) -> None:
        self.db = db
        self.clock = clock
        self.owner = owner or _owner()
        self.lease_s = lease_s
        self.working: set[str] = set()  # keys a task of this process is working on
        self._pruned_at: datetime | None = None
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    def submit(self, key: str, request: Request, **detail: Any) -> "asyncio.Future[bool]":
        """Queue ``request`` for the writer; the future says new (True) or a replay of
        ``key`` (False) once it is durable.

        The writer is a task: it starts once the event loop has dispatched what is in hand (a
        burst's requests), and records queued while it writes share its next transaction, so
        a burst costs one or two commits. The caller answers its 2xx only after the future.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(key, request, sanitise(detail), future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="inbox-writer")
        return future

    async def record(self, key: str, request: Request, **detail: Any) -> bool:
        """Record ``request`` durably; True when new, False for a replay of ``key``."""
        return await self.submit(key, request, **detail)

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            now = self.clock.now()

            def work(
                session: Session, batch: list[_Pending] = batch, now: datetime = now
            ) -> set[str]:
                return write_batch(session, batch, owner=self.owner, now=now, lease_s=self.lease_s)

            try:
                fresh = await self.db.run(work)
            except Exception as exc:  # every caller of the batch answers "not recorded"
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            seen: set[str] = set()
            for item in batch:
                first = item.key not in seen
                seen.add(item.key)
                new = first and item.key in fresh  # a duplicate inside a batch is a replay too
                if not item.future.done():  # else its caller gave up waiting
                    item.future.set_result(new)
                if not new:
                    log.info("request_replayed", key=item.key, kind=item.request.kind.value)

    async def sweep(self) -> list[tuple[str, Request]]:
        """Renew the leases this process holds, prune old done rows, claim lapsed ones.

        Returns the claimed requests to redo; rows past MAX_ATTEMPTS are abandoned instead
        (a request that kills its process each time ends here too).
        """
        now = self.clock.now()
        working = sorted(self.working)
        prune = self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY

        def work(session: Session) -> list[tuple[str, Request]]:
            if working:
                session.connection().execute(
                    update(_INBOX)
                    .where(
                        _INBOX.c.key.in_(working),
                        _INBOX.c.owner == self.owner,
                        _INBOX.c.done_at.is_(None),
                    )
                    .values(lease_until=now + timedelta(seconds=self.lease_s))
                )
            if prune:
                session.connection().execute(
                    delete(_INBOX).where(_INBOX.c.done_at < now - RETENTION)
                )
            redo = []
            for row in claim_due(session, owner=self.owner, now=now, lease_s=self.lease_s):
                if row.attempts > MAX_ATTEMPTS:
                    abandon(session, row, now=now, reason=row.last_error or "no try finished")
                    continue
                if row.key in self.working:
                    continue  # still being worked on here; the claim renewed its lease
                try:
                    redo.append((row.key, Request.model_validate(row.payload)))
                except ValidationError as exc:
                    abandon(session, row, now=now, reason=f"unreadable payload: {exc}")
            return redo

        redo = await self.db.run(work)
        if prune:
            self._pruned_at = now
        for key, request in redo:
            log.info("request_resumed", key=key, kind=request.kind.value)
        return redo

    async def failed(self, key: str, error: BaseException) -> Outcome:
        """Record that a try of ``key`` failed; the row stays for the next try."""
        text = sanitise(f"{type(error).__name__}: {error}")
        log.warning("request_failed", key=key, error=text)
        try:
            return await self.db.run(
                lambda s: fail(s, key, owner=self.owner, now=self.clock.now(), error=text)
            )
        except Exception as exc:  # the database is down: the lease lapses, a sweeper retries
            log.error("request_failure_not_recorded", key=key, error=repr(exc))
            return Outcome.FAILED
