"""Promotion is an approval: ``/incident rollout promote <scope>`` opens one; approvers decide.

The record is single-use and nonce-tagged like a step's approval (``rollout_promotions``), with
the pack's ``promotion_quorum`` (default 2) of distinct configured approvers, never the
requester. It is refused at once while the scope's exit criteria are unmet, unless the request
carries an override reason (``override: <why>``): then the card shows every unmet criterion
and the reason, and approving it is the approvers' override. The criteria are evaluated again
at the final vote. One Reject ends it. A promotion never happens by itself.
"""

import secrets
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from common import Mode, Role
from orchestration.models import Promotion
from orchestration.records import Ctx, audit, emit
from orchestration.rollout.criteria import unmet
from orchestration.rollout.report import ScopeStatus, scope_status
from orchestration.rollout.settings import NEXT_STAGE, RolloutConfig
from orchestration.rollout.stages import move
from policies import Pack

TTL = timedelta(hours=24)
NONCE_BYTES = 24


@dataclass(frozen=True)
class Asked:
    """What ``promote`` came to: opened (with the record) or refused, in plain words."""

    opened: bool
    code: str
    text: str
    promotion_id: str | None = None
    unmet: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Voted:
    """What one click on a promotion card came to."""

    accepted: bool
    code: str
    reason: str
    state: str = ""


def _status_of(
    session: Session, config: RolloutConfig, default: Mode, scope: str, now: datetime
) -> ScopeStatus | None:
    return next(
        (r for r in scope_status(session, config, default=default, now=now) if r.scope == scope),
        None,
    )


def open_promotion(
    session: Session,
    ctx: Ctx,
    config: RolloutConfig,
    pack: Pack,
    *,
    default: Mode,
    scope: str,
    override: str = "",
) -> Asked:
    """Open a promotion of ``scope`` to its next stage, or say why not (audited either way)."""
    rule = config.rule(scope)
    asked = None
    if rule is None:
        names = ", ".join(r.id for r in config.scopes) or "none are configured"
        asked = Asked(
            False, "unknown_scope", f"There is no rollout scope {scope!r} (scopes: {names})."
        )
    status = _status_of(session, config, default, scope, ctx.now) if rule else None
    if asked is None and status is not None and status.next_stage is None:
        asked = Asked(False, "last_stage", f"{scope} is gated already: there is no later stage.")
    if asked is None:
        pending = session.exec(
            select(Promotion).where(Promotion.scope == scope, Promotion.state == "open")
        ).first()
        if pending is not None and pending.expires_at > ctx.now:
            asked = Asked(
                False,
                "promotion_open",
                f"A promotion of {scope} to {pending.to_stage} is already waiting for approvals.",
            )
    assert asked is not None or status is not None
    missing = unmet(status.criteria) if status is not None else []
    if asked is None and missing and not override.strip():
        asked = Asked(
            False,
            "exit_criteria_unmet",
            f"{scope} cannot be promoted to {status.next_stage}: exit criteria unmet: "  # type: ignore[union-attr]
            + "; ".join(missing)
            + f". To ask anyway, give the approvers a reason: /incident rollout promote {scope} "
            "override: <why>",
            unmet=missing,
        )
    if asked is not None:
        audit(
            session,
            ctx,
            "rollout_promotion_refused",
            code=asked.code,
            role=Role.AUDITOR,
            detail={"scope": scope, "reason": asked.text},
        )
        return asked
    assert status is not None
    assert status.next_stage is not None
    record = Promotion(
        id=uuid.uuid4().hex,
        nonce=secrets.token_urlsafe(NONCE_BYTES),
        scope=scope,
        from_stage=status.stage.value,
        to_stage=status.next_stage.value,
        requester=ctx.actor,
        channel=ctx.channel,
        quorum=pack.promotion_quorum,
        override_reason=override.strip()[:500] if missing else "",
        unmet=missing,
        votes=[],
        state="open",
        reason="",
        correlation_id=ctx.correlation_id,
        created_at=ctx.now,
        expires_at=ctx.now + TTL,
    )
    session.add(record)
    audit(
        session,
        ctx,
        "rollout_promotion_requested",
        nonce=record.nonce,
        role=Role.HUMAN,
        detail={
            "scope": scope,
            "to": record.to_stage,
            "unmet": missing,
            "override": record.override_reason,
        },
    )
    emit(session, ctx, "promotion_requested", card(record, status))
    return Asked(
        True,
        "promotion_requested",
        f"Promotion of {scope} from {record.from_stage} to {record.to_stage} needs "
        f"{record.quorum} approvals (not yours): the card is in this channel.",
        promotion_id=record.id,
        unmet=missing,
    )


def card(record: Promotion, status: ScopeStatus | None) -> dict[str, Any]:
    """The promotion card's payload."""
    return {
        "promotion_id": record.id,
        "nonce": record.nonce,
        "scope": record.scope,
        "covers": status.covers if status else "",
        "from_stage": record.from_stage,
        "to_stage": record.to_stage,
        "requester": record.requester,
        "quorum": record.quorum,
        "criteria": [c.words() for c in status.criteria] if status else [],
        "unmet": record.unmet,
        "override": record.override_reason,
        "expires_at": record.expires_at.isoformat(),
    }


def vote_promotion(  # noqa: PLR0911 - one return per refusal
    session: Session,
    ctx: Ctx,
    config: RolloutConfig,
    *,
    default: Mode,
    nonce: str,
    approve: bool,
    approvers: frozenset[str],
) -> Voted:
    """One click (``ctx.actor``) on a promotion card; the quorum's vote moves the scope."""
    record = session.exec(
        select(Promotion).where(Promotion.nonce == nonce).with_for_update()
    ).first()
    voter = ctx.actor
    if record is None:
        return _refused(session, ctx, nonce, "nonce_unknown", "This promotion card is not known.")
    if record.state != "open":
        return _refused(
            session, ctx, nonce, "approval_decided", f"This promotion was {record.state} already."
        )
    if record.expires_at <= ctx.now:
        _decide(session, ctx, record, "expired", "Nobody decided within 24 hours.")
        return _refused(
            session, ctx, nonce, "approval_expired", "This promotion expired; ask again."
        )
    if voter not in approvers and not (not approve and voter == record.requester):
        return _refused(
            session, ctx, nonce, "not_an_approver", "Only configured approvers decide promotions."
        )
    if approve and voter == record.requester:
        return _refused(
            session,
            ctx,
            nonce,
            "requester_cannot_approve",
            f"You asked for this promotion; it needs {record.quorum} approvals from other people.",
        )
    if any(v["voter"] == voter for v in record.votes):
        return _refused(
            session, ctx, nonce, "already_voted", "You voted on this promotion already."
        )
    record.votes = [
        *record.votes,
        {"voter": voter, "choice": "approve" if approve else "reject", "at": ctx.now.isoformat()},
    ]
    if not approve:
        _decide(session, ctx, record, "rejected", f"Rejected by {voter}.")
        return Voted(True, "vote_counts", "Rejected: the scope stays where it is.", "rejected")
    approvals = sum(1 for v in record.votes if v["choice"] == "approve")
    if approvals < record.quorum:
        session.add(record)
        _updated(session, ctx, record)
        return Voted(
            True, "vote_counts", f"Your approval counts ({approvals} of {record.quorum}).", "open"
        )
    status = _status_of(session, config, default, record.scope, ctx.now)
    missing = unmet(status.criteria) if status is not None else []
    if status is None or status.stage.value != record.from_stage:
        _decide(session, ctx, record, "refused", "The scope's stage changed since this was asked.")
        return Voted(
            True, "stage_changed", "The scope's stage changed since; ask again.", "refused"
        )
    if missing and not record.override_reason:
        _decide(
            session, ctx, record, "refused", "Exit criteria no longer met: " + "; ".join(missing)
        )
        return Voted(True, "exit_criteria_unmet", "Exit criteria are no longer met.", "refused")
    voters = ", ".join(v["voter"] for v in record.votes if v["choice"] == "approve")
    why = (
        f"approved by {voters} overriding unmet criteria: {record.override_reason}"
        if missing
        else f"approved by {voters}: exit criteria met"
    )
    moved = move(
        session,
        ctx,
        scope=record.scope,
        seen=Mode(record.from_stage),
        to=Mode(record.to_stage),
        by=voters,
        reason=why,
        event="rollout_promoted",
    )
    if not moved:
        _decide(session, ctx, record, "refused", "The scope's stage changed since this was asked.")
        return Voted(
            True, "stage_changed", "The scope's stage changed since; ask again.", "refused"
        )
    _decide(session, ctx, record, "approved", why)
    return Voted(True, "vote_counts", f"{record.scope} is now {record.to_stage}.", "approved")


def _decide(session: Session, ctx: Ctx, record: Promotion, state: str, reason: str) -> None:
    record.state, record.reason, record.decided_at = state, reason, ctx.now
    session.add(record)
    audit(
        session,
        ctx,
        f"rollout_promotion_{state}",
        nonce=record.nonce,
        detail={"scope": record.scope, "reason": reason},
    )
    _updated(session, ctx, record)


def _updated(session: Session, ctx: Ctx, record: Promotion) -> None:
    # To the card's channel: a click's or the expiry check's own context has none.
    emit(
        session,
        replace(ctx, channel=record.channel),
        "promotion_updated",
        {
            "promotion_id": record.id,
            "state": record.state,
            "votes": record.votes,
            "quorum": record.quorum,
            "reason": record.reason,
        },
    )


def _refused(session: Session, ctx: Ctx, nonce: str, code: str, reason: str) -> Voted:
    audit(session, ctx, "rollout_vote_refused", nonce=nonce, code=code, detail={"reason": reason})
    return Voted(False, code, reason)


def expire_promotions(session: Session, ctx: Ctx) -> int:
    """Mark open promotions past their expiry as expired; returns how many."""
    due = session.exec(
        select(Promotion).where(Promotion.state == "open", Promotion.expires_at <= ctx.now)
    ).all()
    for record in due:
        _decide(session, ctx, record, "expired", "Nobody decided within 24 hours.")
    return len(due)


__all__ = ["NEXT_STAGE", "Asked", "Voted", "expire_promotions", "open_promotion", "vote_promotion"]
