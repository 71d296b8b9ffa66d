"""Who may resolve or cancel an incident: a pure check against the pack's ``incidents`` rules.

Stopping automation (cancel) is a safety action, open by default to everyone taking part in
the incident and to approvers; declaring it over (resolve) needs the requester, an approver or
a configured responder. The caller records every decision, refusals included.
"""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from policies.model import Code, Eligibility
from policies.pack import Closer, Pack

_WHO = {
    Closer.REQUESTER: "the person who opened it",
    Closer.PARTICIPANT: "the people taking part in it",
    Closer.APPROVER: "a configured approver",
    Closer.RESPONDER: "a configured responder",
}


class CloseAction(StrEnum):
    """The two ways to close an incident by hand."""

    RESOLVE = "resolve"
    CANCEL = "cancel"


class CloseContext(BaseModel):
    """Who asks to close which incident; plain data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: CloseAction
    actor: str
    requester: str
    approvers: frozenset[str]
    participants: frozenset[str] = frozenset()  # voters on the incident's steps


def closer_roles(ctx: CloseContext, pack: Pack) -> set[Closer]:
    """Every role ``ctx.actor`` holds for this incident."""
    roles: set[Closer] = set()
    if ctx.actor == ctx.requester:
        roles |= {Closer.REQUESTER, Closer.PARTICIPANT}
    if ctx.actor in ctx.participants:
        roles.add(Closer.PARTICIPANT)
    if ctx.actor in ctx.approvers:
        roles.add(Closer.APPROVER)
    if ctx.actor in pack.incidents.responders:
        roles.add(Closer.RESPONDER)
    return roles


def may_close(ctx: CloseContext, pack: Pack) -> Eligibility:
    """Whether ``ctx.actor`` may resolve or cancel the incident, and why not in plain words."""
    allowed = pack.incidents.resolve if ctx.action is CloseAction.RESOLVE else pack.incidents.cancel
    if closer_roles(ctx, pack) & set(allowed):
        return Eligibility(counts=True, code=Code.CLOSE_ALLOWED, reason=f"You may {ctx.action} it.")
    who = [_WHO[role] for role in allowed]
    listed = who[0] if len(who) == 1 else ", ".join(who[:-1]) + " or " + who[-1]
    reason = f"Only {listed} can {ctx.action} this incident."
    return Eligibility(counts=False, code=Code.CLOSE_FORBIDDEN, reason=reason)
