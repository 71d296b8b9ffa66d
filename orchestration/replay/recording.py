"""What the store kept of one plan, read in one transaction and detached from it.

A tool call's recorded response is the ``response`` attribute of its ``tool_call`` span (the
redacted result, or the error's code, message and retryable flag; recorded since replay
exists). For a plan recorded before that, a step's last attempt falls back to ``steps.result``,
and an attempt with neither is a missing response the replay names.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from orchestration.enums import SpanKind
from orchestration.errors import NotFound
from orchestration.knowledge.store import split_pin
from orchestration.models import Approval, Incident, Knowledge, Plan, Span, Step, Vote
from orchestration.recovery.playbooks import PLAYBOOK_KIND
from orchestration.replay.summary import RunSummary, summarise

Key = tuple[str, int]  # (step key, attempt number)


@dataclass(frozen=True)
class Recording:
    """One plan as recorded: rows as dicts, so they outlive the session that read them."""

    incident: dict[str, Any]
    plan: dict[str, Any]
    steps: list[dict[str, Any]]
    approvals: list[dict[str, Any]]  # each with its ``votes`` in the order they were cast
    knowledge: list[dict[str, Any]]  # the pinned versions, and the playbooks of the time
    summary: RunSummary  # what the original run came to
    responses: Mapping[Key, dict[str, Any]] = field(default_factory=dict)
    calls: list[Key] = field(default_factory=list)  # every recorded call, in order

    @property
    def plan_id(self) -> str:
        """The recorded plan's id."""
        return str(self.plan["id"])

    @property
    def created_at(self) -> datetime:
        """When the plan was proposed (the sandbox clock starts there)."""
        value = self.plan["created_at"]
        assert isinstance(value, datetime)
        return value

    def runbook_keys(self) -> list[str]:
        """The runbook steps' keys, in order."""
        return [s["key"] for s in self.steps if s["kind"] == "runbook"]

    def key_of(self, step_id: str | None) -> str | None:
        """The key of the recorded step ``step_id``."""
        return next((s["key"] for s in self.steps if s["id"] == step_id), None)


def find_plan(session: Session, ref: str) -> Plan:
    """The plan named by ``ref``: a plan id or its unique prefix, or an incident (id or
    prefix), whose latest plan it is. NotFound says which."""
    ref = ref.strip()
    if not ref:
        raise NotFound("name a plan or incident id")
    plan = session.get(Plan, ref)
    if plan is not None:
        return plan
    plans = list(session.exec(select(Plan).where(col(Plan.id).startswith(ref)).limit(2)))
    if len(plans) == 1:
        return plans[0]
    incidents = list(
        session.exec(select(Incident.id).where(col(Incident.id).startswith(ref)).limit(2))
    )
    if len(plans) > 1 or len(incidents) > 1:
        raise NotFound(f"{ref!r} names more than one plan or incident; give more characters")
    if incidents:
        latest = session.exec(
            select(Plan).where(Plan.incident_id == incidents[0]).order_by(col(Plan.version).desc())
        ).first()
        if latest is not None:
            return latest
    raise NotFound(f"no plan or incident {ref!r}")


def load_recording(session: Session, ref: str) -> Recording:
    """Read everything a replay of the plan ``ref`` needs (see :func:`find_plan`)."""
    plan = find_plan(session, ref)
    incident = session.get(Incident, plan.incident_id)
    if incident is None:
        raise NotFound(f"plan {plan.id} has no incident row")
    steps = list(
        session.exec(select(Step).where(Step.plan_id == plan.id).order_by(col(Step.position)))
    )
    approvals = []
    for approval in session.exec(
        select(Approval).where(Approval.plan_id == plan.id).order_by(col(Approval.created_at))
    ):
        votes = session.exec(
            select(Vote).where(Vote.approval_id == approval.id).order_by(col(Vote.id))
        )
        approvals.append({**approval.model_dump(), "votes": [v.model_dump() for v in votes]})
    keys = {s.id: s.key for s in steps}
    responses: dict[Key, dict[str, Any]] = {}
    calls: list[Key] = []
    for sp in session.exec(
        select(Span)
        .where(Span.plan_id == plan.id, Span.kind == SpanKind.TOOL_CALL.value)
        .order_by(col(Span.started_at))
    ):
        key = keys.get(sp.step_id or "")
        attempt = sp.attributes.get("attempt")
        if key is None or not isinstance(attempt, int) or sp.attributes.get("in_doubt_check"):
            continue
        calls.append((key, attempt))
        response = sp.attributes.get("response")
        if isinstance(response, dict):
            responses[(key, attempt)] = response
    for step in steps:  # plans recorded before responses were: the last result is kept
        if step.result is not None and step.attempts and (step.key, step.attempts) not in responses:
            responses[(step.key, step.attempts)] = {"result": step.result, "from": "steps.result"}
    return Recording(
        incident=incident.model_dump(),
        plan=plan.model_dump(),
        steps=[s.model_dump() for s in steps],
        approvals=approvals,
        knowledge=_knowledge(session, plan),
        summary=summarise(session, plan.id),
        responses=responses,
        calls=calls,
    )


def _knowledge(session: Session, plan: Plan) -> list[dict[str, Any]]:
    """The pinned versions, plus every playbook version stored when the plan was proposed."""
    rows: list[Knowledge] = []
    for pin, version in sorted(plan.knowledge_pins.items()):
        kind, key = split_pin(pin)
        row = session.exec(
            select(Knowledge).where(
                Knowledge.kind == kind, Knowledge.key == key, Knowledge.version == version
            )
        ).first()
        if row is None:
            raise NotFound(f"plan {plan.id} pins {pin}@{version}, which the store does not hold")
        rows.append(row)
    rows += session.exec(
        select(Knowledge)
        .where(Knowledge.kind == PLAYBOOK_KIND, col(Knowledge.created_at) <= plan.created_at)
        .order_by(col(Knowledge.id))
    )
    return [r.model_dump(exclude={"id"}) for r in rows]
