"""Resolving and cancelling incidents by hand: which incident, who may, and the close itself.

A request names its incident by id (or a unique prefix of it), by the chat thread it was typed
in, or by nothing: then the channel's one open incident. With several open and no id, nothing
is guessed: the asker gets the list. Who may close follows the policy pack (``policies.
may_close``); a refusal is audited. Closing a closed incident is a no-op with a plain answer.

Public functions:
    find_target()   in a unit of work: the incident a request means, or why there is none
    assess()        in a unit of work: what closing it would come to (read only; the ack)
    close()         in a unit of work: do it (the inbox row is marked done in the same commit)
    finish_incident()  in a unit of work: the close itself (also used when alerts resolve)
"""

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, select

from common import Role
from orchestration import alertgroups
from orchestration.enums import IncidentStatus, PlanStatus
from orchestration.inbox import NoticeKind, Request, RequestKind, notify
from orchestration.lifecycle import ctx_for, end_plan, is_final, lock_plan
from orchestration.models import Approval, Incident, Plan, Vote
from orchestration.records import Ctx, audit, emit
from orchestration.rollout import baseline
from policies import CloseAction, CloseContext, Pack, may_close

SHORT_ID = 8  # characters of an incident id shown to people
MIN_REF = 6  # the shortest prefix accepted as an incident id
MAX_LISTED = 10
_REF = re.compile(rf"[0-9a-f]{{{MIN_REF},32}}")


class CloseOutcome(StrEnum):
    """What a resolve or cancel came to (also what an ack announced: ``Request.announced``)."""

    CLOSED = "closed"
    NO_OPEN_INCIDENT = "no_open_incident"
    NO_SUCH_INCIDENT = "no_such_incident"
    WHICH_INCIDENT = "which_incident"
    ALREADY_CLOSED = "already_closed"
    REFUSED = "close_refused"


NOTICES = {
    CloseOutcome.NO_OPEN_INCIDENT: NoticeKind.NO_OPEN_INCIDENT,
    CloseOutcome.NO_SUCH_INCIDENT: NoticeKind.NO_SUCH_INCIDENT,
    CloseOutcome.WHICH_INCIDENT: NoticeKind.WHICH_INCIDENT,
    CloseOutcome.ALREADY_CLOSED: NoticeKind.ALREADY_CLOSED,
    CloseOutcome.REFUSED: NoticeKind.CLOSE_REFUSED,
}


def short_id(incident_id: str) -> str:
    """The id people see and type: its first 8 characters, more until one is a digit (a word
    of hex letters only, like ``facade``, would read as a reason)."""
    end = SHORT_ID
    while end < len(incident_id) and not any(ch.isdigit() for ch in incident_id[:end]):
        end += 1
    return incident_id[:end]


def looks_like_ref(word: str) -> bool:
    """True when ``word`` reads as an incident id or prefix (hex, with a digit, 6+ chars)."""
    return bool(_REF.fullmatch(word)) and any(ch.isdigit() for ch in word)


def split_ref(text: str) -> tuple[str | None, str]:
    """``"ab12cd34 restarted by hand"`` -> ``("ab12cd34", "restarted by hand")``."""
    head, _, rest = text.strip().partition(" ")
    if looks_like_ref(head.lower()):
        return head.lower(), rest.strip()
    return None, text.strip()


@dataclass(frozen=True)
class Summary:
    """An incident as an answer shows it."""

    id: str
    short: str
    text: str
    status: str
    channel: str
    requester: str
    created_at: datetime

    @classmethod
    def of(cls, incident: Incident) -> "Summary":
        """The summary of one row."""
        return cls(
            id=incident.id,
            short=short_id(incident.id),
            text=incident.text,
            status=incident.status,
            channel=incident.channel,
            requester=incident.requester,
            created_at=incident.created_at,
        )

    def as_json(self) -> dict[str, Any]:
        """JSON-safe fields (for an outbox payload)."""
        return {
            "id": self.id,
            "short": self.short,
            "text": self.text,
            "status": self.status,
            "channel": self.channel,
        }


@dataclass(frozen=True)
class Assessment:
    """What a resolve or cancel would come to, and what the asker is told."""

    outcome: CloseOutcome
    incident: Summary | None = None
    candidates: tuple[Summary, ...] = ()
    reason: str = ""  # a refusal's reason, in plain words
    ref: str | None = None

    def detail(self) -> dict[str, Any]:
        """The notice payload's fields."""
        return {
            "outcome": self.outcome.value,
            "incident": self.incident.as_json() if self.incident else None,
            "candidates": [c.as_json() for c in self.candidates],
            "reason": self.reason,
            "ref": self.ref,
        }


@dataclass
class Target:
    """The incident a request means (locked when asked), or the candidates when unclear."""

    incident: Incident | None
    outcome: CloseOutcome | None = None  # set when there is no single incident
    candidates: list[Incident] = field(default_factory=list)


def _open_in(session: Session, channel: str) -> list[Incident]:
    return list(
        session.exec(
            select(Incident)
            .where(Incident.channel == channel, Incident.status == IncidentStatus.OPEN.value)
            .order_by(col(Incident.created_at).desc())
            .limit(MAX_LISTED + 1)
        )
    )


def open_incidents(session: Session, channel: str) -> list[Incident]:
    """The open incidents of ``channel``, newest first (at most MAX_LISTED + 1)."""
    return _open_in(session, channel)


def find_target(
    session: Session,
    *,
    channel: str,
    ref: str | None,
    thread_ts: str | None,
    lock: bool = False,
    external_ref: str | None = None,
) -> Target:
    """The incident a request means: by the external incident it mirrors, else by id prefix,
    else by thread, else the one open."""
    query = select(Incident)
    if external_ref:
        query = (
            query.where(Incident.external_ref == external_ref)
            .order_by(col(Incident.created_at).desc())
            .limit(1)
        )
    elif ref:
        query = query.where(col(Incident.id).startswith(ref)).limit(MAX_LISTED + 1)
    elif thread_ts:
        query = query.where(Incident.channel == channel, Incident.thread_ts == thread_ts).limit(1)
    else:
        candidates = _open_in(session, channel)
        if not candidates:
            return Target(None, CloseOutcome.NO_OPEN_INCIDENT)
        if len(candidates) > 1:
            return Target(None, CloseOutcome.WHICH_INCIDENT, candidates)
        query = select(Incident).where(Incident.id == candidates[0].id)
    if lock:
        query = query.with_for_update()
    found = list(session.exec(query))
    if not found:
        return Target(None, CloseOutcome.NO_SUCH_INCIDENT)
    if len(found) > 1:
        return Target(None, CloseOutcome.WHICH_INCIDENT, found)
    return Target(found[0])


def participants(session: Session, incident_id: str) -> frozenset[str]:
    """Everyone who voted on one of the incident's approvals."""
    voters = session.exec(
        select(Vote.voter)
        .join(Approval, col(Approval.id) == col(Vote.approval_id))
        .where(Approval.incident_id == incident_id)
    )
    return frozenset(voters)


def assess(
    session: Session,
    request: Request,
    *,
    pack: Pack,
    approvers: frozenset[str],
    lock: bool = False,
) -> tuple[Assessment, Incident | None]:
    """What ``request`` (a resolve or cancel) comes to now; reads only."""
    target = find_target(
        session,
        channel=request.channel,
        ref=request.incident_ref,
        thread_ts=request.thread_ts,
        lock=lock,
        external_ref=request.external_ref,
    )
    incident = target.incident
    if incident is None:
        assert target.outcome is not None
        listed = tuple(Summary.of(c) for c in target.candidates[:MAX_LISTED])
        return Assessment(target.outcome, candidates=listed, ref=request.incident_ref), None
    summary = Summary.of(incident)
    if incident.status != IncidentStatus.OPEN.value:
        return Assessment(CloseOutcome.ALREADY_CLOSED, summary), incident
    action = CloseAction.RESOLVE if request.kind is RequestKind.RESOLVE else CloseAction.CANCEL
    verdict = may_close(
        CloseContext(
            action=action,
            actor=request.requester,
            requester=incident.requester,
            approvers=approvers,
            participants=participants(session, incident.id),
        ),
        pack,
    )
    if not verdict.counts:
        return Assessment(CloseOutcome.REFUSED, summary, reason=verdict.reason), incident
    return Assessment(CloseOutcome.CLOSED, summary), incident


def close(
    session: Session,
    request: Request,
    *,
    now: datetime,
    pack: Pack,
    approvers: frozenset[str],
    stop_owner: str,
) -> tuple[Assessment, list[str]]:
    """Resolve or cancel what ``request`` names, in the caller's unit of work.

    Returns what it came to and the running steps this replica must stop. Anything but a close
    is told to the asker unless the ack already said it (``Request.announced``); a refusal is
    audited (``incident_close_refused``).
    """

    found, incident = assess(session, request, pack=pack, approvers=approvers, lock=True)
    announced = request.announced
    if found.outcome is CloseOutcome.CLOSED and announced not in ("", CloseOutcome.CLOSED):
        # The ack told the asker something else (nothing open, which one?, not allowed):
        # closing now, after the fact, would act on what they never confirmed.
        found = replace(found, outcome=CloseOutcome(announced))
    action = "resolve" if request.kind is RequestKind.RESOLVE else "cancel"
    base = Ctx(
        correlation_id=incident.correlation_id if incident else request.correlation_id,
        now=now,
        actor=request.requester,
        role=Role.HUMAN if request.private else Role.SYSTEM,
        incident_id=incident.id if incident else None,
        channel=incident.channel if incident else request.channel,
    )
    if found.outcome is CloseOutcome.REFUSED:
        audit(
            session,
            base,
            "incident_close_refused",
            code="close_forbidden",
            detail={"action": action, "reason": found.reason},
        )
    if found.outcome is not CloseOutcome.CLOSED and request.external_ref:
        # Another system resolved its incident: nobody asked here, so nobody is told; an
        # incident opsgate never opened (or closed before) is recorded and left alone.
        audit(
            session,
            base,
            "incident_close_skipped",
            detail={"action": action, "outcome": found.outcome.value, "ref": request.external_ref},
        )
        return found, []
    if found.outcome is not CloseOutcome.CLOSED:
        if found.outcome.value != request.announced:
            notify(
                session,
                request,
                now=now,
                notice=NOTICES[found.outcome],
                incident_id=incident.id if incident else None,
                action=action,
                **found.detail(),
            )
        return found, []
    assert incident is not None
    resolved = request.kind is RequestKind.RESOLVE
    status = IncidentStatus.RESOLVED if resolved else IncidentStatus.CANCELLED
    stop = finish_incident(
        session, base, incident, status=status, reason=request.text, stop_owner=stop_owner
    )
    return found, stop


def finish_incident(
    session: Session,
    base: Ctx,
    incident: Incident,
    *,
    status: IncidentStatus,
    reason: str,
    stop_owner: str,
) -> list[str]:
    """Close ``incident`` (locked by the caller) as ``status`` by ``base.actor``: cancel its
    unfinished plans, mark it, audit and tell its thread. Returns the steps to stop here."""
    from orchestration.recovery import stop_running  # noqa: PLC0415 - recovery imports lifecycle

    stop: list[str] = []
    for plan_id in session.exec(select(Plan.id).where(Plan.incident_id == incident.id)):
        plan = lock_plan(session, plan_id)
        if not is_final(plan) or plan.status == PlanStatus.BLOCKED.value:
            end_plan(
                session,
                ctx_for(plan, base),
                plan,
                PlanStatus.CANCELLED,
                code="incident_closed",
                reason=reason or f"Incident {status.value} by {base.actor}.",
            )
        stop += stop_running(session, ctx_for(plan, base), plan, owner=stop_owner)
    incident.status = status.value
    incident.resolved_at = base.now
    session.add(incident)
    audit(session, base, f"incident_{status.value}", detail={"reason": reason})
    emit(
        session,
        base,
        f"incident_{status.value}",
        {"actor": base.actor, "reason": reason, "incident": Summary.of(incident).as_json()},
    )
    if status is IncidentStatus.RESOLVED:
        baseline.after_close(session, base, incident, by_alert=base.actor == alertgroups.SOURCE)
    return stop
