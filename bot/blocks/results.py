"""Thread messages about outcomes: steps finished or denied, plans blocked or finished,
escalations, and incidents resolved or cancelled."""

from collections.abc import Mapping

from slack_sdk.models.blocks import Block

from bot import strings as s
from bot.blocks.layout import context, finish, section
from bot.blocks.model import MessageKind, Payload, Rendered, as_float, as_int
from bot.blocks.text import (
    actors,
    duration,
    esc,
    esc_reason,
    mention,
    observation_text,
    plural,
    trace_text,
    usd,
)
from orchestration.enums import PlanStatus, StepKind, StepStatus


def render_step_finished(payload: Payload) -> Rendered:
    """``step_finished``: result, duration, cost delta, spend vs budget and trace of one step."""
    status = str(payload.get("status") or "")
    compensation = payload.get("kind") == StepKind.COMPENSATION
    title, tool = esc(payload.get("title"), 500), esc(payload.get("tool_action"), 200)
    if status == StepStatus.SUCCEEDED:
        template = s.COMP_SUCCEEDED if compensation else s.STEP_SUCCEEDED
    elif status == StepStatus.FAILED:
        template = s.COMP_FAILED if compensation else s.STEP_FAILED
    elif status == StepStatus.CANCELLED:
        template = s.STEP_CANCELLED
    else:
        template = s.STEP_OTHER
    observe = payload.get("observe")
    observed = observation_text(observe) if not compensation else ""
    if observed and isinstance(observe, Mapping):
        template = s.STEP_OBSERVED[str(observe.get("seen"))]
    lines = [template.format(title=title, tool=tool, status=esc(status, 40))]
    if observed:
        lines.append(s.OBSERVED.format(observed=observed))
    if payload.get("summary"):
        lines.append(s.RESULT.format(summary=esc(payload.get("summary"), 1200)))
    attempts = as_int(payload.get("attempts"), 1)
    if status in (StepStatus.FAILED, StepStatus.CANCELLED):
        code = payload.get("error_code")
        lines.append(
            s.ERROR.format(
                code=s.ERROR_CODE.format(code=esc(code, 100)) if code else "",
                error=esc(payload.get("error"), 1000),
            )
        )
        lines.append(
            s.NEXT_AFTER_COMP_FAILURE
            if compensation
            else s.NEXT_AFTER_FAILURE.format(attempts=attempts, plural=plural(attempts))
        )
    budget = as_float(payload.get("plan_budget_usd"))
    spent = usd(payload.get("plan_spent_usd"))
    footer = context(
        s.DURATION.format(duration=duration(payload.get("duration_ms"))),
        s.COST.format(cost=usd(payload.get("cost_usd"))),
        s.SPENT.format(spent=spent, budget=usd(budget))
        if budget
        else s.SPENT_NO_BUDGET.format(spent=spent),
        s.ATTEMPTS.format(attempts=attempts),
        trace_text(payload),
    )
    text = s.STEP_FALLBACK.format(status=esc(status, 40), title=title)
    return finish(text, [section("\n".join(lines)), footer])


def render_step_denied(payload: Payload) -> Rendered:
    """``step_denied``: the policy refused a step (the plan halts and escalates)."""
    title = esc(payload.get("title"), 500)
    text = s.STEP_DENIED.format(
        title=title,
        tool=esc(payload.get("tool_action"), 200),
        reason=esc(payload.get("reason")),
    )
    code = s.CODE.format(code=esc(payload.get("code"), 100))
    return finish(
        s.STEP_DENIED_FALLBACK.format(title=title),
        [section(text), context(code, trace_text(payload))],
    )


def render_plan_blocked(payload: Payload) -> Rendered:
    """``plan_blocked``: refused before it started (budget forecast)."""
    reason = esc(payload.get("reason"))
    forecast = s.FORECAST_ONLY.format(forecast=usd(payload.get("forecast_usd")))
    blocks: list[Block] = [
        section(s.PLAN_BLOCKED.format(reason=reason)),
        context(forecast, trace_text(payload)),
    ]
    return finish(s.PLAN_BLOCKED_FALLBACK.format(reason=reason), blocks)


def render_plan_finished(payload: Payload) -> Rendered:
    """``plan_finished``: final status, why, and what it cost."""
    status = str(payload.get("status") or "")
    label = s.PLAN_STATUS.get(status) or esc(status, 60)
    if payload.get("code") == "nothing_to_do" and status == PlanStatus.SUCCEEDED:
        label = s.PLAN_NOTHING_TO_DO
    reason = esc_reason(payload.get("reason"), people=actors(payload))
    text = s.PLAN_FINISHED.format(status=label, reason=reason)
    budget = as_float(payload.get("budget_usd"))
    spent = usd(payload.get("spent_usd"))
    code = payload.get("code")
    footer = context(
        s.SPENT.format(spent=spent, budget=usd(budget))
        if budget
        else s.SPENT_NO_BUDGET.format(spent=spent),
        s.CODE.format(code=esc(code, 100)) if code else "",
        trace_text(payload),
    )
    return finish(s.PLAN_FINISHED_FALLBACK.format(status=label), [section(text), footer])


def render_escalation(payload: Payload) -> Rendered:
    """``escalation``: opsgate stopped; ``@here`` asks humans to take over."""
    reason = esc_reason(payload.get("reason"), people=actors(payload))
    code = s.CODE.format(code=esc(payload.get("code"), 100))
    blocks: list[Block] = [
        section(s.ESCALATION.format(reason=reason)),
        context(code, trace_text(payload)),
    ]
    return finish(s.ESCALATION_FALLBACK.format(reason=reason), blocks)


def _render_closed(kind: MessageKind, payload: Payload) -> Rendered:
    reason = payload.get("reason")
    text = s.INCIDENT_CLOSED[kind].format(
        actor=mention(payload.get("actor")),
        reason=s.VOTE_REASON.format(reason=esc(reason)) if reason else "",
    )
    blocks: list[Block] = [section(text)]
    if payload.get("correlation_id"):
        blocks.append(context(trace_text(payload)))
    return finish(s.INCIDENT_CLOSED_FALLBACK[kind], blocks)


def render_incident_resolved(payload: Payload) -> Rendered:
    """``incident_resolved``: who resolved it, and why (in the thread)."""
    return _render_closed(MessageKind.INCIDENT_RESOLVED, payload)


def render_incident_cancelled(payload: Payload) -> Rendered:
    """``incident_cancelled``: who cancelled it, and why (in the thread)."""
    return _render_closed(MessageKind.INCIDENT_CANCELLED, payload)


def render_alerts_changed(payload: Payload) -> Rendered:
    """``alerts_changed``: alerts of the incident's group that fired or resolved (thread)."""
    lines = []
    for change in list(payload.get("changes") or [])[:10]:
        status = "resolved" if change.get("status") == "resolved" else "firing"
        lines.append(
            s.ALERT_CHANGED[status].format(
                name=esc(str(change.get("name") or "alert"), 100),
                text=esc(str(change.get("text") or ""), 300),
            )
        )
    tally = {
        "firing": int(payload.get("firing") or 0),
        "resolved": int(payload.get("resolved") or 0),
    }
    blocks: list[Block] = [section("\n".join(lines) or s.ALERTS_CHANGED_TALLY.format(**tally))]
    blocks.append(context(s.ALERTS_CHANGED_TALLY.format(**tally)))
    return finish(s.ALERTS_CHANGED_FALLBACK.format(**tally), blocks)
