"""What one agent run leaves in the database, in the unit of work that opens its incident.

Cost entries per model call (role, ``llm:<model>``, tokens, USD) and per Researcher read; a
``model_calls`` row per call the agents meant to make, with its outcome; a span per model call
and per read (the read's span keeps its raw, redacted result, which the findings point at);
audit events for the plan's provenance and every refused tool call; the Planner's answer as a
knowledge version; the compressed transcripts; the findings message.
"""

from typing import Any

from sqlmodel import Session

from common import Role, args_hash
from orchestration.agents import transcripts
from orchestration.agents.planning import (
    ANSWER_KIND,
    LLM_RUNBOOK_ID,
    PROMPT_VERSION,
    answer_document,
)
from orchestration.agents.run import AgentRun
from orchestration.config import LlmConfig
from orchestration.enums import SpanKind
from orchestration.knowledge import Document, publish_documents
from orchestration.models import CostEntry, ModelCall, Plan
from orchestration.records import Ctx, audit, emit, span

SPAN_OUTPUT_CHARS = 8000


def llm_summary(run: AgentRun) -> dict[str, Any]:
    """Tokens and USD of the run, by role, for cards and the CLI."""
    by_role: dict[str, dict[str, float]] = {}
    for line in run.meter.lines:
        row = by_role.setdefault(line.role.value, {"calls": 0, "tokens": 0, "usd": 0.0})
        row["calls"] += 1
        row["tokens"] += line.tokens
        row["usd"] += line.usd
    return {
        "model": run.model,
        "prompt_version": PROMPT_VERSION,
        "tokens": run.meter.spent_tokens,
        "cached_tokens": sum(line.cached_tokens for line in run.meter.lines),
        "usd": round(run.meter.spent_usd, 6),
        "calls": len(run.meter.lines),
        "by_role": by_role,
        "confidence": run.confidence,
        "token_confidence": run.token_confidence,
        "soft_crossed": run.meter.soft_crossed,
    }


def record_calls(
    session: Session,
    ctx: Ctx,
    *,
    run: AgentRun,
    plan_id: str,
    incident_id: str | None,
    channel: str,
) -> None:
    """One ``model_calls`` row per call of ``run``: answered, retried, failed or not made."""
    session.add_all(
        ModelCall(
            at=ctx.now,
            plan_id=plan_id,
            incident_id=incident_id,
            channel=channel,
            role=call.role.value,
            model=call.model,
            outcome=call.outcome.value,
            attempts=call.attempts,
        )
        for call in run.meter.calls
    )


def record_run(
    session: Session,
    ctx: Ctx,
    *,
    run: AgentRun,
    plan: Plan,
    settings: LlmConfig,
) -> dict[str, Any]:
    """Record ``run`` for ``plan`` (already added to ``session``); returns :func:`llm_summary`."""
    record_calls(
        session, ctx, run=run, plan_id=plan.id, incident_id=plan.incident_id, channel=plan.channel
    )
    for line in run.meter.lines:
        session.add(
            CostEntry(
                at=ctx.now,
                incident_id=plan.incident_id,
                plan_id=plan.id,
                role=line.role.value,
                tool=line.tool,
                runbook_id=plan.runbook_id,
                channel=plan.channel,
                usd=line.usd,
                tokens=line.tokens,
                duration_ms=line.duration_ms,
            )
        )
        span(
            session,
            ctx,
            kind=SpanKind.TOOL_CALL,
            name=f"{line.role.value} model call",
            started_at=ctx.now,
            ended_at=None,
            attributes={
                "model": line.model,
                "prompt_tokens": line.prompt_tokens,
                "completion_tokens": line.completion_tokens,
                "cached_tokens": line.cached_tokens,
                "usd": line.usd,
                "duration_ms": line.duration_ms,
            },
        )
    reads_usd = 0.0
    for obs in run.research.observations:
        reads_usd += obs.cost_usd
        session.add(
            CostEntry(
                at=ctx.now,
                incident_id=plan.incident_id,
                plan_id=plan.id,
                role=Role.RESEARCHER.value,
                tool=obs.tool_action.partition(".")[0],
                runbook_id=plan.runbook_id,
                channel=plan.channel,
                usd=obs.cost_usd,
                duration_ms=(obs.ended_at - obs.started_at).total_seconds() * 1000,
            )
        )
        span(
            session,
            ctx,
            kind=SpanKind.TOOL_CALL,
            name=f"research {obs.tool_action}",
            span_id=obs.span_id,
            started_at=obs.started_at,
            ended_at=obs.ended_at,
            status="ok" if obs.ok else "error",
            attributes={
                "role": Role.RESEARCHER.value,
                "tool_action": obs.tool_action,
                "args": obs.args,
                "status": obs.status,
                "summary": obs.summary,
                "error_code": obs.error_code,
                "output": obs.excerpt[:SPAN_OUTPUT_CHARS],
            },
        )
    for obs in run.research.observations:
        audit(
            session,
            ctx,
            "research_read",
            code=obs.error_code,
            role=Role.RESEARCHER,
            actor="researcher",
            detail={
                "tool_action": obs.tool_action,
                "args_hash": args_hash(obs.tool_action, obs.args),
                "ok": obs.ok,
                "status": obs.status,
                "span_id": obs.span_id,
            },
        )
    for refused in run.research.refusals:
        audit(
            session,
            ctx,
            "research_refused",
            code=refused.code,
            role=Role.RESEARCHER,
            actor="researcher",
            detail={"tool_action": refused.tool_action, "reason": refused.reason},
        )
    plan.spent_tokens += run.meter.spent_tokens
    plan.spent_usd += run.meter.spent_usd + reads_usd
    summary = llm_summary(run)
    if run.plan is not None:
        key, body = answer_document(run.answer, model=run.model)
        publish_documents(session, [Document(ANSWER_KIND, key, body, source="llm")], now=ctx.now)
        audit(
            session,
            ctx,
            "llm_plan_proposed",
            role=Role.PLANNER,
            actor="planner",
            detail={
                "model": run.model,
                "prompt_version": PROMPT_VERSION,
                "answer": f"{ANSWER_KIND}:{key}",
                "attempts": run.planner_attempts,
                "confidence": run.confidence,
                "token_confidence": run.token_confidence,
                "ignored_claims": list(run.plan.ignored_claims),
                "tokens": summary["tokens"],
                "usd": summary["usd"],
            },
        )
    for role, calls in (
        (Role.RESEARCHER, run.research.transcript),
        (Role.PLANNER, run.planner_transcript),
    ):
        if calls:
            transcripts.store(
                session,
                plan_id=plan.id,
                incident_id=plan.incident_id,
                role=role.value,
                model=run.model,
                calls=calls,
                tokens=sum(line.tokens for line in run.meter.lines if line.role is role),
                now=ctx.now,
                retention_days=settings.transcript_retention_days,
            )
    return summary


def post_findings(
    session: Session, ctx: Ctx, *, run: AgentRun, plan: Plan, summary: dict[str, Any]
) -> None:
    """The thread message with the findings, refusals and rationales (after the root's)."""
    emit(
        session,
        ctx,
        "agent_findings",
        {
            "findings": [{"text": f.text, "span_id": f.span_id} for f in run.research.findings],
            "refused": [
                {"tool_action": r.tool_action, "reason": r.reason} for r in run.research.refusals
            ],
            "notes": [
                *run.notes,
                *([f"The Researcher could not finish: {run.failure}"] if run.failure else []),
            ],
            "rationales": run.plan.rationales if run.plan else {},
            "ignored_claims": list(run.plan.ignored_claims) if run.plan else [],
            "llm": summary,
            "budget_tokens": plan.budget_tokens,
            "budget_usd": plan.budget_usd,
        },
    )


def unplanned_id(correlation_id: str) -> str:
    """The ``plan_id`` of the cost entries of an agent run that made no plan."""
    return f"unplanned-{correlation_id}"


def record_unplanned(
    session: Session, ctx: Ctx, *, run: AgentRun, channel: str, settings: LlmConfig
) -> dict[str, Any]:
    """Meter a run that ended without a plan (model down, budget, invalid answers): its model
    calls still cost tokens, so they become cost entries under :func:`unplanned_id` (the
    channel's spend and the digest count them) and its transcripts are kept."""
    plan_id = unplanned_id(ctx.correlation_id)
    record_calls(session, ctx, run=run, plan_id=plan_id, incident_id=None, channel=channel)
    for line in run.meter.lines:
        session.add(
            CostEntry(
                at=ctx.now,
                plan_id=plan_id,
                role=line.role.value,
                tool=line.tool,
                runbook_id=LLM_RUNBOOK_ID,
                channel=channel,
                usd=line.usd,
                tokens=line.tokens,
                duration_ms=line.duration_ms,
            )
        )
    for role, calls in (
        (Role.RESEARCHER, run.research.transcript),
        (Role.PLANNER, run.planner_transcript),
    ):
        if calls:
            transcripts.store(
                session,
                plan_id=plan_id,
                incident_id=None,
                role=role.value,
                model=run.model,
                calls=calls,
                tokens=sum(line.tokens for line in run.meter.lines if line.role is role),
                now=ctx.now,
                retention_days=settings.transcript_retention_days,
            )
    return llm_summary(run)
