"""State machines as data: a transitions table per entity and one pure ``transition()``."""

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from orchestration.enums import ApprovalState, PlanStatus, StepStatus
from orchestration.errors import InvalidTransition

S = TypeVar("S", bound=StrEnum)

STEP_TRANSITIONS: Mapping[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset(
        {
            StepStatus.AWAITING_APPROVAL,
            StepStatus.RUNNING,
            StepStatus.DENIED,
            StepStatus.SKIPPED,
        }
    ),
    StepStatus.AWAITING_APPROVAL: frozenset(
        {StepStatus.RUNNING, StepStatus.REJECTED, StepStatus.SKIPPED}
    ),
    # Refused for a credential its role lacks, a step waits for humans to extend the scope.
    StepStatus.RUNNING: frozenset(
        {
            StepStatus.SUCCEEDED,
            StepStatus.FAILED,
            StepStatus.IN_DOUBT,
            StepStatus.CANCELLED,
            StepStatus.AWAITING_APPROVAL,
        }
    ),
    # Humans (or a late result from the process that ran it) settle an in-doubt step.
    StepStatus.IN_DOUBT: frozenset(
        {
            StepStatus.SUCCEEDED,
            StepStatus.FAILED,
            StepStatus.RUNNING,
            StepStatus.SKIPPED,
        }
    ),
    StepStatus.CANCELLED: frozenset(),
    StepStatus.FAILED: frozenset({StepStatus.COMPENSATED}),
    StepStatus.SUCCEEDED: frozenset({StepStatus.COMPENSATED}),
    StepStatus.DENIED: frozenset(),
    StepStatus.REJECTED: frozenset(),
    StepStatus.SKIPPED: frozenset(),
    StepStatus.COMPENSATED: frozenset(),
}

_PLAN_ENDS = frozenset(
    {
        PlanStatus.SUCCEEDED,
        PlanStatus.FAILED,
        PlanStatus.HALTED,
        PlanStatus.STALE,
        PlanStatus.CANCELLED,
        PlanStatus.SHADOW,
    }
)

PLAN_TRANSITIONS: Mapping[PlanStatus, frozenset[PlanStatus]] = {
    PlanStatus.PROPOSED: frozenset(
        {PlanStatus.RUNNING, PlanStatus.WAITING, PlanStatus.BLOCKED} | _PLAN_ENDS
    ),
    PlanStatus.RUNNING: frozenset({PlanStatus.WAITING} | _PLAN_ENDS),
    PlanStatus.WAITING: frozenset({PlanStatus.RUNNING} | _PLAN_ENDS),
    PlanStatus.SUCCEEDED: frozenset(),
    PlanStatus.FAILED: frozenset(),
    PlanStatus.HALTED: frozenset(),
    PlanStatus.STALE: frozenset(),
    PlanStatus.CANCELLED: frozenset(),
    PlanStatus.SHADOW: frozenset(),
    PlanStatus.BLOCKED: frozenset({PlanStatus.CANCELLED}),
}

APPROVAL_TRANSITIONS: Mapping[ApprovalState, frozenset[ApprovalState]] = {
    ApprovalState.PENDING: frozenset(
        {
            ApprovalState.APPROVED,
            ApprovalState.REJECTED,
            ApprovalState.EXPIRED,
            ApprovalState.CANCELLED,
        }
    ),
    ApprovalState.APPROVED: frozenset(),
    ApprovalState.REJECTED: frozenset(),
    ApprovalState.EXPIRED: frozenset(),
    ApprovalState.CANCELLED: frozenset(),
}

PLAN_FINAL = frozenset(s for s, nxt in PLAN_TRANSITIONS.items() if not nxt)
STEP_FINAL = frozenset(s for s, nxt in STEP_TRANSITIONS.items() if not nxt)


def transition(table: Mapping[S, frozenset[S]], current: S, target: S) -> S:
    """Return ``target`` if ``current -> target`` is in ``table``, else raise InvalidTransition."""
    if target not in table[current]:
        raise InvalidTransition(f"cannot go from {current.value} to {target.value}")
    return target
