"""Reaching quorum is atomic: simultaneous final votes run the step exactly once."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
