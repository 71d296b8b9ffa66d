"""StrEnums of the control plane: states, vote choices, event kinds."""

from enum import StrEnum


class IncidentStatus(StrEnum):
    """Where an incident stands."""

    OPEN = "open"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


class PlanStatus(StrEnum):
    """Lifecycle of one plan version."""

    PROPOSED = "proposed"
    RUNNING = "running"
    WAITING = "waiting"  # a step or the budget waits for humans
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HALTED = "halted"  # rejected, denied or stopped by budget / no progress
    STALE = "stale"  # pinned knowledge changed: invalidated, never run
    CANCELLED = "cancelled"
    BLOCKED = "blocked"  # refused before it started (budget forecast)
    SHADOW = "shadow"  # shadow mode: proposed and evaluated, nothing executed


class StepStatus(StrEnum):
    """Lifecycle of one step."""

    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"
    REJECTED = "rejected"
    SKIPPED = "skipped"  # shadow mode, or the plan ended before it
    COMPENSATED = "compensated"
    IN_DOUBT = "in_doubt"  # its process died mid-call: nobody knows whether it took effect
    CANCELLED = "cancelled"  # stopped mid-call by cancel or resolve (it may have partly run)


class ApprovalState(StrEnum):
    """Lifecycle of one approval record."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class ApprovalPurpose(StrEnum):
    """What an approval record gates."""

    STEP = "step"
    BUDGET = "budget"
    IN_DOUBT = "in_doubt"  # humans say what happened to an in-doubt step
    SCOPE = "scope"  # humans add a credential to the Executor's scope for one plan


class PlannerKind(StrEnum):
    """Which planner made a plan."""

    RUNBOOK = "runbook"  # a runbook matched
    LLM = "llm"  # the LLM Planner proposed it


class CallOutcome(StrEnum):
    """What became of one model call the agents meant to make."""

    OK = "ok"  # answered at the first attempt
    RETRIED = "retried"  # answered after a 429, a 5xx or a timeout was retried
    FAILED = "failed"  # no answer: the provider stayed down, refused, or the run's time ran out
    BUDGET_STOPPED = "budget_stopped"  # not made: its forecast would break the hard budget


class VoteChoice(StrEnum):
    """A person's answer on an approval card."""

    APPROVE = "approve"
    REJECT = "reject"  # on an in-doubt card: stop the plan
    RAN = "ran"  # in-doubt card: the step took effect, go on
    RERUN = "rerun"  # in-doubt card: run the step again


class StepKind(StrEnum):
    """A step from the runbook, one added to undo a failed step, or a step's canary."""

    RUNBOOK = "runbook"
    COMPENSATION = "compensation"
    CANARY = "canary"  # the step's action tried first with its canary args


class SpanKind(StrEnum):
    """Levels of a trace."""

    PLAN = "plan"
    STEP = "step"
    TOOL_CALL = "tool_call"
