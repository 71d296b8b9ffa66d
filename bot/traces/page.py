"""The trace page: a server-rendered waterfall of one trace's spans, no external assets.

Rows are the plan, its steps and each tool-call attempt, nested by parent and ordered by start;
each bar sits at the span's start and is as wide as its duration on the trace's time axis.
Everything shown comes from stored, sanitised spans and is HTML-escaped here (spans hold what
people typed).
"""

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestration.models import Span

MAX_TEXT = 160
MIN_BAR_PCT = 0.4

STYLE = """
:root { color-scheme: light; --ok: #2e7d32; --bad: #c62828; --wait: #8d6e00; --ink: #1d1c1d;
  --dim: #616061; --line: #e8e8e8; --plan: #4a154b; --step: #1264a3; --tool: #2bac76; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Noto Sans", Arial,
  sans-serif; color: var(--ink); background: #fff; }
header { padding: 16px 24px; border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0 0 4px; }
.meta { color: var(--dim); font-size: 13px; display: flex; flex-wrap: wrap; gap: 4px 18px; }
.meta code, td code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; }
main { padding: 8px 24px 24px; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; min-width: 720px; table-layout: fixed; }
th { text-align: left; font-size: 12px; color: var(--dim); font-weight: 600;
  padding: 6px 8px; border-bottom: 1px solid var(--line); }
td { padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
col.name { width: 34%; } col.status { width: 11%; } col.num { width: 8%; } col.bar { width: 39%; }
.name { overflow-wrap: anywhere; }
.name .kind { display: inline-block; font-size: 11px; color: #fff; border-radius: 3px;
  padding: 0 5px; margin-right: 6px; vertical-align: 1px; }
.kind.plan { background: var(--plan); } .kind.step { background: var(--step); }
.kind.tool_call { background: var(--tool); }
.sub { display: block; color: var(--dim); font-size: 12px; overflow-wrap: anywhere; }
.status { font-weight: 600; overflow-wrap: anywhere; }
.status.ok, .status.succeeded, .status.resolved { color: var(--ok); }
.status.bad { color: var(--bad); } .status.wait { color: var(--wait); }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.track { position: relative; height: 18px; background: #f6f6f6; border-radius: 3px; }
.bar { position: absolute; top: 3px; height: 12px; border-radius: 2px; }
.bar.plan { background: var(--plan); } .bar.step { background: var(--step); }
.bar.tool_call { background: var(--tool); } .bar.bad { background: var(--bad); }
.axis { display: flex; justify-content: space-between; color: var(--dim); font-size: 11px; }
.empty { color: var(--dim); padding: 24px 0; }
"""

_OK = {"ok", "succeeded", "resolved", "verified", "completed"}
_WAIT = {"pending", "running", "awaiting_approval", "skipped", "in_doubt", "cancelled"}


def esc(value: object, limit: int = MAX_TEXT) -> str:
    """``value`` as escaped HTML text, clipped to ``limit`` characters."""
    text = "" if value is None else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=True)


@dataclass
class Row:
    """One span placed in the waterfall."""

    span: Span
    depth: int
    children: list["Row"] = field(default_factory=list)


def _tree(spans: Sequence[Span]) -> list[Row]:
    """Spans nested by parent (a parent not in the trace puts its child at the top)."""
    rows = {span.id: Row(span, 0) for span in spans}
    top: list[Row] = []
    for span in spans:
        row = rows[span.id]
        parent = rows.get(span.parent_id or "")
        (parent.children if parent is not None and parent is not row else top).append(row)

    def key(row: Row) -> tuple[int, datetime, str]:
        return (0 if row.span.kind == "plan" else 1, row.span.started_at, row.span.id)

    flat: list[Row] = []
    seen: set[str] = set()

    def walk(row: Row, depth: int) -> None:
        if row.span.id in seen:  # a cycle in bad data: shown once
            return
        seen.add(row.span.id)
        row.depth = depth
        flat.append(row)
        for child in sorted(row.children, key=key):
            walk(child, depth + 1)

    for row in sorted(top, key=key):
        walk(row, 0)
    return flat


def _end(span: Span) -> datetime:
    return span.ended_at or span.started_at


def _status_class(status: str) -> str:
    if status in _OK:
        return status if status in ("ok", "succeeded", "resolved") else "ok"
    if status in _WAIT:
        return "wait"
    return "bad"


def _cost(span: Span) -> float | None:
    attrs = span.attributes or {}
    for name in ("cost_usd", "spent_usd"):
        value = attrs.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _usd(value: float | None) -> str:
    if value is None:
        return ""
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.4f}"


def _ms(value: float) -> str:
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    minutes, seconds = divmod(int(value // 1000), 60)
    return f"{minutes}m {seconds}s"


def _detail(span: Span) -> str:
    """One line under the name: the attempt, the tool, and what the call or check said."""
    attrs: Mapping[str, Any] = span.attributes or {}
    parts: list[str] = []
    if span.kind == "tool_call" and attrs.get("attempt") is not None:
        parts.append(f"attempt {attrs['attempt']}")
    if attrs.get("dry_run"):
        parts.append("dry run")
    if attrs.get("late"):
        parts.append("late result")
    if span.kind == "step" and attrs.get("tool"):
        parts.append(str(attrs["tool"]))
    for name in ("summary", "check", "reason"):
        if attrs.get(name):
            parts.append(str(attrs[name]))
            break
    return " · ".join(parts)


def _costs(rows: Iterable[Row]) -> dict[str, float]:
    """Each span's cost: its own, else the sum of its children's (a step's attempts)."""
    out: dict[str, float] = {}

    def total(row: Row) -> float | None:
        own = _cost(row.span)
        below = [c for c in (total(child) for child in row.children) if c is not None]
        value = own if own is not None else (sum(below) if below else None)
        if value is not None:
            out[row.span.id] = value
        return value

    for row in rows:
        if row.depth == 0:
            total(row)
    return out


def render_trace(trace_id: str, spans: Sequence[Span], *, expires: datetime | None = None) -> str:
    """The whole page for ``spans`` of ``trace_id``."""
    rows = _tree(spans)
    costs = _costs(rows)
    start = min((s.started_at for s in spans), default=None)
    finish = max((_end(s) for s in spans), default=None)
    total_ms = (finish - start).total_seconds() * 1000 if start and finish else 0.0
    scale = total_ms if total_ms > 0 else 1.0
    plans = sorted({s.plan_id for s in spans if s.plan_id})
    body: list[str] = []
    for row in rows:
        span = row.span
        offset = (span.started_at - start).total_seconds() * 1000 if start else 0.0
        width = min(100.0, max(MIN_BAR_PCT, span.duration_ms / scale * 100))
        left = min(100.0 - width, max(0.0, offset / scale * 100))  # a bar never leaves its track
        status_cls = _status_class(span.status)
        bar_cls = f"bar {esc(span.kind, 20)}" + (" bad" if status_cls == "bad" else "")
        detail = _detail(span)
        indent = 4 + row.depth * 18
        body.append(
            f'<tr data-kind="{esc(span.kind, 20)}" data-status="{esc(span.status, 40)}">'
            f'<td class="name" style="padding-left:{indent}px">'
            f'<span class="kind {esc(span.kind, 20)}">{esc(span.kind.replace("_", " "), 20)}</span>'
            f"{esc(span.name)}"
            + (f'<span class="sub">{esc(detail, 240)}</span>' if detail else "")
            + "</td>"
            f'<td class="status {status_cls}">{esc(span.status, 40)}</td>'
            f'<td class="num">{esc(_ms(span.duration_ms))}</td>'
            f'<td class="num">{esc(_usd(costs.get(span.id)))}</td>'
            f'<td><div class="track"><div class="{bar_cls}" '
            f'style="left:{left:.2f}%;width:{width:.2f}%" '
            f'title="{esc(span.name)}: {esc(_ms(span.duration_ms))}"></div></div></td>'
            "</tr>"
        )
    failed = sum(1 for r in rows if _status_class(r.span.status) == "bad")
    meta = [
        f"trace <code>{esc(trace_id, 128)}</code>",
        *(f"plan <code>{esc(p, 64)}</code>" for p in plans[:3]),
        f"{len(rows)} span{'s' if len(rows) != 1 else ''}",
        f"{failed} failed",
        f"total {esc(_ms(total_ms))}",
    ]
    if start is not None:
        meta.append(f"started {esc(start.strftime('%Y-%m-%d %H:%M:%S UTC'))}")
    if expires is not None:
        meta.append(f"link valid until {esc(expires.strftime('%Y-%m-%d %H:%M UTC'))}")
    title = next((s.name for s in rows_of(rows, "plan")), None) or "trace"
    table = (
        '<table><colgroup><col class="name"><col class="status"><col class="num">'
        '<col class="num"><col class="bar"></colgroup>'
        '<thead><tr><th>span</th><th>status</th><th class="num">duration</th>'
        '<th class="num">cost</th><th><div class="axis"><span>0</span>'
        f"<span>{esc(_ms(total_ms / 2))}</span><span>{esc(_ms(total_ms))}</span></div></th>"
        "</tr></thead><tbody>" + "".join(body) + "</tbody></table>"
        if rows
        else '<p class="empty">No spans recorded for this trace yet.</p>'
    )
    return _page(
        f"opsgate · {esc(title)}",
        f'<header><h1>{esc(title)}</h1><div class="meta">'
        + "".join(f"<span>{m}</span>" for m in meta)
        + f"</div></header><main>{table}</main>",
    )


def rows_of(rows: Iterable[Row], kind: str) -> list[Span]:
    """The spans of ``kind`` among ``rows``."""
    return [r.span for r in rows if r.span.kind == kind]


def render_forbidden() -> str:
    """The plain page of a forged, malformed or expired link (403)."""
    return _page(
        "opsgate · link not valid",
        '<header><h1>This trace link is not valid</h1><div class="meta"><span>It has '
        "expired or was changed. Open the trace from a recent opsgate message in Slack to "
        "get a fresh link.</span></div></header>",
    )


def render_missing(trace_id: str) -> str:
    """The page of a trace with no spans (404)."""
    return _page(
        "opsgate · no such trace",
        f"<header><h1>No spans for trace <code>{esc(trace_id, 128)}</code></h1>"
        '<div class="meta"><span>Nothing was recorded under this id (or it was removed).'
        "</span></div></header>",
    )


def _page(title: str, content: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>{content}</body></html>"
    )
