"""The human baseline: what people did about an incident, recorded beside what opsgate proposed.

Three sources (``human_actions.source``):

* ``card``: when an incident with steps in a shadow scope is resolved by a person, the
  resolver gets a card (``baseline_requested``): the proposed steps as checkboxes, and a
  free-text "anything else?". Its answer records each ticked step (``took``), each line of
  free text (``other``), and that it was answered (``answered``).
* ``did``: ``/incident did <what>`` records a human action at any time; naming a proposed
  step (its key or title) records it as taken, anything else as a change opsgate did not
  propose.
* ``alert``: an incident its alert resolved, with nothing recorded, counts as "no action
  needed" (``no_action``).
"""

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from common import Mode, Role
from orchestration.enums import StepKind
from orchestration.models import HumanAction, Incident, Plan, Step
from orchestration.records import Ctx, audit, emit

MAX_TEXT = 500
MAX_LINES = 10


@dataclass(frozen=True)
class Recorded:
    """What a ``did`` or a card answer recorded: the steps taken (keys, and their titles in
    the same order) and the other changes."""

    taken: tuple[str, ...]
    other: tuple[str, ...]
    taken_titles: tuple[str, ...] = ()


def proposals(session: Session, incident_id: str) -> list[Step]:
    """The state-changing steps opsgate proposed in shadow for the incident, in plan order."""
    plan_ids = list(session.exec(select(Plan.id).where(Plan.incident_id == incident_id)))
    if not plan_ids:
        return []
    return list(
        session.exec(
            select(Step)
            .where(
                col(Step.plan_id).in_(plan_ids),
                Step.decision_code == "shadow_mode",
                Step.read_only == False,  # noqa: E712 - SQL comparison
                Step.kind == StepKind.RUNBOOK.value,
            )
            .order_by(col(Step.plan_id), col(Step.position))
        )
    )


def in_shadow(session: Session, incident_id: str) -> bool:
    """Whether any step of the incident was planned in a shadow scope."""
    plan_ids = list(session.exec(select(Plan.id).where(Plan.incident_id == incident_id)))
    steps = session.exec(select(Step.rollout).where(col(Step.plan_id).in_(plan_ids)))
    return any((r or {}).get("stage") == Mode.SHADOW.value for r in steps)


def _lines(text: str) -> list[str]:
    items = [line.strip(" -*\t") for line in text.replace(";", "\n").splitlines()]
    return [line[:MAX_TEXT] for line in items if line][:MAX_LINES]


def record(
    session: Session,
    ctx: Ctx,
    incident_id: str,
    *,
    taken: list[str],
    other_text: str,
    source: str,
    answered: bool,
) -> Recorded:
    """Record what a person (``ctx.actor``) did: taken step keys, other changes (one a line)."""
    titles = {s.key: s.title for s in proposals(session, incident_id)}
    if source == "card":
        # A second answer from the same person replaces their first; it does not add to it.
        for old in session.exec(
            select(HumanAction).where(
                HumanAction.incident_id == incident_id,
                HumanAction.actor == ctx.actor,
                HumanAction.source == "card",
            )
        ):
            session.delete(old)
        session.flush()
    known = session.exec(select(HumanAction).where(HumanAction.incident_id == incident_id)).all()
    had_keys = {a.step_key for a in known if a.kind == "took"}
    had_other = {" ".join(a.text.lower().split()) for a in known if a.kind == "other"}
    said_keys = tuple(dict.fromkeys(k for k in taken if k in titles))
    said_other = tuple(dict.fromkeys(_lines(other_text)))
    # What was said is answered and shown; what is stored counts each step and each change
    # once, whoever told it (two people, or the card and /incident did).
    keys = tuple(k for k in said_keys if k not in had_keys)
    other = tuple(t for t in said_other if " ".join(t.lower().split()) not in had_other)
    rows = [
        HumanAction(
            incident_id=incident_id,
            at=ctx.now,
            actor=ctx.actor,
            kind="took",
            step_key=k,
            source=source,
        )
        for k in keys
    ]
    rows += [
        HumanAction(
            incident_id=incident_id,
            at=ctx.now,
            actor=ctx.actor,
            kind="other",
            text=t,
            source=source,
        )
        for t in other
    ]
    if answered:
        rows.append(
            HumanAction(
                incident_id=incident_id, at=ctx.now, actor=ctx.actor, kind="answered", source=source
            )
        )
    session.add_all(rows)
    audit(
        session,
        ctx,
        "human_actions_recorded",
        role=Role.HUMAN,
        detail={
            "source": source,
            "taken": list(said_keys),
            "other": list(said_other),
            "already_known": len(said_keys) + len(said_other) - len(keys) - len(other),
        },
    )
    emit(
        session,
        ctx,
        "baseline_recorded",
        {
            "taken": list(said_keys),
            "taken_titles": [titles[k] for k in said_keys],
            "other": list(said_other),
        },
    )
    return Recorded(
        taken=said_keys, other=said_other, taken_titles=tuple(titles[k] for k in said_keys)
    )


def record_did(session: Session, ctx: Ctx, incident: Incident, text: str) -> Recorded:
    """``/incident did <text>``: a proposed step when ``text`` names one (key or title)."""
    wanted = " ".join(text.split()).lower()
    for step in proposals(session, incident.id):
        if wanted in (step.key.lower(), " ".join(step.title.split()).lower()):
            return record(
                session,
                ctx,
                incident.id,
                taken=[step.key],
                other_text="",
                source="did",
                answered=False,
            )
    return record(
        session, ctx, incident.id, taken=[], other_text=text, source="did", answered=False
    )


def after_close(session: Session, base: Ctx, incident: Incident, *, by_alert: bool) -> None:
    """On resolve: ask a person resolver what they did, or note an alert's silent resolution."""
    if not in_shadow(session, incident.id):
        return
    recorded = session.exec(
        select(HumanAction.id).where(HumanAction.incident_id == incident.id).limit(1)
    ).first()
    if by_alert:
        if recorded is None:
            session.add(
                HumanAction(
                    incident_id=incident.id,
                    at=base.now,
                    actor=base.actor,
                    kind="no_action",
                    source="alert",
                )
            )
            audit(session, base, "human_actions_recorded", detail={"source": "alert"})
        return
    steps = proposals(session, incident.id)
    payload: dict[str, Any] = {
        "resolver": base.actor,
        "incident_id": incident.id,
        "proposals": [{"key": s.key, "title": s.title, "risk": s.risk} for s in steps],
    }
    emit(session, base, "baseline_requested", payload)
