"""The stage each scope is in now (``rollout_stages``), and the two ways it moves.

A scope without a row is in its rule's stage since the row is first written (at start-up,
:func:`sync_rules`). A row whose ``config_stage`` differs from the rule's stage means somebody
edited opsgate.yaml: the edit wins and the scope starts over in the edited stage. Otherwise
the row wins: it holds what promotions and demotions made of the scope.

Every move is conditional on the stage the mover saw (``UPDATE ... WHERE stage = :seen``), so two
replicas that both see the same regression demote once.
"""

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from common import Mode, Role
from orchestration.db import upsert
from orchestration.models import RolloutStage
from orchestration.records import Ctx, audit, emit
from orchestration.rollout.settings import PREVIOUS_STAGE, RolloutConfig

_ROLLOUT_STAGES = RolloutStage.__table__  # type: ignore[attr-defined]
AUTONOMY = {Mode.SHADOW: 0, Mode.SUPERVISED: 1, Mode.GATED: 2}


class StageBook:
    """The stage each scope is in now, as this process last read it (shared by the runtime's
    copies). A step runs in the less autonomous of the stage it was planned under and this:
    a demotion reaches plans already in flight, a promotion only plans made after it.

    Refreshed at start-up, after each promotion vote and rollout check in this process, and
    every few seconds by the scheduler (``RolloutService.refresh``), so a demotion made by
    another replica applies here within that period.
    """

    def __init__(self) -> None:
        self.current: dict[str, Mode] = {}

    def floor(self, scope: str, planned: Mode) -> Mode:
        """``planned``, or the scope's current stage when that is less autonomous."""
        now = self.current.get(scope)
        if now is None or AUTONOMY[now] >= AUTONOMY[planned]:
            return planned
        return now


OPS_CHANNEL = "@ops"  # outbox channel of messages for the ops channel


def current_stages(
    session: Session,
    config: RolloutConfig,
    rows: Mapping[str, RolloutStage] | None = None,
) -> dict[str, Mode]:
    """The stage of every configured scope now (rows first, then each rule's own stage);
    ``rows``: :func:`stage_rows`, when the caller has read them already."""
    if not config.scopes:
        return {}
    rows = stage_rows(session) if rows is None else rows
    out: dict[str, Mode] = {}
    for rule in config.scopes:
        row = rows.get(rule.id)
        fresh = row is None or row.config_stage != rule.stage.value
        out[rule.id] = rule.stage if fresh else Mode(row.stage)  # type: ignore[union-attr]
    return out


def stage_rows(session: Session) -> Mapping[str, RolloutStage]:
    """Every row of ``rollout_stages`` by scope."""
    return {r.scope: r for r in session.exec(select(RolloutStage))}


def sync_rules(session: Session, config: RolloutConfig, *, now: datetime) -> list[str]:
    """Write a row for each rule without one, or whose stage was edited in opsgate.yaml.

    Returns the scopes that (re)started. Rows of scopes no longer configured are kept: their
    history stays readable, and they apply to nothing. Replicas starting together write each
    row once: an upsert that changes a row only when its configured stage differs.
    """
    rows = stage_rows(session)
    started = []
    for rule in config.scopes:
        row = rows.get(rule.id)
        if row is not None and row.config_stage == rule.stage.value:
            continue
        reason = (
            "configured in opsgate.yaml"
            if row is None
            else f"opsgate.yaml changed its stage from {row.config_stage} to {rule.stage.value}"
        )
        values = {
            "scope": rule.id,
            "stage": rule.stage.value,
            "config_stage": rule.stage.value,
            "since": now,
            "changed_by": "opsgate.yaml",
            "reason": reason,
        }
        upsert(
            session,
            _ROLLOUT_STAGES,
            values,
            keys=["scope"],
            update={k: v for k, v in values.items() if k != "scope"},
            where=_ROLLOUT_STAGES.c.config_stage != rule.stage.value,
        )
        started.append(rule.id)
    return started


def move(
    session: Session,
    ctx: Ctx,
    *,
    scope: str,
    seen: Mode,
    to: Mode,
    by: str,
    reason: str,
    event: str,
) -> bool:
    """Move ``scope`` from ``seen`` to ``to`` if it is still in ``seen``; audit it and tell ops.

    The row must exist (:func:`sync_rules` wrote it). False when another move came first.
    ``rollout_changed`` goes to the ops channel whoever moved it (a demotion's check or a
    promotion's last click, whose own context has no channel).
    """
    result = session.exec(
        update(_ROLLOUT_STAGES)
        .where(col(RolloutStage.scope) == scope, col(RolloutStage.stage) == seen.value)
        .values(stage=to.value, since=ctx.now, changed_by=by, reason=reason)
    )
    if result.rowcount != 1:
        return False
    for obj in list(session.identity_map.values()):
        if isinstance(obj, RolloutStage) and obj.scope == scope:
            session.expire(obj)  # read anew: the UPDATE went around the ORM
    detail = {"scope": scope, "from": seen.value, "to": to.value, "by": by, "reason": reason}
    audit(session, ctx, event, role=Role.AUDITOR, detail=detail)
    ops = replace(ctx, channel=OPS_CHANNEL, incident_id=None)
    emit(session, ops, "rollout_changed", {"event": event, **detail})
    return True


def demote(session: Session, ctx: Ctx, *, scope: str, seen: Mode, reason: str) -> Mode | None:
    """One stage down (gated to supervised, supervised to shadow); None when already lowest or
    another replica moved it first."""
    to = PREVIOUS_STAGE.get(seen)
    if to is None:
        return None
    moved = move(
        session,
        ctx,
        scope=scope,
        seen=seen,
        to=to,
        by="opsgate",
        reason=reason,
        event="rollout_demoted",
    )
    return to if moved else None
