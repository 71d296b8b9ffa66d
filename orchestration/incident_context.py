"""The incident data a step's ``${incident:NAME}`` references take when the step runs.

Read in the unit of work that starts the step (``stepflow.start_step``), only for the names
the step's args refer to, so a step without references costs nothing. ``timeline`` is the
incident's audit trail (time, event, who; oldest first, at most ``MAX_TIMELINE`` lines);
``costs`` is the spend per tool and in total. Both are built from records that are already
redacted.
"""

from collections import defaultdict
from collections.abc import Collection

from sqlmodel import Session, col, select

from orchestration.closing import short_id
from orchestration.models import AuditEvent, CostEntry, Incident, Plan

MAX_TIMELINE = 200
PAGERDUTY_PREFIX = "pagerduty:"


def _timeline(session: Session, incident_id: str) -> str:
    events = list(
        session.exec(
            select(AuditEvent)
            .where(AuditEvent.incident_id == incident_id)
            .order_by(col(AuditEvent.id))
            .limit(MAX_TIMELINE + 1)
        )
    )
    lines = []
    for event in events[:MAX_TIMELINE]:
        step = f" [{event.step_id[:8]}]" if event.step_id else ""
        lines.append(f"{event.at:%Y-%m-%d %H:%M:%S} UTC  {event.event}  by {event.actor}{step}")
    if len(events) > MAX_TIMELINE:
        lines.append(f"(timeline cut at {MAX_TIMELINE} events)")
    return "\n".join(lines) or "(no events recorded)"


def _costs(session: Session, incident_id: str) -> str:
    by_tool: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for entry in session.exec(select(CostEntry).where(CostEntry.incident_id == incident_id)):
        by_tool[entry.tool] += entry.usd
        calls[entry.tool] += 1
    if not by_tool:
        return "no tool calls were charged"
    lines = [f"{tool}: ${by_tool[tool]:.4f} ({calls[tool]} calls)" for tool in sorted(by_tool)]
    lines.append(f"total: ${sum(by_tool.values()):.4f}")
    return "\n".join(lines)


def incident_context(session: Session, incident_id: str, names: Collection[str]) -> dict[str, str]:
    """The values of ``names`` for ``incident_id`` (unknown names are left out)."""
    if not names:
        return {}
    incident = session.get(Incident, incident_id)
    if incident is None:
        return {}
    ref = incident.external_ref or ""
    values = {
        "id": incident.id,
        "short_id": short_id(incident.id),
        "text": incident.text,
        "status": incident.status,
        "requester": incident.requester,
        "source": incident.source,
        "opened_at": f"{incident.created_at:%Y-%m-%d %H:%M:%S} UTC",
        "external_ref": ref,
        "pagerduty_id": ref.removeprefix(PAGERDUTY_PREFIX)
        if ref.startswith(PAGERDUTY_PREFIX)
        else "",
    }
    out = {name: values[name] for name in names if name in values}
    if "timeline" in names:
        out["timeline"] = _timeline(session, incident_id)
    if "costs" in names:
        out["costs"] = _costs(session, incident_id)
    if "runbook" in names:
        plan = session.exec(
            select(Plan).where(Plan.incident_id == incident_id).order_by(col(Plan.version).desc())
        ).first()
        out["runbook"] = f"{plan.runbook_id} v{plan.runbook_version}" if plan else ""
    return out
