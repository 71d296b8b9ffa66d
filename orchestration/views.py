"""What the control plane returns to its callers (the CLI, the Slack surface, tests)."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class StepPreview(_View):
    """A proposed step with the policy's verdict on it."""

    key: str
    title: str
    tool_action: str
    args: dict[str, Any]
    risk: str
    declared_risk: str
    verdict: str
    code: str
    reason: str
    quorum: int
    exclude_requester: bool
    expect: dict[str, Any] | None = None
    compensate: dict[str, Any] | None = None
    observe: dict[str, Any] | None = None  # a probe's healthy/end_if (orchestration.observe)
    cost_usd: float = 0.0
    stage: str = ""  # the rollout stage the step runs under, and why (rollout.stage_words)


class PlanPreview(_View):
    """``opsgate plan``: what would be proposed, without running anything."""

    runbook_id: str
    runbook_version: int
    title: str
    params: dict[str, str]
    plan_hash: str
    knowledge_pins: dict[str, int]
    mode: str
    steps: tuple[StepPreview, ...]
    forecast_usd: float
    budget_usd: float
    budget_tokens: int
    # Set only with ``llm:`` configured: which planner made it, what its model calls cost.
    planner: str | None = None
    llm: dict[str, Any] | None = None
    rationales: dict[str, str] | None = None


class Opened(_View):
    """An incident opened with its first plan."""

    incident_id: str
    plan_id: str
    plan_version: int
    plan_hash: str
    status: str
    reason: str
    correlation_id: str


class VoteOutcome(_View):
    """What became of one click on Approve or Reject."""

    accepted: bool
    code: str
    reason: str
    approval_id: str | None = None
    approval_state: str | None = None
    approvals: int = 0
    quorum: int = 0
    voters: tuple[str, ...] = ()
    step_id: str | None = None
    plan_id: str | None = None


class TokenView(_View):
    """A credential minted for a running step's call: whose it is and until when (no value)."""

    service_account: str
    expires_at: str


class ScopeView(_View):
    """The authority a running step holds: its grant's action, credentials and expiry, and the
    tokens minted for its calls under that grant."""

    grant_id: str
    tool_action: str
    credentials: tuple[str, ...] = ()
    expires_at: datetime
    tokens: tuple[TokenView, ...] = ()


class StepView(_View):
    """A step as stored (``scope``: what its grant allows, while it runs)."""

    id: str
    position: int
    key: str
    kind: str
    title: str
    tool_action: str
    risk: str
    status: str
    attempts: int
    decision_code: str
    decision_reason: str
    error_code: str | None
    error: str | None
    result: dict[str, Any] | None
    cost_usd: float
    duration_ms: float
    observe: dict[str, Any] | None = None
    scope: ScopeView | None = None


class PlanView(_View):
    """A plan and its steps as stored."""

    id: str
    incident_id: str
    version: int
    runbook_id: str
    plan_hash: str
    status: str
    status_reason: str
    mode: str
    spent_usd: float
    budget_usd: float
    spent_tokens: int
    budget_tokens: int
    forecast_usd: float
    created_at: datetime
    finished_at: datetime | None
    steps: tuple[StepView, ...]
