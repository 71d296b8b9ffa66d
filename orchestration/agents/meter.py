"""Token metering: every model call becomes a cost line; every call is forecast first.

The meter holds the budget of the plan the agents work for (tokens and USD, the configured
``budgets.plan_tokens`` / ``plan_usd`` and ``soft_ratio``). Before a call, its forecast
(estimated prompt tokens + ``max_tokens_per_call``) is checked: a call the hard limit cannot
pay for is not made (:class:`BudgetStop`); a call that takes the plan past the soft threshold
is made only while the run is still under the hard limit, and the plan the agents propose
then starts with the Auditor's budget card (see ``orchestration.stepflow``): nothing of it
runs until a human approves, and it stops if nobody does in ``budgets.soft_wait_minutes``.
"""

from dataclasses import dataclass, field

from common import Role
from orchestration.agents.client import Usage
from orchestration.auditor import EPSILON_USD
from orchestration.config import LlmConfig
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


@dataclass
class TokenMeter:
    """The running spend of one agent run against its plan's budget."""

    settings: LlmConfig
    budget_tokens: int
    budget_usd: float
    soft_ratio: float
    lines: list[CostLine] = field(default_factory=list)
    soft_crossed: bool = False

    @property
    def spent_tokens(self) -> int:
        """Tokens of every call so far."""
        return sum(line.tokens for line in self.lines)

    @property
    def spent_usd(self) -> float:
        """USD of every call so far."""
        return sum(line.usd for line in self.lines)

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
        if self.budget_tokens > 0 and spent_t + tokens > self.budget_tokens:
            raise BudgetStop(
                f"the {role.value}'s next model call was not made: {spent_t} tokens spent + "
                f"{tokens} forecast > the plan's token budget {self.budget_tokens}"
            )
        if self.budget_usd > 0 and spent_u + usd > self.budget_usd + EPSILON_USD:
            raise BudgetStop(
                f"the {role.value}'s next model call was not made: ${spent_u:.4f} spent + "
                f"${usd:.4f} forecast > the plan's budget ${self.budget_usd:.4f}"
            )
        if self.budget_tokens > 0 and spent_t + tokens >= self.soft_ratio * self.budget_tokens:
            self.soft_crossed = True

    def charge(self, usage: Usage, *, role: Role, model: str, duration_ms: float) -> CostLine:
        """Record one call's ``usage`` (from the provider's answer) and return its line."""
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
        if self.budget_tokens > 0 and self.spent_tokens >= self.soft_ratio * self.budget_tokens:
            self.soft_crossed = True
        return line
