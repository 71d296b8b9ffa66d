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


class CallbackId(StrEnum):
    """``callback_id`` of every modal opsgate opens."""

    REJECT_REASON = "reject_reason"


class BlockId(StrEnum):
    """``block_id`` of blocks a listener reads back (actions, modal inputs)."""

    APPROVAL_ACTIONS = "approval_actions"
    REJECT_REASON = "reject_reason_block"
