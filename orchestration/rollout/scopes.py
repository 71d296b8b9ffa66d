"""Which stage applies to a step, and why: the most specific matching scope rule wins.

:func:`choose` is pure: it takes the rules, the stage each scope is in now (from
``rollout_stages``) and the step's channel, runbook and tool class, and returns a
:class:`StageChoice` that is stored on the step (``steps.rollout``) when the plan is made, so
that a plan keeps the stage it was made under, as it keeps its knowledge versions.
"""

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from common import Mode, Risk
from orchestration.rollout.settings import RolloutConfig, ScopeRule, ToolClass

DEFAULT_SCOPE = "default"


class StageChoice(BaseModel):
    """The stage a step runs under, the scope that set it and the words that say why."""

    model_config = ConfigDict(frozen=True)
    stage: Mode
    scope: str
    tool_class: ToolClass
    why: str
    max_risk: Risk = Risk.MEDIUM
    # Nothing to say: no scope is configured and the global mode is the default, supervised.
    quiet: bool = False

    def as_json(self) -> dict[str, Any]:
        """What ``steps.rollout`` holds."""
        return self.model_dump(mode="json")


def tool_class(*, read_only: bool, risk: Risk) -> ToolClass:
    """The class of an action: read-only, state-changing, or destructive (high risk and up).

    ``risk`` is the effective risk (after the policy pack's escalation rules).
    """
    if read_only:
        return ToolClass.READ_ONLY
    return ToolClass.DESTRUCTIVE if risk.rank >= Risk.HIGH.rank else ToolClass.STATE_CHANGING


def best_rule(
    rules: tuple[ScopeRule, ...], *, channel: str, runbook: str, cls: ToolClass
) -> ScopeRule | None:
    """The most specific rule matching the step; among equals, the first listed."""
    best: ScopeRule | None = None
    for rule in rules:
        if not rule.matches(channel=channel, runbook=runbook, tool_class=cls):
            continue
        if best is None or rule.specificity > best.specificity:
            best = rule
    return best


def choose(
    config: RolloutConfig,
    *,
    default: Mode,
    stages: Mapping[str, Mode],
    channel: str,
    runbook: str,
    cls: ToolClass,
    gated_up_to: Risk = Risk.MEDIUM,
) -> StageChoice:
    """The stage for one step.

    Args:
        config: the ``rollout:`` settings.
        default: the global ``mode``, for steps no rule matches.
        stages: the stage each scope is in now (a scope missing here is in its rule's stage).
        channel: the incident's channel.
        runbook: the plan's runbook id.
        cls: the step's tool class (:func:`tool_class`).
        gated_up_to: for the default scope in gated mode, the pack's ``gated_runs_alone_up_to``.
    """
    rule = best_rule(config.scopes, channel=channel, runbook=runbook, cls=cls)
    if rule is None:
        why = f"global mode (no rollout scope covers {cls.value.replace('_', '-')} steps here)"
        return StageChoice(
            stage=default,
            scope=DEFAULT_SCOPE,
            tool_class=cls,
            why=why,
            max_risk=gated_up_to,
            quiet=not config.scopes and default is Mode.SUPERVISED,
        )
    stage = stages.get(rule.id, rule.stage)
    why = f"scope {rule.id} ({rule.describe()})"
    return StageChoice(stage=stage, scope=rule.id, tool_class=cls, why=why, max_risk=rule.max_risk)


def stage_words(rollout: Mapping[str, Any] | None) -> str:
    """``shadow (nothing will run): scope checkout-restarts (runbook ..., state_changing)``.

    Empty when there is nothing to say: no rollout scope is configured and the global mode is
    supervised, the default (cards then read as they always have).
    """
    if not rollout or not rollout.get("stage") or rollout.get("quiet"):
        return ""
    stage = str(rollout["stage"])
    if stage == Mode.SHADOW:
        label = "shadow (nothing will run)"
    elif stage == Mode.GATED:
        label = f"gated (runs alone up to {rollout.get('max_risk') or 'medium'} risk)"
    else:
        label = "supervised"
    return f"{label}: {rollout.get('why') or 'global mode'}"
