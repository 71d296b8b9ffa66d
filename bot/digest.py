"""Block Kit renderers of the daily digest and ``/incident metrics`` (text: ``bot.digest_text``).

Pure functions of :class:`orchestration.digest.Digest` / :class:`OpsReport`. A figure with
nothing to measure (``None``) renders as "n/a". Lists are clipped (top entries plus a count), so
the digest stays far under Slack's 50 blocks and its per-block limits whatever the history holds.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import Block, DividerBlock

from bot import strings as s
from bot.blocks import (
    MAX_FIELD_TEXT,
    Rendered,
    context,
    esc,
    finish,
    header,
    one_line,
    section,
    usd,
)
from bot.digest_text import (
    agents_ran,
    call_outcomes,
    day_label,
    digest_text,
    money,
    pct,
    people_line,
    rollout_line,
    share,
    span,
    trend_table,
    utc_label,
    vs_week,
    week_totals,
)
from orchestration.digest import Digest
from orchestration.opsmetrics import Amount, OpsReport

__all__ = [  # the text renderers live in bot.digest_text; imported from here as before
    "day_label",
    "digest_blocks",
    "digest_text",
    "metrics_blocks",
    "ops_fields",
    "rollout_line",
]

TOP_KEYS = 5
TOP_EVENTS = 5


# --- figures ------------------------------------------------------------------------------


def amount_lines(amounts: Sequence[Amount], total: float, *, limit: int = TOP_KEYS) -> str:
    """Top ``limit`` keys with spend and share of ``total``, one a line."""
    if not amounts:
        return s.NO_SPEND
    lines = [
        s.AMOUNT_LINE.format(key=esc(a.key or "—", 60), usd=usd(a.usd), share=share(a.usd, total))
        for a in amounts[:limit]
    ]
    if len(amounts) > limit:
        lines.append(s.AMOUNT_MORE.format(count=len(amounts) - limit))
    return "\n".join(lines)


def _by(what: str, amounts: Sequence[Amount], total: float) -> str:
    text = s.FIELD_BY.format(what=what, lines=amount_lines(amounts, total))
    return text[:MAX_FIELD_TEXT]


def ops_fields(report: OpsReport) -> list[str]:
    """The operational figures as section fields (8, within Slack's 10)."""
    return [
        s.OPS_MTTR.format(value=span(report.mttr_s), count=report.incidents_resolved),
        s.OPS_SUCCESS.format(
            value=pct(report.action_success_rate),
            ok=report.actions_succeeded,
            total=report.actions_executed,
        ),
        s.OPS_ESCALATION.format(
            value=pct(report.escalation_rate),
            count=report.plans_escalated,
            total=report.plans_finished,
        ),
        s.OPS_COST_PER.format(value=money(report.cost_per_successful_action_usd)),
        s.OPS_FALSE_POSITIVE.format(
            value=pct(report.false_positive_rate),
            count=report.changes_false_positive,
            total=report.changes_decided,
        ),
        s.OPS_LEAD_TIME.format(value=span(report.change_lead_time_s), total=report.plans_finished),
        s.OPS_CACHE.format(
            value=pct(report.cache_hit_rate),
            hits=report.cache_hits,
            lookups=report.cache_hits + report.cache_misses,
        ),
        s.OPS_SPEND.format(usd=usd(report.spend.usd), dot=s.DOT, tokens=f"{report.spend.tokens:,}"),
        *_planner_fields(report),
        *_model_fields(report),
    ]


def _planner_fields(report: OpsReport) -> list[str]:
    """The LLM Planner's share of the plans, once the agents ran (else the digest is as before)."""
    if not agents_ran(report):
        return []
    return [
        s.OPS_PLANNERS.format(
            value=pct(report.llm_plan_share),
            llm=report.plans_by_llm,
            total=report.plans_proposed,
        )
    ]


def model_lines(report: OpsReport) -> list[str]:
    """One line per role and model: tokens, USD, metered calls (top entries, then a count)."""
    lines = [
        s.OPS_MODEL_LINE.format(
            role=esc(u.role, 40),
            model=esc(u.model, 60),
            tokens=f"{u.tokens:,}",
            usd=usd(u.usd),
            calls=u.calls,
        )
        for u in report.model_usage[:TOP_KEYS]
    ]
    if len(report.model_usage) > TOP_KEYS:
        lines.append(s.OPS_MODEL_MORE.format(count=len(report.model_usage) - TOP_KEYS))
    if outcomes := call_outcomes(report):
        lines.append(s.OPS_MODEL_CALLS.format(outcomes=outcomes))
    return lines


def _model_fields(report: OpsReport) -> list[str]:
    """Tokens and USD by role and model, and the calls by outcome, once the agents ran."""
    if not agents_ran(report):
        return []
    lines = model_lines(report) or [s.NO_SPEND]
    return [s.OPS_MODEL_TOKENS.format(lines="\n".join(lines))[:MAX_FIELD_TEXT]]


def _costly_lines(report: OpsReport) -> list[str]:
    return [
        s.COSTLY_LINE.format(
            n=n,
            usd=usd(plan.usd),
            dot=s.DOT,
            runbook=esc(plan.runbook_id, 80),
            status=s.PLAN_STATUS.get(plan.status) or esc(plan.status, 40),
            text=esc(one_line(plan.incident_text, 120), 300),
            plan=esc(plan.plan_id[:8], 20),
        )
        for n, plan in enumerate(report.costliest, start=1)
    ]


def _budget_lines(report: OpsReport) -> list[str]:
    events = sorted(
        (*report.budget_stops, *report.budget_warnings), key=lambda e: (e.at, e.plan_id)
    )
    return [
        s.BUDGET_LINE.format(
            kind=s.BUDGET_KIND.get(event.kind, event.kind),
            dot=s.DOT,
            runbook=esc(event.runbook_id, 80),
            plan=esc(event.plan_id[:8], 20),
            reason=esc(one_line(event.reason, 200), 400),
        )
        for event in events[-TOP_EVENTS:]
    ]


def _budget_heading(report: OpsReport) -> str:
    return s.BUDGET_HEADING.format(
        dot=s.DOT,
        warnings=report.budget_warning_count,
        wplural="" if report.budget_warning_count == 1 else "s",
        stops=report.budget_stop_count,
        splural="" if report.budget_stop_count == 1 else "s",
    )


# --- the digest ---------------------------------------------------------------------------


def digest_blocks(digest: Digest) -> Rendered:
    """The daily digest message (the chart follows in its thread)."""
    report = digest.report
    total = report.spend.usd
    trend = report.trend
    week_total = sum(d.usd for d in trend)
    spend = s.DIGEST_SPEND.format(
        usd=usd(total),
        dot=s.DOT,
        tokens=f"{report.spend.tokens:,}",
        opened=report.incidents_opened,
        plural="" if report.incidents_opened == 1 else "s",
        resolved=report.incidents_resolved,
    )
    blocks: list[Block] = [
        header(s.DIGEST_HEADER.format(day=day_label(digest.day))),
        section(f"{spend}\n{vs_week(digest)}"),
        section(
            None,
            fields=[
                _by(s.BY_ROLE, report.by_role, total),
                _by(s.BY_TOOL, report.by_tool, total),
                _by(s.BY_RUNBOOK, report.by_runbook, total),
                _by(s.BY_CHANNEL, report.by_channel, total),
            ],
        ),
        section(
            s.TREND_HEADING.format(dot=s.DOT, total=usd(week_total))
            + f"\n```\n{trend_table(trend)}\n```"
        ),
        section(
            None,
            fields=[
                _by(s.WEEK_BY_ROLE, week_totals(trend, "by_role"), week_total),
                _by(s.WEEK_BY_TOOL, week_totals(trend, "by_tool"), week_total),
                _by(s.WEEK_BY_RUNBOOK, week_totals(trend, "by_runbook"), week_total),
            ],
        ),
        DividerBlock(),
        section("\n".join([s.COSTLIEST_HEADING, *(_costly_lines(report) or [s.NO_PLANS])])),
        section("\n".join([_budget_heading(report), *(_budget_lines(report) or [s.BUDGET_NONE])])),
        DividerBlock(),
        section(s.OPS_HEADING),
        section(None, fields=ops_fields(report)),
        *([section(people)] if (people := people_line(digest)) else []),
        *rollout_blocks(digest.rollout),
        context(
            s.DIGEST_FOOTER.format(
                start=utc_label(report.start),
                end=utc_label(report.end),
                tz=digest.timezone,
                dot=s.DOT,
            )
        ),
    ]
    text = s.DIGEST_FALLBACK.format(
        day=digest.day.isoformat(),
        spend=usd(total),
        plans=report.plans_finished,
        plural="" if report.plans_finished == 1 else "s",
        success=pct(report.action_success_rate),
    )
    return finish(text, blocks)


def rollout_blocks(rows: Sequence[Mapping[str, Any]]) -> list[Block]:
    """The digest's and ``/incident metrics``' staged-trust section (none without scopes)."""
    if not rows:
        return []
    lines = [f"• {esc(rollout_line(row), 400)}" for row in rows[:15]]
    return [section("\n".join([s.ROLLOUT_HEADING, *lines]))]


# --- /incident metrics --------------------------------------------------------------------


def metrics_blocks(
    day: OpsReport, week: OpsReport, rollout: Sequence[Mapping[str, Any]] = ()
) -> Rendered:
    """``/incident metrics``: the operational figures of the last 24 hours and 7 days, and
    each rollout scope's stage and evidence."""
    blocks: list[Block] = [header(s.METRICS_HEADER)]
    for label, report in ((s.METRICS_DAY, day), (s.METRICS_WEEK, week)):
        blocks.append(
            section(
                s.METRICS_WINDOW.format(
                    label=label, dot=s.DOT, start=utc_label(report.start), end=utc_label(report.end)
                ),
                fields=ops_fields(report),
            )
        )
    blocks += rollout_blocks(rollout)
    blocks.append(context(s.METRICS_FOOTER.format(dot=s.DOT)))
    text = s.METRICS_FALLBACK.format(
        spend=usd(day.spend.usd), success=pct(day.action_success_rate), mttr=span(day.mttr_s)
    )
    return finish(text, blocks)
