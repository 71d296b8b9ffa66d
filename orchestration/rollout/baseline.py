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


def _steps(session: Session, incident_id: str) -> list[Step]:
    """Every runbook step of the incident's plans, in plan order (one query)."""
    return list(
        session.exec(
            select(Step)
            .join(Plan, col(Plan.id) == col(Step.plan_id))
            .where(Plan.incident_id == incident_id, Step.kind == StepKind.RUNBOOK.value)
            .order_by(col(Plan.version), col(Step.position))
        )
    )


def _proposed(steps: list[Step]) -> list[Step]:
    return [s for s in steps if s.decision_code == "shadow_mode" and not s.read_only]


def proposals(session: Session, incident_id: str) -> list[Step]:
    """The state-changing steps opsgate proposed in shadow for the incident, in plan order."""
    return _proposed(_steps(session, incident_id))


def _action(ctx: Ctx, incident_id: str, kind: str, source: str, **fields: Any) -> HumanAction:
    """One row of ``human_actions`` by ``ctx.actor``, now."""
    return HumanAction(
        incident_id=incident_id, at=ctx.now, actor=ctx.actor, kind=kind, source=source, **fields
    )


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
    proposed: list[Step] | None = None,
) -> Recorded:
    """Record what a person (``ctx.actor``) did: taken step keys, other changes (one a line).

    ``proposed``: the incident's :func:`proposals`, when the caller has read them already.
    """
    proposed = proposals(session, incident_id) if proposed is None else proposed
    titles = {s.key: s.title for s in proposed}
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
    before = session.exec(select(HumanAction).where(HumanAction.incident_id == incident_id)).all()
    had_keys = {a.step_key for a in before if a.kind == "took"}
    had_other = {" ".join(a.text.lower().split()) for a in before if a.kind == "other"}
    said_keys = tuple(dict.fromkeys(k for k in taken if k in titles))
    said_other = tuple(dict.fromkeys(_lines(other_text)))
    # What was said is answered and shown; what is stored counts each step and each change
    # once, whoever told it (two people, or the card and /incident did).
    keys = tuple(k for k in said_keys if k not in had_keys)
    other = tuple(t for t in said_other if " ".join(t.lower().split()) not in had_other)
    rows = [_action(ctx, incident_id, "took", source, step_key=k) for k in keys]
    rows += [_action(ctx, incident_id, "other", source, text=t) for t in other]
    if answered:
        rows.append(_action(ctx, incident_id, "answered", source))
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
    proposed = proposals(session, incident.id)
    named = next(
        (s for s in proposed if wanted in (s.key.lower(), " ".join(s.title.split()).lower())),
        None,
    )
    return record(
        session,
        ctx,
        incident.id,
        taken=[named.key] if named else [],
        other_text="" if named else text,
        source="did",
        answered=False,
        proposed=proposed,
    )


def after_close(session: Session, base: Ctx, incident: Incident, *, by_alert: bool) -> None:
    """On resolve: ask a person resolver what they did, or note an alert's silent resolution."""
    steps = _steps(session, incident.id)
    if not any((s.rollout or {}).get("stage") == Mode.SHADOW.value for s in steps):
        return  # no step of it was planned in a shadow scope: nothing to measure
    if by_alert:
        recorded = session.exec(
            select(HumanAction.id).where(HumanAction.incident_id == incident.id).limit(1)
        ).first()
        if recorded is None:
            session.add(_action(base, incident.id, "no_action", "alert"))
            audit(session, base, "human_actions_recorded", detail={"source": "alert"})
        return
    payload: dict[str, Any] = {
        "resolver": base.actor,
        "incident_id": incident.id,
        "proposals": [{"key": s.key, "title": s.title, "risk": s.risk} for s in _proposed(steps)],
    }
    emit(session, base, "baseline_requested", payload)
