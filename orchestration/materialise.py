"""Plan and step rows for a draft: tool metadata decides read-only, idempotent and the risk floor.

Shared by the incidents the control plane opens and the recovery plans playbooks propose, so
both get the same rows from the same kind of draft.
"""

import uuid
from collections.abc import Mapping
from datetime import datetime

from common import Mode, Risk, Role
from orchestration.enums import PlanStatus, StepKind, StepStatus
from orchestration.models import Plan, Step
from orchestration.planner import PlanDraft
from orchestration.rollout.scopes import choose, tool_class
from orchestration.runtime import Runtime
from policies import PolicyContext, assess_risk


def materialise(
    rt: Runtime,
    draft: PlanDraft,
    *,
    requester: str,
    incident_id: str,
    channel: str,
    now: datetime,
    correlation_id: str = "",
    history: Mapping[str, float] | None = None,
    version: int = 1,
    stages: Mapping[str, Mode] | None = None,
    scope_runbook: str | None = None,
) -> tuple[Plan, list[Step]]:
    """Rows for ``draft`` (not added to any session), as version ``version`` of the incident.

    A step's forecast is the draft's ``cost_usd`` when given, else the average of past runs of
    the same tool action (``history``), else the tool's configured cost per call. Each step
    gets the rollout stage it runs under (``steps.rollout``), from the scope rules and the
    stage each scope is in now (``stages``, from ``rollout_stages``); ``scope_runbook`` names
    the runbook scope rules match (a recovery plan: the runbook of the plan it recovers).

    Raises:
        AdapterError: a step names a tool action the registry does not have.
    """
    budgets = rt.config.budgets
    plan = Plan(
        id=uuid.uuid4().hex,
        incident_id=incident_id,
        version=version,
        runbook_id=draft.runbook_id,
        runbook_version=draft.runbook_version,
        knowledge_pins=draft.knowledge_pins,
        params=draft.params,
        plan_hash=draft.plan_hash,
        status=PlanStatus.PROPOSED.value,
        mode=rt.config.mode.value,
        requester=requester,
        channel=channel,
        budget_usd=draft.budget_usd if draft.budget_usd is not None else budgets.plan_usd,
        budget_tokens=(
            draft.budget_tokens if draft.budget_tokens is not None else budgets.plan_tokens
        ),
        soft_ratio=budgets.soft_ratio,
        correlation_id=correlation_id,
        created_at=now,
    )
    steps = []
    canaries: dict[str, str] = {}  # key of the step a canary tries out -> the canary's id
    for position, item in enumerate(draft.steps):
        tool, spec = rt.tools.action(item.tool_action)
        compensate = item.compensate
        if compensate is None and spec.compensation and spec.compensate_from is not None:
            # The tool knows how to undo this action from what the call recorded (e.g. scale
            # back to the count read before): the args are derived once the step has run.
            compensate = {
                "tool": f"{tool.spec.name}.{spec.compensation}",
                "args": None,
                "derived": True,
                "title": f"Undo {item.title}",
                "risk": spec.risk.value,
            }
        risk = item.risk.at_least(spec.risk)
        staged = _stage_of(
            rt, plan, item.tool_action, item.args, risk, spec.read_only, stages, scope_runbook
        )
        estimate = item.cost_usd
        if estimate is None:
            estimate = (history or {}).get(item.tool_action, tool.spec.cost_per_call_usd)
        step_id = uuid.uuid4().hex
        if item.canary_of is not None:
            canaries[item.canary_of] = step_id
        steps.append(
            Step(
                id=step_id,
                plan_id=plan.id,
                position=position,
                key=item.key,
                kind=StepKind.CANARY.value if item.canary_of else StepKind.RUNBOOK.value,
                canary_step=None if item.canary_of else canaries.get(item.key),
                rollout=staged,
                title=item.title,
                tool_action=item.tool_action,
                args=item.args,
                args_hash=item.args_hash,
                declared_risk=risk.value,
                risk=risk.value,
                read_only=spec.read_only,
                idempotent=spec.idempotent,
                expect=item.expect,
                compensate=compensate,
                in_doubt_check=item.check,
                observe=item.observe,
                status=StepStatus.PENDING.value,
                estimate_usd=estimate,
            )
        )
    # A canary runs under its step's stage (a canary of a shadowed step is shadowed too),
    # whatever scope its own, lower-risk action would fall in.
    by_id = {s.id: s for s in steps}
    for step in steps:
        if step.canary_step is not None and step.canary_step in by_id:
            by_id[step.canary_step].rollout = step.rollout
    plan.forecast_usd = sum(s.estimate_usd for s in steps)
    return plan, steps


def _stage_of(  # noqa: PLR0917 - one step's facts
    rt: Runtime,
    plan: Plan,
    tool_action: str,
    args: Mapping[str, object],
    risk: Risk,
    read_only: bool,
    stages: Mapping[str, Mode] | None,
    scope_runbook: str | None = None,
) -> dict[str, object]:
    """``steps.rollout`` for one step: its stage, scope and tool class (by effective risk;
    without scope rules there is nothing to match, so the declared risk is kept)."""
    effective = risk
    if rt.config.rollout.scopes:
        tool, _, action = tool_action.partition(".")
        effective = assess_risk(
            PolicyContext(
                role=Role.EXECUTOR,
                tool=tool,
                action=action,
                args=args,
                risk=risk,
                read_only=read_only,
                mode=rt.config.mode,
                requester=plan.requester,
                approvers=frozenset(),
            ),
            rt.pack,
        ).risk
    choice = choose(
        rt.config.rollout,
        default=rt.config.mode,
        stages=stages or {},
        channel=plan.channel,
        runbook=scope_runbook or plan.runbook_id,
        cls=tool_class(read_only=read_only, risk=effective),
        gated_up_to=rt.pack.gated_runs_alone_up_to,
    )
    return {**choice.as_json(), "risk": effective.value}
