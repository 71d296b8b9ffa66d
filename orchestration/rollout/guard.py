"""Demotion is automatic: a scope that regresses drops one stage and ops hears why.

* :func:`after_failure`: in the unit of work that records it, a state-changing step that
  failed, was compensated or went in doubt demotes the scope it ran under (when that scope is
  still in the stage the step ran in: a second failure of the same episode does not demote
  twice).
* :func:`check_regressions`: run every ``rollout.check_every_s`` by each replica (the moves
  are conditional, so replicas agree): an FP spike or cost drift past the bound demotes.

The message goes to the ops channel (``OPS_CHANNEL``: the surface maps it to
``slack.ops_channel``) as ``rollout_changed``.
"""

from collections.abc import Iterable
from datetime import datetime

from sqlmodel import Session

from common import Mode
from orchestration.models import RolloutStage, Step
from orchestration.records import Ctx
from orchestration.rollout.evidence import evidence, judgements, recent_fp
from orchestration.rollout.scopes import DEFAULT_SCOPE
from orchestration.rollout.settings import RolloutConfig
from orchestration.rollout.stages import OPS_CHANNEL, current_stages, demote, stage_rows


def _ops(ctx: Ctx) -> Ctx:
    return Ctx(
        correlation_id=ctx.correlation_id,
        now=ctx.now,
        actor="opsgate",
        incident_id=None,
        plan_id=ctx.plan_id,
        channel=OPS_CHANNEL,
    )


def after_failure(session: Session, ctx: Ctx, steps: Iterable[Step]) -> list[str]:
    """Demote the scopes of ``steps`` that failed, were compensated or went in doubt."""
    demoted = []
    for step in steps:
        staged = step.rollout or {}
        scope = str(staged.get("scope") or DEFAULT_SCOPE)
        if scope == DEFAULT_SCOPE or step.read_only or scope in demoted:
            continue
        row = session.get(RolloutStage, scope)
        ran_in = str(staged.get("stage") or "")
        if row is None or row.stage != ran_in or ran_in == Mode.SHADOW.value:
            continue
        what = (step.error or step.status).strip()
        reason = f"'{step.title}' {step.status.replace('_', ' ')}: {what[:300]}"
        if demote(session, _ops(ctx), scope=scope, seen=Mode(row.stage), reason=reason):
            demoted.append(scope)
    return demoted


def check_regressions(
    session: Session, config: RolloutConfig, ctx: Ctx, *, now: datetime
) -> list[str]:
    """Demote every scope whose recent FP rate or cost drift is past its bound."""
    if not config.scopes:
        return []
    rows = stage_rows(session)
    stages = current_stages(session, config, rows)
    moving = {
        scope: stage
        for scope, stage in stages.items()
        if stage is not Mode.SHADOW and scope in rows
    }
    if not moving:
        return []
    earliest = min(rows[s].since for s in moving)
    found = judgements(session, since=earliest, until=now)
    demoted = []
    for scope, stage in moving.items():
        since = rows[scope].since
        window = [j for j in found if j.at >= since]
        spike = recent_fp(scope, window, last=config.demote.fp_window)
        judged = sum(1 for j in window if j.judged and any(p.scope == scope for p in j.proposals))
        reason = ""
        if (
            judged >= config.demote.fp_window
            and spike.value is not None
            and spike.value > config.demote.fp_rate
        ):
            reason = (
                f"false positives {spike.words()} in the last {config.demote.fp_window} judged "
                f"incidents, over the {config.demote.fp_rate:.0%} bound"
            )
        criteria = config.criteria(stage) or config.criteria(Mode.SUPERVISED)
        if not reason and config.demote.on_cost_drift and criteria is not None:
            seen = evidence(config, scope, window, since=since, until=now)
            if seen.cost_drift > criteria.max_cost_drift:
                reason = (
                    f"cost per action drifted {seen.cost_drift:.0%} in the last 7 days, over "
                    f"the {criteria.max_cost_drift:.0%} bound"
                )
        if reason and demote(session, _ops(ctx), scope=scope, seen=stage, reason=reason):
            demoted.append(scope)
    return demoted
