"""Approval cards with Approve/Reject bound to the approval nonce, and refused-vote replies."""

from collections.abc import Mapping
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, PlainTextObject

from bot import strings as s
from bot.blocks.indoubt import render_in_doubt_card
from bot.blocks.layout import context, finish, section
from bot.blocks.model import Payload, Rendered, as_int, mappings
from bot.blocks.text import (
    MAX_BUTTON_VALUE,
    actors,
    code_block,
    esc,
    esc_control,
    esc_reason,
    mention,
    risk_badge,
    slack_date,
    trace_text,
)
from bot.ids import ActionId, BlockId
from orchestration.enums import ApprovalPurpose, ApprovalState, VoteChoice


def _card_body(card: Payload, *, approvals: int, quorum: int, pending: bool) -> list[Block]:
    excl = s.QUORUM_NOT_REQUESTER if card.get("exclude_requester") else ""
    quorum_field = s.FIELD_QUORUM.format(approvals=approvals, quorum=quorum, excl=excl)
    # A decided card no longer expires: only a pending one says when it will.
    expiry = [s.FIELD_EXPIRES.format(when=slack_date(card.get("expires_at")))] if pending else []
    why = s.WHY.format(reason=esc(card.get("reason")))
    blocks: list[Block]
    if card.get("purpose") == ApprovalPurpose.BUDGET:
        blocks = [section(f"{s.APPROVAL_BUDGET_TITLE}\n{why}", fields=[quorum_field, *expiry])]
    else:
        emoji, risk = risk_badge(card.get("risk"))
        template = s.APPROVAL_STEP_TITLE if pending else s.APPROVAL_DECIDED_TITLE
        title = template.format(emoji=emoji, title=esc(card.get("title"), 500))
        fields = [
            s.FIELD_TOOL.format(tool=esc(card.get("tool_action"), 200)),
            s.FIELD_RISK.format(emoji=emoji, risk=risk),
            quorum_field,
            *expiry,
        ]
        blocks = [section(title, fields=fields)]
        if card.get("purpose") == ApprovalPurpose.SCOPE:
            kind = s.SCOPE_READ_ONLY if card.get("authority_read_only") else s.SCOPE_WRITES
            name = esc(card.get("authority"), 200)
            blocks.append(section(s.SCOPE_CREDENTIAL.format(name=name, kind=kind)))
        blocks.append(section(why))
        if card.get("stage"):
            blocks.append(context(s.STAGE_LINE.format(stage=esc(card.get("stage"), 300)).strip()))
        blocks.append(section(s.ARGS.format(code=code_block(card.get("args") or {}))))
        preview = card.get("preview")
        if isinstance(preview, Mapping) and preview.get("summary"):
            template = s.PREVIEW_OK if preview.get("ok") else s.PREVIEW_FAILED
            blocks.append(section(template.format(summary=esc(preview.get("summary"), 1500))))
        if card.get("expect"):
            blocks.append(section(s.EXPECT.format(code=code_block(card.get("expect")))))
        comp = card.get("compensate")
        if isinstance(comp, Mapping) and comp.get("derived"):
            derived = s.COMPENSATION_DERIVED.format(
                title=esc(comp.get("title"), 300), tool=esc(comp.get("tool"), 200)
            )
            blocks.append(section(derived))
        elif isinstance(comp, Mapping) and comp:
            comp_text = s.COMPENSATION.format(
                title=esc(comp.get("title"), 300),
                tool=esc(comp.get("tool"), 200),
                code=code_block(comp.get("args") or {}, 1500),
            )
            blocks.append(section(comp_text))
        else:
            blocks.append(section(s.NO_COMPENSATION))
    requested = s.REQUESTED_BY.format(
        requester=mention(card.get("requester")),
        dot=s.DOT,
        version=esc(card.get("plan_version"), 20),
    )
    blocks.append(context(requested, trace_text(card)))
    return blocks


def _buttons(nonce: object) -> Block:
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_BUTTON_VALUE:
        return context(s.NO_BUTTONS)  # a clipped nonce would bind the vote to nothing
    return ActionsBlock(
        block_id=BlockId.APPROVAL_ACTIONS,
        elements=[
            ButtonElement(
                text=PlainTextObject(text=s.APPROVE_BUTTON),
                action_id=ActionId.APPROVE,
                value=nonce,
                style="primary",
            ),
            ButtonElement(
                text=PlainTextObject(text=s.REJECT_BUTTON),
                action_id=ActionId.REJECT,
                value=nonce,
                style="danger",
            ),
        ],
    )


def _final_state(state: str, update: Payload, votes: list[Mapping[str, Any]], quorum: int) -> str:
    approvers = [v.get("voter") for v in votes if v.get("choice") == VoteChoice.APPROVE]
    rejects = [v for v in votes if v.get("choice") == VoteChoice.REJECT]
    # A rejection's reason is its vote's (possibly none yet): never the policy's reason.
    reason_text = str((rejects[-1].get("reason") if rejects else update.get("reason")) or "")
    people = actors(update, "actor", "decided_by")
    reason = (
        s.VOTE_REASON.format(reason=esc_reason(reason_text, people=people)) if reason_text else ""
    )
    if state == ApprovalState.APPROVED:
        voters = s.LIST_SEP.join(mention(v) for v in approvers[:20])
        return s.STATE_APPROVED.format(voters=voters or mention(update.get("decided_by")))
    if state == ApprovalState.REJECTED:
        voter = update.get("decided_by") or (rejects[-1].get("voter") if rejects else None)
        return s.STATE_REJECTED.format(voter=mention(voter), reason=reason)
    if state == ApprovalState.EXPIRED:
        approvals = as_int(update.get("approvals"), len(approvers))
        return s.STATE_EXPIRED.format(approvals=approvals, quorum=quorum)
    if state == ApprovalState.CANCELLED:
        return s.STATE_CANCELLED.format(reason=reason)
    return s.STATE_OTHER.format(state=esc(state, 60), reason=reason)


def render_approval_card(card: Payload, update: Payload | None = None) -> Rendered:
    """An approval card (``approval_requested`` payload) as it stands after ``update``.

    ``update`` is an ``approval_updated`` payload (``state``, ``quorum``, ``approvals``,
    ``votes``, ``decided_by``, ``reason``; any may be missing). While the state is pending the
    card keeps its Approve/Reject buttons; once decided they are replaced by the outcome.
    """
    if card.get("purpose") == ApprovalPurpose.IN_DOUBT:
        return render_in_doubt_card(card, update)
    update = update or {}
    state = str(update.get("state") or ApprovalState.PENDING)
    quorum = as_int(update.get("quorum"), as_int(card.get("quorum"), 1))
    votes = mappings(update.get("votes"))
    approvers = [v.get("voter") for v in votes if v.get("choice") == VoteChoice.APPROVE]
    approvals = as_int(update.get("approvals"), len(approvers))
    pending = state == ApprovalState.PENDING
    blocks = _card_body(card, approvals=approvals, quorum=quorum, pending=pending)
    if approvers:
        # A rejection decides at once, so the outcome line below names the rejecter and the
        # reason; listing it here too would say it twice.
        voters = s.LIST_SEP.join(mention(v) for v in approvers[:20])
        blocks.append(section(s.PROGRESS.format(approvals=approvals, quorum=quorum, voters=voters)))
    title = (
        str(card.get("title") or "")
        if card.get("purpose") != ApprovalPurpose.BUDGET
        else s.BUDGET_TITLE
    )
    if pending:
        blocks.append(_buttons(card.get("nonce")))
        text = (
            s.APPROVAL_FALLBACK_BUDGET
            if card.get("purpose") == ApprovalPurpose.BUDGET
            else s.APPROVAL_FALLBACK_SCOPE.format(
                name=esc(card.get("authority"), 200), title=esc(title, 500)
            )
            if card.get("purpose") == ApprovalPurpose.SCOPE
            else s.APPROVAL_FALLBACK_STEP.format(title=esc(title, 500))
        )
    else:
        blocks.append(section(_final_state(state, update, votes, quorum)))
        text = s.STATE_FALLBACK.format(state=esc(state, 60), title=esc(title, 500))
    return finish(text, blocks)


def render_approval_requested(payload: Payload) -> Rendered:
    """``approval_requested``: a fresh card with Approve/Reject bound to the approval nonce."""
    return render_approval_card(payload, None)


def render_vote_refused(payload: Payload) -> Rendered:
    """``vote_refused``: the ephemeral reply telling a voter why the click did not count."""
    reason = esc_control(payload.get("reason"))
    text = s.VOTE_REFUSED.format(voter=mention(payload.get("voter")), reason=reason)
    code = payload.get("code")
    blocks: list[Block] = [section(text)]
    if code:
        blocks.append(context(s.CODE.format(code=esc(code, 100)), trace_text(payload)))
    return finish(s.VOTE_REFUSED_FALLBACK.format(reason=reason), blocks)


def render_rejection_reason(payload: Payload) -> Rendered:
    """``rejection_reason_added``: the thread hears why a step was rejected (added after)."""
    title = (
        esc(payload.get("title"), 500)
        if payload.get("purpose") != ApprovalPurpose.BUDGET and payload.get("title")
        else s.BUDGET_TITLE
    )
    voter = mention(payload.get("voter"))
    reason = esc(payload.get("reason"))
    blocks: list[Block] = [
        section(s.REJECTION_REASON.format(voter=voter, title=title, reason=reason))
    ]
    if payload.get("correlation_id"):
        blocks.append(context(trace_text(payload)))
    return finish(s.REJECTION_REASON_FALLBACK.format(title=title, reason=reason), blocks)
