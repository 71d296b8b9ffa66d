"""Plan and step rows for a draft: tool metadata decides read-only, idempotent and the risk floor.

Shared by the incidents the control plane opens and the recovery plans playbooks propose, so
both get the same rows from the same kind of draft.
"""

import uuid
from collections.abc import Mapping
from datetime import datetime

from orchestration.enums import PlanStatus, StepKind, StepStatus
from orchestration.models import Plan, Step
from orchestration.planner import PlanDraft
from orchestration.runtime import Runtime


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
) -> tuple[Plan, list[Step]]:
    """Rows for ``draft`` (not added to any session), as version ``version`` of the incident.

    A step's forecast is the draft's ``cost_usd`` when given, else the average of past runs of
    the same tool action (``history``), else the tool's configured cost per call.

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
    plan.forecast_usd = sum(s.estimate_usd for s in steps)
    return plan, steps
