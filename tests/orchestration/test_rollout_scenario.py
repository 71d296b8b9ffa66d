"""One runbook through the stages of trust, on a fake clock, against a real local HTTP service.

30 days of shadow incidents with what humans did (including disagreements), exit criteria
evaluated, a promotion refused while they are unmet and approved once met, supervised runs,
gated runs inside the scope, an elevation outside it (denied: the plan halts), and the automatic
demotion that follows a compensated action.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlmodel import select, update

from bot.digest import digest_text, metrics_blocks, rollout_line
from bot.ops_collector import OpsCollector
from common import FakeClock, Mode
from orchestration.control import ControlPlane
from orchestration.digest import build_digest
from orchestration.enums import VoteChoice
from orchestration.models import (
    AuditEvent,
    HumanAction,
    OutboxMessage,
    Plan,
    RolloutStage,
    Step,
)
from orchestration.rollout.guard import OPS_CHANNEL
from tests.orchestration.helpers import (
    APPROVER_A,
    APPROVER_B,
    REQUESTER,
    make_config,
    make_control,
    serve_locally,
)

DAY = 86400.0
SCOPE = "checkout-changes"

RUNBOOK = """
id: checkout-restart
version: 1
title: Restart a service that is down
match:
  keywords: ["down"]
  patterns: ['(?P<service>[a-z][a-z0-9-]{{1,40}}) is down']
steps:
  - id: probe
    title: Probe {{service}} health
    tool: http.get
    args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/health"}}
    risk: low
  - id: restart
    title: Restart {{service}}
    tool: http.post
    args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/restart"}}
    risk: medium
    expect: {{status: 200}}
    compensate:
      title: Roll back {{service}}
      tool: http.post
      args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/rollback"}}
      risk: medium
  - id: verify
    title: Verify {{service}}
    tool: http.get
    args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/health"}}
    risk: low
"""

ROLLOUT = {
    "scopes": [
        {
            "id": SCOPE,
            "runbook": "checkout-restart",
            "tools": ["state_changing", "destructive"],
            "stage": "shadow",
            "max_risk": "medium",
        }
    ],
    "exit": {
        "shadow": {
            "min_days": 30,
            "min_incidents": 20,
            "max_fp_rate": {"medium": 0.05},
            "max_fn_rate": {"medium": 0.1},
            "max_cost_drift": 0.25,
            "max_compensated": 0,
        },
        "supervised": {"min_days": 7, "min_incidents": 3, "max_fp_rate": {"medium": 0.2}},
    },
}


@dataclass
class Checkout:
    """A service that answers 503 until restarted; a restart can be made to fail."""

    restarts: int = 0
    rollbacks: int = 0
    fail_restart: bool = False
    port: int = 0
    runner: web.AppRunner | None = None
    calls: list[str] = field(default_factory=list)

    async def start(self) -> "Checkout":
        app = web.Application()
        app.router.add_get("/svc/{name}/health", self._health)
        app.router.add_post("/svc/{name}/restart", self._restart)
        app.router.add_post("/svc/{name}/rollback", self._rollback)
        self.runner, self.port = await serve_locally(app)
        return self

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "down"}, status=503)

    async def _restart(self, request: web.Request) -> web.Response:
        self.calls.append(f"restart {request.match_info['name']}")
        if self.fail_restart:
            return web.json_response({"error": "restart failed"}, status=500)
        self.restarts += 1
        return web.json_response({"restarted": True})

    async def _rollback(self, request: web.Request) -> web.Response:
        self.rollbacks += 1
        return web.json_response({"rolled_back": True})


@pytest.fixture
async def checkout() -> AsyncIterator[Checkout]:
    svc = await Checkout().start()
    yield svc
    assert svc.runner is not None
    await svc.runner.cleanup()


@pytest.fixture
async def control(
    db_url: str, tmp_path: Path, clock: FakeClock, checkout: Checkout
) -> AsyncIterator[ControlPlane]:
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "checkout-restart.yaml").write_text(RUNBOOK.format(port=checkout.port))
    config = make_config(folder, rollout=ROLLOUT, slack={"ops_channel": "COPS"})
    cp = await make_control(db_url, config, clock)
    yield cp
    await cp.close()


async def _stage(control: ControlPlane) -> str:
    row = await control.db.run(lambda s: s.get(RolloutStage, SCOPE))
    assert row is not None
    return row.stage


async def _status(control: ControlPlane) -> dict[str, Any]:
    rows = await control.rollout.status()
    return next(r.as_json() for r in rows if r.scope == SCOPE)


async def _nonce(control: ControlPlane, plan_id: str) -> str:
    trail = await control.audit_trail(plan_id)
    nonces = [e.nonce for e in trail if e.event == "approval_requested" and e.nonce]
    assert nonces, [e.event for e in trail]
    return nonces[-1]


async def _promotion_nonce(control: ControlPlane) -> str:
    rows = await control.db.run(
        lambda s: list(
            s.exec(select(AuditEvent).where(AuditEvent.event == "rollout_promotion_requested"))
        )
    )
    assert rows
    assert rows[-1].nonce
    return rows[-1].nonce


async def _shadow_day(control: ControlPlane, clock: FakeClock, day: int) -> None:
    """One shadow incident: opsgate probes and proposes the restart; a human decides."""
    opened = await control.open_incident(text="checkout is down", requester=REQUESTER, channel="C1")
    view = await control.plan_view(opened.plan_id)
    assert view.status == "shadow"
    statuses = {s.key: s.status for s in view.steps}
    assert statuses["probe"] == "succeeded"  # read-only: global mode (supervised) runs it
    assert statuses["restart"] == "skipped"  # shadow: proposed, never run
    if day == 5:  # disagreement: the human did not restart (a false positive)
        await control.close_incident(
            actor=APPROVER_A, resolved=True, incident_id=opened.incident_id
        )
        await control.rollout.record_answer(
            incident_id=opened.incident_id, actor=APPROVER_A, taken=[], other=""
        )
    elif day == 12:  # the human restarted and did more (a false negative)
        for what in ("Restart checkout", "drained the bad node"):
            await control.rollout.record_did(actor=APPROVER_B, channel="C1", ref=None, text=what)
        await control.close_incident(
            actor=APPROVER_B, resolved=True, incident_id=opened.incident_id
        )
    else:
        await control.close_incident(
            actor=APPROVER_A, resolved=True, incident_id=opened.incident_id
        )
        await control.rollout.record_answer(
            incident_id=opened.incident_id, actor=APPROVER_A, taken=["restart"], other=""
        )
    clock.advance(DAY)


async def _supervised_incident(control: ControlPlane, clock: FakeClock) -> None:
    opened = await control.open_incident(text="checkout is down", requester=REQUESTER, channel="C1")
    view = await control.plan_view(opened.plan_id)
    assert {s.key: s.status for s in view.steps}["restart"] == "awaiting_approval"
    nonce = await _nonce(control, opened.plan_id)
    voted = await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    assert voted.accepted
    await asyncio.sleep(0)
    for _ in range(50):
        view = await control.plan_view(opened.plan_id)
        if view.status == "succeeded":
            break
        await asyncio.sleep(0.02)
    assert view.status == "succeeded", view
    await control.close_incident(actor=APPROVER_A, resolved=True, incident_id=opened.incident_id)
    clock.advance(2 * DAY)


async def _promote(control: ControlPlane) -> None:
    asked = await control.rollout.promote(scope=SCOPE, actor=REQUESTER, channel="COPS")
    assert asked.opened, asked.text
    nonce = await _promotion_nonce(control)
    own = await control.rollout.vote(nonce=nonce, voter=REQUESTER, approve=True)
    assert (own.accepted, own.code) == (False, "requester_cannot_approve")
    first = await control.rollout.vote(nonce=nonce, voter=APPROVER_A, approve=True)
    assert (first.accepted, first.state) == (True, "open")
    again = await control.rollout.vote(nonce=nonce, voter=APPROVER_A, approve=True)
    assert again.code == "already_voted"
    second = await control.rollout.vote(nonce=nonce, voter=APPROVER_B, approve=True)
    assert (second.accepted, second.state) == (True, "approved"), second


async def _figures_everywhere(control: ControlPlane, clock: FakeClock) -> None:
    """The same figures in the digest, /incident metrics' blocks and /metrics."""
    day = (clock.now() - timedelta(days=1)).date()
    digest = await control.db.run(
        lambda s: build_digest(
            s, day=day, tz=UTC, rollout=control.config.rollout, mode=control.config.mode
        )
    )
    line = rollout_line(next(r for r in digest.rollout if r["scope"] == SCOPE))
    assert line.startswith(f"{SCOPE} [shadow]: ")
    assert "FP 1/30 (3%), FN 1/30 (3%), agreement 28/30 (93%)" in line
    # the digest is of the day before: its scope had 29 days then, so one criterion is unmet
    assert line.endswith("1 exit criteria unmet")
    assert "Staged trust" in digest_text(digest)
    rows = [r.as_json() for r in await control.rollout.status()]
    assert "ready for supervised" in str(metrics_blocks(digest.report, digest.report, rows).blocks)
    collector = OpsCollector.over(
        control.db, clock=clock, rollout=control.config.rollout, mode=control.config.mode
    )
    await collector.refresh()
    samples = {
        (m.name, tuple(sorted(x.labels.items()))): x.value
        for m in collector.collect()
        for x in m.samples
    }
    assert samples[("opsgate_rollout_stage", (("scope", SCOPE),))] == 0  # shadow
    fp = ("opsgate_rollout_false_positive_ratio", (("scope", SCOPE), ("severity", "medium")))
    assert abs(samples[fp] - 1 / 30) < 1e-9
    assert samples[("opsgate_rollout_agreement_ratio", (("scope", SCOPE),))] == 28 / 30
    assert samples[("opsgate_rollout_exit_criteria_met", (("scope", SCOPE),))] == 1.0


async def _wait_final(control: ControlPlane, plan_id: str) -> str:
    for _ in range(100):
        view = await control.plan_view(plan_id)
        if view.status in ("succeeded", "failed", "halted"):
            return view.status
        await asyncio.sleep(0.02)
    return view.status


async def test_one_runbook_through_shadow_supervised_gated_and_back(
    control: ControlPlane, clock: FakeClock, checkout: Checkout
) -> None:
    assert await _stage(control) == "shadow"

    # --- shadow: ten days in, a promotion is refused with the unmet criteria ---------------
    for day in range(10):
        await _shadow_day(control, clock, day)
    early = await control.rollout.promote(scope=SCOPE, actor=REQUESTER, channel="COPS")
    assert (early.opened, early.code) == (False, "exit_criteria_unmet")
    assert "✗ days in stage: 10.0 (at least 30)" in early.text
    assert "✗ judged incidents: 10 (at least 20)" in early.text
    assert checkout.restarts == 0  # shadow ran nothing that changes state

    for day in range(10, 30):
        await _shadow_day(control, clock, day)
    status = await _status(control)
    # 30 proposals of a medium-risk restart: 1 not taken (day 5); 1 change not proposed (day 12)
    assert status["incidents"] == 30
    assert status["fp"]["medium"] == [1, 30]
    assert status["fn"]["medium"] == [1, 30]  # 1 missed of 29 taken + 1 missed
    assert status["agreement"] == [28, 30]
    assert status["ready"], status["criteria"]
    assert checkout.restarts == 0
    await _figures_everywhere(control, clock)

    # --- promotion to supervised: two approvers, never the requester ----------------------
    await _promote(control)
    assert await _stage(control) == "supervised"
    for _ in range(4):
        await _supervised_incident(control, clock)
    assert checkout.restarts == 4

    # --- promotion to gated ------------------------------------------------------------------
    await _promote(control)
    assert await _stage(control) == "gated"

    # Inside the scope (medium risk): runs without approval.
    opened = await control.open_incident(text="checkout is down", requester=REQUESTER, channel="C1")
    assert await _wait_final(control, opened.plan_id) == "succeeded"
    view = await control.plan_view(opened.plan_id)
    restart = next(s for s in view.steps if s.key == "restart")
    assert restart.decision_code == "gated_runs_alone"
    assert checkout.restarts == 5

    # Outside it (production: escalated to high): elevation is asked, and denied it halts.
    opened = await control.open_incident(
        text="checkout-prod is down", requester=REQUESTER, channel="C1"
    )
    view = await control.plan_view(opened.plan_id)
    restart = next(s for s in view.steps if s.key == "restart")
    assert (restart.status, restart.decision_code) == ("awaiting_approval", "elevation_required")
    assert restart.decision_reason.startswith(
        f"Elevation: the gated stage (scope {SCOPE}) lets opsgate act alone up to medium risk"
    )
    nonce = await _nonce(control, opened.plan_id)
    rejected = await control.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.REJECT)
    assert rejected.accepted
    view = await control.plan_view(opened.plan_id)
    assert view.status == "halted"
    assert checkout.calls.count("restart checkout-prod") == 0

    # --- a compensated action demotes the scope by itself, and ops hears why ---------------
    checkout.fail_restart = True
    opened = await control.open_incident(text="checkout is down", requester=REQUESTER, channel="C1")
    assert await _wait_final(control, opened.plan_id) == "failed"
    assert checkout.rollbacks == 1
    view = await control.plan_view(opened.plan_id)
    assert next(s for s in view.steps if s.key == "restart").status == "compensated"
    assert await _stage(control) == "supervised"
    posted = await control.db.run(
        lambda s: list(s.exec(select(OutboxMessage).where(OutboxMessage.kind == "rollout_changed")))
    )
    demotion = [m for m in posted if m.payload.get("event") == "rollout_demoted"]
    assert len(demotion) == 1
    assert demotion[0].channel == OPS_CHANNEL
    assert demotion[0].payload["from"] == "gated"
    assert "'Restart checkout' compensated" in demotion[0].payload["reason"]
    # The next incident asks for approval again.
    opened = await control.open_incident(text="checkout is down", requester=REQUESTER, channel="C1")
    view = await control.plan_view(opened.plan_id)
    assert {s.key: s.status for s in view.steps}["restart"] == "awaiting_approval"
    # Supervised's criteria start over: the window began with the demotion.
    status = await _status(control)
    assert status["stage"] == Mode.SUPERVISED.value
    assert status["days"] == 0.0


async def test_baseline_card_is_asked_of_a_person_resolver_only(
    control: ControlPlane, clock: FakeClock
) -> None:
    """A person resolving a shadow incident gets the card; an alert resolving it does not."""
    opened = await control.open_incident(text="checkout is down", requester=REQUESTER, channel="C1")
    await control.close_incident(actor=APPROVER_A, resolved=True, incident_id=opened.incident_id)
    asked = await control.db.run(
        lambda s: list(
            s.exec(select(OutboxMessage).where(OutboxMessage.kind == "baseline_requested"))
        )
    )
    assert len(asked) == 1
    assert asked[0].payload["resolver"] == APPROVER_A
    assert [p["key"] for p in asked[0].payload["proposals"]] == ["restart"]
    # Unanswered, the incident is not judged: it counts for nothing yet.
    assert (await _status(control))["incidents"] == 0
    recorded = await control.rollout.record_answer(
        incident_id=opened.incident_id,
        actor=APPROVER_A,
        taken=["restart", "not-a-proposed-step"],
        other="flushed the CDN\n\n- paged the DBA",
    )
    assert recorded is not None
    assert recorded.taken == ("restart",)
    assert recorded.other == ("flushed the CDN", "paged the DBA")
    rows = await control.db.run(lambda s: list(s.exec(select(HumanAction))))
    assert sorted(r.kind for r in rows) == ["answered", "other", "other", "took"]
    status = await _status(control)
    assert status["incidents"] == 1
    assert status["fn"]["medium"] == [2, 3]
    # A second answer from the same person replaces the first; a change told again (by
    # /incident did, in other words' case) counts once.
    await control.rollout.record_answer(
        incident_id=opened.incident_id, actor=APPROVER_A, taken=["restart"], other="Paged the DBA"
    )
    await control.rollout.record_did(
        actor=APPROVER_B, channel="C1", ref=opened.incident_id[:8], text="paged  the dba"
    )
    rows = await control.db.run(lambda s: list(s.exec(select(HumanAction))))
    assert sorted((r.kind, r.text) for r in rows) == [
        ("answered", ""),
        ("other", "Paged the DBA"),
        ("took", ""),
    ]
    assert (await _status(control))["fn"]["medium"] == [1, 2]


async def test_replicas_start_together_and_an_edited_stage_starts_the_scope_over(
    db_url: str, tmp_path: Path, clock: FakeClock, checkout: Checkout, planes: list[ControlPlane]
) -> None:
    """Two control planes starting at once write the stage row once; a promotion survives a
    restart; an edit of the stage in opsgate.yaml starts the scope over in the edited stage."""
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "checkout-restart.yaml").write_text(RUNBOOK.format(port=checkout.port))
    config = make_config(folder, rollout=ROLLOUT)
    first, second = await asyncio.gather(
        make_control(db_url, config, clock), make_control(db_url, config, clock)
    )
    planes += [first, second]
    assert await _stage(first) == "shadow"
    await first.db.run(
        lambda s: s.exec(  # as a promotion leaves it
            update(RolloutStage).where(RolloutStage.scope == SCOPE).values(stage="supervised")
        )
    )
    clock.advance(DAY)
    again = await make_control(db_url, config, clock)
    planes.append(again)
    assert await _stage(again) == "supervised"  # the database's stage wins over the file's start
    edited = {**ROLLOUT, "scopes": [{**ROLLOUT["scopes"][0], "stage": "gated"}]}  # type: ignore[index, dict-item]
    restarted = await make_control(db_url, make_config(folder, rollout=edited), clock)
    planes.append(restarted)
    row = await restarted.db.run(lambda s: s.get(RolloutStage, SCOPE))
    assert row is not None
    assert (row.stage, row.config_stage, row.since) == ("gated", "gated", clock.now())
    assert row.reason == "opsgate.yaml changed its stage from shadow to gated"


async def test_the_bot_schedules_the_rollout_check_only_with_scopes(
    control: ControlPlane, clock: FakeClock
) -> None:
    """FP spikes and cost drift are checked every ``rollout.check_every_s`` when scopes exist;
    the job expires stale promotions too."""
    from bot.app import _scheduler  # noqa: PLC0415 - the bot's scheduler, only for this test
    from bot.digest_job import DigestPoster  # noqa: PLC0415

    jobs = _scheduler(control, DigestPoster(control=control, client=None), expiry_interval_s=5)
    job = jobs.get_job("rollout-check")
    assert job is not None
    assert job.trigger.interval.total_seconds() == 300
    asked = await control.rollout.promote(
        scope=SCOPE, actor=REQUESTER, channel="COPS", override="drill: testing the card"
    )
    assert asked.opened
    clock.advance(25 * 3600)
    assert await control.rollout.check() == []  # nothing to demote in shadow
    nonce = await _promotion_nonce(control)
    late = await control.rollout.vote(nonce=nonce, voter=APPROVER_A, approve=True)
    assert (late.accepted, late.code) == (False, "approval_decided")  # expired by the check


CANARY_RUNBOOK = """
id: canary-restart
version: 1
title: Restart with a canary first
match: {{keywords: ["wobbly"]}}
steps:
  - id: restart
    title: Restart the fleet
    tool: http.post
    args: {{url: "http://127.0.0.1:{port}/svc/fleet/restart"}}
    risk: high
    canary:
      args: {{url: "http://127.0.0.1:{port}/svc/one-host/restart"}}
      risk: medium
"""


async def test_a_canary_runs_under_its_steps_stage_and_a_demotion_reaches_plans_in_flight(
    db_url: str, tmp_path: Path, clock: FakeClock, checkout: Checkout, planes: list[ControlPlane]
) -> None:
    """The canary of a shadowed step is shadowed too (its own medium action would be in no
    scope, so supervised would run it alone); and a scope demoted after a plan was made
    governs that plan's next step at once."""
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "canary-restart.yaml").write_text(CANARY_RUNBOOK.format(port=checkout.port))
    (folder / "checkout-restart.yaml").write_text(RUNBOOK.format(port=checkout.port))
    rollout = {
        "scopes": [
            {
                "id": "fleet",
                "runbook": "canary-restart",
                "tools": ["destructive"],
                "stage": "shadow",
            },
            {**ROLLOUT["scopes"][0], "stage": "gated"},  # type: ignore[index, dict-item]
        ]
    }
    control = await make_control(db_url, make_config(folder, rollout=rollout), clock)
    planes.append(control)
    opened = await control.open_incident(text="the fleet is wobbly", requester=REQUESTER)
    view = await control.plan_view(opened.plan_id)
    assert view.status == "shadow"
    assert {s.key: s.decision_code for s in view.steps} == {
        "canary-restart": "shadow_mode",
        "restart": "shadow_mode",
    }
    assert checkout.calls == []  # not even the canary ran

    # A gated restart waits on a stale approval... the scope is demoted meanwhile.
    plan = await control.db.run(lambda s: s.get(Plan, opened.plan_id))
    step = await control.db.run(
        lambda s: s.exec(
            select(Step).where(Step.plan_id == opened.plan_id, Step.key == "restart")
        ).first()
    )
    assert plan is not None
    assert step is not None
    gated = Step(
        **{
            **step.model_dump(),
            "declared_risk": "medium",
            "canary_step": None,
            "rollout": {"stage": "gated", "scope": SCOPE, "max_risk": "medium"},
        }
    )
    assert control.rt.decide(gated, plan).code == "gated_runs_alone"
    await control.db.run(
        lambda s: s.exec(
            update(RolloutStage).where(RolloutStage.scope == SCOPE).values(stage="supervised")
        )
    )
    assert control.rt.decide(gated, plan).code == "gated_runs_alone"  # not read yet
    assert await control.rollout.refresh() == {"fleet": Mode.SHADOW, SCOPE: Mode.SUPERVISED}
    assert control.rt.decide(gated, plan).code == "needs_one_approval"
