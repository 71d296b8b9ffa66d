"""Renderers of the daily digest and ``/incident metrics``: Block Kit, and plain text.

Pure functions of :class:`orchestration.digest.Digest` / :class:`OpsReport`. A figure with
nothing to measure (``None``) renders as "n/a". Lists are clipped (top entries plus a count), so
the digest stays far under Slack's 50 blocks and its per-block limits whatever the history holds.
"""

from collections.abc import Mapping, Sequence
from datetime import date, datetime
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
from orchestration.digest import Digest
from orchestration.enums import CallOutcome
from orchestration.opsmetrics import Amount, DaySpend, OpsReport

TOP_KEYS = 5
TOP_EVENTS = 5
BAR_WIDTH = 20
BAR_CHARS = " ▏▎▍▌▋▊▉█"


# --- figures ------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    """``87.5%``, or "n/a"."""
    return s.NA if value is None else f"{value * 100:.1f}%"


def money(value: float | None) -> str:
    """Dollars (see ``bot.blocks.usd``), or "n/a"."""
    return s.NA if value is None else usd(value)


def span(seconds: float | None) -> str:
    """``45 s``, ``12m 5s``, ``3h 20m`` or ``2d 4h``; "n/a" for None."""
    if seconds is None:
        return s.NA
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.0f} s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60}s"
    if whole < 86_400:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    return f"{whole // 86_400}d {whole % 86_400 // 3600}h"


def day_label(day: date) -> str:
    """``Mon 5 Jan 2026``."""
    return f"{day:%a} {day.day} {day:%b %Y}"


def _utc(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M} UTC"


def _share(part: float, total: float) -> str:
    if not total:
        return s.NA
    share = part / total * 100
    return "<1%" if 0 < share < 0.5 else f"{share:.0f}%"


def amount_lines(amounts: Sequence[Amount], total: float, *, limit: int = TOP_KEYS) -> str:
    """Top ``limit`` keys with spend and share of ``total``, one a line."""
    if not amounts:
        return s.NO_SPEND
    lines = [
        s.AMOUNT_LINE.format(key=esc(a.key or "—", 60), usd=usd(a.usd), share=_share(a.usd, total))
        for a in amounts[:limit]
    ]
    if len(amounts) > limit:
        lines.append(s.AMOUNT_MORE.format(count=len(amounts) - limit))
    return "\n".join(lines)


def _by(what: str, amounts: Sequence[Amount], total: float) -> str:
    text = s.FIELD_BY.format(what=what, lines=amount_lines(amounts, total))
    return text[:MAX_FIELD_TEXT]


def week_totals(trend: Sequence[DaySpend], dim: str) -> tuple[Amount, ...]:
    """Spend over the trend's days by ``dim`` (``by_role``, ``by_tool`` or ``by_runbook``)."""
    acc: dict[str, list[float]] = {}
    for day in trend:
        for amount in getattr(day, dim):
            item = acc.setdefault(amount.key, [0.0, 0])
            item[0] += amount.usd
            item[1] += amount.tokens
    out = [Amount(key=k, usd=v[0], tokens=int(v[1])) for k, v in acc.items()]
    return tuple(sorted(out, key=lambda a: (-a.usd, a.key)))


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


def _agents_ran(report: OpsReport) -> bool:
    return bool(report.plans_by_llm or report.model_calls or report.model_usage)


def _planner_fields(report: OpsReport) -> list[str]:
    """The LLM Planner's share of the plans, once the agents ran (else the digest is as before)."""
    if not _agents_ran(report):
        return []
    return [
        s.OPS_PLANNERS.format(
            value=pct(report.llm_plan_share),
            llm=report.plans_by_llm,
            total=report.plans_proposed,
        )
    ]


def call_outcomes(report: OpsReport) -> str:
    """``3 ok · 1 retried · 1 budget_stopped``: the agents' calls by outcome (0s left out)."""
    totals = {o: sum(c.calls for c in report.model_calls if c.outcome == o) for o in CallOutcome}
    return s.DOT.join(f"{n} {o.value}" for o, n in totals.items() if n)


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
    if not _agents_ran(report):
        return []
    lines = model_lines(report) or [s.NO_SPEND]
    return [s.OPS_MODEL_TOKENS.format(lines="\n".join(lines))[:MAX_FIELD_TEXT]]


def _bar(value: float, peak: float) -> str:
    if peak <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / peak * BAR_WIDTH * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + (BAR_CHARS[rest] if rest else "")


def trend_table(trend: Sequence[DaySpend]) -> str:
    """One line a day: date, spend, a bar scaled to the busiest day, its top tool."""
    peak = max((d.usd for d in trend), default=0.0)
    lines = []
    for day in trend:
        top = f"  {day.by_tool[0].key} {usd(day.by_tool[0].usd)}" if day.by_tool else ""
        line = f"{day.day:%a %d %b}  {usd(day.usd):>9}  {_bar(day.usd, peak):<{BAR_WIDTH}}{top}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def _vs_week(digest: Digest) -> str:
    trend = digest.report.trend
    average = sum(d.usd for d in trend) / len(trend) if trend else 0.0
    if not average:
        return s.DIGEST_NO_AVERAGE
    change = (digest.report.spend.usd - average) / average * 100
    return s.DIGEST_VS_WEEK.format(
        avg=usd(average),
        dot=s.DOT,
        change=s.DIGEST_CHANGE.format(sign="+" if change >= 0 else "−", pct=abs(change)),
    )


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
        section(f"{spend}\n{_vs_week(digest)}"),
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
                start=_utc(report.start), end=_utc(report.end), tz=digest.timezone, dot=s.DOT
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


def digest_text(digest: Digest) -> str:
    """The same digest as plain text, for ``opsgate digest --dry-run``."""
    report = digest.report
    total = report.spend.usd

    def plain(amounts: Sequence[Amount], base: float) -> str:
        if not amounts:
            return "    (no spend)"
        return "\n".join(
            f"    {a.key or '-':<24} {usd(a.usd):>9}  {_share(a.usd, base):>4}  {a.tokens:,} tokens"
            for a in amounts
        )

    week_total = sum(d.usd for d in report.trend)
    lines = [
        f"opsgate daily digest for {digest.day.isoformat()} ({digest.timezone})",
        f"window {_utc(report.start)} -> {_utc(report.end)}",
        "",
        f"Spend: {usd(total)}, {report.spend.tokens:,} tokens; "
        f"{report.incidents_opened} incident(s) opened, {report.incidents_resolved} resolved",
        f"  {_vs_week(digest)}",
        "  by role:",
        plain(report.by_role, total),
        "  by tool:",
        plain(report.by_tool, total),
        "  by runbook:",
        plain(report.by_runbook, total),
        "  by channel:",
        plain(report.by_channel, total),
        "",
        f"7-day trend ({usd(week_total)}):",
        *(f"  {line}" for line in trend_table(report.trend).splitlines()),
        "  7 days by role:",
        plain(week_totals(report.trend, "by_role"), week_total),
        "  7 days by tool:",
        plain(week_totals(report.trend, "by_tool"), week_total),
        "  7 days by runbook:",
        plain(week_totals(report.trend, "by_runbook"), week_total),
        "",
        "Costliest plans:",
    ]
    lines += [
        f"  {n}. {usd(p.usd)}  {p.runbook_id}  {p.status}  {p.incident_text!r}  plan {p.plan_id}"
        for n, p in enumerate(report.costliest, start=1)
    ] or ["  (none)"]
    lines += [
        "",
        f"Budget: {report.budget_warning_count} warning(s), {report.budget_stop_count} stop(s)",
    ]
    events = sorted((*report.budget_stops, *report.budget_warnings), key=lambda e: e.at)
    lines += [
        f"  {e.at:%Y-%m-%d %H:%M} {e.kind:<8} {e.runbook_id} plan {e.plan_id}: {e.reason}"
        for e in events
    ]
    lines += ["", "Operations (plans finished in the window):", *_ops_text(report)]
    lines += _people_text(digest)
    if digest.rollout:
        lines += ["", "Staged trust (each scope since its stage began):"]
        lines += [f"  {rollout_line(row)}" for row in digest.rollout]
    return "\n".join(lines)


def _ratio(pair: Sequence[int]) -> str:
    count, total = pair
    return f"{count}/{total}" + (f" ({count / total:.0%})" if total else "")


def rollout_line(row: Mapping[str, Any]) -> str:
    """One scope: ``checkout `shadow` 31.0 days, 30 judged, FP 1/30, ..., criteria met``."""
    fp = [sum(v[0] for v in row["fp"].values()), sum(v[1] for v in row["fp"].values())]
    fn = [sum(v[0] for v in row["fn"].values()), sum(v[1] for v in row["fn"].values())]
    cpa = row.get("cost_per_action_usd")
    if row.get("next_stage") is None:
        verdict = "last stage"
    elif row.get("ready"):
        verdict = f"exit criteria met: ready for {row['next_stage']}"
    else:
        missing = sum(1 for c in row.get("criteria") or [] if not c["met"])
        verdict = f"{missing} exit criteria unmet"
    return (
        f"{row['scope']} [{row['stage']}]: {row['days']} days, {row['incidents']} judged, "
        f"FP {_ratio(fp)}, FN {_ratio(fn)}, agreement {_ratio(row['agreement'])}, "
        f"{'-' if cpa is None else usd(float(cpa))} per action; {verdict}"
    )


def rollout_blocks(rows: Sequence[Mapping[str, Any]]) -> list[Block]:
    """The digest's and ``/incident metrics``' staged-trust section (none without scopes)."""
    if not rows:
        return []
    lines = [f"• {esc(rollout_line(row), 400)}" for row in rows[:15]]
    return [section("\n".join([s.ROLLOUT_HEADING, *lines]))]


def people_line(digest: Digest) -> str | None:
    """The people time of the window's votes and its price, when a rate is configured."""
    rate = digest.people_usd_per_hour
    if rate is None:
        return None
    report = digest.report
    return s.PEOPLE_TIME.format(
        time=span(report.people_s),
        votes=report.people_votes,
        usd=usd(report.people_s / 3600 * rate),
        rate=usd(rate),
    )


def _people_text(digest: Digest) -> list[str]:
    line = people_line(digest)
    if line is None:
        return []
    return [
        "",
        line.replace("*", ""),
        *(f"  {p.voter:<24} {span(p.seconds):>9}  {p.votes} vote(s)" for p in digest.report.people),
    ]


def _ops_text(report: OpsReport) -> list[str]:
    return [
        f"  mean time to resolve        {span(report.mttr_s)} "
        f"({report.incidents_resolved} resolved)",
        f"  action success rate         {pct(report.action_success_rate)} "
        f"({report.actions_succeeded}/{report.actions_executed} actions)",
        f"  humans took over            {pct(report.escalation_rate)} "
        f"({report.plans_escalated}/{report.plans_finished} plans halted, denied, failed, "
        "in doubt or timed out)",
        f"  cost per successful action  {money(report.cost_per_successful_action_usd)}",
        f"  false-positive rate         {pct(report.false_positive_rate)} "
        f"({report.changes_false_positive}/{report.changes_decided} changes)",
        f"  change lead time            {span(report.change_lead_time_s)} "
        f"({report.plans_finished} plans, {report.plans_succeeded} succeeded)",
        f"  cache hit rate              {pct(report.cache_hit_rate)} "
        f"({report.cache_hits}/{report.cache_hits + report.cache_misses} lookups)",
    ] + (
        [
            f"  plans by the LLM Planner    {pct(report.llm_plan_share)} "
            f"({report.plans_by_llm}/{report.plans_proposed} plans proposed; the rest runbooks)",
            "  model tokens (role, model):",
            *(
                f"    {u.role:<11} {u.model:<24} {u.tokens:>9,} tokens  {usd(u.usd):>9}  "
                f"{u.calls} call(s)"
                for u in report.model_usage
            ),
            *([f"    calls: {outcomes}"] if (outcomes := call_outcomes(report)) else []),
        ]
        if _agents_ran(report)
        else []
    )


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
                    label=label, dot=s.DOT, start=_utc(report.start), end=_utc(report.end)
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
