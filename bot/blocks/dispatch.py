"""Outbox message kind to renderer: :func:`render` and its table, ``RENDERERS``."""

from collections.abc import Callable, Mapping
from typing import Final

from slack_sdk.models.blocks import Block

from bot import strings as s
from bot.blocks.agents import render_agent_findings
from bot.blocks.approvals import (
    render_approval_card,
    render_approval_requested,
    render_rejection_reason,
    render_vote_refused,
)
from bot.blocks.incident import render_incident_opened
from bot.blocks.indoubt import render_step_in_doubt, render_step_rerun
from bot.blocks.layout import context, finish, section
from bot.blocks.model import MessageKind, Payload, Rendered
from bot.blocks.recovery import render_recovery_playbook
from bot.blocks.results import (
    render_alerts_changed,
    render_escalation,
    render_incident_cancelled,
    render_incident_resolved,
    render_plan_blocked,
    render_plan_finished,
    render_step_denied,
    render_step_finished,
)
from bot.blocks.rollout import (
    render_baseline_recorded,
    render_baseline_requested,
    render_promotion_card,
    render_promotion_requested,
    render_rollout_changed,
)
from bot.blocks.text import esc, trace_text


def render_unknown(kind: str, payload: Payload) -> Rendered:
    """A plain, safe message for a kind this surface does not know yet."""
    shown = esc(kind, 100)
    blocks: list[Block] = [section(s.UNKNOWN_KIND.format(kind=shown))]
    if payload.get("correlation_id"):
        blocks.append(context(trace_text(payload)))
    return finish(s.UNKNOWN_KIND_FALLBACK.format(kind=shown), blocks)


def _render_update_alone(payload: Payload) -> Rendered:
    return render_approval_card({}, payload)


RENDERERS: Final[Mapping[str, Callable[[Payload], Rendered]]] = {
    MessageKind.INCIDENT_OPENED: render_incident_opened,
    MessageKind.APPROVAL_REQUESTED: render_approval_requested,
    MessageKind.APPROVAL_UPDATED: _render_update_alone,
    MessageKind.VOTE_REFUSED: render_vote_refused,
    MessageKind.REJECTION_REASON_ADDED: render_rejection_reason,
    MessageKind.STEP_FINISHED: render_step_finished,
    MessageKind.STEP_DENIED: render_step_denied,
    MessageKind.PLAN_BLOCKED: render_plan_blocked,
    MessageKind.PLAN_FINISHED: render_plan_finished,
    MessageKind.ESCALATION: render_escalation,
    MessageKind.INCIDENT_RESOLVED: render_incident_resolved,
    MessageKind.INCIDENT_CANCELLED: render_incident_cancelled,
    MessageKind.STEP_IN_DOUBT: render_step_in_doubt,
    MessageKind.STEP_RERUN: render_step_rerun,
    MessageKind.RECOVERY_PLAYBOOK: render_recovery_playbook,
    MessageKind.ALERTS_CHANGED: render_alerts_changed,
    MessageKind.AGENT_FINDINGS: render_agent_findings,
    MessageKind.ROLLOUT_CHANGED: render_rollout_changed,
    MessageKind.PROMOTION_REQUESTED: render_promotion_requested,
    MessageKind.PROMOTION_UPDATED: lambda payload: render_promotion_card({}, payload),
    MessageKind.BASELINE_REQUESTED: render_baseline_requested,
    MessageKind.BASELINE_RECORDED: render_baseline_recorded,
}


def render(kind: str, payload: Payload) -> Rendered:
    """Render one outbox message; unknown kinds get :func:`render_unknown`."""
    renderer = RENDERERS.get(kind)
    return renderer(payload) if renderer else render_unknown(kind, payload)
