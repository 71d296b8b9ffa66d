"""The inbox: recorded before the 2xx, done with the effect, resumed after a crash, never twice."""

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from adapters.testing import FakeTool
from common import FakeClock
from orchestration.control import ControlPlane
from orchestration.enums import IncidentStatus
from orchestration.inbox import (
    LEASE_S,
    MAX_ATTEMPTS,
    RETENTION,
    AlreadyDone,
    NoticeKind,
    Outcome,
    Request,
    RequestKind,
)
from orchestration.models import AuditEvent, InboxItem, Incident, OutboxMessage
from tests.orchestration.fakeplans import control_with
from tests.orchestration.helpers import REQUESTER

CHANNEL = "C0INBOX"


def opening(text: str = "fakefix the thing", **fields: Any) -> Request:
    values: dict[str, Any] = {"requester": REQUESTER, "channel": CHANNEL, "correlation_id": "c1"}
    return Request(kind=RequestKind.OPEN, text=text, **(values | fields))


def closing(kind: RequestKind = RequestKind.RESOLVE, reason: str = "fixed") -> Request:
    return Request(
        kind=kind, requester=REQUESTER, channel=CHANNEL, text=reason, correlation_id="corr-2"
    )


async def plane(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> ControlPlane:
    """A control plane (one process) over a one-step plan on the shared database."""
    cp = await control_with(db_url, tmp_path, clock, fake, {"tool": "fake.read"})
    planes.append(cp)
    return cp


async def row(cp: ControlPlane, key: str) -> InboxItem:
    found = await cp.db.run(lambda s: s.get(InboxItem, key))
    assert found is not None
    return found


async def incidents(cp: ControlPlane) -> list[Incident]:
    return await cp.db.run(lambda s: list(s.exec(select(Incident))))


async def events(cp: ControlPlane, name: str) -> list[AuditEvent]:
    return await cp.db.run(
        lambda s: list(s.exec(select(AuditEvent).where(AuditEvent.event == name)))
    )


async def notices(cp: ControlPlane) -> list[dict[str, Any]]:
    return await cp.db.run(
        lambda s: [
            m.payload
            for m in s.exec(select(OutboxMessage).where(OutboxMessage.kind == "request_notice"))
        ]
    )


async def test_a_request_is_recorded_once_and_a_replay_is_audited(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    cp = await plane(db_url, tmp_path, clock, fake, planes)
    secret = opening("fakefix it, token xoxb-1234567890-abcdef")
    assert await cp.record_request("slack:aa", secret) is True
    assert await cp.record_request("slack:aa", secret, retry="1") is False
    item = await row(cp, "slack:aa")
    assert item.kind == RequestKind.OPEN.value
    assert item.owner == cp.inbox.owner
    assert item.attempts == 1
    assert item.done_at is None
    assert item.lease_until is not None
    assert (item.lease_until - clock.now()).total_seconds() == LEASE_S
    assert "xoxb" not in str(item.payload)  # sanitised before it is stored
    assert Request.model_validate(item.payload).text == "fakefix it, token [redacted]"
    replayed = await events(cp, "request_replayed")
    assert [e.detail["key"] for e in replayed] == ["slack:aa"]
    assert replayed[0].detail["retry"] == "1"


async def test_concurrent_records_share_one_commit(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    """A burst of 60 acks costs a commit or two, not 60; a duplicate inside it is a replay."""
    cp = await plane(db_url, tmp_path, clock, fake, planes)
    commits: list[object] = []
    queued = threading.Event()

    def on_commit(connection: object) -> None:
        queued.wait(10)  # the first write holds until the whole burst is queued behind it
        commits.append(connection)

    event.listen(cp.db.engine, "commit", on_commit)
    keys = [f"slack:{i}" for i in range(60)] + ["slack:7"]
    burst = asyncio.gather(*(cp.record_request(k, opening()) for k in keys))
    for _ in range(3):
        await asyncio.sleep(0)  # every record of the burst is submitted
    queued.set()
    assert await burst == [True] * 60 + [False]
    assert 1 <= len(commits) <= 2
    count = await cp.db.run(lambda s: len(list(s.exec(select(InboxItem.key)))))
    assert count == 60


async def test_the_work_marks_its_row_done_in_the_commit_that_opens_the_incident(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    cp = await plane(db_url, tmp_path, clock, fake, planes)
    await cp.record_request("slack:open", opening())
    assert await cp.handle_request("slack:open", opening()) is Outcome.DONE
    assert (await row(cp, "slack:open")).done_at == clock.now()
    assert len(fake.calls) == 1  # the plan ran after the commit
    # Redoing a done request (a sweeper after a crash, a second replica) changes nothing.
    assert await cp.handle_request("slack:open", opening()) is Outcome.ALREADY_DONE
    with pytest.raises(AlreadyDone):
        await cp.open_incident(
            text="fakefix the thing", requester=REQUESTER, channel=CHANNEL, inbox_key="slack:open"
        )
    assert len(await incidents(cp)) == 1
    assert len(fake.calls) == 1


async def test_two_processes_redoing_one_request_open_one_incident(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    first = await plane(db_url, tmp_path, clock, fake, planes)
    second = await plane(db_url, tmp_path, clock, fake, planes)
    await first.record_request("event:Ev1", opening())
    outcomes = await asyncio.gather(
        first.handle_request("event:Ev1", opening()),
        second.handle_request("event:Ev1", opening()),
    )
    assert sorted(outcomes) == sorted([Outcome.DONE, Outcome.ALREADY_DONE])
    assert len(await incidents(first)) == 1
    assert len(fake.calls) == 1


async def test_a_refusal_is_done_and_told_to_the_asker_in_one_commit(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    cp = await plane(db_url, tmp_path, clock, fake, planes)
    nothing = opening("the coffee machine is sad")
    await cp.record_request("slack:nomatch", nothing)
    assert await cp.handle_request("slack:nomatch", nothing) is Outcome.DONE
    assert (await row(cp, "slack:nomatch")).done_at is not None
    told = await notices(cp)
    assert len(told) == 1
    assert told[0]["notice"] == NoticeKind.REFUSED
    assert told[0]["user"] == REQUESTER
    assert told[0]["code"] == "no_match"
    assert len(await events(cp, "plan_not_found")) == 1
    assert await cp.handle_request("slack:nomatch", nothing) is Outcome.ALREADY_DONE
    assert len(await notices(cp)) == 1
    assert len(await events(cp, "plan_not_found")) == 1


async def test_an_alert_refusal_is_recorded_but_posts_nothing(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    cp = await plane(db_url, tmp_path, clock, fake, planes)
    alert = opening("disk is sad", requester="alertmanager", private=False)
    await cp.record_request("alert:fp:t0", alert)
    assert await cp.handle_request("alert:fp:t0", alert) is Outcome.DONE
    assert (await row(cp, "alert:fp:t0")).done_at is not None
    assert await notices(cp) == []


async def test_resolve_closes_once_and_then_says_nothing_is_open(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    cp = await plane(db_url, tmp_path, clock, fake, planes)
    await cp.record_request("slack:open", opening())
    await cp.handle_request("slack:open", opening())
    await cp.record_request("slack:resolve", closing())
    assert await cp.handle_request("slack:resolve", closing()) is Outcome.DONE
    assert await cp.handle_request("slack:resolve", closing()) is Outcome.ALREADY_DONE
    (incident,) = await incidents(cp)
    assert incident.status == IncidentStatus.RESOLVED.value
    assert len(await events(cp, "incident_resolved")) == 1
    # A new resolve (another request, not a replay) finds nothing open and says so.
    await cp.record_request("slack:resolve-2", closing())
    assert await cp.handle_request("slack:resolve-2", closing()) is Outcome.DONE
    assert [n["notice"] for n in await notices(cp)] == [NoticeKind.NO_OPEN_INCIDENT]
    assert len(await events(cp, "incident_resolved")) == 1
    # Closing a closed incident by id changes nothing either.
    assert not await cp.close_incident(incident_id=incident.id, actor=REQUESTER, resolved=False)
    assert (await incidents(cp))[0].status == IncidentStatus.RESOLVED.value


async def test_a_lapsed_lease_is_claimed_by_another_process_and_redone_once(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    crashed = await plane(db_url, tmp_path, clock, fake, planes)
    survivor = await plane(db_url, tmp_path, clock, fake, planes)
    await crashed.record_request("slack:lost", opening())  # acked, then the process died
    assert await survivor.sweep_inbox() == []  # the owner's lease still holds
    clock.advance(LEASE_S + 1)
    claimed = await survivor.sweep_inbox()
    assert claimed == [("slack:lost", opening())]
    item = await row(survivor, "slack:lost")
    assert item.owner == survivor.inbox.owner
    assert item.attempts == 2
    assert await survivor.sweep_inbox() == []  # claimed: no other sweeper takes it now
    for key, request in claimed:
        assert await survivor.handle_request(key, request) is Outcome.DONE
    clock.advance(LEASE_S + 1)
    assert await survivor.sweep_inbox() == []
    assert len(await incidents(survivor)) == 1
    assert len(fake.calls) == 1


async def test_the_owner_renews_the_lease_of_work_in_progress(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    owner = await plane(db_url, tmp_path, clock, fake, planes)
    other = await plane(db_url, tmp_path, clock, fake, planes)
    await owner.record_request("slack:slow", opening())
    owner.inbox.working.add("slack:slow")  # its task is still running
    clock.advance(LEASE_S - 1)
    assert await owner.sweep_inbox() == []
    clock.advance(LEASE_S - 1)  # past the first lease, within the renewed one
    assert await other.sweep_inbox() == []
    assert (await row(owner, "slack:slow")).attempts == 1


async def test_a_failing_request_is_retried_then_abandoned_and_the_asker_told(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    planes: list[ControlPlane],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cp = await plane(db_url, tmp_path, clock, fake, planes)

    async def database_down(**_kwargs: Any) -> None:
        raise OperationalError("INSERT INTO incidents", {}, Exception("server closed"))

    monkeypatch.setattr(cp, "open_incident", database_down)
    await cp.record_request("slack:doomed", opening())
    assert await cp.handle_request("slack:doomed", opening()) is Outcome.FAILED
    item = await row(cp, "slack:doomed")
    assert item.done_at is None
    assert "server closed" in (item.last_error or "")
    assert item.lease_until is not None
    assert item.lease_until > clock.now()  # a backoff before the next try
    outcomes = []
    for _ in range(MAX_ATTEMPTS - 1):
        clock.advance(120)
        for key, request in await cp.sweep_inbox():
            outcomes.append(await cp.handle_request(key, request))
    assert outcomes == [Outcome.FAILED] * (MAX_ATTEMPTS - 2) + [Outcome.ABANDONED]
    item = await row(cp, "slack:doomed")
    assert item.attempts == MAX_ATTEMPTS
    assert item.lease_until is None  # kept, never claimed again
    assert item.done_at is None
    (told,) = await notices(cp)
    assert told["notice"] == NoticeKind.ABANDONED
    assert told["user"] == REQUESTER
    assert told["attempts"] == MAX_ATTEMPTS
    assert len(await events(cp, "request_abandoned")) == 1
    clock.advance(3600)
    assert await cp.sweep_inbox() == []


async def test_a_request_that_kills_every_process_is_abandoned_not_redone(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    """No try ever records its failure (each one dies): the claim count alone stops it."""
    first = await plane(db_url, tmp_path, clock, fake, planes)
    await first.record_request("slack:poison", opening())
    for _ in range(MAX_ATTEMPTS - 1):
        clock.advance(LEASE_S + 1)
        sweeper = await plane(db_url, tmp_path, clock, fake, planes)
        assert len(await sweeper.sweep_inbox()) == 1  # claimed, then that process "dies"
    clock.advance(LEASE_S + 1)
    last = await plane(db_url, tmp_path, clock, fake, planes)
    assert await last.sweep_inbox() == []
    item = await row(last, "slack:poison")
    assert item.lease_until is None
    assert [n["notice"] for n in await notices(last)] == [NoticeKind.ABANDONED]
    assert await incidents(last) == []


async def test_done_rows_are_pruned_after_the_retention(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    cp = await plane(db_url, tmp_path, clock, fake, planes)
    await cp.record_request("slack:old", opening())
    await cp.handle_request("slack:old", opening())
    await cp.record_request("slack:open-forever", opening("the coffee machine is sad"))
    cp.inbox.working.add("slack:open-forever")
    clock.advance(RETENTION.total_seconds() + 3600)
    await cp.record_request("slack:new", opening())
    await cp.handle_request("slack:new", opening())
    await cp.sweep_inbox()
    keys = await cp.db.run(lambda s: sorted(s.exec(select(InboxItem.key))))
    assert keys == ["slack:new", "slack:open-forever"]
