"""Every identifier Slack sends back to opsgate: action ids, view callback ids and block ids.

Listeners match on these and the renderers in ``bot.blocks`` set them, so both sides share one
definition. ``approve_step`` and ``reject_step`` are an external contract (see DESIGN.md).
"""

from enum import StrEnum


class ActionId(StrEnum):
    """``action_id`` of every interactive element opsgate posts."""

    APPROVE = "approve_step"
    REJECT = "reject_step"
    REJECT_REASON_INPUT = "reject_reason_input"
    IN_DOUBT_RAN = "in_doubt_ran"
    IN_DOUBT_RERUN = "in_doubt_rerun"
    IN_DOUBT_STOP = "in_doubt_stop"
    APPROVE_PROMOTION = "approve_promotion"
    REJECT_PROMOTION = "reject_promotion"
    BASELINE_OPEN = "baseline_open"
    BASELINE_TAKEN = "baseline_taken"
    BASELINE_OTHER = "baseline_other"


class CallbackId(StrEnum):
    """``callback_id`` of every modal opsgate opens."""

    REJECT_REASON = "reject_reason"
    BASELINE = "baseline_answer"


class BlockId(StrEnum):
    """``block_id`` of blocks a listener reads back (actions, modal inputs)."""

    APPROVAL_ACTIONS = "approval_actions"
    IN_DOUBT_ACTIONS = "in_doubt_actions"
    REJECT_REASON = "reject_reason_block"
    PROMOTION_ACTIONS = "promotion_actions"
    BASELINE_ACTIONS = "baseline_actions"
    BASELINE_TAKEN = "baseline_taken_block"
    BASELINE_OTHER = "baseline_other_block"
