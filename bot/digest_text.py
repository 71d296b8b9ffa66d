"""The daily digest as plain text (``opsgate digest --dry-run``), and the figures' formats.

Pure functions of :class:`orchestration.digest.Digest` / :class:`OpsReport`, shared with the
Block Kit renderers of :mod:`bot.digest`. Nothing here imports Slack's SDK: a dry run prints
the digest without loading it. A figure with nothing to measure (``None``) renders as "n/a".
"""

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from bot import strings as s
from bot.blocks.text import usd
from orchestration.digest import Digest
from orchestration.enums import CallOutcome
from orchestration.opsmetrics import Amount, DaySpend, OpsReport

BAR_WIDTH = 20
BAR_CHARS = " ▏▎▍▌▋▊▉█"


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


def utc_label(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M} UTC"


def share(part: float, total: float) -> str:
    if not total:
        return s.NA
    share = part / total * 100
    return "<1%" if 0 < share < 0.5 else f"{share:.0f}%"


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


def agents_ran(report: OpsReport) -> bool:
    return bool(report.plans_by_llm or report.model_calls or report.model_usage)


def call_outcomes(report: OpsReport) -> str:
    """``3 ok · 1 retried · 1 budget_stopped``: the agents' calls by outcome (0s left out)."""
    totals = {o: sum(c.calls for c in report.model_calls if c.outcome == o) for o in CallOutcome}
    return s.DOT.join(f"{n} {o.value}" for o, n in totals.items() if n)


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


def vs_week(digest: Digest) -> str:
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


def digest_text(digest: Digest) -> str:
    """The same digest as plain text, for ``opsgate digest --dry-run``."""
    report = digest.report
    total = report.spend.usd

    def plain(amounts: Sequence[Amount], base: float) -> str:
        if not amounts:
            return "    (no spend)"
        return "\n".join(
            f"    {a.key or '-':<24} {usd(a.usd):>9}  {share(a.usd, base):>4}  {a.tokens:,} tokens"
            for a in amounts
        )

    week_total = sum(d.usd for d in report.trend)
    lines = [
        f"opsgate daily digest for {digest.day.isoformat()} ({digest.timezone})",
        f"window {utc_label(report.start)} -> {utc_label(report.end)}",
        "",
        f"Spend: {usd(total)}, {report.spend.tokens:,} tokens; "
        f"{report.incidents_opened} incident(s) opened, {report.incidents_resolved} resolved",
        f"  {vs_week(digest)}",
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
        if agents_ran(report)
        else []
    )
