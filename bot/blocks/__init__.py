"""Block Kit renderers: one pure function per outbox message kind, plus slash-command replies.

Every renderer takes the plain payload the control plane queued and returns :class:`Rendered`
(notification fallback text plus blocks as dicts). Blocks are built with ``slack_sdk.models``
so ``to_dict()`` validates Slack's limits; user content is escaped for mrkdwn and clipped first,
so a renderer never produces a message Slack refuses, whatever the payload holds. Missing or
ill-typed payload values render as a dash rather than raising: a bad payload must not wedge the
outbox.

``approval_updated`` messages carry only the vote state. The notifier updates the original card
in place (``chat.update``) with ``render_approval_card(card, update)``, where ``card`` is the
``approval_requested`` payload of the same ``approval_id``. ``render("approval_updated", ...)``
renders the update alone, for when the original card is gone.

- `model`: ``Payload``, :class:`MessageKind`, :class:`Rendered` and payload value coercion.
- `text`: Slack's limits and the mrkdwn text helpers (``fit``, ``esc``, ``mention``, ``usd``...).
- `layout`: limit-safe block builders (``section``, ``context``, ``header``) and ``finish``.
- `incident`: the incident's root message.
- `approvals`: approval cards and refused-vote replies.
- `results`: step, plan, escalation and closed-incident messages.
- `recovery`: the recovery playbook applied to a failure (manual steps, recovery plan).
- `dispatch`: :func:`render`, from outbox message kind to renderer.
- `debug`: the replay comparison and the audit timeline, posted to a thread.
- `commands`: slash-command replies (help, usage, status) and the rejection-reason modal.

Import from this package; the modules are how it is organised, not its interface.
"""

from typing import TYPE_CHECKING

from common.lazy import lazy

if TYPE_CHECKING:
    from bot.blocks.approvals import (
        render_approval_card,
        render_approval_requested,
        render_vote_refused,
    )
    from bot.blocks.commands import (
        help_blocks,
        help_text,
        reject_modal,
        status_blocks,
        usage_for_unknown,
    )
    from bot.blocks.debug import audit_blocks, replay_blocks
    from bot.blocks.dispatch import RENDERERS, render, render_unknown
    from bot.blocks.incident import render_incident_opened, render_incident_root
    from bot.blocks.layout import context, finish, header, section
    from bot.blocks.model import MessageKind, Payload, Rendered
    from bot.blocks.results import (
        render_escalation,
        render_incident_cancelled,
        render_incident_resolved,
        render_plan_blocked,
        render_plan_finished,
        render_step_denied,
        render_step_finished,
    )
    from bot.blocks.text import (
        MAX_BLOCKS,
        MAX_BUTTON_VALUE,
        MAX_CODE,
        MAX_CONTEXT_ELEMENTS,
        MAX_CONTEXT_TEXT,
        MAX_FALLBACK_TEXT,
        MAX_FIELD_TEXT,
        MAX_FIELDS,
        MAX_HEADER_TEXT,
        MAX_LINE,
        MAX_REASON,
        MAX_REJECT_REASON,
        MAX_SECTION_TEXT,
        MAX_STEP_SECTIONS,
        code_block,
        duration,
        esc,
        esc_reason,
        fit,
        mention,
        one_line,
        slack_date,
        usd,
    )

# What each name is loaded from when first used: the plain-text helpers (``bot.blocks.text``)
# load without Slack's SDK.
_EXPORTS = {
    "render_approval_card": "bot.blocks.approvals",
    "render_approval_requested": "bot.blocks.approvals",
    "render_vote_refused": "bot.blocks.approvals",
    "help_blocks": "bot.blocks.commands",
    "help_text": "bot.blocks.commands",
    "reject_modal": "bot.blocks.commands",
    "status_blocks": "bot.blocks.commands",
    "usage_for_unknown": "bot.blocks.commands",
    "audit_blocks": "bot.blocks.debug",
    "replay_blocks": "bot.blocks.debug",
    "RENDERERS": "bot.blocks.dispatch",
    "render": "bot.blocks.dispatch",
    "render_unknown": "bot.blocks.dispatch",
    "render_incident_opened": "bot.blocks.incident",
    "render_incident_root": "bot.blocks.incident",
    "context": "bot.blocks.layout",
    "finish": "bot.blocks.layout",
    "header": "bot.blocks.layout",
    "section": "bot.blocks.layout",
    "MessageKind": "bot.blocks.model",
    "Payload": "bot.blocks.model",
    "Rendered": "bot.blocks.model",
    "render_escalation": "bot.blocks.results",
    "render_incident_cancelled": "bot.blocks.results",
    "render_incident_resolved": "bot.blocks.results",
    "render_plan_blocked": "bot.blocks.results",
    "render_plan_finished": "bot.blocks.results",
    "render_step_denied": "bot.blocks.results",
    "render_step_finished": "bot.blocks.results",
    "MAX_BLOCKS": "bot.blocks.text",
    "MAX_BUTTON_VALUE": "bot.blocks.text",
    "MAX_CODE": "bot.blocks.text",
    "MAX_CONTEXT_ELEMENTS": "bot.blocks.text",
    "MAX_CONTEXT_TEXT": "bot.blocks.text",
    "MAX_FALLBACK_TEXT": "bot.blocks.text",
    "MAX_FIELD_TEXT": "bot.blocks.text",
    "MAX_FIELDS": "bot.blocks.text",
    "MAX_HEADER_TEXT": "bot.blocks.text",
    "MAX_LINE": "bot.blocks.text",
    "MAX_REASON": "bot.blocks.text",
    "MAX_REJECT_REASON": "bot.blocks.text",
    "MAX_SECTION_TEXT": "bot.blocks.text",
    "MAX_STEP_SECTIONS": "bot.blocks.text",
    "code_block": "bot.blocks.text",
    "duration": "bot.blocks.text",
    "esc": "bot.blocks.text",
    "esc_reason": "bot.blocks.text",
    "fit": "bot.blocks.text",
    "mention": "bot.blocks.text",
    "one_line": "bot.blocks.text",
    "slack_date": "bot.blocks.text",
    "usd": "bot.blocks.text",
}
__getattr__ = lazy(__name__, _EXPORTS)

__all__ = [
    "MAX_BLOCKS",
    "MAX_BUTTON_VALUE",
    "MAX_CODE",
    "MAX_CONTEXT_ELEMENTS",
    "MAX_CONTEXT_TEXT",
    "MAX_FALLBACK_TEXT",
    "MAX_FIELDS",
    "MAX_FIELD_TEXT",
    "MAX_HEADER_TEXT",
    "MAX_LINE",
    "MAX_REASON",
    "MAX_REJECT_REASON",
    "MAX_SECTION_TEXT",
    "MAX_STEP_SECTIONS",
    "RENDERERS",
    "MessageKind",
    "Payload",
    "Rendered",
    "audit_blocks",
    "code_block",
    "context",
    "duration",
    "esc",
    "esc_reason",
    "finish",
    "fit",
    "header",
    "help_blocks",
    "help_text",
    "mention",
    "one_line",
    "reject_modal",
    "render",
    "render_approval_card",
    "render_approval_requested",
    "render_escalation",
    "render_incident_cancelled",
    "render_incident_opened",
    "render_incident_resolved",
    "render_incident_root",
    "render_plan_blocked",
    "render_plan_finished",
    "render_step_denied",
    "render_step_finished",
    "render_unknown",
    "render_vote_refused",
    "replay_blocks",
    "section",
    "slack_date",
    "status_blocks",
    "usage_for_unknown",
    "usd",
]
