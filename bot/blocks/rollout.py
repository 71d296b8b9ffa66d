"""Staged trust in Slack: stage changes (ops channel), promotion cards, the baseline card and
modal, and ``/incident rollout``'s answer."""

from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    InputBlock,
    Option,
    PlainTextInputElement,
    PlainTextObject,
)
from slack_sdk.models.views import View

from bot import strings as s
from bot.blocks.layout import context, finish, section
from bot.blocks.model import Payload, Rendered, as_int, mappings
from bot.blocks.text import esc, mention, trace_text
from bot.ids import ActionId, BlockId, CallbackId
from orchestration.rollout.report import ScopeStatus

MAX_BUTTON_VALUE = 2000
MAX_OPTIONS = 10  # Slack's limit for checkboxes
MAX_OTHER = 2000


def render_rollout_changed(payload: Payload) -> Rendered:
    """``rollout_changed``: a scope moved stage (to the ops channel)."""
    values = {
        "scope": esc(payload.get("scope"), 80),
        "from_stage": esc(payload.get("from"), 20),
        "to_stage": esc(payload.get("to"), 20),
        "reason": esc(payload.get("reason"), 600),
    }
    template = s.ROLLOUT_CHANGED.get(str(payload.get("event")), s.ROLLOUT_CHANGED_FALLBACK)
    blocks: list[Block] = [section(template.format(**values))]
    if payload.get("correlation_id"):
        blocks.append(context(trace_text(payload)))
    return finish(s.ROLLOUT_CHANGED_FALLBACK.format(**values), blocks)


def _promotion_buttons(nonce: object) -> Block:
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_BUTTON_VALUE:
        return context(s.NO_BUTTONS)
    return ActionsBlock(
        block_id=BlockId.PROMOTION_ACTIONS,
        elements=[
            ButtonElement(
                text=PlainTextObject(text=s.PROMOTE_BUTTON),
                action_id=ActionId.APPROVE_PROMOTION,
                value=nonce,
                style="primary",
            ),
            ButtonElement(
                text=PlainTextObject(text=s.PROMOTE_REJECT_BUTTON),
                action_id=ActionId.REJECT_PROMOTION,
                value=nonce,
                style="danger",
            ),
        ],
    )


def render_promotion_card(card: Payload, update: Payload | None = None) -> Rendered:
    """A promotion card (``promotion_requested``) as it stands after ``update``."""
    update = update or {}
    values = {
        "scope": esc(card.get("scope"), 80),
        "from_stage": esc(card.get("from_stage"), 20),
        "to_stage": esc(card.get("to_stage"), 20),
        "covers": esc(card.get("covers"), 300),
    }
    quorum = as_int(update.get("quorum"), as_int(card.get("quorum"), 2))
    blocks: list[Block] = [
        section(s.PROMOTION_TITLE.format(**values)),
        context(s.PROMOTION_ASKED.format(requester=mention(card.get("requester")), quorum=quorum)),
    ]
    criteria = [esc(c, 200) for c in card.get("criteria") or [] if isinstance(c, str)]
    if criteria:
        blocks.append(
            section(
                s.PROMOTION_CRITERIA.format(
                    from_stage=values["from_stage"], lines="\n".join(criteria)
                )
            )
        )
    if card.get("override"):
        blocks.append(section(s.PROMOTION_OVERRIDE.format(reason=esc(card.get("override"), 500))))
    state = str(update.get("state") or "open")
    votes = mappings(update.get("votes"))
    voters = [mention(v.get("voter")) for v in votes if v.get("choice") == "approve"]
    line = s.PROMOTION_STATE.get(state, s.PROMOTION_STATE_FALLBACK).format(
        approvals=len(voters),
        quorum=quorum,
        voters=", ".join(voters) or "none yet",
        reason=esc(update.get("reason"), 500),
        state=esc(state, 20),
    )
    blocks.append(section(line))
    if state == "open":
        blocks.append(_promotion_buttons(card.get("nonce")))
    return finish(s.PROMOTION_FALLBACK.format(**values), blocks)


def render_promotion_requested(payload: Payload) -> Rendered:
    """``promotion_requested``: a fresh promotion card."""
    return render_promotion_card(payload, None)


def render_baseline_requested(payload: Payload) -> Rendered:
    """``baseline_requested``: ask the resolver what they did (a button opens the modal)."""
    proposals = mappings(payload.get("proposals"))
    lines = "\n".join(
        f"• {esc(p.get('title'), 200)} (`{esc(p.get('key'), 60)}`, {esc(p.get('risk'), 20)})"
        for p in proposals
    )
    blocks: list[Block] = [
        section(s.BASELINE_CARD.format(resolver=mention(payload.get("resolver")))),
        section(s.BASELINE_PROPOSED.format(lines=lines) if lines else s.BASELINE_NOTHING_PROPOSED),
    ]
    incident = payload.get("incident_id")
    if isinstance(incident, str) and 0 < len(incident) <= MAX_BUTTON_VALUE:
        blocks.append(
            ActionsBlock(
                block_id=BlockId.BASELINE_ACTIONS,
                elements=[
                    ButtonElement(
                        text=PlainTextObject(text=s.BASELINE_BUTTON),
                        action_id=ActionId.BASELINE_OPEN,
                        value=incident,
                        style="primary",
                    )
                ],
            )
        )
    return finish(s.BASELINE_FALLBACK, blocks)


def render_baseline_recorded(payload: Payload) -> Rendered:
    """``baseline_recorded``: the thread hears what the baseline now holds."""
    parts = []
    taken = [esc(t, 200) for t in payload.get("taken_titles") or [] if isinstance(t, str)]
    other = [esc(t, 200) for t in payload.get("other") or [] if isinstance(t, str)]
    if taken:
        parts.append(s.BASELINE_TOOK.format(steps=", ".join(taken)))
    if other:
        parts.append(s.BASELINE_ALSO.format(other="; ".join(other)))
    what = "; ".join(parts) or s.BASELINE_NOTHING
    text = s.BASELINE_RECORDED.format(actor=mention(payload.get("actor")), what=what)
    return finish(text, [section(text)])


def baseline_modal(incident_id: str, proposals: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The baseline modal: the proposed steps as checkboxes, and free text for anything else."""
    blocks: list[Any] = []
    options = [
        Option(value=str(p["key"])[:150], text=PlainTextObject(text=str(p["title"])[:75]))
        for p in proposals[:MAX_OPTIONS]
    ]
    if options:
        blocks.append(
            InputBlock(
                block_id=BlockId.BASELINE_TAKEN,
                label=PlainTextObject(text=s.BASELINE_MODAL_TAKEN),
                optional=True,
                element=CheckboxesElement(action_id=ActionId.BASELINE_TAKEN, options=options),
            )
        )
    blocks.append(
        InputBlock(
            block_id=BlockId.BASELINE_OTHER,
            label=PlainTextObject(text=s.BASELINE_MODAL_OTHER),
            hint=PlainTextObject(text=s.BASELINE_MODAL_OTHER_HINT),
            optional=True,
            element=PlainTextInputElement(
                action_id=ActionId.BASELINE_OTHER, multiline=True, max_length=MAX_OTHER
            ),
        )
    )
    view = View(
        type="modal",
        callback_id=CallbackId.BASELINE,
        private_metadata=incident_id,
        title=PlainTextObject(text=s.BASELINE_MODAL_TITLE),
        submit=PlainTextObject(text=s.BASELINE_MODAL_SUBMIT),
        close=PlainTextObject(text=s.REJECT_MODAL_CLOSE),
        blocks=blocks,
    )
    return view.to_dict()


def baseline_answer(view: Mapping[str, Any]) -> tuple[list[str], str]:
    """The ticked step keys and the free text of a submitted baseline modal."""
    values = (view.get("state") or {}).get("values") or {}
    taken_state = (values.get(BlockId.BASELINE_TAKEN) or {}).get(ActionId.BASELINE_TAKEN) or {}
    taken = [
        str(o.get("value"))
        for o in taken_state.get("selected_options") or []
        if isinstance(o, Mapping) and o.get("value")
    ]
    other_state = (values.get(BlockId.BASELINE_OTHER) or {}).get(ActionId.BASELINE_OTHER) or {}
    return taken, str(other_state.get("value") or "")[:MAX_OTHER]


def rollout_answer(rows: Sequence[ScopeStatus], *, mode: str) -> tuple[str, list[dict[str, Any]]]:
    """``/incident rollout``: each scope's stage, evidence and criteria."""
    if not rows:
        text = s.ROLLOUT_NONE.format(mode=esc(mode, 20))
        return text, finish(text, [section(text), context(s.ROLLOUT_USAGE)]).blocks
    blocks: list[Block] = [
        section(
            s.ROLLOUT_SCOPE.format(
                scope=esc(row.scope, 80),
                stage=esc(row.stage.value, 20),
                covers=esc(row.covers, 200),
                lines="\n".join(esc(line, 300) for line in row.lines()),
            )
        )
        for row in rows[:20]
    ]
    blocks.append(context(s.ROLLOUT_USAGE))
    text = "; ".join(f"{r.scope}: {r.stage.value}" for r in rows)
    return text, finish(text, blocks).blocks
