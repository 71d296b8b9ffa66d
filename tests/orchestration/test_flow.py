"""A whole plan, headless, against a real local HTTP service."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common import FakeClock
from orchestration.control import ControlPlane
from orchestration.enums import VoteChoice
from tests.orchestration.helpers import (
    APPROVER_A,
    APPROVER_B,
    REQUESTER,
    STRANGER,
    DemoService,
    make_config,
    make_control,
    write_runbook,
)


@pytest.fixture
async def service() -> AsyncIterator[DemoService]:
    svc = await DemoService().start()
    yield svc
    await svc.stop()


@pytest.fixture
async def control(
    db_url: str, tmp_path: Path, clock: FakeClock, service: DemoService
) -> AsyncIterator[ControlPlane]:
    write_runbook(tmp_path / "runbooks", service.port)
    cp = await make_control(db_url, make_config(tmp_path / "runbooks"), clock)
    yield cp
    await cp.close()


async def _approval_nonce(control: ControlPlane, plan_id: str) -> str:
    trail = await control.audit_trail(plan_id)
    nonces = [e.nonce for e in trail if e.event == "approval_requested"]
    assert nonces, [e.event for e in trail]
    assert nonces[-1] is not None
    return nonces[-1]


async def test_whole_plan_probe_runs_restart_waits_for_two_approvers_then_verifies(
    control: ControlPlane, service: DemoService
) -> None:
    opened = await control.open_incident(
        text="checkout-api is down", requester=REQUESTER, channel="C1"
    )
    view = await control.plan_view(opened.plan_id)
    statuses = {s.key: s.status for s in view.steps}
    assert statuses == {"probe": "succeeded", "restart": "awaiting_approval", "verify": "pending"}
    assert view.status == "waiting"
    assert service.restarts == 0
    probe = view.steps[0]
    assert probe.result is not None
    assert probe.result["status"] == 503

    nonce = await _approval_nonce(control, opened.plan_id)
    own = await control.vote(nonce=nonce, voter=REQUESTER, choice=VoteChoice.APPROVE)
    assert not own.accepted
    assert own.code == "requester_cannot_approve"
    stranger = await control.vote(nonce=nonce, voter=STRANGER, choice=VoteChoice.APPROVE)
    assert not stranger.accepted
    assert stranger.code == "not_an_approver"

    first = await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    assert first.accepted
    assert first.approvals == 1
    assert first.quorum == 2
    assert service.restarts == 0
    again = await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    assert not again.accepted
    assert again.code == "already_voted"

    second = await control.vote(nonce=nonce, voter=APPROVER_B, choice=VoteChoice.APPROVE)
    assert second.accepted
    assert second.approval_state == "approved"
    assert service.restarts == 1

    view = await control.plan_view(opened.plan_id)
    assert [s.status for s in view.steps] == ["succeeded", "succeeded", "succeeded"]
    assert view.status == "succeeded"

    late = await control.vote(nonce=nonce, voter=APPROVER_B, choice=VoteChoice.APPROVE)
    assert not late.accepted
    assert late.code == "approval_decided"
    assert service.restarts == 1

    costs = await control.costs(opened.plan_id)
    assert len(costs) == 3
    assert all(c.usd > 0 for c in costs)
    assert view.spent_usd == pytest.approx(sum(c.usd for c in costs))

    assert await control.cost_totals("runbook_id") == {
        "web-restart": (pytest.approx(view.spent_usd), 0)
    }
    by_tool = await control.cost_totals("tool")
    assert set(by_tool) == {"http"}
    assert set(await control.cost_totals("role")) == {"executor"}
    assert set(await control.cost_totals("channel")) == {"C1"}

    spans = await control.spans(opened.plan_id)
    kinds = sorted(s.kind for s in spans)
    assert kinds.count("step") == 3
    assert kinds.count("tool_call") == 3
    assert "plan" in kinds
    assert {s.trace_id for s in spans} == {opened.correlation_id}

    events = [e.event for e in await control.audit_trail(opened.plan_id)]
    for expected in (
        "incident_opened",
        "plan_proposed",
        "approval_requested",
        "vote_refused",
        "vote_recorded",
        "approval_granted",
        "grant_issued",
        "step_succeeded",
        "plan_finished",
    ):
        assert expected in events
    votes = [
        e
        for e in await control.audit_trail(opened.plan_id)
        if e.event in ("vote_recorded", "vote_refused")
    ]
    assert all(v.nonce == nonce for v in votes)
    assert {v.actor for v in votes} == {REQUESTER, STRANGER, APPROVER_A, APPROVER_B}


async def test_rejection_halts_the_plan_and_says_who(
    control: ControlPlane, service: DemoService
) -> None:
    opened = await control.open_incident(text="checkout-api is down", requester=REQUESTER)
    nonce = await _approval_nonce(control, opened.plan_id)
    out = await control.vote(
        nonce=nonce, voter=APPROVER_A, choice=VoteChoice.REJECT, reason="not during peak"
    )
    assert out.accepted
    assert out.approval_state == "rejected"
    view = await control.plan_view(opened.plan_id)
    assert view.status == "halted"
    assert APPROVER_A in view.status_reason
    assert [s.status for s in view.steps] == ["succeeded", "rejected", "skipped"]
    assert service.restarts == 0


async def test_unknown_nonce_is_refused_and_audited(control: ControlPlane) -> None:
    out = await control.vote(nonce="forged", voter=APPROVER_A, choice=VoteChoice.APPROVE)
    assert not out.accepted
    assert out.code == "nonce_unknown"


async def test_expired_approval_refuses_votes_and_halts(
    control: ControlPlane, clock: FakeClock, service: DemoService
) -> None:
    opened = await control.open_incident(text="checkout-api is down", requester=REQUESTER)
    nonce = await _approval_nonce(control, opened.plan_id)
    clock.advance(31 * 60)
    out = await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    assert not out.accepted
    assert out.code == "approval_expired"
    view = await control.plan_view(opened.plan_id)
    assert view.status == "halted"
    assert service.restarts == 0


async def test_expiry_job_expires_due_approvals(control: ControlPlane, clock: FakeClock) -> None:
    opened = await control.open_incident(text="checkout-api is down", requester=REQUESTER)
    assert await control.expire_approvals() == 0
    clock.advance(30 * 60 + 1)
    assert await control.expire_approvals() == 1
    view = await control.plan_view(opened.plan_id)
    assert view.status == "halted"


async def test_changed_runbook_makes_the_plan_stale_and_votes_are_refused(
    control: ControlPlane, tmp_path: Path, service: DemoService
) -> None:
    opened = await control.open_incident(text="checkout-api is down", requester=REQUESTER)
    nonce = await _approval_nonce(control, opened.plan_id)
    path = tmp_path / "runbooks" / "web-restart.yaml"
    path.write_text(path.read_text().replace("Restart an unhealthy", "Restart a sick"))
    await control.load_knowledge()
    await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    out = await control.vote(nonce=nonce, voter=APPROVER_B, choice=VoteChoice.APPROVE)
    assert not out.accepted
    view = await control.plan_view(opened.plan_id)
    assert view.status in ("stale", "halted")
    assert service.restarts == 0
