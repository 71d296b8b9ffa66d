"""``rollout:`` in opsgate.yaml: which stage applies to which scope, and what earns the next one.

A scope rule names a channel, a runbook, a tool class (or several), or a combination, and the
stage it starts in. The most specific rule that matches a step wins (the one that names the
most of channel, runbook and tools; among equals, the first listed); a step no rule matches
takes the global ``mode``. Once opsgate runs, a scope's stage moves only by a promotion (an
approval) or a demotion (a regression); the stage written here is where it starts, and editing
it starts the scope over in the stage written.

Example::

    rollout:
      scopes:
        - id: checkout-restarts
          runbook: checkout-api-down
          tools: [state_changing]
          stage: shadow
          max_risk: medium          # gated: up to this risk runs alone; above asks for elevation
      exit:
        shadow:     {min_days: 30, min_incidents: 20, max_fp_rate: {high: 0.05}}
        supervised: {min_days: 14, min_incidents: 10}
      demote:
        fp_rate: 0.2                # over the last `fp_window` judged incidents
"""

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common import Mode, Risk

_STRICT = ConfigDict(extra="forbid")
_SCOPE_ID = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class ToolClass(StrEnum):
    """What a step's action does, for scoping stages: reads, changes, or destroys."""

    READ_ONLY = "read_only"  # the action changes nothing
    STATE_CHANGING = "state_changing"  # it changes state; effective risk low or medium
    DESTRUCTIVE = "destructive"  # it changes state at high (or critical) effective risk


NEXT_STAGE: dict[Mode, Mode] = {Mode.SHADOW: Mode.SUPERVISED, Mode.SUPERVISED: Mode.GATED}
PREVIOUS_STAGE: dict[Mode, Mode] = {Mode.GATED: Mode.SUPERVISED, Mode.SUPERVISED: Mode.SHADOW}


class ScopeRule(BaseModel):
    """One scope and the stage it starts in."""

    model_config = _STRICT
    id: str = Field(pattern=_SCOPE_ID)
    channel: str | None = None
    runbook: str | None = None
    tools: tuple[ToolClass, ...] = ()
    stage: Mode
    max_risk: Risk = Risk.MEDIUM  # gated: steps up to this effective risk run alone

    @field_validator("tools", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("max_risk")
    @classmethod
    def _never_critical(cls, value: Risk) -> Risk:
        if value is Risk.CRITICAL:
            raise ValueError("critical never runs, in any stage: use high at most")
        return value

    @property
    def specificity(self) -> int:
        """How many of channel, runbook and tools the rule names."""
        return sum((self.channel is not None, self.runbook is not None, bool(self.tools)))

    def matches(self, *, channel: str, runbook: str, tool_class: ToolClass) -> bool:
        """Whether a step of ``runbook`` in ``channel`` whose action is ``tool_class`` is in it."""
        if self.channel is not None and self.channel != channel:
            return False
        if self.runbook is not None and self.runbook != runbook:
            return False
        return not self.tools or tool_class in self.tools

    def describe(self) -> str:
        """``runbook checkout-api-down, state_changing`` (what the rule covers, in words)."""
        parts = []
        if self.channel is not None:
            parts.append(f"channel {self.channel}")
        if self.runbook is not None:
            parts.append(f"runbook {self.runbook}")
        if self.tools:
            parts.append(" or ".join(t.value.replace("_", "-") + " steps" for t in self.tools))
        return ", ".join(parts) or "everything"


class ExitCriteria(BaseModel):
    """What a scope must show in its stage before it may be promoted to the next one.

    Rates are fractions (0.05 is 5%); a rate by severity names the effective risk of the
    action (``low``, ``medium``, ``high``); a severity left out is not bounded.
    """

    model_config = _STRICT
    min_days: int = Field(default=30, ge=0)
    min_incidents: int = Field(default=20, ge=0)
    max_fp_rate: dict[Risk, float] = Field(
        default_factory=lambda: {Risk.LOW: 0.05, Risk.MEDIUM: 0.05, Risk.HIGH: 0.05}
    )
    max_fn_rate: dict[Risk, float] = Field(
        default_factory=lambda: {Risk.LOW: 0.10, Risk.MEDIUM: 0.10, Risk.HIGH: 0.10}
    )
    max_cost_drift: float = Field(default=0.25, ge=0)  # |last 7 days / whole stage - 1|
    max_compensated: int = Field(default=0, ge=0)  # compensated, failed or in-doubt actions

    @field_validator("max_fp_rate", "max_fn_rate")
    @classmethod
    def _fractions(cls, value: dict[Risk, float]) -> dict[Risk, float]:
        for risk, rate in value.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"{risk}: a rate is a fraction between 0 and 1, not {rate}")
        return value


def _default_exit() -> dict[Mode, ExitCriteria]:
    return {Mode.SHADOW: ExitCriteria(), Mode.SUPERVISED: ExitCriteria(min_days=14)}


class DemotionRules(BaseModel):
    """What demotes a scope by itself (one stage down), with the reason posted to ops.

    A compensated, failed or in-doubt action demotes its scope at once (always: a scope that
    broke something is not trusted at its stage). An FP rate over ``fp_rate`` in the last
    ``fp_window`` judged incidents, or (``on_cost_drift``) cost per action past the stage's
    ``max_cost_drift``, demotes when the rollout check next runs.
    """

    model_config = _STRICT
    fp_rate: float = Field(default=0.2, ge=0, le=1)
    fp_window: int = Field(default=10, ge=1)
    on_cost_drift: bool = True


class RolloutConfig(BaseModel):
    """``rollout:``: scope rules, exit criteria per stage, demotion rules."""

    model_config = _STRICT
    scopes: tuple[ScopeRule, ...] = ()
    exit: dict[Mode, ExitCriteria] = Field(default_factory=_default_exit)
    demote: DemotionRules = Field(default_factory=DemotionRules)
    check_every_s: float = Field(default=300.0, ge=10)  # FP spikes and cost drift

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        for rule in self.scopes:
            if rule.id in seen:
                raise ValueError(f"scope id {rule.id!r} is used twice; each scope needs its own")
            seen.add(rule.id)
        if Mode.GATED in self.exit:
            raise ValueError("gated is the last stage: it has no exit criteria")
        return self

    def rule(self, scope_id: str) -> ScopeRule | None:
        """The rule named ``scope_id``."""
        return next((r for r in self.scopes if r.id == scope_id), None)

    def criteria(self, stage: Mode) -> ExitCriteria | None:
        """The exit criteria of ``stage`` (None for gated, the last stage)."""
        if stage is Mode.GATED:
            return None
        return self.exit.get(stage, ExitCriteria())
