"""Alert groups: one incident per Alertmanager group, updated as its alerts fire and resolve.

Alertmanager sends one webhook per group (``groupKey``) with every alert of the group. The
first notification with a firing alert opens an incident; later ones (a new alert of the
group, an alert resolved) post what changed to that incident's thread. When every alert of the
group has resolved and every plan of the incident has finished, the incident is resolved by
``alertmanager`` (``slack.alerts_close_incidents``, default true), now or when its last plan
ends (:func:`after_plan_end`, called from ``lifecycle.end_plan``). A group whose incident is
closed opens a new one when it fires again.

Public functions (each in the caller's unit of work):
    open_group()      the open incident's group for a group key, locked (None: none open)
    attach()          remember the group of an incident just opened from it
    update()          merge a notification into an open group: tell the thread, maybe close
    after_plan_end()  close the incident once its alerts have resolved and its plans ended
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from common import Role
from orchestration.enums import IncidentStatus
from orchestration.inbox import Request
from orchestration.models import AlertGroup, Incident, Plan
from orchestration.records import Ctx, audit, emit

ALERTS_CHANGED = "alerts_changed"  # outbox message kind
SOURCE = "alertmanager"
RESOLVED = "resolved"
FIRING = "firing"
CLOSE_REASON = "Every alert of the group has resolved and its plan has finished."


@dataclass(frozen=True)
class Change:
    """One alert whose status differs from what the group knew."""

    fingerprint: str
    name: str
    status: str
    text: str


def open_group(session: Session, group_key: str) -> tuple[AlertGroup, Incident] | None:
    """The group row and open incident of ``group_key``, both locked; None when none is open."""
    rows = session.exec(
        select(AlertGroup, Incident)
        .join(Incident, col(Incident.id) == col(AlertGroup.incident_id))
        .where(AlertGroup.group_key == group_key, Incident.status == IncidentStatus.OPEN.value)
        .order_by(col(AlertGroup.updated_at).desc())
        .limit(1)
        .with_for_update()
    ).all()
    if not rows:
        return None
    group, incident = rows[0]
    return group, incident


def _states(alerts: Iterable[Mapping[str, str]]) -> dict[str, dict[str, str]]:
    return {
        str(a.get("fingerprint")): {
            "status": str(a.get("status", FIRING)),
            "name": str(a.get("name", "")),
            "starts_at": str(a.get("starts_at", "")),
            "text": str(a.get("text", "")),
        }
        for a in alerts
        if a.get("fingerprint")
    }


def attach(
    session: Session, *, incident_id: str, request: Request, now: datetime, auto_close: bool
) -> None:
    """Remember that ``incident_id`` was opened from ``request``'s group."""
    assert request.group_key is not None
    session.add(
        AlertGroup(
            incident_id=incident_id,
            group_key=request.group_key,
            channel=request.channel,
            alerts={"auto_close": auto_close, "by_fingerprint": _states(request.alerts)},
            updated_at=now,
        )
    )


def _known(group: AlertGroup) -> dict[str, dict[str, str]]:
    known = group.alerts.get("by_fingerprint") if isinstance(group.alerts, dict) else None
    return dict(known) if isinstance(known, dict) else {}


def all_resolved(group: AlertGroup) -> bool:
    """True when the group knows alerts and every one of them has resolved."""
    known = _known(group)
    return bool(known) and all(a.get("status") == RESOLVED for a in known.values())


def update(
    session: Session, ctx: Ctx, group: AlertGroup, incident: Incident, request: Request
) -> list[Change]:
    """Merge ``request``'s alerts into ``group``; post the changes to the incident's thread and
    close the incident when that is due. Returns the changes (empty for a mere repeat)."""
    known = _known(group)
    changes = []
    for fingerprint, state in _states(request.alerts).items():
        before = known.get(fingerprint)
        if before is None or before.get("status") != state["status"]:
            changes.append(Change(fingerprint, state["name"], state["status"], state["text"]))
        known[fingerprint] = state
    group.alerts = {**group.alerts, "by_fingerprint": known}
    group.updated_at = ctx.now
    session.add(group)
    base = _ctx(ctx, incident)
    if changes:
        detail = {
            "changes": [
                {"name": c.name, "status": c.status, "text": c.text, "fingerprint": c.fingerprint}
                for c in changes
            ],
            "firing": sum(1 for a in known.values() if a.get("status") != RESOLVED),
            "resolved": sum(1 for a in known.values() if a.get("status") == RESOLVED),
        }
        audit(session, base, "alerts_updated", detail=detail)
        emit(session, base, ALERTS_CHANGED, detail)
    _close_if_due(session, base, group, incident)
    return changes


def after_plan_end(session: Session, ctx: Ctx, plan: Plan) -> None:
    """A plan ended: resolve its incident if that was all that kept an alert group open."""
    # Locked, and read anew once locked: an alert notification that resolves the group at the
    # same moment either commits first (and this sees it) or waits for this commit (and sees
    # the plan ended). Read without the lock, each would miss the other and nobody would close
    # the incident (seen on PostgreSQL).
    group = session.exec(
        select(AlertGroup)
        .where(AlertGroup.incident_id == plan.incident_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if group is None or not all_resolved(group):
        return
    incident = session.exec(
        select(Incident).where(Incident.id == plan.incident_id).with_for_update()
    ).first()
    if incident is None or incident.status != IncidentStatus.OPEN.value:
        return
    _close_if_due(session, _ctx(ctx, incident), group, incident)


def _ctx(ctx: Ctx, incident: Incident) -> Ctx:
    return Ctx(
        correlation_id=incident.correlation_id,
        now=ctx.now,
        actor=SOURCE,
        role=Role.SYSTEM,
        incident_id=incident.id,
        channel=incident.channel,
    )


def _close_if_due(session: Session, base: Ctx, group: AlertGroup, incident: Incident) -> None:
    from orchestration.closing import finish_incident  # noqa: PLC0415 - closing imports lifecycle
    from orchestration.lifecycle import is_final  # noqa: PLC0415 - lifecycle imports us

    if not group.alerts.get("auto_close", True) or not all_resolved(group):
        return
    plans = session.exec(select(Plan).where(Plan.incident_id == incident.id)).all()
    if not all(is_final(p) for p in plans):
        return  # the plan is still working: it closes the incident when it ends
    incident.status = IncidentStatus.RESOLVED.value  # first: ending a plan below calls us again
    finish_incident(
        session, base, incident, status=IncidentStatus.RESOLVED, reason=CLOSE_REASON, stop_owner=""
    )
