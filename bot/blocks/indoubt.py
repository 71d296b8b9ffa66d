"""In-doubt steps: the card that asks humans what happened, and the thread notices.

The card is an approval record of purpose ``in_doubt``: its three buttons (it ran, run it
again, stop the plan) all carry the record's nonce; the action id says which answer.
"""

from collections.abc import Mapping
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, PlainTextObject

from bot import strings as s
from bot.blocks.layout import context, finish, section
from bot.blocks.model import Payload, Rendered, as_int, mappings
from bot.blocks.text import (
    MAX_BUTTON_VALUE,
    actors,
    esc,
    esc_reason,
    mention,
    slack_date,
    trace_text,
)
from bot.ids import ActionId, BlockId
from orchestration.enums import ApprovalState, VoteChoice


def _known(card: Payload) -> list[str]:
    known = card.get("in_doubt")
    known = known if isinstance(known, Mapping) else {}
    lines = [s.IN_DOUBT_STARTED.format(when=slack_date(known.get("started_at")))]
    if known.get("owner"):
        lines.append(s.IN_DOUBT_OWNER.format(owner=esc(known.get("owner"), 120)))
    last = known.get("last_span")
    if isinstance(last, Mapping):
        lines.append(
            s.IN_DOUBT_LAST_SPAN.format(
                name=esc(last.get("name"), 120),
                status=esc(last.get("status"), 40),
                summary=esc(last.get("summary"), 300),
            )
        )
    else:
        lines.append(s.IN_DOUBT_NO_SPAN)
    check = known.get("check")
    if isinstance(check, Mapping):
        template = s.IN_DOUBT_CHECK_OK if check.get("ok") else s.IN_DOUBT_CHECK_BAD
        lines.append(
            template.format(
                title=esc(check.get("title"), 200),
                tool=esc(check.get("tool_action"), 100),
                summary=esc(check.get("summary"), 600),
            )
        )
    return lines


def _buttons(nonce: object) -> Block:
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_BUTTON_VALUE:
        return context(s.NO_BUTTONS)
    return ActionsBlock(
        block_id=BlockId.IN_DOUBT_ACTIONS,
        elements=[
            ButtonElement(
                text=PlainTextObject(text=s.IN_DOUBT_RAN_BUTTON),
                action_id=ActionId.IN_DOUBT_RAN,
                value=nonce,
                style="primary",
            ),
            ButtonElement(
                text=PlainTextObject(text=s.IN_DOUBT_RERUN_BUTTON),
                action_id=ActionId.IN_DOUBT_RERUN,
                value=nonce,
            ),
            ButtonElement(
                text=PlainTextObject(text=s.IN_DOUBT_STOP_BUTTON),
                action_id=ActionId.IN_DOUBT_STOP,
                value=nonce,
                style="danger",
            ),
        ],
    )


def _voters(votes: list[Mapping[str, Any]], choice: VoteChoice) -> str:
    return s.LIST_SEP.join(mention(v.get("voter")) for v in votes if v.get("choice") == choice)


def _settled(state: str, update: Payload, votes: list[Mapping[str, Any]]) -> str:
    reason_text = str(update.get("reason") or "")
    people = actors(update, "actor", "decided_by")
    reason = (
        s.VOTE_REASON.format(reason=esc_reason(reason_text, people=people)) if reason_text else ""
    )
    if state == ApprovalState.APPROVED:
        rerun = _voters(votes, VoteChoice.RERUN)
        ran = _voters(votes, VoteChoice.RAN)
        choice = str(update.get("choice") or (VoteChoice.RERUN if rerun else VoteChoice.RAN))
        if choice == VoteChoice.RERUN:
            return s.IN_DOUBT_SETTLED_RERUN.format(voters=rerun)
        return s.IN_DOUBT_SETTLED_RAN.format(voters=ran)
    if state == ApprovalState.REJECTED:
        return s.IN_DOUBT_SETTLED_STOP.format(
            voter=mention(update.get("decided_by")), reason=reason
        )
    return s.IN_DOUBT_SETTLED_OTHER.format(state=esc(state, 60).capitalize(), reason=reason)


def render_in_doubt_card(card: Payload, update: Payload | None = None) -> Rendered:
    """The in-doubt card as it stands after ``update`` (an ``approval_updated`` payload)."""
    update = update or {}
    state = str(update.get("state") or ApprovalState.PENDING)
    quorum = as_int(update.get("quorum"), as_int(card.get("quorum"), 1))
    votes = mappings(update.get("votes"))
    title = esc(card.get("title"), 500)
    excl = s.QUORUM_NOT_REQUESTER if card.get("exclude_requester") else ""
    answers = max(
        sum(1 for v in votes if v.get("choice") == choice)
        for choice in (VoteChoice.RAN, VoteChoice.RERUN)
    )
    header = s.IN_DOUBT_TITLE.format(title=title, tool=esc(card.get("tool_action"), 200))
    blocks: list[Block] = [
        section(f"{header}\n{s.IN_DOUBT_WHY}"),
        section("\n".join(_known(card))),
        section(s.IN_DOUBT_QUORUM.format(answers=answers, quorum=quorum, excl=excl)),
    ]
    tallies = [
        s.IN_DOUBT_VOTES.format(choice=s.IN_DOUBT_CHOICE[choice], voters=_voters(votes, choice))
        for choice in (VoteChoice.RAN, VoteChoice.RERUN)
        if _voters(votes, choice)
    ]
    if tallies:
        blocks.append(section("\n".join(tallies)))
    known = card.get("in_doubt")
    key = known.get("idempotency_key") if isinstance(known, Mapping) else None
    if state == ApprovalState.PENDING:
        blocks.append(_buttons(card.get("nonce")))
    else:
        blocks.append(section(_settled(state, update, votes)))
    blocks.append(
        context(
            *([s.IN_DOUBT_KEY.format(key=esc(key, 100))] if key else []),
            trace_text(card),
        )
    )
    return finish(s.IN_DOUBT_FALLBACK.format(title=title), blocks)


def render_step_in_doubt(payload: Payload) -> Rendered:
    """``step_in_doubt``: a step of an ended plan whose replica vanished mid-call."""
    title = esc(payload.get("title"), 500)
    text = s.IN_DOUBT_NOTICE.format(
        title=title,
        tool=esc(payload.get("tool_action"), 200),
        why=esc(payload.get("why"), 300),
        owner=esc(payload.get("owner"), 120),
    )
    return finish(
        s.IN_DOUBT_NOTICE_FALLBACK.format(title=title),
        [section(text), context(trace_text(payload))],
    )


def render_step_rerun(payload: Payload) -> Rendered:
    """``step_rerun``: a read-only or idempotent step runs again after its replica died."""
    title = esc(payload.get("title"), 500)
    text = s.STEP_RERUN.format(
        title=title,
        owner=esc(payload.get("previous_owner"), 120),
        why=esc(payload.get("why"), 40),
    )
    return finish(
        s.STEP_RERUN_FALLBACK.format(title=title), [section(text), context(trace_text(payload))]
    )
