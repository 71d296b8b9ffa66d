"""The incident's root message: status, requester, plan, its steps with policy, and the forecast."""

from collections.abc import Mapping
from typing import Any

from slack_sdk.models.blocks import Block, DividerBlock

from bot import strings as s
from bot.blocks.agents import llm_cost_line, planner_field
from bot.blocks.layout import context, finish, header, packed, section
from bot.blocks.model import Payload, Rendered, as_float, as_int, mappings
from bot.blocks.text import (
    MAX_HEADER_TEXT,
    ended_by_probe,
    esc,
    esc_reason,
    halted_by,
    mention,
    observation_text,
    one_line,
    plural,
    rejecter,
    risk_badge,
    said_by,
    trace_text,
    usd,
)
from orchestration.enums import PlanStatus, StepKind, StepStatus
from policies.model import Verdict


def _policy(step: Payload) -> str:
    observe = step.get("observe")
    ends = s.ENDS_IF.get(str(observe.get("end_if"))) if isinstance(observe, Mapping) else None
    return _verdict(step) + (ends or "")


def _verdict(step: Payload) -> str:
    verdict = str(step.get("verdict") or "")
    reason = esc(step.get("reason"), 300)
    if verdict == Verdict.ALLOW:
        return s.POLICY_ALLOW
    if verdict == Verdict.REQUIRE_APPROVAL:
        quorum = as_int(step.get("quorum"), 1)
        excl = s.POLICY_NOT_REQUESTER if step.get("exclude_requester") else ""
        return s.POLICY_APPROVALS.format(
            quorum=quorum, plural=plural(quorum), excl=excl, reason=reason
        )
    if verdict == Verdict.DENY:
        return s.POLICY_DENY.format(reason=reason)
    return s.POLICY_OTHER.format(verdict=esc(verdict or None, 40), reason=reason)


def _step_line(n: int, step: Payload, outcome: str | None = None) -> str:
    emoji, risk = risk_badge(step.get("risk"))
    declared = str(step.get("declared_risk") or "")
    risk_text = (
        s.RISK_RAISED.format(risk=risk, declared=esc(declared, 40))
        if declared and declared != str(step.get("risk") or "")
        else s.RISK.format(risk=risk)
    )
    line = s.STEP_LINE.format(
        emoji=emoji,
        n=n,
        title=esc(step.get("title"), 200),
        tool=esc(step.get("tool_action"), 100),
        dot=s.DOT,
        risk=risk_text,
        policy=outcome or _policy(step),
    )
    stage = step.get("stage")
    return f"{line}\n{s.STAGE_LINE.format(stage=esc(stage, 300))}" if stage else line


def _outcome(  # noqa: PLR0911 - one return per way a step ended
    step: Payload, *, plan_reason: str, people: set[str], policy: str = ""
) -> str | None:
    """What became of a step so far, or None while nothing has (the policy line stays)."""
    status = str(step.get("status") or "")
    if status in ("", StepStatus.PENDING):
        return None
    if status == StepStatus.SKIPPED and step.get("decision_code") == "shadow_mode":
        return s.ROOT_STEP_PROPOSED
    label = s.ROOT_STEP_STATUS.get(status) or esc(status.replace("_", " "), 40)
    if status == StepStatus.AWAITING_APPROVAL and policy:
        return s.ROOT_STEP_DETAIL.format(label=label, detail=policy)
    observed = observation_text(step.get("observe"))
    if observed:
        return s.ROOT_STEP_OBSERVED.format(observed=observed)  # the call worked: it answered
    error = step.get("error")
    if status == StepStatus.REJECTED and isinstance(error, str):
        voter = rejecter(error)
        if voter:
            return s.ROOT_STEP_BY.format(label=label, voter=mention(voter))
    if error and status != StepStatus.SUCCEEDED and not said_by(plan_reason, error):
        return s.ROOT_STEP_DETAIL.format(
            label=label, detail=esc_reason(one_line(error, 300), 300, people=people)
        )
    return label


def _progress_lines(
    steps: list[Mapping[str, Any]], progress: Payload | None
) -> tuple[list[str], str | None]:
    """The step lines, each with its outcome once it has one, and the plan's outcome field."""
    if progress is None:
        return [_step_line(n, step) for n, step in enumerate(steps, start=1)], None
    done = mappings(progress.get("steps"))
    by_key = {str(d.get("key")): d for d in done if d.get("kind") != StepKind.COMPENSATION}
    reason = str(progress.get("status_reason") or "")
    status = str(progress.get("status") or "")
    people = {v for d in done if (v := rejecter(str(d.get("error") or "")))}
    people |= halted_by(status, reason)
    lines = []
    for n, step in enumerate(steps, start=1):
        now = by_key.get(str(step.get("key")))
        outcome = (
            _outcome(now, plan_reason=reason, people=people, policy=_policy(step)) if now else None
        )
        lines.append(_step_line(n, step, outcome))
    for comp in (d for d in done if d.get("kind") == StepKind.COMPENSATION):
        label = _outcome(comp, plan_reason=reason, people=people) or s.ROOT_STEP_STATUS["pending"]
        lines.append(
            s.ROOT_COMPENSATION.format(
                title=esc(comp.get("title"), 200),
                tool=esc(comp.get("tool_action"), 100),
                dot=s.DOT,
                outcome=label,
            )
        )
    field = None
    if status == PlanStatus.SUCCEEDED and ended_by_probe(done):
        return lines, s.FIELD_OUTCOME.format(status=s.PLAN_NOTHING_TO_DO, reason="")
    if status:
        label = s.PLAN_STATUS.get(status) or esc(status, 60)
        # A plan cancelled by closing the incident: the status field and the thread say who
        # and why (its reason may be what they typed, or name them by id).
        said = reason and status not in (
            PlanStatus.RUNNING,
            PlanStatus.WAITING,
            PlanStatus.CANCELLED,
        )
        why = esc_reason(one_line(reason, 300), 300, people=people) if said else ""
        field = s.FIELD_OUTCOME.format(
            status=label, reason=s.VOTE_REASON.format(reason=why) if why else ""
        )
    return lines, field


def _forecast(payload: Payload) -> str:
    forecast, budget = as_float(payload.get("forecast_usd")), as_float(payload.get("budget_usd"))
    values = {"forecast": usd(forecast), "budget": usd(budget)}
    if not budget:
        return s.FORECAST_NO_BUDGET.format(**values)
    if forecast is not None and forecast > budget:
        return s.FORECAST_OVER.format(**values)
    return s.FORECAST.format(**values)


def render_incident_root(
    payload: Payload, status: str, progress: Payload | None = None
) -> Rendered:
    """The incident's root message in ``status`` (``open``, ``resolved``, ``cancelled``).

    ``progress`` is the plan as it stands (``PlanView.model_dump(mode="json")`` of the plan the
    root was posted for): each step then shows what became of it instead of what the policy
    said it would need, and a field gives the plan's outcome. Without it, the root shows the
    proposal.
    """
    label = s.INCIDENT_STATUS.get(status) or esc(status, 60)
    steps = mappings(payload.get("steps"))
    lines, outcome = _progress_lines(steps, progress)
    fields = [
        s.FIELD_STATUS.format(status=label),
        s.FIELD_REQUESTER.format(requester=mention(payload.get("requester"))),
        s.FIELD_PLAN.format(title=esc(payload.get("title"), 500)),
        s.FIELD_RUNBOOK.format(
            runbook=esc(payload.get("runbook_id"), 200),
            version=esc(payload.get("plan_version"), 20),
            hash=esc(str(payload.get("plan_hash") or "")[:12] or None, 20),
            dot=s.DOT,
        ),
    ]
    planner = planner_field(payload)
    if planner:
        fields.append(planner)
    if outcome:
        fields.append(outcome)
    blocks: list[Block] = [
        header(s.INCIDENT_HEADER.format(text=one_line(payload.get("text"), MAX_HEADER_TEXT))),
        section(None, fields=fields),
    ]
    params = payload.get("params")
    if isinstance(params, Mapping) and params:
        pairs = sorted((str(k), v) for k, v in params.items())
        shown = s.LIST_SEP.join(f"`{esc(k, 100)}`={esc(v, 200)}" for k, v in pairs)
        blocks.append(context(s.PARAMS.format(params=shown)))
    blocks.append(DividerBlock())
    blocks += packed(
        lines or [s.NO_STEPS],
        heading=s.STEPS_HEADING,
        more=lambda count: s.MORE_STEPS.format(emoji=s.MORE_STEPS_EMOJI, count=count),
    )
    blocks.append(
        context(_forecast(payload), llm_cost_line(payload.get("llm")), trace_text(payload))
    )
    text = s.INCIDENT_FALLBACK.format(status=label, text=esc(payload.get("text"), 500))
    return finish(text, blocks)


def render_incident_opened(payload: Payload) -> Rendered:
    """``incident_opened``: the root message of a freshly opened incident."""
    return render_incident_root(payload, "open")
