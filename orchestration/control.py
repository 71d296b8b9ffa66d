"""The control plane's public API: open incidents, advance plans, take votes, answer queries.

``ControlPlane`` receives its collaborators (database, tools, policy pack, grant signer,
clock) through its constructor; the composition root in ``bot`` builds them. Every method is
async; state changes happen in units of work (see ``orchestration.db``).
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace
from datetime import timedelta
from functools import cached_property
from typing import Any, TypeVar

from sqlmodel import Session, col, func, select

from adapters import AdapterError, GrantSigner, ToolRegistry
from adapters.credentials import issuing
from common import Clock, Mode, Role, faults
from common.yamlsrc import Problem
from orchestration import alertgroups, closing, intake, planner
from orchestration.agents import transcripts
from orchestration.agents.catalogue import ActionCatalogue
from orchestration.agents.client import ModelClient
from orchestration.agents.meter import TokenMeter
from orchestration.agents.record import llm_summary, post_findings, record_run, record_unplanned
from orchestration.agents.researcher import GuardedReader
from orchestration.agents.run import AgentRun, run_agents
from orchestration.approvals import cast_vote, expire_due, record_reason
from orchestration.authority import running_scope
from orchestration.budgets import channel_spent_today, forecast_refusal, past_step_costs
from orchestration.checks import GATED_CHANGED
from orchestration.closing import Assessment, CloseOutcome
from orchestration.config import LlmConfig, OpsgateConfig
from orchestration.db import Database
from orchestration.enums import IncidentStatus, PlannerKind, PlanStatus, StepStatus, VoteChoice
from orchestration.errors import NoMatch, NotFound, OrchestrationError
from orchestration.executor import CANCELLED, Executor, Outcome, Ticket
from orchestration.inbox import (
    AlreadyDone,
    Inbox,
    NoticeKind,
    Request,
    RequestKind,
    finish,
    refuse,
)
from orchestration.inbox import Outcome as RequestOutcome
from orchestration.knowledge import KnowledgeSnapshot, KnowledgeSync, behind
from orchestration.lifecycle import ctx_for
from orchestration.materialise import materialise
from orchestration.models import (
    AuditEvent,
    CostEntry,
    Incident,
    Plan,
    Span,
    Step,
)
from orchestration.otlp import SpanExport
from orchestration.records import Ctx, audit, emit
from orchestration.recovery import (
    CheckJob,
    claim_lapsed,
    proposed_plans,
    record_check,
    renew_held,
    store_playbooks,
)
from orchestration.rollout.scopes import stage_words
from orchestration.rollout.service import RolloutService
from orchestration.rollout.stages import current_stages
from orchestration.runtime import Runtime
from orchestration.stepflow import finish_and_next, first_action, record_issued
from orchestration.telemetry import bind_context, get_logger, new_correlation_id
from orchestration.views import Opened, PlanPreview, PlanView, StepPreview, StepView, VoteOutcome
from policies import Pack

log = get_logger("opsgate.control")
T = TypeVar("T")
COST_DIMENSIONS = ("plan_id", "role", "tool", "runbook_id", "channel")


class _KnowledgeBehind(Exception):
    """A plan was drafted from versions the database no longer holds as latest."""


class ControlPlane:
    """The engine of opsgate, usable without Slack."""

    def __init__(
        self,
        *,
        db: Database,
        config: OpsgateConfig,
        tools: ToolRegistry,
        pack: Pack,
        signer: GrantSigner,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        cache_ttls: Mapping[str, float] | None = None,
        export_spans: bool = True,
        model: ModelClient | None = None,
    ) -> None:
        self.db = db
        # With OTEL_EXPORTER_OTLP_ENDPOINT set, committed spans also go out over OTLP (not
        # those of a replay's sandbox: ``export_spans=False``).
        self.span_export = SpanExport.from_env() if export_spans else None
        if self.span_export is not None:
            db.on_spans = self.span_export.export
        self.config = config
        self.clock = clock
        self.rt = Runtime(
            config=config,
            pack=pack,
            tools=tools,
            signer=signer,
            clock=clock,
            approvers=config.approver_ids(),
            cache_ttls=dict(cache_ttls or {}),
        )
        ex = config.execution
        self.executor = Executor(
            tools=tools,
            clock=clock,
            max_attempts=ex.max_attempts,
            backoff_initial_s=ex.backoff_initial_s,
            backoff_max_s=ex.backoff_max_s,
            sleep=sleep,
        )
        self.knowledge = KnowledgeSync(
            db=db,
            clock=clock,
            runbooks=config.runbooks,
            policies=config.policies,
            builtin_pack=pack,
            refresh_s=config.knowledge.refresh_s,
            on_change=self._use_knowledge,
        )
        self._inflight: dict[str, asyncio.Task[Outcome]] = {}
        self._slots = asyncio.Semaphore(config.execution.max_concurrent_calls)
        self._background: set[asyncio.Task[None]] = set()
        self.llm = config.llm_settings()
        self._model = model
        self.rollout = RolloutService(db=db, config=config, clock=clock, runtime=lambda: self.rt)

    # --- knowledge ---------------------------------------------------------------------

    @property
    def snapshot(self) -> KnowledgeSnapshot:
        """The knowledge plans are built from: the database's latest versions."""
        return self.knowledge.snapshot

    def _use_knowledge(self, snapshot: KnowledgeSnapshot) -> None:
        # Policy decisions follow the stored pack, the one plans pin.
        if snapshot.pack is not None and snapshot.pack != self.rt.pack:
            self.rt = replace(self.rt, pack=snapshot.pack)

    async def start(self) -> list[Problem]:
        """Create the schema if needed and load knowledge; returns runbook problems."""
        await self.db.start()
        if self.config.mode is Mode.GATED:
            log.warning(
                "mode_gated_runs_alone",
                up_to=self.rt.pack.gated_runs_alone_up_to.value,
                message=GATED_CHANGED.format(limit=self.rt.pack.gated_runs_alone_up_to),
            )
        await self.rollout.sync()
        return await self.load_knowledge()

    async def load_knowledge(self) -> list[Problem]:
        """Re-read this replica's files now (publishing new content), then follow the database.

        Returns the problems found in the files.
        """
        await self.knowledge.refresh(rescan=True)
        runbooks = self.snapshot.runbooks
        found = await self.db.run(
            lambda s: store_playbooks(
                s, folder=self.config.playbook_folder(), runbooks=runbooks, now=self.clock.now()
            )
        )
        return list(self.knowledge.files.problems) + found

    async def refresh_knowledge(self) -> bool:
        """One periodic refresh (cheap when nothing changed); True when plans will differ."""
        return await self.knowledge.refresh()

    # --- planning ----------------------------------------------------------------------

    async def preview_agents(
        self,
        text: str,
        *,
        requester: str = "",
        snapshot: KnowledgeSnapshot | None = None,
        stages: Mapping[str, Mode] | None = None,
        channel: str = "",
    ) -> PlanPreview:
        """As :meth:`preview`, and with ``llm:`` set and no runbook matching, the LLM
        Planner's plan (its model calls are made and metered; no tool runs, nothing is
        written). Raises NoMatch with the reason when the agents make no plan."""
        known = self.snapshot if snapshot is None else snapshot
        clean = intake.validate(text)
        if self.llm is None:
            return self.preview(
                clean, requester=requester, snapshot=known, stages=stages, channel=channel
            )
        if planner.rank(known, clean):
            found = self.preview(
                clean, requester=requester, snapshot=known, stages=stages, channel=channel
            )
            return found.model_copy(update={"planner": "runbook"})
        run = await self.run_agents(
            clean,
            requester=requester,
            channel="",
            correlation_id=new_correlation_id(),
            research=False,
            snapshot=known,
        )
        draft = _agents_draft(run, clean)
        found = self.preview(
            clean, requester=requester, snapshot=known, draft=draft, stages=stages, channel=channel
        )
        return found.model_copy(
            update={
                "planner": "llm",
                "llm": llm_summary(run),
                "rationales": run.plan.rationales if run.plan else {},
            }
        )

    def preview(
        self,
        text: str,
        *,
        requester: str = "",
        snapshot: KnowledgeSnapshot | None = None,
        draft: planner.PlanDraft | None = None,
        stages: Mapping[str, Mode] | None = None,
        channel: str = "",
    ) -> PlanPreview:
        """The plan that would be proposed for ``text`` (from ``snapshot``, default the current
        knowledge; or ``draft`` when given), with who must approve each step; reads and writes
        nothing."""
        if draft is None:
            known = self.snapshot if snapshot is None else snapshot
            draft = planner.plan(known, intake.validate(text))
        plan, steps = self._materialise(
            draft, requester=requester, incident_id="", channel=channel, stages=stages
        )
        previews = self.preview_steps(plan, steps)
        return PlanPreview(
            runbook_id=draft.runbook_id,
            runbook_version=draft.runbook_version,
            title=draft.title,
            params=draft.params,
            plan_hash=draft.plan_hash,
            knowledge_pins=draft.knowledge_pins,
            mode=plan.mode,
            steps=tuple(previews),
            forecast_usd=plan.forecast_usd,
            budget_usd=plan.budget_usd,
            budget_tokens=plan.budget_tokens,
        )

    def matches(self, text: str) -> bool:
        """True when some runbook recognises ``text`` (and intake accepts it)."""
        try:
            return bool(planner.rank(self.snapshot, intake.validate(text)))
        except OrchestrationError:
            return False

    def _materialise(
        self,
        draft: planner.PlanDraft,
        *,
        requester: str,
        incident_id: str,
        channel: str,
        correlation_id: str = "",
        history: Mapping[str, float] | None = None,
        stages: Mapping[str, Mode] | None = None,
    ) -> tuple[Plan, list[Step]]:
        """Rows for a draft (see ``orchestration.materialise``)."""
        return materialise(
            self.rt,
            draft,
            requester=requester,
            incident_id=incident_id,
            channel=channel,
            now=self.clock.now(),
            correlation_id=correlation_id,
            history=history,
            stages=stages,
        )

    # --- agents ------------------------------------------------------------------------

    @property
    def model(self) -> ModelClient | None:
        """The model client (built on first use from ``llm:``), or None without one."""
        if self._model is None and self.llm is not None:
            self._model = ModelClient(self.llm)
        return self._model

    async def run_agents(
        self,
        text: str,
        *,
        requester: str,
        channel: str,
        correlation_id: str,
        research: bool = True,
        snapshot: KnowledgeSnapshot | None = None,
        plan: bool = True,
        budget_tokens: int | None = None,
        budget_usd: float | None = None,
    ) -> AgentRun:
        """The Researcher (unless ``research`` is False) then the LLM Planner (unless ``plan``
        is False: a runbook plans) on ``text``, metered against the budget of the plan they
        work for: ``budget_tokens`` / ``budget_usd`` (a runbook's own), else ``budgets:``."""
        assert self.llm is not None
        budgets = self.config.budgets
        meter = TokenMeter(
            settings=self.llm,
            budget_tokens=budgets.plan_tokens if budget_tokens is None else budget_tokens,
            budget_usd=budgets.plan_usd if budget_usd is None else budget_usd,
            soft_ratio=budgets.soft_ratio,
        )
        try:
            client = self.model
        except AdapterError as exc:  # the API key's ${secret:} is not set: say where to set it
            log.warning("agents_not_run", correlation_id=correlation_id, code=exc.code)
            return AgentRun(
                model=self.llm.model,
                meter=meter,
                failure=f"the model client cannot start ({exc.message})",
                failure_code=exc.code,
                research_only=not plan,
            )
        assert client is not None
        catalogue = ActionCatalogue(self.rt.tools)
        reader = None
        if research and self.llm.researcher_max_tool_calls > 0:
            reader = GuardedReader(self.rt, self.executor, requester=requester, channel=channel)
        run = await run_agents(
            text,
            client=client,
            meter=meter,
            catalogue=catalogue,
            reader=reader,
            pins=(self.snapshot if snapshot is None else snapshot).pins_for(""),
            correlation_id=correlation_id,
            plan=plan,
        )
        log.info(
            "agents_ran",
            correlation_id=correlation_id,
            planned=run.plan is not None,
            failure=run.failure_code or None,
            tokens=meter.spent_tokens,
            usd=round(meter.spent_usd, 6),
            calls=len(meter.lines),
        )
        return run

    # --- incidents ---------------------------------------------------------------------

    def _ctx(
        self, correlation_id: str | None = None, *, actor: str = "opsgate", role: Role = Role.SYSTEM
    ) -> Ctx:
        return Ctx(
            correlation_id=correlation_id or new_correlation_id(),
            now=self.clock.now(),
            actor=actor,
            role=role,
        )

    async def _agents_for(
        self, text: str, ctx: Ctx, *, requester: str, channel: str, inbox_key: str | None
    ) -> AgentRun | None:
        """The agents' run when ``llm:`` is set and no runbook matches ``text``, else None."""
        if self.llm is None:
            return None
        try:
            clean = intake.validate(text)
        except OrchestrationError as exc:
            await self._audit_refusal(ctx, exc, text=text, channel=channel, inbox_key=inbox_key)
            raise
        ranked = planner.rank(self.snapshot, clean)
        if ranked:  # runbooks win when they match; one with ``research: true`` gets findings
            runbook = self.snapshot.runbooks[ranked[0].runbook_id]
            if not runbook.research:
                return None
            own = runbook.budget  # the Researcher spends from the runbook plan's own budget
            return await self.run_agents(
                clean,
                requester=requester,
                channel=channel,
                correlation_id=ctx.correlation_id,
                plan=False,
                budget_tokens=own.tokens if own is not None else None,
                budget_usd=own.usd if own is not None else None,
            )
        return await self.run_agents(
            clean, requester=requester, channel=channel, correlation_id=ctx.correlation_id
        )

    async def open_incident(
        self,
        *,
        text: str,
        requester: str,
        channel: str = "",
        source: str = "slack",
        correlation_id: str | None = None,
        run: bool = True,
        inbox_key: str | None = None,
        external_ref: str | None = None,
        alert_request: Request | None = None,
    ) -> Opened:
        """Open an incident, propose its plan, and (unless ``run`` is False) start it.

        Raises InputRejected or NoMatch (both audited) when no plan can be proposed. With
        ``inbox_key`` the recorded request is marked done in the commit that opens the incident
        (or records the refusal), and AlreadyDone is raised when it was done before. With
        ``alert_request`` (an Alertmanager group's notification) the incident remembers its
        group in the same commit (``orchestration.alertgroups``).
        """
        ctx = self._ctx(correlation_id, actor=requester, role=Role.HUMAN)
        bind_context(correlation_id=ctx.correlation_id, actor=requester)
        agents = await self._agents_for(
            text, ctx, requester=requester, channel=channel, inbox_key=inbox_key
        )

        # Planning is CPU work: it runs in the database worker with the commit, so a burst of
        # incidents never holds the event loop (and Slack's acks) behind it.
        def work(session: Session, *, fresh_only: bool = True) -> Opened:
            if inbox_key is not None:
                finish(session, inbox_key, now=ctx.now)  # locks the row: one try opens it
            clean = intake.validate(text)
            draft = (
                planner.plan(self.snapshot, clean)
                if agents is None or agents.research_only
                else _agents_draft(agents, clean)
            )
            if fresh_only and behind(session, draft.knowledge_pins):
                raise _KnowledgeBehind  # another replica stored a newer version just now
            incident_id = uuid.uuid4().hex
            plan, steps = self._materialise(
                draft,
                requester=requester,
                incident_id=incident_id,
                channel=channel,
                correlation_id=ctx.correlation_id,
                history=past_step_costs(session, (s.tool_action for s in draft.steps)),
                stages=current_stages(session, self.config.rollout),
            )
            incident = Incident(
                id=incident_id,
                text=clean,
                requester=requester,
                channel=channel,
                status=IncidentStatus.OPEN.value,
                source=source,
                external_ref=external_ref,
                correlation_id=ctx.correlation_id,
                created_at=ctx.now,
            )
            previews = self.preview_steps(plan, steps)
            session.add(incident)
            session.add(plan)
            session.add_all(steps)
            if alert_request is not None and alert_request.group_key:
                alertgroups.attach(
                    session,
                    incident_id=incident_id,
                    request=alert_request,
                    now=ctx.now,
                    auto_close=self.config.slack.alerts_close_incidents,
                )
            session.flush()
            pctx = ctx_for(plan, ctx)
            audit(session, pctx, "incident_opened", detail={"text": clean, "source": source})
            llm: dict[str, Any] | None = None
            if agents is not None and self.llm is not None:
                llm = record_run(session, pctx, run=agents, plan=plan, settings=self.llm)
            audit(
                session,
                pctx,
                "plan_proposed",
                role=Role.PLANNER,
                actor="planner",
                detail={
                    "runbook": plan.runbook_id,
                    "plan_hash": plan.plan_hash,
                    "pins": plan.knowledge_pins,
                    "steps": len(steps),
                },
            )
            emit(
                session,
                pctx,
                "incident_opened",
                {
                    "text": clean,
                    "requester": requester,
                    "title": draft.title,
                    "runbook_id": plan.runbook_id,
                    "plan_version": plan.version,
                    "plan_hash": plan.plan_hash,
                    "params": plan.params,
                    "steps": [p.model_dump(mode="json") for p in previews],
                    "forecast_usd": plan.forecast_usd,
                    "budget_usd": plan.budget_usd,
                }
                | _planner_fields(agents, llm, enabled=self.llm is not None),
            )
            if agents is not None and llm is not None:
                post_findings(session, pctx, run=agents, plan=plan, summary=llm)
            reason = ""
            refusal = forecast_refusal(
                forecast_usd=plan.forecast_usd,
                budget_usd=plan.budget_usd,
                channel_spent_usd=channel_spent_today(session, channel, ctx.now)
                if channel
                else 0.0,
                channel_cap_usd=self.config.budgets.channel_daily_usd,
            )
            if refusal is not None:
                code, reason = refusal
                plan.status = PlanStatus.BLOCKED.value
                plan.status_reason = reason
                audit(
                    session,
                    pctx,
                    "plan_blocked",
                    code=code,
                    role=Role.AUDITOR,
                    detail={"forecast_usd": plan.forecast_usd, "budget_usd": plan.budget_usd},
                )
                emit(
                    session,
                    pctx,
                    "plan_blocked",
                    {"reason": reason, "forecast_usd": plan.forecast_usd, "code": code},
                )
            return Opened(
                incident_id=incident_id,
                plan_id=plan.id,
                plan_version=plan.version,
                plan_hash=plan.plan_hash,
                status=plan.status,
                reason=reason,
                correlation_id=ctx.correlation_id,
            )

        try:
            try:
                opened = await self.db.run(work)
            except _KnowledgeBehind:
                # Never propose a plan that is stale at birth: catch up, plan again.
                await self.knowledge.refresh()
                opened = await self.db.run(lambda s: work(s, fresh_only=False))
        except OrchestrationError as exc:
            await self._audit_refusal(
                ctx, exc, text=text, channel=channel, inbox_key=inbox_key, agents=agents
            )
            raise
        log.info(
            "incident_opened",
            incident_id=opened.incident_id,
            plan_id=opened.plan_id,
            plan_hash=opened.plan_hash,
            correlation_id=ctx.correlation_id,
        )
        if run and opened.status != PlanStatus.BLOCKED.value:
            await self.advance(opened.plan_id)
        return opened

    def preview_steps(self, plan: Plan, steps: list[Step]) -> list[StepPreview]:
        """Each step with the policy's verdict on it: who must approve and why."""
        previews = []
        for step in steps:
            decision = self.rt.decide(step, plan)
            previews.append(
                StepPreview(
                    key=step.key,
                    title=step.title,
                    tool_action=step.tool_action,
                    args=step.args,
                    risk=decision.risk.value,
                    declared_risk=step.declared_risk,
                    verdict=decision.verdict.value,
                    code=decision.code,
                    reason=decision.reason,
                    quorum=decision.quorum,
                    exclude_requester=decision.exclude_requester,
                    expect=step.expect,
                    compensate=step.compensate,
                    observe=step.observe,
                    cost_usd=step.estimate_usd,
                    stage=stage_words(step.rollout),
                )
            )
        return previews

    async def _audit_refusal(
        self,
        ctx: Ctx,
        exc: OrchestrationError,
        *,
        text: str,
        channel: str,
        inbox_key: str | None = None,
        agents: AgentRun | None = None,
    ) -> None:
        event = "plan_not_found" if isinstance(exc, NoMatch) else "input_rejected"

        def work(session: Session) -> None:
            detail: dict[str, Any] = {"text": text[:500], "channel": channel, "reason": exc.message}
            if agents is not None and self.llm is not None:
                spent = record_unplanned(
                    session, ctx, run=agents, channel=channel, settings=self.llm
                )
                detail |= {
                    "agents_failure": agents.failure_code,
                    "tokens": spent["tokens"],
                    "usd": spent["usd"],
                    "model_calls": spent["calls"],
                }
            if inbox_key is not None:
                refuse(
                    session,
                    inbox_key,
                    now=ctx.now,
                    notice=NoticeKind.REFUSED,
                    code=exc.code,
                    message=exc.message,
                )
            audit(
                session,
                ctx,
                event,
                code=exc.code,
                detail=detail,
            )

        await self.db.run(work)

    # --- execution ---------------------------------------------------------------------

    async def advance(self, plan_id: str, *, ticket: Ticket | None = None) -> None:
        """Run the plan's steps until one waits for humans or the plan ends.

        Recording a step's result and deciding the next step share one transaction, so a plan
        of automatic steps costs one commit per step after the first.
        """
        if ticket is None:
            ticket = await self._unit(lambda s: first_action(s, self._ctx(), self.rt, plan_id))
        while ticket is not None:
            done = ticket
            outcome = await self._run(done)

            def finish_then_next(
                session: Session, done: Ticket = done, outcome: Outcome = outcome
            ) -> Ticket | None:
                return finish_and_next(session, self._ctx(), self.rt, done, outcome)

            ticket = await self._unit(finish_then_next)

    async def _unit(self, work: Callable[[Session], T]) -> T:
        """Run one unit of work, then advance the plans recovery playbooks proposed in it."""
        result, proposed = await self.db.run(lambda s: (work(s), proposed_plans(s)))
        for plan_id in proposed:
            await self.advance(plan_id)
        return result

    async def _run(self, ticket: Ticket) -> Outcome:
        """Run one ticket as a task this process can stop (cancel, resolve, lost lease)."""
        bind_context(correlation_id=ticket.correlation_id, step_id=ticket.step_id)
        faults.point("after_grant")
        task = asyncio.create_task(self._execute(ticket), name=f"step-{ticket.step_id}")
        self._inflight[ticket.step_id] = task
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:  # this process is shutting down: stop the call too
            task.cancel()
            raise
        finally:
            if self._inflight.get(ticket.step_id) is task:
                del self._inflight[ticket.step_id]
        if task.cancelled():
            return Outcome(error_code=CANCELLED, error="stopped while its call was in flight")
        outcome = task.result()
        faults.point("after_call")
        return outcome

    async def _execute(self, ticket: Ticket) -> Outcome:
        async def issued(fact: dict[str, Any]) -> None:
            base = self._ctx(ticket.correlation_id)
            await self.db.run(
                lambda s: record_issued(
                    s, base, plan_id=ticket.plan_id, step_id=ticket.step_id, fact=fact
                )
            )

        try:
            # Waiting for a slot is part of the task: cancel and resolve stop a waiting step too.
            async with self._slots:
                with issuing(issued):  # a token minted mid-call is audited (and shown) at once
                    return await self.executor.run(ticket)
        except AdapterError as exc:  # e.g. the tool vanished from the registry
            return Outcome(error_code=exc.code, error=exc.message)

    def running_here(self) -> list[str]:
        """Ids of the steps whose calls this process has in flight."""
        return list(self._inflight)

    def _stop_local(self, step_ids: list[str]) -> None:
        for step_id in step_ids:
            task = self._inflight.get(step_id)
            if task is not None and not task.done():
                log.info("step_stopping", step_id=step_id)
                task.cancel()

    async def renew_leases(self) -> int:
        """Renew the leases of steps running here; stop those this process no longer holds.

        Returns how many calls it stopped. Costs nothing while no step runs.
        """
        held = self.running_here()
        if not held:
            return 0
        until = self.clock.now() + timedelta(seconds=self.config.execution.lease_s)
        owner = self.rt.replica_id
        stop = await self.db.run(lambda s: renew_held(s, owner=owner, step_ids=held, until=until))
        self._stop_local(stop)
        return len(stop)

    async def reconcile(self) -> int:
        """Take over steps whose lease lapsed (any replica's); returns how many it took."""
        found = await self.db.run(lambda s: claim_lapsed(s, self._ctx(), self.rt))
        for ticket in found.reruns:
            self._spawn(self.advance(ticket.plan_id, ticket=ticket), name="step-rerun")
        for job in found.checks:
            self._spawn(self._check_in_doubt(job), name="in-doubt-check")
        if found:
            log.info(
                "steps_reconciled",
                reruns=len(found.reruns),
                checks=len(found.checks),
                in_doubt=len(found.in_doubt),
            )
        return len(found)

    async def _check_in_doubt(self, job: CheckJob) -> None:
        outcome = await self._execute(job.ticket)
        await self.db.run(lambda s: record_check(s, self._ctx(), self.rt, job, outcome))

    def _spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: "asyncio.Task[None]") -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_failed", task=task.get_name(), error=repr(task.exception()))

    async def vote(
        self,
        *,
        nonce: str,
        voter: str,
        choice: VoteChoice,
        reason: str = "",
        defer: Callable[[Awaitable[None]], None] | None = None,
    ) -> VoteOutcome:
        """Count or refuse one vote; a vote that reaches quorum runs the step (exactly once).

        The vote is one unit of work: when this returns, it is committed. The step a final
        vote starts is awaited here, or handed to ``defer`` so the caller can acknowledge the
        vote first and run the step in the background.
        """
        result = await self._unit(
            lambda s: cast_vote(
                s,
                self._ctx(actor=voter, role=Role.HUMAN),
                self.rt,
                nonce=nonce,
                voter=voter,
                choice=choice,
                reason=reason,
            )
        )
        faults.point("after_vote_commit")
        follow: Awaitable[None] | None = None
        if result.ticket is not None and result.outcome.plan_id is not None:
            follow = self.advance(result.outcome.plan_id, ticket=result.ticket)
        elif result.resume_plan is not None:
            follow = self.advance(result.resume_plan)
        if follow is not None:
            if defer is None:
                await follow
            else:
                defer(follow)
        return result.outcome

    async def add_reason(self, *, nonce: str, voter: str, reason: str) -> VoteOutcome:
        """Add ``voter``'s reason to the rejection they cast on ``nonce`` (one commit), or refuse.

        The rejection counted at the click; the reason only adds detail to its record.
        """
        return await self.db.run(
            lambda s: record_reason(
                s,
                self._ctx(actor=voter, role=Role.HUMAN),
                nonce=nonce,
                voter=voter,
                reason=reason,
            )
        )

    async def expire_approvals(self) -> int:
        """Expire approvals past their time (a scheduler job); returns how many."""
        return await self.db.run(lambda s: expire_due(s, self._ctx()))

    async def prune_transcripts(self) -> int:
        """Delete agent transcripts (and call outcomes) past ``llm.transcript_retention_days``
        (a scheduler job)."""
        now = self.clock.now()
        days = (self.llm or LlmConfig.model_construct()).transcript_retention_days
        pruned = await self.db.run(lambda s: transcripts.prune(s, now, retention_days=days))
        if pruned:
            log.info("transcripts_pruned", count=pruned)
        return pruned

    async def close_incident(
        self,
        *,
        actor: str,
        resolved: bool,
        reason: str = "",
        incident_id: str | None = None,
        channel: str | None = None,
    ) -> bool:
        """Resolve or cancel ``incident_id`` (else ``channel``'s one open incident) as ``actor``,
        as the policy pack allows; an unfinished plan is cancelled with it.

        Returns False, changing nothing, when it does not close (see ``orchestration.closing``).
        """
        if incident_id is None and channel is None:
            raise ValueError("close_incident needs incident_id or channel")
        request = Request(
            kind=RequestKind.RESOLVE if resolved else RequestKind.CANCEL,
            requester=actor,
            channel=channel or "",
            text=reason,
            incident_ref=incident_id,
            correlation_id=new_correlation_id(),
        )
        return await self.close_request(request) is CloseOutcome.CLOSED

    async def assess_close(self, request: Request) -> Assessment:
        """What a resolve or cancel would come to now (reads only: the ack says it)."""
        return await self.db.run(
            lambda s: closing.assess(s, request, pack=self.rt.pack, approvers=self.rt.approvers)[0]
        )

    async def close_request(
        self, request: Request, *, inbox_key: str | None = None
    ) -> CloseOutcome:
        """Do a resolve or cancel; with ``inbox_key`` the recorded request is marked done in the
        same commit (AlreadyDone when it was done before). A step whose call is in flight is
        stopped (see ``recovery.stop_running``)."""

        def work(session: Session) -> tuple[CloseOutcome, list[str]]:
            now = self.clock.now()
            if inbox_key is not None:
                finish(session, inbox_key, now=now)
            found, stop = closing.close(
                session,
                request,
                now=now,
                pack=self.rt.pack,
                approvers=self.rt.approvers,
                stop_owner=self.rt.replica_id,
            )
            return found.outcome, stop

        outcome, stop = await self.db.run(work)
        if outcome is not CloseOutcome.CLOSED:
            log.info("incident_not_closed", outcome=outcome.value, channel=request.channel)
        self._stop_local(stop)
        return outcome

    async def record_external_event(
        self,
        *,
        source: str,
        event: str,
        external_ref: str | None,
        detail: Mapping[str, Any],
        correlation_id: str | None = None,
    ) -> str | None:
        """Audit an event another system reported (``external_event``) that changes nothing
        here, on the incident mirroring ``external_ref`` when there is one; returns its id.

        A ``correlation_id`` derived from the sender's event id makes a redelivery (or a replay
        of a captured delivery) a no-op: an ``external_event`` already recorded under it is
        not recorded again."""

        def work(session: Session) -> str | None:
            if correlation_id is not None:
                seen = session.exec(
                    select(AuditEvent)
                    .where(AuditEvent.correlation_id == correlation_id)
                    .where(AuditEvent.event == "external_event")
                ).first()
                if seen is not None:
                    log.info("external_event_replayed", source=source, event_type=event)
                    return seen.incident_id
            incident = (
                session.exec(
                    select(Incident)
                    .where(Incident.external_ref == external_ref)
                    .order_by(col(Incident.created_at).desc())
                ).first()
                if external_ref
                else None
            )
            ctx = replace(
                self._ctx(correlation_id, actor=source),
                incident_id=incident.id if incident else None,
                channel=incident.channel if incident else "",
            )
            audit(
                session,
                ctx,
                "external_event",
                detail={"source": source, "event_type": event, "ref": external_ref, **detail},
            )
            return incident.id if incident else None

        return await self.db.run(work)

    async def alert_notification(self, request: Request, *, inbox_key: str) -> Opened | None:
        """One Alertmanager group's notification: update its open incident (posting what changed
        to the thread, resolving it when every alert has and its plan has ended), or open one
        when the group fires and none is open. Returns the incident opened, if one was.
        """

        def work(session: Session) -> bool:
            now = self.clock.now()
            assert request.group_key is not None
            found = alertgroups.open_group(session, request.group_key)
            firing = any(a.get("status") == alertgroups.FIRING for a in request.alerts)
            if found is None and firing:
                return True  # opened below, in the commit that marks the request done
            finish(session, inbox_key, now=now)
            ctx = Ctx(
                correlation_id=request.correlation_id,
                now=now,
                actor=request.requester,
                role=Role.SYSTEM,
                channel=request.channel,
            )
            if found is None:
                audit(
                    session,
                    ctx,
                    "alerts_ignored",
                    detail={"reason": "resolved alerts of a group with no open incident"},
                )
                return False
            group, incident = found
            alertgroups.update(session, ctx, group, incident, request)
            return False

        if not await self.db.run(work):
            return None
        try:
            return await self.open_incident(
                text=request.text,
                requester=request.requester,
                channel=request.channel,
                source=request.source,
                correlation_id=request.correlation_id or None,
                run=False,
                inbox_key=inbox_key,
                alert_request=request,
            )
        except OrchestrationError:
            return None  # refused: audited, done and told in one commit

    # --- inbox: requests acknowledged to their sender -----------------------------------

    @cached_property
    def inbox(self) -> Inbox:
        """This process's inbox: group-commit writer, leases, sweeper (built on first use)."""
        return Inbox(db=self.db, clock=self.clock)

    def submit_request(self, key: str, request: Request, **detail: Any) -> Awaitable[bool]:
        """Start recording ``request`` under ``key`` (group commit); await it before the 2xx.

        It resolves to False for a replay (audited in the same commit).
        """
        return self.inbox.submit(key, request, **detail)

    async def record_request(self, key: str, request: Request, **detail: Any) -> bool:
        """Record ``request`` under ``key`` before its 2xx; False for a replay (audited)."""
        return await self.submit_request(key, request, **detail)

    async def handle_request(self, key: str, request: Request) -> RequestOutcome:
        """Do the work of a recorded request, once: its row is marked done with the effect.

        A failed try leaves the row for the next one (a sweeper's, after a backoff); after the
        last, the asker is told. A refusal is recorded and told in the commit that marks it done.
        """
        self.inbox.working.add(key)
        opened: Opened | None = None
        try:
            if request.kind is RequestKind.ALERTS:
                opened = await self.alert_notification(request, inbox_key=key)
            elif request.kind is RequestKind.OPEN:
                try:
                    opened = await self.open_incident(
                        text=request.text,
                        requester=request.requester,
                        channel=request.channel,
                        source=request.source,
                        correlation_id=request.correlation_id or None,
                        run=False,
                        inbox_key=key,
                        external_ref=request.external_ref,
                    )
                except OrchestrationError:
                    return RequestOutcome.DONE  # refused: audited, done and told in one commit
            else:
                await self.close_request(request, inbox_key=key)
        except AlreadyDone:
            log.info("request_already_done", key=key, kind=request.kind.value)
            return RequestOutcome.ALREADY_DONE
        except Exception as exc:
            return await self.inbox.failed(key, exc)
        finally:
            self.inbox.working.discard(key)
        if opened is not None and opened.status != PlanStatus.BLOCKED.value:
            await self.advance(opened.plan_id)
        return RequestOutcome.DONE

    async def sweep_inbox(self) -> list[tuple[str, Request]]:
        """Renew this process's leases, prune, and claim lapsed requests to redo."""
        return await self.inbox.sweep()

    # --- queries -----------------------------------------------------------------------

    async def plan_view(self, plan_id: str) -> PlanView:
        """A plan and its steps."""

        def work(session: Session) -> PlanView:
            plan = session.get(Plan, plan_id)
            if plan is None:
                raise NotFound(f"no plan {plan_id}")
            steps = session.exec(
                select(Step).where(Step.plan_id == plan_id).order_by(col(Step.position))
            ).all()
            return PlanView(
                **plan.model_dump(include=set(PlanView.model_fields) - {"steps"}),
                steps=tuple(
                    StepView(
                        **s.model_dump(include=set(StepView.model_fields) - {"scope"}),
                        scope=running_scope(session, s)
                        if s.status == StepStatus.RUNNING.value
                        else None,
                    )
                    for s in steps
                ),
            )

        return await self.db.run(work)

    async def incident_plan(self, incident_id: str) -> PlanView:
        """The latest plan of an incident."""

        def work(session: Session) -> str:
            plan_id = session.exec(
                select(Plan.id)
                .where(Plan.incident_id == incident_id)
                .order_by(col(Plan.version).desc())
            ).first()
            if plan_id is None:
                raise NotFound(f"no incident {incident_id}")
            return plan_id

        return await self.plan_view(await self.db.run(work))

    async def audit_trail(self, plan_id: str) -> list[AuditEvent]:
        """Audit events of a plan, oldest first."""
        return await self.db.run(
            lambda s: list(
                s.exec(
                    select(AuditEvent)
                    .where(AuditEvent.plan_id == plan_id)
                    .order_by(col(AuditEvent.id))
                )
            )
        )

    async def spans(self, plan_id: str) -> list[Span]:
        """Spans of a plan's trace, by start time."""
        return await self.db.run(
            lambda s: list(
                s.exec(select(Span).where(Span.plan_id == plan_id).order_by(col(Span.started_at)))
            )
        )

    async def trace(self, trace_id: str) -> list[Span]:
        """Spans of one trace (a correlation id: a plan and its replans), by start time."""
        return await self.db.run(
            lambda s: list(
                s.exec(
                    select(Span)
                    .where(Span.trace_id == trace_id)
                    .order_by(col(Span.started_at), col(Span.id))
                )
            )
        )

    async def costs(self, plan_id: str) -> list[CostEntry]:
        """Cost entries of a plan."""
        return await self.db.run(
            lambda s: list(
                s.exec(
                    select(CostEntry)
                    .where(CostEntry.plan_id == plan_id)
                    .order_by(col(CostEntry.id))
                )
            )
        )

    async def open_incident_in(self, channel: str) -> Incident | None:
        """The newest open incident of ``channel``, if any."""
        return await self.db.run(
            lambda s: s.exec(
                select(Incident)
                .where(Incident.channel == channel, Incident.status == IncidentStatus.OPEN.value)
                .order_by(col(Incident.created_at).desc())
            ).first()
        )

    async def incident(self, incident_id: str) -> Incident:
        """One incident; NotFound when it does not exist."""
        found = await self.db.run(lambda s: s.get(Incident, incident_id))
        if found is None:
            raise NotFound(f"no incident {incident_id}")
        return found

    async def set_thread(self, incident_id: str, thread_ts: str) -> None:
        """Remember the chat thread of an incident (its root message)."""

        def work(session: Session) -> None:
            incident = session.get(Incident, incident_id)
            if incident is not None:
                incident.thread_ts = thread_ts
                session.add(incident)

        await self.db.run(work)

    async def cost_totals(self, by: str) -> dict[str, tuple[float, int]]:
        """Spend (USD, tokens) grouped by ``plan_id``, ``role``, ``tool``, ``runbook_id`` or
        ``channel``."""
        if by not in COST_DIMENSIONS:
            raise OrchestrationError(
                f"cannot group costs by {by!r}; use one of {', '.join(COST_DIMENSIONS)}",
                code="bad_request",
            )
        column = getattr(CostEntry, by)

        def work(session: Session) -> dict[str, tuple[float, int]]:
            rows = session.exec(
                select(column, func.sum(CostEntry.usd), func.sum(CostEntry.tokens)).group_by(column)
            )
            return {str(key): (float(usd or 0), int(tokens or 0)) for key, usd, tokens in rows}

        return await self.db.run(work)

    async def close(self) -> None:
        """Stop background work, then release the database and the tools' connections."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.rt.tools.aclose()
        if self.span_export is not None:
            # Off the loop: the exporter's thread may be talking to a receiver on this loop.
            await asyncio.to_thread(self.span_export.shutdown)
            self.db.on_spans = None
        if self._model is not None:
            await self._model.aclose()
        await self.db.close()


def _agents_draft(run: AgentRun, text: str) -> planner.PlanDraft:
    """The LLM plan of ``run``, or NoMatch saying why humans take over."""
    if run.plan is not None:
        return run.plan.draft
    raise NoMatch(
        f"No runbook matches {text!r}, and {run.failure}; over to humans.",
    )


def _planner_fields(
    run: AgentRun | None, llm: Mapping[str, Any] | None, *, enabled: bool
) -> dict[str, Any]:
    """What the incident's root says about who planned it (and the tokens the agents cost);
    nothing without ``llm:``, so the root stays as it was."""
    if run is None or run.plan is None:
        return {"planner": PlannerKind.RUNBOOK.value} if enabled else {}
    return {
        "planner": PlannerKind.LLM.value,
        "llm": dict(llm or {}),
        "rationales": run.plan.rationales,
    }
