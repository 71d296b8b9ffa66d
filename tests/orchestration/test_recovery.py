"""Step leases and the reconciler: a step whose process died is re-run or put in doubt, never
left running; cancel and resolve stop running calls."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from adapters import Grant, GrantSigner, ToolCall, ToolResult
from adapters.testing import FakeTool, ok_result
from common import FakeClock
from orchestration.config import ToolLimits
from orchestration.control import ControlPlane
from orchestration.enums import ApprovalPurpose, VoteChoice
from orchestration.models import Approval, AuditEvent, OutboxMessage, Step
from orchestration.toolbox import build_registry
from tests.orchestration.fakeplans import FAKE_RUNBOOK, pending_nonce, steps_yaml
from tests.orchestration.helpers import APPROVER_A, REQUESTER, make_config, make_control

LEASE_S = 15.0


class HeldTool(FakeTool):
    """A FakeTool whose first ``hold`` calls wait until released (a call in flight)."""

    def __init__(self, *, hold: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold = hold
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = 0

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        self.calls.append(call)
        if len(self.calls) <= self.hold:
            self.started.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self._queue:
            response = self._queue.popleft()
            assert isinstance(response, ToolResult)
            return response
        return ok_result(call)


async def two_replicas(
    db_url: str, tmp_path: Path, clock: FakeClock, tool: FakeTool, *steps: dict[str, Any]
) -> tuple[ControlPlane, ControlPlane]:
    folder = tmp_path / "rb"
    folder.mkdir(exist_ok=True)
    (folder / "fake.yaml").write_text(FAKE_RUNBOOK.format(steps=steps_yaml(*steps)))
    config = make_config(folder)
    signer = GrantSigner(b"s" * 32)
    planes = []
    for _ in range(2):
        tools = build_registry(
            config,
            signer=signer,
            clock=clock,
            extra=[(tool, ToolLimits(rate_per_s=1000, burst=1000))],
        )
        planes.append(await make_control(db_url, config, clock, tools=tools, signer=signer))
    assert planes[0].rt.replica_id != planes[1].rt.replica_id
    return planes[0], planes[1]


async def step_row(cp: ControlPlane, key: str) -> Step:
    found = await cp.db.run(lambda s: s.exec(select(Step).where(Step.key == key)).first())
    assert found is not None
    return found


async def events(cp: ControlPlane, name: str) -> list[AuditEvent]:
    return await cp.db.run(
        lambda s: list(s.exec(select(AuditEvent).where(AuditEvent.event == name)))
    )


async def outbox(cp: ControlPlane, kind: str) -> list[OutboxMessage]:
    return await cp.db.run(
        lambda s: list(s.exec(select(OutboxMessage).where(OutboxMessage.kind == kind)))
    )


async def die(task: "asyncio.Task[Any]") -> None:
    """The replica running ``task`` is gone: nothing it held is ever written back."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def world(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> Any:  # a factory of two replicas sharing one HeldTool, closed after the test
    made: list[ControlPlane] = []

    async def build(tool: FakeTool, *steps: dict[str, Any]) -> tuple[ControlPlane, ControlPlane]:
        a, b = await two_replicas(db_url, tmp_path, clock, tool, *steps)
        made.extend([a, b])
        return a, b

    yield build
    for plane in made:
        await plane.close()


async def test_an_idempotent_step_whose_replica_died_runs_again_elsewhere_with_its_key(
    world: Any, clock: FakeClock
) -> None:
    tool = HeldTool()
    a, b = await world(tool, {"tool": "fake.read"}, {"tool": "fake.read"})
    opening = asyncio.create_task(a.open_incident(text="fakefix", requester=REQUESTER))
    await tool.started.wait()
    await die(opening)
    assert (await step_row(b, "s0")).status == "running"

    assert await b.reconcile() == 0  # the lease has not lapsed yet
    clock.advance(LEASE_S + 1)
    assert await b.reconcile() == 1
    await asyncio.gather(*b._background)

    s0 = await step_row(b, "s0")
    assert s0.status == "succeeded"
    assert s0.lease_owner is None
    assert (await step_row(b, "s1")).status == "succeeded"
    assert len(tool.calls) == 3  # s0 twice (the lost call and the re-run), then s1
    assert tool.calls[0].idempotency_key == tool.calls[1].idempotency_key
    lapsed = await events(b, "step_lease_lapsed")
    assert [e.detail["owner"] for e in lapsed] == [a.rt.replica_id]
    assert len(await outbox(b, "step_rerun")) == 1


async def test_a_state_changing_step_whose_replica_died_is_in_doubt_and_never_rerun(
    world: Any, clock: FakeClock
) -> None:
    tool = HeldTool()
    a, b = await world(tool, {"tool": "fake.write", "risk": "medium"}, {"tool": "fake.read"})
    opened = await a.open_incident(text="fakefix", requester=REQUESTER)
    nonce = await pending_nonce(a)
    voting = asyncio.create_task(a.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE))
    await tool.started.wait()
    await die(voting)

    clock.advance(LEASE_S + 1)
    assert await b.reconcile() == 1
    assert await b.reconcile() == 0  # taken over once: one card, not one per pass
    s0 = await step_row(b, "s0")
    assert s0.status == "in_doubt"
    assert len(tool.calls) == 1
    view = await b.plan_view(opened.plan_id)
    assert view.status == "waiting"
    cards = [m for m in await outbox(b, "approval_requested") if m.payload["purpose"] == "in_doubt"]
    assert len(cards) == 1
    known = cards[0].payload["in_doubt"]
    assert known["owner"] == a.rt.replica_id
    assert known["started_at"]
    assert cards[0].payload["quorum"] == 1
    pending = await b.db.run(
        lambda s: list(s.exec(select(Approval).where(Approval.state == "pending")))
    )
    assert [p.purpose for p in pending] == [ApprovalPurpose.IN_DOUBT.value]


async def test_an_in_doubt_steps_check_runs_first_and_its_answer_is_on_the_card(
    world: Any, clock: FakeClock
) -> None:
    tool = HeldTool()
    a, b = await world(
        tool,
        {
            "tool": "fake.write",
            "risk": "medium",
            "check": {"tool": "fake.read", "args": {"probe": "yes"}, "title": "Is it done?"},
        },
    )
    await a.open_incident(text="fakefix", requester=REQUESTER)
    voting = asyncio.create_task(
        a.vote(nonce=await pending_nonce(a), voter=APPROVER_A, choice=VoteChoice.APPROVE)
    )
    await tool.started.wait()
    await die(voting)
    clock.advance(LEASE_S + 1)
    assert await b.reconcile() == 1
    await asyncio.gather(*b._background)

    assert [c.action for c in tool.calls] == ["write", "read"]
    assert tool.calls[1].args == {"probe": "yes"}
    cards = [m for m in await outbox(b, "approval_requested") if m.payload["purpose"] == "in_doubt"]
    assert len(cards) == 1
    check = cards[0].payload["in_doubt"]["check"]
    assert check["title"] == "Is it done?"
    assert check["ok"] is True
    assert (await step_row(b, "s0")).lease_owner is None
    assert len(await events(b, "in_doubt_checked")) == 1


async def test_a_late_result_settles_an_in_doubt_step_and_the_plan_goes_on(
    world: Any, clock: FakeClock
) -> None:
    tool = HeldTool()
    a, b = await world(tool, {"tool": "fake.write", "risk": "medium"}, {"tool": "fake.read"})
    opened = await a.open_incident(text="fakefix", requester=REQUESTER)
    voting = asyncio.create_task(
        a.vote(nonce=await pending_nonce(a), voter=APPROVER_A, choice=VoteChoice.APPROVE)
    )
    await tool.started.wait()
    clock.advance(LEASE_S + 1)  # A is alive but slow: its lease lapsed without renewal
    await b.reconcile()
    assert (await step_row(b, "s0")).status == "in_doubt"

    tool.release.set()
    await voting
    view = await a.plan_view(opened.plan_id)
    assert [s.status for s in view.steps] == ["succeeded", "succeeded"]
    assert view.status == "succeeded"
    states = await b.db.run(lambda s: list(s.exec(select(Approval.purpose, Approval.state))))
    assert (ApprovalPurpose.IN_DOUBT.value, "cancelled") in states


async def test_cancel_stops_a_call_in_flight_on_this_replica(world: Any) -> None:
    tool = HeldTool()
    a, _b = await world(tool, {"tool": "fake.write", "risk": "medium"}, {"tool": "fake.read"})
    opened = await a.open_incident(text="fakefix", requester=REQUESTER)
    voting = asyncio.create_task(
        a.vote(nonce=await pending_nonce(a), voter=APPROVER_A, choice=VoteChoice.APPROVE)
    )
    await tool.started.wait()
    await a.close_incident(incident_id=opened.incident_id, actor=REQUESTER, resolved=False)
    await voting
    assert tool.cancelled == 1
    s0 = await step_row(a, "s0")
    assert s0.status == "cancelled"
    assert "may have partly taken effect" in (s0.error or "")
    assert (await a.plan_view(opened.plan_id)).status == "cancelled"
    assert len(await events(a, "step_stop_requested")) == 1


async def test_cancel_on_another_replica_stops_the_call_at_the_next_lease_renewal(
    world: Any,
) -> None:
    tool = HeldTool()
    a, b = await world(tool, {"tool": "fake.write", "risk": "medium"})
    opened = await a.open_incident(text="fakefix", requester=REQUESTER)
    voting = asyncio.create_task(
        a.vote(nonce=await pending_nonce(a), voter=APPROVER_A, choice=VoteChoice.APPROVE)
    )
    await tool.started.wait()
    await b.close_incident(incident_id=opened.incident_id, actor=REQUESTER, resolved=True)
    assert (await step_row(b, "s0")).status == "running"  # A is alive and still holds it
    assert await a.renew_leases() == 1
    await voting
    assert tool.cancelled == 1
    assert (await step_row(a, "s0")).status == "cancelled"


async def test_cancel_when_the_running_replica_is_gone_marks_the_step_in_doubt(
    world: Any, clock: FakeClock
) -> None:
    tool = HeldTool()
    a, b = await world(tool, {"tool": "fake.write", "risk": "medium"})
    opened = await a.open_incident(text="fakefix", requester=REQUESTER)
    voting = asyncio.create_task(
        a.vote(nonce=await pending_nonce(a), voter=APPROVER_A, choice=VoteChoice.APPROVE)
    )
    await tool.started.wait()
    await die(voting)
    clock.advance(LEASE_S + 1)
    await b.close_incident(incident_id=opened.incident_id, actor=REQUESTER, resolved=False)
    s0 = await step_row(b, "s0")
    assert s0.status == "in_doubt"
    notices = await outbox(b, "step_in_doubt")
    assert len(notices) == 1
    assert notices[0].payload["owner"] == a.rt.replica_id
    assert await b.reconcile() == 0  # settled as far as anyone can: nothing left to take over


async def test_a_renewed_lease_keeps_the_step_with_its_replica(
    world: Any, clock: FakeClock
) -> None:
    tool = HeldTool()
    a, b = await world(tool, {"tool": "fake.read"})
    opening = asyncio.create_task(a.open_incident(text="fakefix", requester=REQUESTER))
    await tool.started.wait()
    for _ in range(4):
        clock.advance(LEASE_S / 2)
        assert await a.renew_leases() == 0
        assert await b.reconcile() == 0
    tool.release.set()
    await opening
    assert len(tool.calls) == 1
    assert (await step_row(a, "s0")).status == "succeeded"


async def in_doubt_world(world: Any, clock: FakeClock, *steps: dict[str, Any]) -> Any:
    """Two replicas, the first step put in doubt on B after A died mid-call; returns the lot."""
    tool = HeldTool()
    a, b = await world(tool, *steps)
    opened = await a.open_incident(text="fakefix", requester=REQUESTER)
    voting = asyncio.create_task(
        a.vote(nonce=await pending_nonce(a), voter=APPROVER_A, choice=VoteChoice.APPROVE)
    )
    await tool.started.wait()
    await die(voting)
    clock.advance(LEASE_S + 1)
    assert await b.reconcile() == 1
    nonce = await pending_nonce(b)
    return tool, b, opened, nonce


async def test_it_ran_settles_the_step_and_the_plan_goes_on(world: Any, clock: FakeClock) -> None:
    tool, b, opened, nonce = await in_doubt_world(
        world, clock, {"tool": "fake.write", "risk": "medium"}, {"tool": "fake.read"}
    )
    wrong = await b.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    assert (wrong.accepted, wrong.code) == (False, "wrong_answer")
    done = await b.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.RAN)
    assert done.accepted
    view = await b.plan_view(opened.plan_id)
    assert [s.status for s in view.steps] == ["succeeded", "succeeded"]
    assert view.status == "succeeded"
    assert [c.action for c in tool.calls] == ["write", "read"]  # never re-run
    assert len(await events(b, "in_doubt_settled")) == 1


async def test_run_it_again_reruns_once_under_the_same_key(world: Any, clock: FakeClock) -> None:
    tool, b, opened, nonce = await in_doubt_world(
        world, clock, {"tool": "fake.write", "risk": "medium"}
    )
    await b.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.RERUN)
    again = await b.vote(nonce=nonce, voter="UAPP2", choice=VoteChoice.RERUN)
    assert (again.accepted, again.code) == (False, "approval_decided")  # quorum 1: decided
    view = await b.plan_view(opened.plan_id)
    assert view.steps[0].status == "succeeded"
    assert [c.action for c in tool.calls] == ["write", "write"]
    assert tool.calls[0].idempotency_key == tool.calls[1].idempotency_key


async def test_stop_is_a_veto_the_requester_may_cast_and_the_step_stays_in_doubt(
    world: Any, clock: FakeClock
) -> None:
    tool, b, opened, nonce = await in_doubt_world(
        world, clock, {"tool": "fake.write", "risk": "medium"}, {"tool": "fake.read"}
    )
    stopped = await b.vote(nonce=nonce, voter=REQUESTER, choice=VoteChoice.REJECT)
    assert stopped.accepted
    view = await b.plan_view(opened.plan_id)
    assert view.status == "halted"
    assert [s.status for s in view.steps] == ["in_doubt", "skipped"]
    assert len(tool.calls) == 1
    late = await b.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.RAN)
    assert (late.accepted, late.code) == (False, "approval_decided")


async def test_a_high_risk_in_doubt_step_needs_two_answers_and_never_the_requesters(
    world: Any, clock: FakeClock
) -> None:
    tool = HeldTool()
    a, b = await world(tool, {"tool": "fake.nuke", "risk": "high"})
    opened = await a.open_incident(text="fakefix", requester=REQUESTER)
    nonce = await pending_nonce(a)
    await a.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    voting = asyncio.create_task(a.vote(nonce=nonce, voter="UAPP2", choice=VoteChoice.APPROVE))
    await tool.started.wait()
    await die(voting)
    clock.advance(LEASE_S + 1)
    await b.reconcile()
    card_nonce = await pending_nonce(b, besides=nonce)
    own = await b.vote(nonce=card_nonce, voter=REQUESTER, choice=VoteChoice.RAN)
    assert (own.accepted, own.code) == (False, "requester_cannot_approve")
    first = await b.vote(nonce=card_nonce, voter=APPROVER_A, choice=VoteChoice.RAN)
    assert first.accepted
    assert (await step_row(b, "s0")).status == "in_doubt"
    await b.vote(nonce=card_nonce, voter="UAPP2", choice=VoteChoice.RAN)
    assert (await b.plan_view(opened.plan_id)).status == "succeeded"
