"""Replay: a recorded plan re-run in a sandbox, failures forced, the live store untouched."""

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import SQLModel

from common import FakeClock
from orchestration.control import ControlPlane
from orchestration.enums import VoteChoice
from orchestration.errors import NotFound, OrchestrationError
from orchestration.replay import FailAt, FailKind, load_recording, replay
from tests.orchestration.helpers import (
    APPROVER_A,
    APPROVER_B,
    REQUESTER,
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


async def _run_main_scenario(control: ControlPlane) -> str:
    """Probe (503), restart approved by two, verify (200): the demo's main scenario."""
    opened = await control.open_incident(
        text="checkout-api is down", requester=REQUESTER, channel="C1"
    )
    nonce = next(
        e.nonce
        for e in await control.audit_trail(opened.plan_id)
        if e.event == "approval_requested"
    )
    assert nonce is not None
    await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    await control.vote(nonce=nonce, voter=APPROVER_B, choice=VoteChoice.APPROVE)
    assert (await control.plan_view(opened.plan_id)).status == "succeeded"
    return opened.plan_id


def _dump_store(session: Any) -> dict[str, list[str]]:
    """Every row of every table, as text, sorted: equal dumps mean an unchanged store."""
    out = {}
    for table in SQLModel.metadata.sorted_tables:
        rows = session.connection().execute(table.select()).all()
        out[table.name] = sorted(repr(tuple(row)) for row in rows)
    return out


async def _replay(control: ControlPlane, plan_id: str, **kwargs: Any) -> Any:
    recording = await control.db.run(lambda s: load_recording(s, plan_id))
    return await replay(
        recording,
        config=control.config,
        tools=control.rt.tools,
        signer=control.rt.signer,
        pack=control.rt.pack,
        **kwargs,
    )


async def test_replay_with_verify_503_shows_retries_and_escalation_and_changes_nothing(
    control: ControlPlane, service: DemoService
) -> None:
    plan_id = await _run_main_scenario(control)
    before = await control.db.run(_dump_store)
    calls_before = (service.restarts, service.health_checks)

    report = await _replay(control, plan_id, fail_at=FailAt.parse("verify:status=503"))

    assert report.original.status == "succeeded"
    assert report.replay.status == "failed"
    assert report.replay.escalated
    assert not report.original.escalated
    assert "A human needs to take over" in report.replay.escalation
    verify = next(c for c in report.steps if c.key == "verify")
    assert verify.original is not None
    assert verify.replay is not None
    assert verify.original.status == "succeeded"
    assert verify.original.attempts == 1
    assert verify.replay.status == "failed"
    assert verify.replay.attempts == 3  # idempotent: retried up to max_attempts
    assert verify.replay.calls == ("1:failed", "2:failed", "3:failed")
    assert verify.replay.error == "expected status 200, got 503"
    restart = next(c for c in report.steps if c.key == "restart")
    assert restart.replay is not None
    assert restart.replay.status == "succeeded"
    assert restart.replay.approvals == (f"approved (approve {APPROVER_A}, approve {APPROVER_B})",)
    assert any(d.startswith("plan succeeded -> failed") for d in report.differences)
    assert any("escalated to humans in the replay" in d for d in report.differences)
    assert any("more attempts: verify (1 -> 3)" in d for d in report.differences)
    assert report.missing == ()
    assert report.plan_hash_reproduced is True
    # Nothing live was called, and the live store is byte-for-byte as it was.
    assert (service.restarts, service.health_checks) == calls_before
    assert await control.db.run(_dump_store) == before


async def test_replay_without_failure_reproduces_the_original_run(
    control: ControlPlane, service: DemoService
) -> None:
    plan_id = await _run_main_scenario(control)
    report = await _replay(control, plan_id)
    assert report.replay.status == report.original.status == "succeeded"
    assert all(not c.differs for c in report.steps), [c.differs for c in report.steps]
    assert report.differences == ()
    assert [c.split(": ")[1] for c in report.calls] == ["recorded"] * 3


async def test_forced_error_on_the_restart_is_not_retried_and_ends_the_plan(
    control: ControlPlane,
) -> None:
    plan_id = await _run_main_scenario(control)
    report = await _replay(control, plan_id, fail_at=FailAt.parse("restart:error"))
    restart = next(c for c in report.steps if c.key == "restart")
    assert restart.replay is not None
    assert restart.replay.status == "failed"
    assert restart.replay.attempts == 1  # not idempotent: never sent twice
    assert restart.replay.error_code == "tool_failed"
    verify = next(c for c in report.steps if c.key == "verify")
    assert verify.replay is not None
    assert verify.replay.status == "skipped"
    assert report.replay.escalated


async def test_missing_recorded_responses_are_named(control: ControlPlane) -> None:
    plan_id = await _run_main_scenario(control)
    recording = await control.db.run(lambda s: load_recording(s, plan_id))
    older = dataclasses.replace(
        recording, responses={k: v for k, v in recording.responses.items() if k[0] != "verify"}
    )
    report = await replay(
        older,
        config=control.config,
        tools=control.rt.tools,
        signer=control.rt.signer,
        pack=control.rt.pack,
    )
    assert report.missing == ("verify#1 (http.get)",)
    verify = next(c for c in report.steps if c.key == "verify")
    assert verify.replay is not None
    assert verify.replay.error_code == "replay_missing"


async def test_live_readonly_calls_the_real_reads_only(
    control: ControlPlane, service: DemoService
) -> None:
    plan_id = await _run_main_scenario(control)
    restarts, checks = service.restarts, service.health_checks
    report = await _replay(control, plan_id, live_readonly=True)
    assert service.restarts == restarts  # the restart was answered from the recording
    assert service.health_checks == checks + 2  # probe and verify asked the service
    assert [c.rsplit(": ", 1)[1] for c in report.calls] == ["live", "recorded", "live"]


async def test_recorded_responses_are_kept_per_call(control: ControlPlane) -> None:
    plan_id = await _run_main_scenario(control)
    recording = await control.db.run(lambda s: load_recording(s, plan_id))
    assert set(recording.responses) == {("probe", 1), ("restart", 1), ("verify", 1)}
    assert recording.responses[("probe", 1)]["result"]["status"] == 503


async def test_unfinished_plan_replays_up_to_where_humans_were_asked(
    control: ControlPlane,
) -> None:
    opened = await control.open_incident(
        text="checkout-api is down", requester=REQUESTER, channel="C1"
    )
    report = await _replay(control, opened.plan_id)
    assert report.replay.status == "waiting"
    restart = next(c for c in report.steps if c.key == "restart")
    assert restart.replay is not None
    assert restart.replay.status == "awaiting_approval"


def test_fail_at_parses_and_refuses_clearly() -> None:
    assert FailAt.parse("verify") == FailAt("verify", FailKind.ERROR)
    assert FailAt.parse("verify:timeout").kind is FailKind.TIMEOUT
    assert FailAt.parse("verify:status=503") == FailAt("verify", FailKind.STATUS, 503)
    assert str(FailAt.parse("verify:status=503")) == "verify:status=503"
    for bad in ("", ":error", "verify:boom", "verify:status=5", "verify:status=700"):
        with pytest.raises(OrchestrationError) as info:
            FailAt.parse(bad)
        assert info.value.code == "bad_request"
    with pytest.raises(OrchestrationError, match="its steps are probe, restart"):
        FailAt.parse("nope").check(["probe", "restart"])
    FailAt.parse("undo-restart").check(["probe", "restart"])


async def test_unknown_plan_is_not_found(control: ControlPlane) -> None:
    with pytest.raises(NotFound):
        await control.db.run(lambda s: load_recording(s, "no-such-plan"))
