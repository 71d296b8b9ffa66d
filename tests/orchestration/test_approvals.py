"""Rejections: one eligible click decides and halts; a reason may be added to it afterwards."""

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from common import FakeClock
from orchestration.control import ControlPlane
from orchestration.enums import VoteChoice
from orchestration.models import Approval, AuditEvent, OutboxMessage, Vote
from orchestration.views import VoteOutcome
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
    # The requester is not a configured approver: they may still reject their own step.
    config = make_config(tmp_path / "runbooks", approvers=[APPROVER_A, APPROVER_B])
    cp = await make_control(db_url, config, clock)
    yield cp
    await cp.close()


async def open_restart(control: ControlPlane) -> tuple[str, str]:
    """Open the checkout incident; (plan id, nonce of the high-risk restart's approval)."""
    opened = await control.open_incident(
        text="checkout-api is down", requester=REQUESTER, channel="C1"
    )
    trail = await control.audit_trail(opened.plan_id)
    nonce = next(e.nonce for e in trail if e.event == "approval_requested")
    assert nonce is not None
    return opened.plan_id, nonce


async def stored(control: ControlPlane, nonce: str) -> tuple[Approval, list[Vote]]:
    def work(session: Any) -> tuple[Approval, list[Vote]]:
        approval = session.exec(select(Approval).where(Approval.nonce == nonce)).one()
        votes = list(session.exec(select(Vote).where(Vote.approval_id == approval.id)))
        return approval, votes

    return await control.db.run(work)


async def events(control: ControlPlane, name: str) -> list[AuditEvent]:
    return await control.db.run(
        lambda s: list(
            s.exec(select(AuditEvent).where(AuditEvent.event == name).order_by(col(AuditEvent.id)))
        )
    )


async def outbox(control: ControlPlane, kind: str) -> list[dict[str, Any]]:
    rows = await control.db.run(
        lambda s: list(
            s.exec(
                select(OutboxMessage.payload)
                .where(OutboxMessage.kind == kind)
                .order_by(col(OutboxMessage.id))
            )
        )
    )
    return [dict(row) for row in rows]


async def test_requester_rejects_their_own_high_risk_step(
    control: ControlPlane, service: DemoService
) -> None:
    """The requester's approval would not count on a high-risk step; their veto does."""
    plan_id, nonce = await open_restart(control)
    refused = await control.vote(nonce=nonce, voter=REQUESTER, choice=VoteChoice.APPROVE)
    assert (refused.accepted, refused.code) == (False, "not_an_approver")
    out = await control.vote(nonce=nonce, voter=REQUESTER, choice=VoteChoice.REJECT)
    assert (out.accepted, out.approval_state) == (True, "rejected")
    view = await control.plan_view(plan_id)
    assert view.status == "halted"
    assert [s.status for s in view.steps] == ["succeeded", "rejected", "skipped"]
    assert view.status_reason == (
        f"<@{REQUESTER}> rejected 'Restart checkout-api'; the plan is halted."
    )
    approval, votes = await stored(control, nonce)
    assert (approval.state, approval.decided_by, approval.reason) == ("rejected", REQUESTER, "")
    assert [(v.voter, v.choice) for v in votes] == [(REQUESTER, "reject")]
    assert service.restarts == 0


async def test_strangers_cannot_reject(control: ControlPlane) -> None:
    plan_id, nonce = await open_restart(control)
    out = await control.vote(nonce=nonce, voter=STRANGER, choice=VoteChoice.REJECT)
    assert (out.accepted, out.code) == (False, "not_an_approver")
    assert "person who opened this incident" in out.reason
    assert (await control.plan_view(plan_id)).status == "waiting"
    [refusal] = await events(control, "vote_refused")
    assert (refusal.actor, refusal.code) == (STRANGER, "not_an_approver")


async def test_a_rejection_beats_approvals_that_arrive_after_it(
    control: ControlPlane, service: DemoService
) -> None:
    """One approval, then a rejection: the second approval no longer counts, nothing runs."""
    plan_id, nonce = await open_restart(control)
    assert (await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)).accepted
    assert (await control.vote(nonce=nonce, voter=REQUESTER, choice=VoteChoice.REJECT)).accepted
    late = await control.vote(nonce=nonce, voter=APPROVER_B, choice=VoteChoice.APPROVE)
    assert (late.accepted, late.code) == (False, "approval_decided")
    assert late.reason == f"<@{REQUESTER}> already rejected this step; the button no longer works."
    assert service.restarts == 0
    assert (await control.plan_view(plan_id)).status == "halted"


async def test_the_rejecter_adds_a_reason_afterwards(control: ControlPlane) -> None:
    """The reason lands on the vote, the approval, the step, the plan, the audit and the card."""
    plan_id, nonce = await open_restart(control)
    await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.REJECT)
    out = await control.add_reason(nonce=nonce, voter=APPROVER_A, reason="  peak traffic  ")
    assert (out.accepted, out.code, out.approval_state) == (True, "reason_added", "rejected")
    approval, [vote] = await stored(control, nonce)
    assert approval.reason == vote.reason == "peak traffic"
    view = await control.plan_view(plan_id)
    assert view.status == "halted"
    assert view.status_reason == (
        f"<@{APPROVER_A}> rejected 'Restart checkout-api'; the plan is halted. Reason: peak traffic"
    )
    restart = next(s for s in view.steps if s.key == "restart")
    assert restart.error == f"Rejected by {APPROVER_A}: peak traffic"
    [added] = await events(control, "rejection_reason_added")
    assert (added.actor, added.nonce, added.detail) == (
        APPROVER_A,
        nonce,
        {"reason": "peak traffic"},
    )
    card = (await outbox(control, "approval_updated"))[-1]
    assert (card["state"], card["decided_by"], card["reason"]) == (
        "rejected",
        APPROVER_A,
        "peak traffic",
    )
    assert card["votes"] == [{"voter": APPROVER_A, "choice": "reject", "reason": "peak traffic"}]
    [thread] = await outbox(control, "rejection_reason_added")
    assert (thread["voter"], thread["reason"], thread["title"]) == (
        APPROVER_A,
        "peak traffic",
        "Restart checkout-api",
    )


async def refusal(control: ControlPlane, call: Awaitable[VoteOutcome], code: str) -> str:
    """Assert ``call`` was refused with ``code`` and audited; return its plain reason."""
    out = await call
    assert (out.accepted, out.code) == (False, code)
    assert out.reason
    audited = await events(control, "rejection_reason_refused")
    assert audited[-1].code == code
    return out.reason


async def test_only_the_rejecter_may_add_a_reason_and_only_once(control: ControlPlane) -> None:
    _, nonce = await open_restart(control)
    await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    not_yet = await refusal(
        control, control.add_reason(nonce=nonce, voter=APPROVER_A, reason="x"), "not_rejected"
    )
    assert "not rejected (it is pending)" in not_yet
    await control.vote(nonce=nonce, voter=REQUESTER, choice=VoteChoice.REJECT)
    for someone in (APPROVER_A, APPROVER_B, STRANGER):  # approved earlier, never voted, stranger
        why = await refusal(
            control,
            control.add_reason(nonce=nonce, voter=someone, reason="mine"),
            "not_your_rejection",
        )
        assert why == "Only the person who rejected this step can add its reason."
    await refusal(
        control, control.add_reason(nonce=nonce, voter=REQUESTER, reason="   "), "reason_empty"
    )
    assert (await control.add_reason(nonce=nonce, voter=REQUESTER, reason="wrong host")).accepted
    await refusal(
        control,
        control.add_reason(nonce=nonce, voter=REQUESTER, reason="changed my mind"),
        "reason_already_given",
    )
    await refusal(
        control, control.add_reason(nonce="forged", voter=REQUESTER, reason="x"), "nonce_unknown"
    )
    approval, votes = await stored(control, nonce)
    assert approval.reason == "wrong host"
    assert {v.voter: v.reason for v in votes} == {APPROVER_A: "", REQUESTER: "wrong host"}


async def test_a_reason_on_an_approved_step_is_refused(
    control: ControlPlane, service: DemoService
) -> None:
    _, nonce = await open_restart(control)
    for voter in (APPROVER_A, APPROVER_B):
        await control.vote(nonce=nonce, voter=voter, choice=VoteChoice.APPROVE)
    assert service.restarts == 1
    why = await refusal(
        control, control.add_reason(nonce=nonce, voter=APPROVER_B, reason="x"), "not_rejected"
    )
    assert "approved" in why


async def test_a_final_vote_can_defer_its_step_until_after_the_commit(
    control: ControlPlane, service: DemoService
) -> None:
    """With ``defer`` the vote returns committed and the step has not run yet; it runs when
    the deferred work is awaited."""
    plan_id, nonce = await open_restart(control)
    await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    later: list[Awaitable[None]] = []
    out = await control.vote(
        nonce=nonce, voter=APPROVER_B, choice=VoteChoice.APPROVE, defer=later.append
    )
    assert (out.accepted, out.approval_state) == (True, "approved")
    assert len(later) == 1
    assert service.restarts == 0
    assert next(
        s for s in (await control.plan_view(plan_id)).steps if s.key == "restart"
    ).status == ("running")
    await later[0]
    assert service.restarts == 1
    assert (await control.plan_view(plan_id)).status == "succeeded"


async def test_a_non_final_vote_defers_nothing(control: ControlPlane) -> None:
    _, nonce = await open_restart(control)
    later: list[Awaitable[None]] = []
    await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE, defer=later.append)
    await control.vote(nonce=nonce, voter=APPROVER_B, choice=VoteChoice.REJECT, defer=later.append)
    assert later == []
