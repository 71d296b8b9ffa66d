"""The audit timeline: who asked, approvals with nonce and reviewer, grants, tool calls with
request and response metadata, costs and failure reasons, oldest first."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common import FakeClock
from orchestration.control import ControlPlane
from orchestration.enums import VoteChoice
from orchestration.errors import NotFound
from orchestration.trail import Entry, resolve, timeline
from tests.orchestration.helpers import (
    APPROVER_A,
    REQUESTER,
    DemoService,
    make_config,
    make_control,
    write_runbook,
)
from tests.orchestration.test_replay import _run_main_scenario


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


async def _timeline(control: ControlPlane, ref: str | None, **kw: str) -> list[Entry]:
    return await control.db.run(lambda s: timeline(s, resolve(s, ref, **kw)))


async def test_timeline_of_a_plan_names_who_did_what(control: ControlPlane) -> None:
    plan_id = await _run_main_scenario(control)
    entries = await _timeline(control, plan_id)
    events = [e.event for e in entries]
    assert events[:2] == ["incident_opened", "plan_proposed"]
    assert entries[0].actor == REQUESTER
    assert entries[0].role == "human"
    requested = next(e for e in entries if e.event == "approval_requested")
    votes = [e for e in entries if e.event == "vote_recorded"]
    assert [v.actor for v in votes] == [APPROVER_A, "UAPP2"]
    assert {v.nonce for v in votes} == {requested.nonce}
    scopes = [e.detail["scope"] for e in entries if e.event == "grant_issued"]
    assert scopes == ["http.get", "http.post", "http.get"]
    calls = [e for e in entries if e.source == "tool_call"]
    assert [c.detail["tool"] for c in calls] == ["http.get", "http.post", "http.get"]
    assert calls[0].detail["response"]["status"] == 503
    assert calls[0].detail["request"]["args"]["url"].endswith("/svc/checkout-api/health")
    assert "body" not in calls[0].detail["response"]  # metadata, not the body
    costs = [e for e in entries if e.source == "cost"]
    assert len(costs) == 3
    assert all(c.correlation_id == entries[0].correlation_id for c in costs)
    assert entries == sorted(entries, key=lambda e: e.at)
    for call in calls:  # the clock stands still here: the order is causal all the same
        before = entries[entries.index(call) - 1]
        assert (before.event, before.step_id) == ("step_started", call.step_id)
    # The incident and the correlation id name the same records.
    assert await _timeline(control, entries[0].incident_id) == entries
    assert await _timeline(control, None, correlation_id=entries[0].correlation_id) == entries


async def test_timeline_keeps_failure_reasons(control: ControlPlane) -> None:
    opened = await control.open_incident(
        text="checkout-api is down", requester=REQUESTER, channel="C1"
    )
    trail = await control.audit_trail(opened.plan_id)
    nonce = next(e.nonce for e in trail if e.event == "approval_requested")
    assert nonce is not None
    await control.vote(
        nonce=nonce, voter=APPROVER_A, choice=VoteChoice.REJECT, reason="restart by hand"
    )
    entries = await _timeline(control, opened.plan_id[:10])
    rejected = next(e for e in entries if e.event == "vote_recorded")
    assert rejected.actor == APPROVER_A
    assert rejected.detail == {"choice": "reject", "reason": "restart by hand"}
    finished = next(e for e in entries if e.event == "plan_finished")
    assert finished.detail["status"] == "halted"
    assert finished.detail["reason"]


async def test_unknown_reference_is_not_found(control: ControlPlane) -> None:
    with pytest.raises(NotFound, match="no plan or incident"):
        await _timeline(control, "abcdef12")
    with pytest.raises(NotFound, match="name a plan or incident id"):
        await _timeline(control, "")
