"""Applying a recovery playbook inside the unit of work where a failure is decided.

``apply_playbook`` picks the playbook for the failure, records ``playbook_applied``, posts the
``recovery_playbook`` message (manual steps filled in) and, when the playbook has automated
steps, adds a **recovery plan**: the next version of the incident's plans, ``runbook_id``
``playbook:<id>``, pinned to the playbook's knowledge version, its steps gated like any step.
A ``replan`` playbook proposes a fresh plan of the incident from the current knowledge instead.
The caller advances the proposed plan after the commit (``proposed_plans``).

A recovery plan's own failures never trigger a playbook, so recovery cannot loop; an in-doubt
step only ever gets manual steps.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError
from sqlmodel import Session, func, select

from adapters import AdapterError
from common import Role
from orchestration import planner
from orchestration.budgets import past_step_costs
from orchestration.enums import StepKind
from orchestration.errors import OrchestrationError
from orchestration.knowledge import KnowledgeSnapshot, pin_key
from orchestration.lifecycle import ctx_for
from orchestration.materialise import materialise
from orchestration.models import Incident, Plan, Step
from orchestration.records import Ctx, audit, emit
from orchestration.recovery.playbooks import (
    FLAKY_CODES,
    PERMISSION_CODES,
    PLAYBOOK_KIND,
    FailureMode,
    Playbook,
    fill_text,
    latest_documents,
    select_playbook,
    stored_playbooks,
)
from orchestration.rollout.stages import current_stages
from orchestration.runbooks import Runbook, placeholders
from orchestration.runtime import Runtime

RECOVERY_PREFIX = "playbook:"
_PROPOSED = "opsgate_proposed_plans"  # session.info key: plans to advance after the commit
_MAX_FACT = 500
_Proposed = tuple[Plan, list[Step]]


@dataclass(frozen=True)
class Facts:
    """What is known about one failure; fills the playbook's ``{placeholders}``."""

    tool_action: str = ""
    step_title: str = ""
    error_code: str = ""
    error: str = ""
    status: int | None = None  # the HTTP status of the failed call, when it answered

    @classmethod
    def of_step(cls, step: Step) -> "Facts":
        """The facts of a step that failed or went in doubt."""
        status = (step.result or {}).get("status")
        return cls(
            tool_action=step.tool_action,
            step_title=step.title,
            error_code=step.error_code or "",
            error=step.error or "",
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        )

    def codes(self) -> frozenset[str]:
        """The codes a match's ``error_codes`` are compared with (``http_503`` for a 503)."""
        codes = {self.error_code} if self.error_code else set()
        if self.status is not None:
            codes.add(f"http_{self.status}")
        return frozenset(codes)

    def values(self, params: Mapping[str, str]) -> dict[str, str]:
        """Placeholder values: the plan's params, then the facts known (``service`` is a param)."""
        facts = {
            "tool_action": self.tool_action,
            "step_title": self.step_title,
            "error_code": self.error_code,
            "error": self.error[:_MAX_FACT],
        }
        return {**params, **{k: v for k, v in facts.items() if v}}


def failure_mode_of(step: Step) -> FailureMode | None:
    """The failure mode of a failed step, or None when no playbook is about it."""
    if step.kind == StepKind.COMPENSATION.value:
        return FailureMode.COMPENSATION_FAILED
    facts = Facts.of_step(step)
    if facts.error_code in PERMISSION_CODES or facts.status in (401, 403):
        return FailureMode.PERMISSION_ERROR
    if facts.error_code in FLAKY_CODES or (facts.status is not None and facts.status >= 500):
        return FailureMode.TOOL_FLAKY
    return None


def is_recovery_plan(plan: Plan) -> bool:
    """True for a plan a playbook proposed."""
    return plan.runbook_id.startswith(RECOVERY_PREFIX)


def apply_playbook(
    session: Session,
    ctx: Ctx,
    rt: Runtime | None,
    plan: Plan,
    *,
    mode: FailureMode,
    facts: Facts,
) -> str | None:
    """Apply the playbook for ``plan``'s failure; returns the plan to advance after the commit.

    ``rt`` is None where nothing may be automated (in-doubt steps): manual steps only. The
    returned plan id is also queued on the session (``proposed_plans``).
    """
    if is_recovery_plan(plan):
        return None  # a recovery plan's failure goes to humans alone: recovery never loops
    stored = stored_playbooks(session)
    chosen = select_playbook(
        (p for p, _ in stored.values()),
        mode,
        tool_action=facts.tool_action,
        codes=facts.codes(),
    )
    if chosen is None:
        return None
    known = stored[chosen.id][1]
    values = facts.values(plan.params)
    made: _Proposed | None = None
    skipped = ""
    if rt is not None and chosen.steps and mode is not FailureMode.IN_DOUBT:
        made, skipped = _recovery_plan(
            session, ctx, rt, plan, playbook=chosen, known=known, values=values
        )
    elif rt is not None and chosen.replan:
        made, skipped = _replan(session, ctx, rt, plan)
    proposed, steps = made if made is not None else (None, [])
    audit(
        session,
        ctx,
        "playbook_applied",
        code=mode.value,
        role=Role.AUDITOR,
        detail={
            "mode": mode.value,
            "playbook": chosen.id,
            "version": chosen.version,
            "knowledge_version": known,
            "recovery_plan_id": proposed.id if proposed else None,
            "skipped": skipped or None,
        },
    )
    emit(
        session,
        ctx,
        "recovery_playbook",
        {
            "playbook_id": chosen.id,
            "version": chosen.version,
            "title": chosen.title,
            "mode": mode.value,
            "failed_plan_version": plan.version,
            "step_title": facts.step_title,
            "tool_action": facts.tool_action,
            "error_code": facts.error_code,
            "manual": [fill_text(text, values) for text in chosen.manual],
            "replan": chosen.replan,
            "plan": None
            if proposed is None
            else {
                "plan_id": proposed.id,
                "plan_version": proposed.version,
                "runbook_id": proposed.runbook_id,
                "steps": [
                    {"title": s.title, "tool_action": s.tool_action, "risk": s.risk} for s in steps
                ],
            },
            "skipped": skipped or None,
        },
    )
    if proposed is None:
        return None
    audit(
        session,
        ctx_for(proposed, ctx),
        "plan_proposed",
        role=Role.PLANNER,
        actor="planner",
        detail={
            "runbook": proposed.runbook_id,
            "plan_hash": proposed.plan_hash,
            "pins": proposed.knowledge_pins,
            "steps": len(steps),
            "recovers": plan.id,
        },
    )
    session.info.setdefault(_PROPOSED, []).append(proposed.id)
    return proposed.id


def proposed_plans(session: Session) -> list[str]:
    """Take the ids of the plans playbooks proposed in this unit of work (advance them after)."""
    return list(session.info.pop(_PROPOSED, []))


def after_step_failed(
    session: Session, ctx: Ctx, rt: Runtime, plan: Plan, step: Step
) -> str | None:
    """The hook where a step's failure ends ``plan``: tool_flaky, permission_error or
    compensation_failed, by how ``step`` failed."""
    mode = failure_mode_of(step)
    if mode is None:
        return None
    return apply_playbook(session, ctx, rt, plan, mode=mode, facts=Facts.of_step(step))


def after_stale(session: Session, ctx: Ctx, rt: Runtime, plan: Plan) -> str | None:
    """The hook where ``plan`` was invalidated because its pinned knowledge changed."""
    facts = Facts(error_code="plan_stale", error=plan.status_reason)
    return apply_playbook(session, ctx, rt, plan, mode=FailureMode.STALE_CONTEXT, facts=facts)


def after_in_doubt(session: Session, ctx: Ctx, step: Step) -> None:
    """The hook where ``step`` went in doubt: manual steps only, nothing is automated."""
    plan = session.get(Plan, step.plan_id)
    if plan is not None:
        apply_playbook(
            session, ctx, None, plan, mode=FailureMode.IN_DOUBT, facts=Facts.of_step(step)
        )


def _recovery_plan(
    session: Session,
    ctx: Ctx,
    rt: Runtime,
    failed: Plan,
    *,
    playbook: Playbook,
    known: int,
    values: Mapping[str, str],
) -> tuple[_Proposed | None, str]:
    """The playbook's steps as the incident's next plan; (None, why) when they cannot be built."""
    missing = sorted(placeholders([s.model_dump() for s in playbook.steps]) - set(values))
    if missing:
        return None, (
            f"the automated steps need {{{missing[0]}}}, which this plan does not have; "
            "they were not run"
        )
    steps = planner.draft_steps(playbook.steps, values)
    pins = {pin_key(PLAYBOOK_KIND, playbook.id): known} | _policy_pins(session)
    params = dict(failed.params)
    body = {
        "planner": planner.PLANNER_VERSION,
        "playbook": [playbook.id, playbook.version],
        "recovers": failed.id,
        "pins": pins,
        "params": params,
        "steps": [s.model_dump(mode="json", exclude={"args_hash"}) for s in steps],
    }
    draft = planner.PlanDraft(
        runbook_id=f"{RECOVERY_PREFIX}{playbook.id}",
        runbook_version=playbook.version,
        title=playbook.title,
        params=params,
        knowledge_pins=pins,
        steps=steps,
        plan_hash=planner.hash_plan(body),
        score=0,
    )
    return _propose(session, ctx, rt, failed, draft)


def _replan(session: Session, ctx: Ctx, rt: Runtime, stale: Plan) -> tuple[_Proposed | None, str]:
    """A fresh plan of the incident's text from the knowledge stored now."""
    incident = session.get(Incident, stale.incident_id)
    if incident is None:
        return None, "the incident is gone"
    try:
        draft = planner.plan(_current_snapshot(session), incident.text)
    except OrchestrationError as exc:
        return None, f"no fresh plan: {exc.message}"
    return _propose(session, ctx, rt, stale, draft)


def _propose(
    session: Session, ctx: Ctx, rt: Runtime, failed: Plan, draft: planner.PlanDraft
) -> tuple[_Proposed | None, str]:
    """Add ``draft`` as the incident's next plan version."""
    # Lock the incident: two plans ending at once must not both take the next version.
    session.exec(
        select(Incident).where(Incident.id == failed.incident_id).with_for_update()
    ).first()
    latest = session.exec(
        select(func.max(Plan.version)).where(Plan.incident_id == failed.incident_id)
    ).one()
    try:
        plan, steps = materialise(
            rt,
            draft,
            requester=failed.requester,
            incident_id=failed.incident_id,
            channel=failed.channel,
            now=ctx.now,
            correlation_id=failed.correlation_id,
            history=past_step_costs(session, (s.tool_action for s in draft.steps)),
            version=int(latest or failed.version) + 1,
            stages=current_stages(session, rt.config.rollout),
            scope_runbook=failed.runbook_id,  # the scopes of the runbook it recovers
        )
    except AdapterError as exc:  # a tool the playbook names is not configured here
        return None, f"the steps cannot run here: {exc.message}"
    session.add(plan)
    session.add_all(steps)
    session.flush()
    return (plan, steps), ""


def _policy_pins(session: Session) -> dict[str, int]:
    return {
        pin_key(kind, key): row.version
        for (kind, key), row in latest_documents(session, ["policy"]).items()
    }


def _current_snapshot(session: Session) -> KnowledgeSnapshot:
    """What the Planner may read now, from the knowledge store (every replica sees the same)."""
    runbooks: dict[str, Runbook] = {}
    versions: dict[str, int] = {}
    for (kind, key), row in latest_documents(session, ["runbook", "policy"]).items():
        if kind == "runbook":
            try:
                runbooks[key] = Runbook.model_validate(row.body)
            except ValidationError:
                continue
        versions[pin_key(kind, key)] = row.version
    return KnowledgeSnapshot(runbooks=runbooks, versions=versions)
