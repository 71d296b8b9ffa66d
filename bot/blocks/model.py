"""What the renderers share: the payload type, message kinds, :class:`Rendered`, value coercion.

Payload values are coerced rather than trusted: a missing or ill-typed value becomes ``None`` or
a default, never an exception, so a bad payload cannot wedge the outbox.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Payload = Mapping[str, Any]


class MessageKind(StrEnum):
    """Kinds of outbox message the control plane queues."""

    INCIDENT_OPENED = "incident_opened"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_UPDATED = "approval_updated"
    VOTE_REFUSED = "vote_refused"
    REJECTION_REASON_ADDED = "rejection_reason_added"
    STEP_FINISHED = "step_finished"
    STEP_DENIED = "step_denied"
    PLAN_BLOCKED = "plan_blocked"
    PLAN_FINISHED = "plan_finished"
    ESCALATION = "escalation"
    INCIDENT_RESOLVED = "incident_resolved"
    INCIDENT_CANCELLED = "incident_cancelled"
    STEP_IN_DOUBT = "step_in_doubt"
    STEP_RERUN = "step_rerun"
    RECOVERY_PLAYBOOK = "recovery_playbook"
    ALERTS_CHANGED = "alerts_changed"
    AGENT_FINDINGS = "agent_findings"
    ROLLOUT_CHANGED = "rollout_changed"
    PROMOTION_REQUESTED = "promotion_requested"
    PROMOTION_UPDATED = "promotion_updated"
    BASELINE_REQUESTED = "baseline_requested"
    BASELINE_RECORDED = "baseline_recorded"


@dataclass(frozen=True)
class Rendered:
    """A message ready for ``chat.postMessage``: fallback ``text`` and Block Kit ``blocks``."""

    text: str
    blocks: list[dict[str, Any]]


def as_float(value: object) -> float | None:
    """A finite number from a payload value, or None (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def as_int(value: object, default: int) -> int:
    """A payload value as an int (truncated), or ``default``."""
    number = as_float(value)
    return default if number is None else int(number)


def mappings(value: object) -> list[Mapping[str, Any]]:
    """The mappings in a payload list; anything else is dropped."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [item for item in value if isinstance(item, Mapping)]
