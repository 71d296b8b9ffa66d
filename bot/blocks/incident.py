"""The incident's root message: status, requester, plan, its steps with policy, and the forecast."""

from collections.abc import Mapping

from slack_sdk.models.blocks import Block, DividerBlock

from bot import strings as s
from bot.blocks.layout import context, finish, header, packed, section
from bot.blocks.model import Payload, Rendered, as_float, as_int, mappings
from bot.blocks.text import (
    MAX_HEADER_TEXT,
    esc,
    mention,
    one_line,
    plural,
    risk_badge,
    trace_text,
    usd,
)
from policies.model import Verdict


def _policy(step: Payload) -> str:
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


def _step_line(n: int, step: Payload) -> str:
    emoji, risk = risk_badge(step.get("risk"))
    declared = str(step.get("declared_risk") or "")
    risk_text = (
        s.RISK_RAISED.format(risk=risk, declared=esc(declared, 40))
        if declared and declared != str(step.get("risk") or "")
        else s.RISK.format(risk=risk)
    )
    return s.STEP_LINE.format(
        emoji=emoji,
        n=n,
        title=esc(step.get("title"), 200),
        tool=esc(step.get("tool_action"), 100),
        dot=s.DOT,
        risk=risk_text,
        policy=_policy(step),
    )


def _forecast(payload: Payload) -> str:
    forecast, budget = as_float(payload.get("forecast_usd")), as_float(payload.get("budget_usd"))
    values = {"forecast": usd(forecast), "budget": usd(budget)}
    if not budget:
        return s.FORECAST_NO_BUDGET.format(**values)
    if forecast is not None and forecast > budget:
        return s.FORECAST_OVER.format(**values)
    return s.FORECAST.format(**values)


def render_incident_root(payload: Payload, status: str) -> Rendered:
    """The incident's root message in ``status`` (``open``, ``resolved``, ``cancelled``)."""
    label = s.INCIDENT_STATUS.get(status) or esc(status, 60)
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
    steps = mappings(payload.get("steps"))
    lines = [_step_line(n, step) for n, step in enumerate(steps, start=1)] or [s.NO_STEPS]
    blocks += packed(
        lines,
        heading=s.STEPS_HEADING,
        more=lambda count: s.MORE_STEPS.format(emoji=s.MORE_STEPS_EMOJI, count=count),
    )
    blocks.append(context(_forecast(payload), trace_text(payload)))
    text = s.INCIDENT_FALLBACK.format(status=label, text=esc(payload.get("text"), 500))
    return finish(text, blocks)


def render_incident_opened(payload: Payload) -> Rendered:
    """``incident_opened``: the root message of a freshly opened incident."""
    return render_incident_root(payload, "open")
