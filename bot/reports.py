"""Plain-text renderings of replay and audit reports, for a terminal (``opsgate replay|audit``)."""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from orchestration.replay import ReplayReport, StepOutcome
from orchestration.trail import Entry


def _outcome(step: StepOutcome | None) -> str:
    if step is None:
        return "-"
    calls = ", ".join(step.calls) or "no call"
    text = f"{step.status}, {step.attempts} attempt(s) [{calls}]"
    if step.error_code:
        text += f", {step.error_code}"
    return text


def replay_text(report: ReplayReport) -> str:
    """The original run beside the replay, step by step, then what differs."""
    reproduced = {True: "reproduced", False: "NOT reproduced", None: "not checked"}[
        report.plan_hash_reproduced
    ]
    pins = ", ".join(f"{k}@{v}" for k, v in report.knowledge_pins.items()) or "none"
    lines = [
        f"Replay of plan {report.plan_id} (incident {report.incident_id})",
        f"  runbook {report.runbook}, plan v{report.plan_version}, hash {report.plan_hash} "
        f"({reproduced} from the pinned knowledge)",
        f"  knowledge (from the store): {pins}",
        f"  forced failure: {report.fail_at or 'none'}; read-only tools: "
        + ("called for real" if report.live_readonly else "answered from the recording"),
        "",
    ]
    width = max([len(c.key) for c in report.steps] + [4])
    for comparison in report.steps:
        mark = "  <- differs" if comparison.differs else ""
        lines.append(f"  {comparison.key:<{width}}  {comparison.title}{mark}")
        lines.append(f"  {'':<{width}}    original: {_outcome(comparison.original)}")
        lines.append(f"  {'':<{width}}    replay:   {_outcome(comparison.replay)}")
        shown = comparison.replay or comparison.original
        if shown is not None and shown.approvals:
            lines.append(f"  {'':<{width}}    approvals: {'; '.join(shown.approvals)}")
        if comparison.replay is not None and comparison.replay.error and comparison.differs:
            lines.append(f"  {'':<{width}}    replay error: {comparison.replay.error}")
    before, after = report.original, report.replay
    lines += [
        "",
        f"  plan:         original {before.status}; replay {after.status}",
        f"    original: {before.reason or '-'}",
        f"    replay:   {after.reason or '-'}",
        "  compensation: original "
        + (", ".join(before.compensation) or "none")
        + "; replay "
        + (", ".join(after.compensation) or _none_planned(after)),
        f"  escalation:   original {'yes' if before.escalated else 'no'}; replay "
        + (f"yes: {after.escalation}" if after.escalated else "no"),
        f"  budget:       original ${before.spent_usd:.4f}; replay ${after.spent_usd:.4f} "
        f"of ${after.budget_usd:.4f}",
    ]
    if before.playbooks or after.playbooks:
        lines.append(
            f"  playbooks:    original {', '.join(before.playbooks) or 'none'}; "
            f"replay {', '.join(after.playbooks) or 'none'}"
        )
    lines += ["", "Differences:"]
    lines += [f"  - {d}" for d in report.differences] or ["  none: the replay ran as the original"]
    if report.missing:
        lines += ["", "Missing recorded responses (answered as failures):"]
        lines += [f"  - {m}" for m in report.missing]
    lines += ["", "Nothing was written to the live store: the replay ran in a temporary copy."]
    return "\n".join(lines)


def _none_planned(run: object) -> str:
    failed = any(s.status == "failed" for s in getattr(run, "steps", ()))
    return "none planned (nothing to undo)" if failed else "none"


def detail_text(detail: Mapping[str, Any], limit: int = 300) -> str:
    """An entry's detail as ``key=value`` pairs on one line (values as compact JSON)."""
    parts = []
    for key, value in detail.items():
        if value is None or value in ("", {}):
            continue
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={shown}")
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def audit_text(label: str, entries: Sequence[Entry]) -> str:
    """The timeline, one line per record, oldest first."""
    lines = [f"Audit timeline of {label}: {len(entries)} record(s)", ""]
    for entry in entries:
        where = f" step {entry.step_id[:8]}" if entry.step_id else ""
        nonce = f" nonce={entry.nonce}" if entry.nonce else ""
        code = f" code={entry.code}" if entry.code else ""
        lines.append(
            f"{entry.at.isoformat(timespec='seconds')}  {entry.event:<22} "
            f"{entry.actor} ({entry.role}){where}{nonce}{code}  {detail_text(entry.detail)}"
        )
    return "\n".join(lines)
