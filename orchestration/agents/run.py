"""One agent run for an incident: the Researcher, then the LLM Planner, then the fallbacks.

Order of fallbacks (each said in the thread or the answer): a provider that stays down, a
budget that stops the run, or an answer still invalid after two retries leaves the incident
to humans with the reason (a runbook that matched would have won before any model call).
"""

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common import Role
from orchestration.agents.client import ModelClient, ModelReply, ModelUnavailable
from orchestration.agents.meter import BudgetStop, TokenMeter, metered_complete
from orchestration.agents.planning import (
    PROMPT_VERSION,
    RESPONSE_FORMAT,
    AnswerInvalid,
    Catalogue,
    ParsedPlan,
    parse_answer,
    planner_messages,
)
from orchestration.agents.researcher import GuardedReader, Research, research

MAX_PLAN_RETRIES = 2  # an invalid answer is retried at most twice, then humans decide


@dataclass
class AgentRun:
    """Everything one run produced, for the unit of work that records it."""

    model: str
    meter: TokenMeter
    research: Research = field(default_factory=Research)
    plan: ParsedPlan | None = None
    answer: str = ""  # the Planner's accepted answer, verbatim (stored as a knowledge version)
    failure: str = ""  # why there is no plan, in plain words
    failure_code: str = ""
    planner_attempts: int = 0
    planner_replies: list[ModelReply] = field(default_factory=list)
    planner_transcript: list[dict[str, Any]] = field(default_factory=list)
    confidence: float | None = None  # stated by the model, else from its log-probabilities
    token_confidence: float | None = None  # mean token probability of the accepted answer
    notes: list[str] = field(default_factory=list)  # e.g. the Researcher stopped early
    research_only: bool = False  # a runbook (``research: true``) plans; no Planner call

    @property
    def prompt_version(self) -> int:
        """The LLM Planner's prompt version this run used."""
        return PROMPT_VERSION


async def _plan(
    run: AgentRun,
    text: str,
    *,
    client: ModelClient,
    catalogue: Catalogue,
    pins: Mapping[str, int],
) -> None:
    findings = [f.text for f in run.research.findings]
    messages = planner_messages(text, catalogue, findings)
    error = ""
    after: tuple[int, ModelReply] | None = None
    for _ in range(1 + MAX_PLAN_RETRIES):
        reply = await metered_complete(
            client,
            run.meter,
            messages,
            role=Role.PLANNER,
            response_format=RESPONSE_FORMAT,
            after=after,
        )
        after = (len(messages), reply)
        run.planner_attempts += 1
        run.planner_replies.append(reply)
        run.planner_transcript.append({"request": list(messages), "response": reply.raw})
        answer = reply.content or ""
        try:
            if reply.tool_calls:
                raise AnswerInvalid("the Planner calls no tools; answer with the plan as JSON")
            run.plan = parse_answer(answer, catalogue, model=client.model, pins=pins)
        except AnswerInvalid as exc:
            error = exc.message
            messages = [
                *messages,
                {"role": "assistant", "content": answer[:4000]},
                {
                    "role": "user",
                    "content": f"That answer is invalid: {error}. Answer again with the JSON "
                    "object only.",
                },
            ]
            continue
        run.answer = answer
        run.token_confidence = reply.confidence
        run.confidence = (
            run.plan.confidence if run.plan.confidence is not None else reply.confidence
        )
        return
    run.failure_code = "llm_answer_invalid"
    run.failure = (
        f"the LLM Planner's answer was still invalid after {MAX_PLAN_RETRIES} retries: {error}"
    )
    last = run.planner_replies[-1].confidence if run.planner_replies else None
    if last is not None:
        run.confidence = last
        run.failure += f" (token confidence of the last answer {last:.0%})"


async def run_agents(
    text: str,
    *,
    client: ModelClient,
    meter: TokenMeter,
    catalogue: Catalogue,
    reader: GuardedReader | None,
    pins: Mapping[str, int],
    correlation_id: str,
    plan: bool = True,
) -> AgentRun:
    """Research ``text`` (when a reader is given), then plan it (unless ``plan`` is False);
    never raises for the model."""
    run = AgentRun(model=client.model, meter=meter, research_only=not plan)
    wall = client.settings.agent_wall_s
    deadline = time.monotonic() + wall
    try:
        async with asyncio.timeout(wall):
            if reader is not None:
                run.research = await research(
                    text,
                    client=client,
                    meter=meter,
                    catalogue=catalogue,
                    reader=reader,
                    correlation_id=correlation_id,
                    deadline=deadline,
                )
                if run.research.stopped:
                    run.notes.append(f"Researcher stopped: {run.research.stopped}")
            if plan:
                await _plan(run, text, client=client, catalogue=catalogue, pins=pins)
    except ModelUnavailable as exc:
        run.plan = None
        run.failure_code = exc.code
        run.failure = f"the model is unavailable ({exc.message})"
    except BudgetStop as exc:
        run.plan = None
        run.failure_code = exc.code
        run.failure = exc.message
    except TimeoutError:
        run.plan = None
        run.failure_code = "llm_wall_time"
        run.failure = f"the agents' wall time ({wall:g} s) was used up"
    return run
