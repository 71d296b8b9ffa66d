"""The FP / FN / agreement / cost formulas of ``orchestration.rollout.evidence``, by hand.

Each figure below is worked out in the test's comments from the incidents it builds; the rows
are written straight into the database, as the control plane leaves them.
"""

import uuid
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, SQLModel, create_engine, select

from common import Mode, Risk
from orchestration.db import flush_appends
from orchestration.models import HumanAction, Incident, OutboxMessage, Plan, RolloutStage, Step
from orchestration.records import Ctx
from orchestration.rollout.criteria import evaluate, unmet
from orchestration.rollout.evidence import Rate, evidence, judgements, recent_fp
from orchestration.rollout.guard import OPS_CHANNEL, after_failure, check_regressions
from orchestration.rollout.scopes import DEFAULT_SCOPE, choose, tool_class
from orchestration.rollout.settings import ExitCriteria, RolloutConfig, ToolClass

START = datetime(2026, 3, 1, tzinfo=UTC)
SCOPE = "restarts"
CONFIG = RolloutConfig.model_validate(
    {"scopes": [{"id": SCOPE, "runbook": "rb", "tools": ["state_changing"], "stage": "shadow"}]}
)


def _session() -> Session:
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    return Session(engine)


def _incident(
    session: Session,
    day: int,
    *,
    proposals: list[tuple[str, Risk, float]],
    took: list[str] = (),  # type: ignore[assignment]
    other: list[str] = (),  # type: ignore[assignment]
    answered: bool = True,
    closed: bool = True,
    stage: Mode = Mode.SHADOW,
    statuses: dict[str, str] | None = None,
) -> str:
    """An incident on ``day`` whose plan proposed ``proposals`` (key, risk, forecast USD)."""
    at = START + timedelta(days=day)
    incident = Incident(
        id=uuid.uuid4().hex,
        text="svc is down",
        requester="UREQ",
        channel="C1",
        status="resolved" if closed else "open",
        correlation_id="c",
        created_at=at,
    )
    plan = Plan(
        id=uuid.uuid4().hex,
        incident_id=incident.id,
        version=1,
        runbook_id="rb",
        runbook_version=1,
        plan_hash="h",
        status="shadow" if stage is Mode.SHADOW else "succeeded",
        mode="supervised",
        requester="UREQ",
        channel="C1",
        budget_usd=1.0,
        budget_tokens=0,
        correlation_id="c",
        created_at=at,
    )
    session.add_all([incident, plan])
    for position, (key, risk, usd) in enumerate(proposals):
        status = (statuses or {}).get(key, "skipped" if stage is Mode.SHADOW else "succeeded")
        session.add(
            Step(
                id=uuid.uuid4().hex,
                plan_id=plan.id,
                position=position,
                key=key,
                title=key,
                tool_action="http.post",
                args_hash="a",
                declared_risk=risk.value,
                risk=risk.value,
                read_only=False,
                idempotent=False,
                status=status,
                decision_code="shadow_mode" if stage is Mode.SHADOW else "needs_one_approval",
                estimate_usd=usd,
                cost_usd=0.0 if stage is Mode.SHADOW or status == "rejected" else usd,
                rollout={"stage": stage.value, "scope": SCOPE, "risk": risk.value},
            )
        )
    rows = [
        HumanAction(
            incident_id=incident.id, at=at, actor="U1", kind="took", step_key=k, source="card"
        )
        for k in took
    ]
    rows += [
        HumanAction(incident_id=incident.id, at=at, actor="U1", kind="other", text=t, source="did")
        for t in other
    ]
    if answered:
        rows.append(
            HumanAction(incident_id=incident.id, at=at, actor="U1", kind="answered", source="card")
        )
    session.add_all(rows)
    session.commit()
    return incident.id


def test_fp_fn_agreement_and_cost_by_hand() -> None:
    """Six shadow incidents over 10 days, their figures worked out by hand."""
    session = _session()
    med, high = Risk.MEDIUM, Risk.HIGH
    # 1: restart (medium, $0.10) proposed and taken -> TP medium
    _incident(session, 0, proposals=[("restart", med, 0.10)], took=["restart"])
    # 2: restart proposed, not taken (the human did nothing) -> FP medium
    _incident(session, 1, proposals=[("restart", med, 0.10)])
    # 3: restart taken, and the human also drained a node -> TP medium, FN (sev medium)
    _incident(session, 2, proposals=[("restart", med, 0.10)], took=["restart"], other=["drain"])
    # 4: failover (high, $0.40) proposed, not taken; 2 other changes -> FP high, 2 FN (high)
    _incident(session, 5, proposals=[("failover", high, 0.40)], other=["scale", "flush"])
    # 5: nothing proposed, nothing done (probe found it healthy) -> agreement, severity low
    _incident(session, 8, proposals=[])
    # 6: restart proposed, never answered -> not judged, but its cost counts
    _incident(session, 9, proposals=[("restart", med, 0.20)], answered=False)
    found = judgements(session, since=START, until=START + timedelta(days=10))
    seen = evidence(CONFIG, SCOPE, found, since=START, until=START + timedelta(days=10))

    assert seen.incidents == 5  # 6 is not judged
    assert seen.proposals == 5  # 1, 2, 3, 4, 6
    # FP[medium] = 1 (incident 2) / 3 judged medium proposals (1, 2, 3)
    assert seen.fp[med] == Rate(1, 3)
    # FP[high] = 1 / 1 (incident 4)
    assert seen.fp[high] == Rate(1, 1)
    assert seen.fp[Risk.LOW] == Rate(0, 0)
    assert seen.fp[Risk.LOW].value is None
    # FN[medium]: incidents of severity medium are 1, 2, 3: humans made 2 taken + 1 other = 3
    # changes, 1 of them not proposed
    assert seen.fn[med] == Rate(1, 3)
    # FN[high]: incident 4, no proposal taken, 2 other changes: 2 / 2
    assert seen.fn[high] == Rate(2, 2)
    # FN[low]: incident 5 made no change: 0 / 0
    assert seen.fn[Risk.LOW] == Rate(0, 0)
    # agreement: incidents 1 and 5 (no FP, no FN) of 5 judged
    assert seen.agreement == Rate(2, 5)
    # cost per action: (0.10 + 0.10 + 0.10 + 0.40 + 0.20) / 5 = 0.18
    assert abs((seen.cost_per_action or 0) - 0.18) < 1e-9
    # last 7 days (from day 3 on): incidents 4 and 6: (0.40 + 0.20) / 2 = 0.30;
    # drift = |0.30 / 0.18 - 1| = 0.6667
    assert abs((seen.recent_cost_per_action or 0) - 0.30) < 1e-9
    assert abs(seen.cost_drift - 2 / 3) < 1e-9
    assert seen.fp_overall() == Rate(2, 4)
    assert seen.fn_overall() == Rate(3, 5)

    criteria = evaluate(
        ExitCriteria(
            min_days=10,
            min_incidents=5,
            max_fp_rate={med: 0.34, high: 0.5},
            max_fn_rate={med: 0.34},
            max_cost_drift=0.5,
        ),
        seen,
    )
    assert unmet(criteria) == [
        "✗ FP rate high: 1/1 (100.0%) (at most 50.0%)",
        "✗ cost per action drift: 66.7% ($0.1800 per action) (at most 50%)",
    ]
    # The default scope saw nothing of these (every step was planned in the scope).
    assert (
        evidence(
            CONFIG, DEFAULT_SCOPE, found, since=START, until=START + timedelta(days=10)
        ).proposals
        == 0
    )


def test_shadow_incident_needs_a_closed_incident_and_a_baseline() -> None:
    """Open, or closed with nothing recorded: not judged; a silent alert counts as no action."""
    session = _session()
    _incident(session, 0, proposals=[("restart", Risk.MEDIUM, 0.1)], closed=False)
    _incident(session, 1, proposals=[("restart", Risk.MEDIUM, 0.1)], answered=False)
    silent = _incident(session, 2, proposals=[("restart", Risk.MEDIUM, 0.1)], answered=False)
    session.add(
        HumanAction(
            incident_id=silent, at=START, actor="alertmanager", kind="no_action", source="alert"
        )
    )
    session.commit()
    found = judgements(session, since=START, until=START + timedelta(days=3))
    seen = evidence(CONFIG, SCOPE, found, since=START, until=START + timedelta(days=3))
    # Only the silent alert is judged: opsgate proposed a restart nobody needed (a FP).
    assert seen.incidents == 1
    assert seen.fp[Risk.MEDIUM] == Rate(1, 1)


def test_supervised_rejection_is_a_false_positive_and_failures_count() -> None:
    """In supervised, a rejected proposal is the human saying no; failures count apart."""
    session = _session()
    statuses = {"a": "succeeded", "b": "rejected", "c": "compensated"}
    _incident(
        session,
        0,
        proposals=[("a", Risk.MEDIUM, 0.1), ("b", Risk.MEDIUM, 0.1), ("c", Risk.MEDIUM, 0.1)],
        stage=Mode.SUPERVISED,
        statuses=statuses,
        answered=False,
    )
    found = judgements(session, since=START, until=START + timedelta(days=1))
    seen = evidence(CONFIG, SCOPE, found, since=START, until=START + timedelta(days=1))
    assert seen.incidents == 1
    assert seen.fp[Risk.MEDIUM] == Rate(1, 3)
    assert seen.failures == 1
    assert recent_fp(SCOPE, found, last=10) == Rate(1, 3)
    # The rejected step never ran (recorded cost 0): it counts at its forecast, what opsgate
    # would have spent: (0.1 + 0.1 + 0.1) / 3
    assert abs((seen.cost_per_action or 0) - 0.1) < 1e-9


def test_a_step_another_scope_shadow_cut_off_is_no_proposal_of_its_own_scope() -> None:
    """The plan ended at the first shadow proposal; a later supervised step was never put to
    anyone, so it is not a false positive of its scope."""
    session = _session()
    incident = _incident(session, 0, proposals=[("restart", Risk.MEDIUM, 0.1)], took=["restart"])
    plan_id = session.exec(select(Plan.id).where(Plan.incident_id == incident)).one()
    session.add(
        Step(
            id=uuid.uuid4().hex,
            plan_id=plan_id,
            position=5,
            key="notify",
            title="notify",
            tool_action="http.post",
            args_hash="a",
            declared_risk="medium",
            risk="medium",
            read_only=False,
            idempotent=False,
            status="skipped",
            decision_code="shadow_mode",
            rollout={"stage": "supervised", "scope": "other", "risk": "medium"},
        )
    )
    session.commit()
    found = judgements(session, since=START, until=START + timedelta(days=1))
    other = evidence(CONFIG, "other", found, since=START, until=START + timedelta(days=1))
    assert other.proposals == 0
    assert evidence(CONFIG, SCOPE, found, since=START, until=START + timedelta(days=1)).fp[
        Risk.MEDIUM
    ] == Rate(0, 1)


def test_most_specific_rule_wins_and_unmatched_steps_take_the_global_mode() -> None:
    """Specificity first (channel, runbook, tools named), then the order of the rules."""
    config = RolloutConfig.model_validate(
        {
            "scopes": [
                {"id": "all-of-rb", "runbook": "rb", "stage": "supervised"},
                {
                    "id": "rb-changes",
                    "runbook": "rb",
                    "tools": ["state_changing"],
                    "stage": "shadow",
                },
                {
                    "id": "rb-in-c9",
                    "runbook": "rb",
                    "channel": "C9",
                    "tools": "state_changing",
                    "stage": "gated",
                    "max_risk": "high",
                },
            ]
        }
    )

    def pick(channel: str, runbook: str, cls: ToolClass) -> tuple[str, Mode]:
        chosen = choose(
            config, default=Mode.SUPERVISED, stages={}, channel=channel, runbook=runbook, cls=cls
        )
        return chosen.scope, chosen.stage

    assert pick("C1", "rb", ToolClass.STATE_CHANGING) == ("rb-changes", Mode.SHADOW)
    assert pick("C9", "rb", ToolClass.STATE_CHANGING) == ("rb-in-c9", Mode.GATED)
    assert pick("C9", "rb", ToolClass.READ_ONLY) == ("all-of-rb", Mode.SUPERVISED)
    assert pick("C1", "other", ToolClass.DESTRUCTIVE) == (DEFAULT_SCOPE, Mode.SUPERVISED)
    # The stage a scope is in now (a promotion) wins over the rule's starting stage.
    moved = choose(
        config,
        default=Mode.SUPERVISED,
        stages={"rb-changes": Mode.SUPERVISED},
        channel="C1",
        runbook="rb",
        cls=ToolClass.STATE_CHANGING,
    )
    assert moved.stage is Mode.SUPERVISED
    assert moved.why == "scope rb-changes (runbook rb, state-changing steps)"
    assert tool_class(read_only=False, risk=Risk.HIGH) is ToolClass.DESTRUCTIVE
    assert tool_class(read_only=False, risk=Risk.MEDIUM) is ToolClass.STATE_CHANGING
    assert tool_class(read_only=True, risk=Risk.HIGH) is ToolClass.READ_ONLY


def test_rollout_config_refuses_what_cannot_work() -> None:
    """Duplicate ids, a critical bound, exit criteria for the last stage, rates over 1."""
    import pytest  # noqa: PLC0415
    from pydantic import ValidationError  # noqa: PLC0415

    bad = [
        {"scopes": [{"id": "a", "stage": "shadow"}, {"id": "a", "stage": "gated"}]},
        {"scopes": [{"id": "a", "stage": "gated", "max_risk": "critical"}]},
        {"exit": {"gated": {}}},
        {"exit": {"shadow": {"max_fp_rate": {"high": 5}}}},
        {"scopes": [{"id": "a", "stage": "shadow", "tools": ["everything"]}]},
    ]
    for data in bad:
        with pytest.raises(ValidationError):
            RolloutConfig.model_validate(data)


def _staged(session: Session, stage: Mode, *, since: datetime = START) -> None:
    session.add(
        RolloutStage(scope=SCOPE, stage=stage.value, config_stage="shadow", since=since, reason="")
    )
    session.commit()


def _ctx() -> Ctx:
    return Ctx(correlation_id="c", now=START + timedelta(days=20))


def test_fp_spike_demotes_a_supervised_scope_once() -> None:
    """3 rejections in the last 10 judged incidents (30% > 20%) demote supervised to shadow."""
    session = _session()
    _staged(session, Mode.SUPERVISED)
    for day in range(10):
        status = "rejected" if day in (2, 5, 8) else "succeeded"
        _incident(
            session,
            day,
            proposals=[("restart", Risk.MEDIUM, 0.1)],
            stage=Mode.SUPERVISED,
            statuses={"restart": status},
            answered=False,
        )
    demoted = check_regressions(session, CONFIG, _ctx(), now=_ctx().now)
    assert demoted == [SCOPE]
    flush_appends(session)  # what the database worker does before each commit
    session.commit()
    row = session.get(RolloutStage, SCOPE)
    assert row is not None
    assert (row.stage, row.changed_by) == ("shadow", "opsgate")
    assert (
        row.reason
        == "false positives 3/10 (30.0%) in the last 10 judged incidents, over the 20% bound"
    )
    told = session.exec(select(OutboxMessage).where(OutboxMessage.kind == "rollout_changed")).all()
    assert [(m.channel, m.payload["to"]) for m in told] == [(OPS_CHANNEL, "shadow")]
    # Shadow is the lowest stage, and the evidence window started over: nothing more happens.
    assert check_regressions(session, CONFIG, _ctx(), now=_ctx().now) == []


def test_two_rejections_or_too_few_incidents_do_not_demote() -> None:
    """At or under the bound, or fewer judged incidents than the window, the stage holds."""
    session = _session()
    _staged(session, Mode.GATED)
    for day in range(10):
        status = "rejected" if day in (2, 5) else "succeeded"
        _incident(
            session,
            day,
            proposals=[("restart", Risk.MEDIUM, 0.1)],
            stage=Mode.GATED,
            statuses={"restart": status},
            answered=False,
        )
    assert check_regressions(session, CONFIG, _ctx(), now=_ctx().now) == []
    assert (
        check_regressions(
            session,
            CONFIG.model_copy(
                update={"demote": CONFIG.demote.model_copy(update={"fp_window": 20})}
            ),
            _ctx(),
            now=_ctx().now,
        )
        == []
    )


def test_cost_drift_demotes_when_the_last_week_costs_more() -> None:
    """Cost per action $0.10 for two weeks, then $0.50: drift past 25% demotes gated."""
    session = _session()
    _staged(session, Mode.GATED)
    for day in range(14):
        _incident(
            session,
            day,
            proposals=[("restart", Risk.MEDIUM, 0.1)],
            stage=Mode.GATED,
            answered=False,
        )
    for day in range(14, 20):
        _incident(
            session,
            day,
            proposals=[("restart", Risk.MEDIUM, 0.5)],
            stage=Mode.GATED,
            answered=False,
        )
    # overall (14 x 0.1 + 6 x 0.5) / 20 = 0.22; last 7 days (days 13-19): (0.1 + 6 x 0.5) / 7
    assert check_regressions(session, CONFIG, _ctx(), now=_ctx().now) == [SCOPE]
    row = session.get(RolloutStage, SCOPE)
    assert row is not None
    assert row.stage == "supervised"
    assert row.reason.startswith("cost per action drifted 101% in the last 7 days")


def test_an_in_doubt_step_demotes_the_stage_it_ran_in() -> None:
    """A failure demotes only a scope still in the stage the step ran in (once an episode)."""
    session = _session()
    _staged(session, Mode.GATED)
    step = Step(
        id="s1",
        plan_id="p",
        position=0,
        key="restart",
        title="Restart checkout",
        tool_action="http.post",
        args_hash="a",
        declared_risk="medium",
        risk="medium",
        read_only=False,
        idempotent=False,
        status="in_doubt",
        error="In doubt: its replica stopped while the call was in flight.",
        rollout={"stage": "gated", "scope": SCOPE},
    )
    assert after_failure(session, _ctx(), [step]) == [SCOPE]
    assert after_failure(session, _ctx(), [step]) == []  # now supervised: not the stage it ran in
    row = session.get(RolloutStage, SCOPE)
    assert row is not None
    assert row.stage == "supervised"
    assert row.reason == (
        "'Restart checkout' in doubt: In doubt: its replica stopped while the call was in flight."
    )
