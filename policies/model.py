"""What a policy sees (:class:`PolicyContext`), what it says (:class:`Decision`) and its errors."""

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common import Mode, Risk, Role

SNAKE_CASE = r"^[a-z][a-z0-9_]*$"


class Verdict(StrEnum):
    """What the policy chain says about one tool call."""

    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"


class Code(StrEnum):
    """The stable codes the built-in policies use; deny rules in a pack add their own."""

    ROLE_FORBIDDEN = "role_forbidden"
    ROLE_READ_ONLY = "role_read_only"
    DENIALS_ESCALATED = "denials_escalated"
    CRITICAL_NEVER_RUNS = "critical_never_runs"
    RISK_DENIED = "risk_denied"
    SHADOW_MODE = "shadow_mode"
    LOW_RISK_AUTO = "low_risk_auto"
    NEEDS_ONE_APPROVAL = "needs_one_approval"
    NEEDS_TWO_APPROVALS = "needs_two_approvals"
    NEEDS_APPROVAL = "needs_approval"
    VOTE_COUNTS = "vote_counts"
    NOT_AN_APPROVER = "not_an_approver"
    REQUESTER_CANNOT_APPROVE = "requester_cannot_approve"
    NO_APPROVAL_NEEDED = "no_approval_needed"
    CLOSE_ALLOWED = "close_allowed"
    CLOSE_FORBIDDEN = "close_forbidden"
    INVALID_PACK = "invalid_pack"
    CANARY_RUNS_ALONE = "canary_runs_alone"
    CANARY_REQUIRED = "canary_required"
    DRY_RUN_REQUIRED = "dry_run_required"
    GATED_RUNS_ALONE = "gated_runs_alone"
    ELEVATION_REQUIRED = "elevation_required"


class PolicyContext(BaseModel):
    """Everything a policy may look at for one proposed tool call; plain data, no handles."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    tool: str = Field(min_length=1)
    action: str = Field(min_length=1)
    args: Mapping[str, Any]
    risk: Risk = Field(description="The higher of the step's and the action's declared risk.")
    read_only: bool
    mode: Mode
    requester: str
    approvers: frozenset[str] = Field(description="Approver user ids, user groups expanded.")
    denials_in_plan: int = Field(default=0, ge=0)
    runbook_id: str | None = None
    channel: str | None = None
    canary: bool = Field(default=False, description="This call is a step's canary.")
    has_canary: bool = Field(default=False, description="The step runs a canary before it.")
    dry_run: bool = Field(
        default=False, description="The action is tried with a dry run before approval."
    )
    gated_up_to: Risk | None = Field(
        default=None,
        description="Gated stage: the highest effective risk the scope runs alone (else the "
        "pack's gated_runs_alone_up_to).",
    )
    stage_scope: str | None = Field(
        default=None, description="The rollout scope whose stage ``mode`` is, for reasons."
    )

    @property
    def tool_action(self) -> str:
        """``tool.action``, the name deny and escalation rules match their globs against."""
        return f"{self.tool}.{self.action}"


class Decision(BaseModel):
    """The verdict on one tool call, with the reason an on-call engineer reads in Slack."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: Verdict
    code: str = Field(pattern=SNAKE_CASE)
    reason: str = Field(min_length=1)
    risk: Risk = Field(description="Effective risk: the declared risk after escalation.")
    quorum: int = Field(ge=0, description="Distinct approvals needed; 0 unless approval is due.")
    exclude_requester: bool
    escalate_to_humans: bool = False
    rule_id: str = Field(min_length=1, description="The rule that decided.")
    escalated_by: str | None = Field(default=None, description="The rule that raised the risk.")
    ttl_minutes: int = Field(default=0, ge=0, description="How long an approval stays open.")

    @model_validator(mode="after")
    def _quorum_matches_verdict(self) -> Self:
        """Only ``require_approval`` carries a quorum, and it always carries one."""
        needs_votes = self.verdict is Verdict.REQUIRE_APPROVAL
        if needs_votes != (self.quorum > 0):
            raise ValueError("quorum must be >= 1 exactly when the verdict is require_approval")
        if not needs_votes and (self.exclude_requester or self.ttl_minutes):
            raise ValueError("exclude_requester and ttl_minutes only apply to require_approval")
        return self


class Eligibility(BaseModel):
    """Whether one vote counts towards a decision's quorum, and why not when it does not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    counts: bool
    code: str = Field(pattern=SNAKE_CASE)
    reason: str


class PolicyError(Exception):
    """Root of every error the policies package raises; ``code`` is stable snake_case."""

    code: str = "policy_error"

    def __init__(self, message: str) -> None:
        """Keep ``message`` for callers that render it themselves."""
        super().__init__(message)
        self.message = message


class PackError(PolicyError):
    """A policy pack is invalid: where (``path``, 1-based ``line``) and what to change."""

    code = Code.INVALID_PACK

    def __init__(
        self, message: str, *, path: str, line: int | None = None, location: str = ""
    ) -> None:
        """Build the error; ``location`` is the dotted key path, e.g. ``deny[2].args_pattern``.

        Args:
            message: What is wrong and what to change, without the location prefix.
            path: The file (or text source name) the pack came from.
            line: 1-based line in that file, when known.
            location: Key path inside the pack, when known.
        """
        self.path = path
        self.line = line
        self.location = location
        where = f"{path}:{line}" if line is not None else path
        detail = f"{location}: {message}" if location else message
        super().__init__(f"{where}: {detail}")
        self.message = detail
