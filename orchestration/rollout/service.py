"""The control plane's rollout calls: each one unit of work on the database worker."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from common import Clock, Mode, Role
from orchestration.closing import find_target, open_incidents, short_id
from orchestration.config import OpsgateConfig
from orchestration.db import Database
from orchestration.enums import IncidentStatus
from orchestration.models import Incident
from orchestration.records import Ctx
from orchestration.rollout import baseline, guard, promotion
from orchestration.rollout.baseline import Recorded
from orchestration.rollout.report import ScopeStatus, scope_status
from orchestration.rollout.stages import current_stages, sync_rules
from orchestration.telemetry import get_logger, new_correlation_id

if TYPE_CHECKING:
    from orchestration.runtime import Runtime

log = get_logger("opsgate.rollout")


@dataclass(frozen=True)
class DidOutcome:
    """What ``/incident did`` came to: the incident it was recorded on, or why none."""

    recorded: Recorded | None
    incident_id: str | None
    text: str


class RolloutService:
    """Stages, baseline, promotion and demotion for one control plane."""

    def __init__(
        self,
        *,
        db: Database,
        config: OpsgateConfig,
        clock: Clock,
        runtime: "Callable[[], Runtime]",
    ) -> None:
        self._db = db
        self._config = config
        self._clock = clock
        self._runtime = runtime

    def _ctx(self, actor: str, *, channel: str = "", role: Role = Role.HUMAN) -> Ctx:
        return Ctx(
            correlation_id=new_correlation_id(),
            now=self._clock.now(),
            actor=actor,
            role=role,
            channel=channel,
        )

    def _on(self, incident: Incident, actor: str) -> Ctx:
        """A person acting on ``incident``: its correlation id and channel."""
        return Ctx(
            correlation_id=incident.correlation_id,
            now=self._clock.now(),
            actor=actor,
            role=Role.HUMAN,
            incident_id=incident.id,
            channel=incident.channel,
        )

    async def sync(self) -> list[str]:
        """Write the stage rows the scope rules need (start-up); returns the scopes started."""
        if not self._config.rollout.scopes:
            return []
        now = self._clock.now()
        started = await self._db.run(lambda s: sync_rules(s, self._config.rollout, now=now))
        if started:
            log.info("rollout_scopes_started", scopes=started)
        await self.refresh()
        return started

    async def refresh(self) -> dict[str, Mode]:
        """Read the stage of every scope into the runtime's book (see ``StageBook``)."""
        if not self._config.rollout.scopes:
            return {}
        stages = await self._db.run(lambda s: current_stages(s, self._config.rollout))
        self._runtime().stages.current = dict(stages)
        return stages

    async def status(self) -> list[ScopeStatus]:
        """Every scope now (``opsgate rollout status``)."""
        now = self._clock.now()
        return await self._db.run(
            lambda s: scope_status(s, self._config.rollout, default=self._config.mode, now=now)
        )

    async def promote(
        self, *, scope: str, actor: str, channel: str, override: str = ""
    ) -> promotion.Asked:
        """Open a promotion approval for ``scope`` (or say why not)."""
        ctx = self._ctx(actor, channel=channel)
        return await self._db.run(
            lambda s: promotion.open_promotion(
                s,
                ctx,
                self._config.rollout,
                self._runtime().pack,
                default=self._config.mode,
                scope=scope,
                override=override,
            )
        )

    async def vote(self, *, nonce: str, voter: str, approve: bool) -> promotion.Voted:
        """One click on a promotion card (committed on return)."""
        ctx = self._ctx(voter)
        voted = await self._db.run(
            lambda s: promotion.vote_promotion(
                s,
                ctx,
                self._config.rollout,
                default=self._config.mode,
                nonce=nonce,
                approve=approve,
                approvers=self._runtime().approvers,
            )
        )
        await self.refresh()
        return voted

    async def record_did(
        self, *, actor: str, channel: str, ref: str | None, text: str
    ) -> DidOutcome:
        """``/incident did <what>``: on the named incident, else the channel's open one, else
        the channel's most recently resolved one."""

        def work(session: Session) -> DidOutcome:
            if ref is None:
                several = open_incidents(session, channel)
                if len(several) > 1:
                    ids = ", ".join(f"`{short_id(i.id)}` ({i.text[:60]})" for i in several[:5])
                    return DidOutcome(
                        None,
                        None,
                        f"Several incidents are open here: {ids}. Say which: "
                        "/incident did <id> <what>.",
                    )
            incident = self._incident_for(session, channel=channel, ref=ref)
            if incident is None:
                return DidOutcome(
                    None, None, "There is no incident in this channel to record it on."
                )
            ctx = self._on(incident, actor)
            recorded = baseline.record_did(session, ctx, incident, text)
            return DidOutcome(recorded, incident.id, "")

        return await self._db.run(work)

    def _incident_for(self, session: Session, *, channel: str, ref: str | None) -> Incident | None:
        if ref is not None:
            target = find_target(session, channel=channel, ref=ref, thread_ts=None)
            return target.incident if target.incident is not None else None
        open_ = session.exec(
            select(Incident)
            .where(Incident.channel == channel, Incident.status == IncidentStatus.OPEN.value)
            .order_by(col(Incident.created_at).desc())
        ).first()
        if open_ is not None:
            return open_
        return session.exec(
            select(Incident)
            .where(Incident.channel == channel)
            .order_by(col(Incident.created_at).desc())
        ).first()

    async def record_answer(
        self, *, incident_id: str, actor: str, taken: list[str], other: str
    ) -> Recorded | None:
        """The baseline card's answer; None when the incident is unknown."""

        def work(session: Session) -> Recorded | None:
            incident = session.get(Incident, incident_id)
            if incident is None:
                return None
            ctx = self._on(incident, actor)
            return baseline.record(
                session,
                ctx,
                incident.id,
                taken=taken,
                other_text=other,
                source="card",
                answered=True,
            )

        return await self._db.run(work)

    async def check(self) -> list[str]:
        """The periodic rollout check: expire promotions, demote on FP spikes or cost drift."""
        if not self._config.rollout.scopes:
            return []
        ctx = self._ctx("opsgate", role=Role.AUDITOR)

        def work(session: Session) -> list[str]:
            promotion.expire_promotions(session, ctx)
            return guard.check_regressions(session, self._config.rollout, ctx, now=ctx.now)

        demoted = await self._db.run(work)
        if demoted:
            log.warning("rollout_demoted", scopes=demoted)
        await self.refresh()
        return demoted


__all__ = ["DidOutcome", "Mode", "RolloutService"]
