"""Token metering: every model call becomes a cost line; every call is forecast first.

The meter holds the budget of the plan the agents work for (tokens and USD: the configured
``budgets.plan_tokens`` / ``plan_usd``, or a runbook's own ``budget``, and ``soft_ratio``).
Before a call, its forecast (prompt tokens + ``max_tokens_per_call``) is checked: a call the
hard limit cannot pay for is not made (:class:`BudgetStop`). The prompt's tokens are estimated
from its text, and within one conversation never less than the provider counted for the
previous prompt and answer plus what was added since (:func:`prompt_forecast`): a long loop
cannot creep past the hard limit on an estimate that undercounts.

Past the soft threshold the Researcher gathers no more (its loop ends with what it has);
the Planner may still make its plan while the hard limit allows, and that plan then starts
with the Auditor's budget card (see ``orchestration.stepflow``): nothing of it runs until a
human approves, and it stops if nobody does in ``budgets.soft_wait_minutes``. The agents do
not wait for that approval themselves: an agent run holds no durable state to wait on.

Every call the agents meant to make is also counted by outcome (:class:`CallRecord`): ok,
retried, failed, or stopped by the budget before it was made.
"""

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import Role
from orchestration.agents.client import (
    ModelClient,
    ModelReply,
    ModelUnavailable,
    Usage,
    estimate_tokens,
)
from orchestration.auditor import EPSILON_USD
from orchestration.config import LlmConfig
from orchestration.enums import CallOutcome
from orchestration.errors import OrchestrationError


class BudgetStop(OrchestrationError):
    """The next model call would break the plan's hard token or USD budget."""

    def __init__(self, message: str) -> None:
        """A stop with the figures in plain words."""
        super().__init__(message, code="budget_exceeded")


@dataclass(frozen=True)
class CostLine:
    """One metered model call, ready to become a ``cost_entries`` row."""

    role: Role
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    usd: float
    duration_ms: float

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def tool(self) -> str:
        """The cost entry's ``tool`` dimension: ``llm:<model>``."""
        return f"llm:{self.model}"


@dataclass(frozen=True)
class CallRecord:
    """One call the agents meant to make, and what became of it."""

    role: Role
    model: str
    outcome: CallOutcome
    attempts: int


@dataclass
class TokenMeter:
    """The running spend of one agent run against its plan's budget."""

    settings: LlmConfig
    budget_tokens: int
    budget_usd: float
    soft_ratio: float
    lines: list[CostLine] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    soft_crossed: bool = False

    @property
    def spent_tokens(self) -> int:
        """Tokens of every call so far."""
        return sum(line.tokens for line in self.lines)

    @property
    def spent_usd(self) -> float:
        """USD of every call so far."""
        return sum(line.usd for line in self.lines)

    @property
    def past_soft(self) -> bool:
        """True once the spend reached the soft threshold (as the Auditor counts it)."""
        ratios = (
            self.spent_tokens / self.budget_tokens if self.budget_tokens > 0 else 0.0,
            self.spent_usd / self.budget_usd if self.budget_usd > 0 else 0.0,
        )
        return max(ratios) >= self.soft_ratio - 1e-9  # as ``auditor.check_budget``

    def forecast(self, prompt_tokens: int, max_tokens: int | None = None) -> int:
        """Tokens the next call may cost at most: its prompt plus the output cap."""
        return prompt_tokens + (max_tokens or self.settings.max_tokens_per_call)

    def gate(self, *, prompt_tokens: int, role: Role, max_tokens: int | None = None) -> None:
        """Allow the next call or raise :class:`BudgetStop`; notes a soft crossing."""
        tokens = self.forecast(prompt_tokens, max_tokens)
        usd = Usage(prompt_tokens=prompt_tokens, completion_tokens=tokens - prompt_tokens).usd(
            self.settings
        )
        spent_t, spent_u = self.spent_tokens, self.spent_usd
        stop = None
        if self.budget_tokens > 0 and spent_t + tokens > self.budget_tokens:
            stop = BudgetStop(
                f"the {role.value}'s next model call was not made: {spent_t} tokens spent + "
                f"{tokens} forecast > the plan's token budget {self.budget_tokens}"
            )
        elif self.budget_usd > 0 and spent_u + usd > self.budget_usd + EPSILON_USD:
            stop = BudgetStop(
                f"the {role.value}'s next model call was not made: ${spent_u:.4f} spent + "
                f"${usd:.4f} forecast > the plan's budget ${self.budget_usd:.4f}"
            )
        if stop is not None:
            self.calls.append(CallRecord(role, self.settings.model, CallOutcome.BUDGET_STOPPED, 0))
            raise stop
        if self.budget_tokens > 0 and spent_t + tokens >= self.soft_ratio * self.budget_tokens:
            self.soft_crossed = True

    def charge(
        self, usage: Usage, *, role: Role, model: str, duration_ms: float, attempts: int = 1
    ) -> CostLine:
        """Record one call's ``usage`` (from the provider's answer) and return its line."""
        outcome = CallOutcome.RETRIED if attempts > 1 else CallOutcome.OK
        self.calls.append(CallRecord(role, model or self.settings.model, outcome, attempts))
        line = CostLine(
            role=role,
            model=model or self.settings.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            usd=usage.usd(self.settings),
            duration_ms=duration_ms,
        )
        self.lines.append(line)
        if self.past_soft:
            self.soft_crossed = True
        return line

    def failed(self, *, role: Role, attempts: int) -> None:
        """Count a call that got no answer (it cost no metered tokens)."""
        self.calls.append(CallRecord(role, self.settings.model, CallOutcome.FAILED, attempts))


def prompt_forecast(
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Any = None,
    after: tuple[int, ModelReply] | None = None,
) -> int:
    """The next prompt's tokens: the text's estimate, and with ``after`` (how many messages
    the previous call of this conversation sent, and its reply) never less than the provider
    counted for that prompt and its answer plus the messages added since."""
    guess = estimate_tokens(messages, tools)
    if after is None:
        return guess
    sent, reply = after
    counted = reply.usage.prompt_tokens + reply.usage.completion_tokens
    added = estimate_tokens(messages[sent:]) if len(messages) > sent else 0
    return max(guess, counted + added)


async def metered_complete(
    client: ModelClient,
    meter: TokenMeter,
    messages: Sequence[Mapping[str, Any]],
    *,
    role: Role,
    tools: Sequence[Mapping[str, Any]] | None = None,
    response_format: Mapping[str, Any] | None = None,
    after: tuple[int, ModelReply] | None = None,
) -> ModelReply:
    """Gate, make and meter one call; raises BudgetStop (not made) or ModelUnavailable."""
    meter.gate(prompt_tokens=prompt_forecast(messages, tools=tools, after=after), role=role)
    try:
        reply = await client.complete(messages, tools=tools, response_format=response_format)
    except ModelUnavailable as exc:
        meter.failed(role=role, attempts=exc.attempts)
        raise
    except asyncio.CancelledError:  # the run's wall time ended the call
        meter.failed(role=role, attempts=1)
        raise
    meter.charge(
        reply.usage,
        role=role,
        model=reply.model,
        duration_ms=reply.elapsed_ms,
        attempts=reply.attempts,
    )
    return reply
