"""Debugging after the fact: the replay comparison and the audit timeline, for a thread."""

from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import Block

from bot import strings as s
from bot.blocks.layout import context, finish, header, packed, section
from bot.blocks.model import Payload, Rendered, mappings
from bot.blocks.text import esc, usd

MAX_AUDIT_LINES = 60


def _outcome(step: object) -> str:
    if not isinstance(step, Mapping):
        return s.NONE
    status = str(step.get("status") or "")
    error = f", `{esc(step.get('error_code'), 60)}`" if step.get("error_code") else ""
    return s.REPLAY_OUTCOME.format(
        emoji=s.STEP_STATUS_EMOJI.get(status, s.STEP_STATUS_UNKNOWN_EMOJI),
        status=esc(status, 40),
        attempts=esc(step.get("attempts"), 10),
        calls=esc(", ".join(str(c) for c in step.get("calls") or []) or "no call", 200),
        error=error,
    )


def replay_blocks(report: Payload) -> Rendered:
    """A replay report (``ReplayReport.as_json()``): each step original beside replay, then
    the plan, compensation, escalation, budget and what differs."""
    before: Payload = report.get("original") or {}
    after: Payload = report.get("replay") or {}
    pins = ", ".join(f"{k}@{v}" for k, v in (report.get("knowledge_pins") or {}).items())
    summary = s.REPLAY_SUMMARY.format(
        plan=esc(str(report.get("plan_id") or "")[:12], 20),
        runbook=esc(report.get("runbook"), 200),
        version=esc(report.get("plan_version"), 10),
        forced=f"`{esc(report.get('fail_at'), 100)}`" if report.get("fail_at") else "none",
        pins=esc(pins or s.NONE, 500),
        hash=f"`{esc(report.get('plan_hash'), 40)}`",
        reproduced=s.REPLAY_REPRODUCED.get(report.get("plan_hash_reproduced"), ""),
        dot=s.DOT,
    )
    lines = [
        s.REPLAY_STEP.format(
            key=esc(c.get("key"), 80),
            title=esc(c.get("title"), 200),
            differs=s.REPLAY_DIFFERS if c.get("differs") else "",
            original=_outcome(c.get("original")),
            replay=_outcome(c.get("replay")),
        )
        for c in mappings(report.get("steps"))
    ]
    compensation = ", ".join(str(t) for t in after.get("compensation") or []) or (
        s.REPLAY_NO_COMPENSATION if after.get("status") == "failed" else s.NONE
    )
    escalation = (
        esc(after.get("escalation"), 500) if after.get("escalated") else s.REPLAY_NO_ESCALATION
    )
    plan = s.REPLAY_PLAN.format(
        before=esc(before.get("status"), 40),
        after=esc(after.get("status"), 40),
        compensation=esc(compensation, 500),
        escalation=escalation,
        spent_before=usd(before.get("spent_usd")),
        spent_after=usd(after.get("spent_usd")),
        budget=usd(after.get("budget_usd")),
    )
    differences = [f"• {esc(d, 400)}" for d in report.get("differences") or []]
    blocks: list[Block] = [
        header(s.REPLAY_HEADER),
        section(summary),
        *packed(
            lines,
            heading=s.STEPS_HEADING,
            more=lambda n: s.MORE_STEPS.format(emoji=s.MORE_STEPS_EMOJI, count=n),
        ),
        section(plan),
        section(s.REPLAY_DIFFERENCES + "\n" + ("\n".join(differences) or s.REPLAY_SAME)),
    ]
    missing: Sequence[Any] = report.get("missing") or []
    if missing:
        blocks.append(
            section(s.REPLAY_MISSING.format(calls=esc(", ".join(map(str, missing)), 2000)))
        )
    blocks.append(context(s.REPLAY_FOOTER))
    text = s.REPLAY_FALLBACK.format(
        plan=esc(str(report.get("plan_id") or "")[:12], 20),
        before=esc(before.get("status"), 40),
        after=esc(after.get("status"), 40),
    )
    return finish(text, blocks)


_SHOWN = (
    "text",
    "reason",
    "scope",
    "choice",
    "quorum",
    "tool",
    "summary",
    "status",
    "usd",
    "error",
)


def _audit_detail(entry: Payload) -> str:
    detail: Payload = entry.get("detail") or {}
    parts = []
    for key in _SHOWN:
        value = detail.get(key)
        if value not in (None, "", {}):
            parts.append(f"{key}: {value}")
    response = detail.get("response")
    if isinstance(response, Mapping) and response.get("summary"):
        parts.append(f"→ {response.get('summary')}")
    return (" — " + esc("; ".join(parts), 300)) if parts else ""


def audit_blocks(label: str, entries: Sequence[Payload], *, ref: str) -> Rendered:
    """The audit timeline (``Entry.line()`` each), one line per record, oldest first."""
    lines = []
    for entry in entries[:MAX_AUDIT_LINES]:
        step = f" step `{esc(str(entry.get('step_id'))[:8], 10)}`" if entry.get("step_id") else ""
        nonce = f" nonce `{esc(entry.get('nonce'), 60)}`" if entry.get("nonce") else ""
        code = f" `{esc(entry.get('code'), 60)}`" if entry.get("code") else ""
        lines.append(
            s.AUDIT_LINE.format(
                at=esc(str(entry.get("at") or "")[11:19], 10),
                event=esc(entry.get("event"), 60),
                actor=esc(entry.get("actor"), 60),
                role=esc(entry.get("role"), 30),
                step=step + nonce + code,
                detail=_audit_detail(entry),
            )
        )
    blocks: list[Block] = [
        header(s.AUDIT_HEADER),
        *packed(
            lines or [s.NONE],
            heading=f"*{esc(label, 200)}*",
            more=lambda n: s.AUDIT_MORE.format(count=n, ref=esc(ref, 40)),
        ),
    ]
    if len(entries) > MAX_AUDIT_LINES:
        blocks.append(
            context(s.AUDIT_MORE.format(count=len(entries) - MAX_AUDIT_LINES, ref=esc(ref, 40)))
        )
    return finish(s.AUDIT_FALLBACK.format(incident=esc(label, 200), count=len(entries)), blocks)
