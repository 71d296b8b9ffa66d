"""Reaching quorum is atomic: simultaneous final votes run the step exactly once; a final
vote racing the plan's end never deadlocks (one lock order: plan row, then approvals)."""

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from common import FakeClock
from orchestration.enums import VoteChoice
from tests.orchestration.helpers import (
    APPROVER_A,
    REQUESTER,
    DemoService,
    make_config,
    make_control,
    write_runbook,
)

APPROVERS = [REQUESTER, APPROVER_A, "UAPP2", "UAPP3", "UAPP4", "UAPP5", "UAPP6"]
APPROVE = VoteChoice.APPROVE


@pytest.fixture
async def service() -> AsyncIterator[DemoService]:
    svc = await DemoService().start()
    yield svc
    await svc.stop()


@pytest.mark.parametrize("replicas", [1, 2])
async def test_simultaneous_final_votes_run_the_step_once(
    db_url: str, tmp_path: Path, clock: FakeClock, service: DemoService, replicas: int
) -> None:
    """Five approvers click at the same instant after the first vote; one restart happens."""
    write_runbook(tmp_path / "rb", service.port)
    config = make_config(tmp_path / "rb", approvers=APPROVERS)
    planes = [await make_control(db_url, config, clock) for _ in range(replicas)]
    try:
        opened = await planes[0].open_incident(text="checkout-api is down", requester=REQUESTER)
        trail = await planes[0].audit_trail(opened.plan_id)
        nonce = next(e.nonce for e in trail if e.event == "approval_requested")
        assert nonce is not None
        first = await planes[0].vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
        assert first.accepted
        assert first.approvals == 1

        finals = APPROVERS[2:]
        outcomes = await asyncio.gather(
            *(
                planes[i % replicas].vote(nonce=nonce, voter=voter, choice=VoteChoice.APPROVE)
                for i, voter in enumerate(finals)
            )
        )
        accepted = [o for o in outcomes if o.accepted]
        refused = [o for o in outcomes if not o.accepted]
        assert len(accepted) == 1, outcomes
        assert {o.code for o in refused} == {"approval_decided"}
        assert service.restarts == 1
        view = await planes[0].plan_view(opened.plan_id)
        restart = next(s for s in view.steps if s.key == "restart")
        assert restart.status == "succeeded"
        assert restart.attempts == 1
        grants = [
            e
            for e in await planes[0].audit_trail(opened.plan_id)
            if e.event == "grant_issued" and e.step_id == restart.id
        ]
        assert len(grants) == 1
    finally:
        for plane in planes:
            await plane.close()


async def test_two_votes_that_both_complete_quorum_are_serialised(
    db_url: str, tmp_path: Path, clock: FakeClock, service: DemoService
) -> None:
    """With no prior vote and quorum 2, two simultaneous votes together reach it exactly once."""
    write_runbook(tmp_path / "rb", service.port)
    config = make_config(tmp_path / "rb", approvers=APPROVERS)
    a = await make_control(db_url, config, clock)
    b = await make_control(db_url, config, clock)
    try:
        opened = await a.open_incident(text="checkout-api is down", requester=REQUESTER)
        trail = await a.audit_trail(opened.plan_id)
        nonce = next(e.nonce for e in trail if e.event == "approval_requested")
        assert nonce is not None
        one, two = await asyncio.gather(
            a.vote(nonce=nonce, voter="UAPP2", choice=VoteChoice.APPROVE),
            b.vote(nonce=nonce, voter="UAPP3", choice=VoteChoice.APPROVE),
        )
        assert one.accepted
        assert two.accepted
        assert service.restarts == 1
        view = await a.plan_view(opened.plan_id)
        assert view.status == "succeeded"
    finally:
        await a.close()
        await b.close()


class FirstLocks:
    """Holds each of two transactions at its first row-locking statement until both are there.

    A final vote and ``close_incident`` then ask for their locks at the same instant, every
    trial: had they taken them in opposite orders (approval then plan, plan then approvals),
    PostgreSQL would detect a deadlock and abort one of them.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._barrier: threading.Barrier | None = None
        self._arrived: set[int] = set()

    def arm(self) -> None:
        with self._mutex:
            self._barrier = threading.Barrier(2, timeout=10)
            self._arrived = set()

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FOR UPDATE" not in statement:
            return
        with self._mutex:
            barrier, me = self._barrier, threading.get_ident()
            if barrier is None or me in self._arrived:
                return
            self._arrived.add(me)
            if len(self._arrived) == 2:
                self._barrier = None  # later statements of these transactions run freely
        barrier.wait()


async def test_a_final_vote_racing_cancel_never_deadlocks_nor_drops_the_vote(
    db_url: str, tmp_path: Path, clock: FakeClock, service: DemoService
) -> None:
    """40 trials: the final approval and ``/incident cancel`` at the same instant, from two
    replicas. Each ends in one of the two orders: the vote started the step and then the plan
    was cancelled, or the plan was cancelled and the vote refused. No error, nothing lost."""
    write_runbook(tmp_path / "rb", service.port)
    config = make_config(tmp_path / "rb", approvers=APPROVERS)
    voter_plane = await make_control(db_url, config, clock)
    closer_plane = await make_control(db_url, config, clock)
    locks = FirstLocks()
    for plane in (voter_plane, closer_plane):
        event.listen(plane.db.engine, "before_cursor_execute", locks)
    try:
        for trial in range(40):
            opened = await voter_plane.open_incident(
                text="checkout-api is down", requester=REQUESTER, channel=f"C{trial}"
            )
            trail = await voter_plane.audit_trail(opened.plan_id)
            nonce = next(e.nonce for e in trail if e.event == "approval_requested")
            assert nonce is not None
            assert (await voter_plane.vote(nonce=nonce, voter="UAPP2", choice=APPROVE)).accepted
            restarts = service.restarts
            locks.arm()
            vote, closed = await asyncio.gather(
                voter_plane.vote(nonce=nonce, voter="UAPP3", choice=APPROVE),
                closer_plane.close_incident(
                    incident_id=opened.incident_id, actor=REQUESTER, resolved=False
                ),
                return_exceptions=True,
            )
            assert not isinstance(vote, BaseException), f"trial {trial}: {vote!r}"
            assert not isinstance(closed, BaseException), f"trial {trial}: {closed!r}"
            view = await voter_plane.plan_view(opened.plan_id)
            restart = next(s for s in view.steps if s.key == "restart")
            if vote.accepted:
                assert vote.approval_state == "approved"
                assert restart.status == "succeeded"
                assert service.restarts == restarts + 1
                # Cancelled while the step ran, or (when the step won the race too) finished.
                assert view.status in ("cancelled", "succeeded"), trial
            else:
                assert view.status == "cancelled", trial
                assert vote.code in ("approval_decided", "plan_changed"), vote
                assert restart.status == "skipped"
                assert service.restarts == restarts
                refusals = [
                    e
                    for e in await voter_plane.audit_trail(opened.plan_id)
                    if e.event == "vote_refused" and e.actor == "UAPP3"
                ]
                assert len(refusals) == 1
    finally:
        await voter_plane.close()
        await closer_plane.close()


async def test_the_expiry_job_racing_cancel_never_deadlocks(
    db_url: str, tmp_path: Path, clock: FakeClock, service: DemoService
) -> None:
    """20 trials: the expiry job and ``/incident cancel`` on an overdue approval at the same
    instant. The approval ends expired (plan halted) or cancelled (plan cancelled); no error."""
    write_runbook(tmp_path / "rb", service.port)
    config = make_config(tmp_path / "rb", approvers=APPROVERS)
    expirer = await make_control(db_url, config, clock)
    closer = await make_control(db_url, config, clock)
    locks = FirstLocks()
    for plane in (expirer, closer):
        event.listen(plane.db.engine, "before_cursor_execute", locks)
    try:
        for trial in range(20):
            opened = await expirer.open_incident(
                text="checkout-api is down", requester=REQUESTER, channel=f"C{trial}"
            )
            clock.advance(31 * 60)
            locks.arm()
            expired, closed = await asyncio.gather(
                expirer.expire_approvals(),
                closer.close_incident(
                    incident_id=opened.incident_id, actor=REQUESTER, resolved=False
                ),
                return_exceptions=True,
            )
            assert not isinstance(expired, BaseException), f"trial {trial}: {expired!r}"
            assert not isinstance(closed, BaseException), f"trial {trial}: {closed!r}"
            view = await expirer.plan_view(opened.plan_id)
            assert (expired, view.status) in ((1, "halted"), (0, "cancelled")), trial
    finally:
        await expirer.close()
        await closer.close()
    assert service.restarts == 0
