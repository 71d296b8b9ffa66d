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
"""

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot import strings as s
from bot.ids import ActionId, BlockId, CallbackId
from bot.strings import escape
from orchestration.enums import ApprovalPurpose, ApprovalState, StepKind, StepStatus, VoteChoice
from policies.model import Verdict

Payload = Mapping[str, Any]

MAX_BLOCKS: Final = 50
MAX_SECTION_TEXT: Final = 3000
MAX_FIELD_TEXT: Final = 2000
MAX_FIELDS: Final = 10
MAX_HEADER_TEXT: Final = 150
MAX_CONTEXT_TEXT: Final = 2000
MAX_CONTEXT_ELEMENTS: Final = 10
MAX_BUTTON_VALUE: Final = 2000
MAX_FALLBACK_TEXT: Final = 3000
MAX_LINE: Final = 500  # one step line; keeps a 200-step plan readable
MAX_CODE: Final = 2400  # args / expect code blocks inside one section
MAX_REASON: Final = 1000
MAX_STEP_SECTIONS: Final = 8
MAX_REJECT_REASON: Final = 1000

_USER_ID: Final = re.compile(r"[UW][A-Z0-9]{1,30}")
_ESCAPED_MENTION: Final = re.compile(r"&lt;@([UW][A-Z0-9]{1,30})&gt;")


class MessageKind(StrEnum):
    """Kinds of outbox message the control plane queues."""

    INCIDENT_OPENED = "incident_opened"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_UPDATED = "approval_updated"
    VOTE_REFUSED = "vote_refused"
    STEP_FINISHED = "step_finished"
    STEP_DENIED = "step_denied"
    PLAN_BLOCKED = "plan_blocked"
    PLAN_FINISHED = "plan_finished"
    ESCALATION = "escalation"
    INCIDENT_RESOLVED = "incident_resolved"
    INCIDENT_CANCELLED = "incident_cancelled"


@dataclass(frozen=True)
class Rendered:
    """A message ready for ``chat.postMessage``: fallback ``text`` and Block Kit ``blocks``."""

    text: str
    blocks: list[dict[str, Any]]


# --- text helpers -------------------------------------------------------------------------


def fit(text: str, limit: int) -> str:
    """Clip mrkdwn ``text`` to ``limit`` characters without splitting an entity or a ``<...>``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(s.ELLIPSIS)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    lt = cut.rfind("<")
    if lt > cut.rfind(">"):
        cut = cut[:lt]
    return cut + s.ELLIPSIS


def esc(value: object, limit: int = MAX_REASON) -> str:
    """Escaped and clipped user text; an empty value becomes a dash."""
    return fit(escape(value), limit) or s.NONE


def esc_reason(value: object, limit: int = MAX_REASON) -> str:
    """Like :func:`esc`, but user mentions (``<@U123>``) written by the control plane survive."""
    return fit(_ESCAPED_MENTION.sub(r"<@\1>", escape(value)), limit) or s.NONE


def one_line(value: object, limit: int) -> str:
    """Plain text (for ``plain_text`` objects) on one line, clipped; never empty."""
    text = " ".join(("" if value is None else str(value)).split())
    if len(text) > limit:
        text = text[: limit - len(s.ELLIPSIS)] + s.ELLIPSIS
    return text or s.NONE


def mention(user: object) -> str:
    """``<@U123>`` for a Slack user id; anything else (``cli``, ``alertmanager``) as text."""
    if isinstance(user, str) and _USER_ID.fullmatch(user):
        return f"<@{user}>"
    return esc(user or s.UNKNOWN_USER, 80)


def code_block(value: object, limit: int = MAX_CODE) -> str:
    """``value`` (JSON for anything not a string) in a code block of at most ``limit`` chars."""
    raw = value if isinstance(value, str) else _json(value)
    body = fit(escape(raw).replace("```", "`\u200b`\u200b`"), limit - 8) or s.NONE
    return f"```\n{body}\n```"


def slack_date(iso: object) -> str:
    """An ISO timestamp as ``<!date^EPOCH^{time}|fallback>`` (shown in the reader's zone)."""
    try:
        when = datetime.fromisoformat(str(iso))
    except ValueError:
        return esc(iso, 64)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    fallback = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{{time}}|{fallback}>"


def usd(value: object) -> str:
    """Money as ``$1.25`` or ``$0.0042`` (small amounts keep four decimals)."""
    amount = _float(value)
    if amount is None:
        return s.NONE
    return f"${amount:,.2f}" if abs(amount) >= 1 else f"${amount:.4f}"


def duration(ms: object) -> str:
    """``850 ms``, ``2.4 s`` or ``3m 5s``."""
    value = _float(ms)
    if value is None:
        return s.NONE
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    minutes, seconds = divmod(int(value // 1000), 60)
    return f"{minutes}m {seconds}s"


def _json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _int(value: object, default: int) -> int:
    number = _float(value)
    return default if number is None else int(number)


def _plural(count: int) -> str:
    return "" if count == 1 else "s"


def _mappings(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _trace(payload: Payload) -> str:
    trace = payload.get("correlation_id")
    return s.TRACE.format(trace=esc(trace, 100)) if trace else ""


def _risk(value: object) -> tuple[str, str]:
    risk = str(value or "")
    return s.RISK_EMOJI.get(risk, s.RISK_UNKNOWN_EMOJI), esc(risk or None, 40)


# --- block helpers ------------------------------------------------------------------------


def _section(text: str | None, *, fields: Iterable[str] = ()) -> SectionBlock:
    objects = [MarkdownTextObject(text=fit(f, MAX_FIELD_TEXT) or s.NONE) for f in fields]
    body = None if text is None and objects else fit(text or "", MAX_SECTION_TEXT) or s.NONE
    return SectionBlock(
        text=MarkdownTextObject(text=body) if body is not None else None,
        fields=objects[:MAX_FIELDS] or None,
    )


def _context(*parts: str) -> ContextBlock:
    texts = [p for p in parts if p] or [s.NONE]
    return ContextBlock(
        elements=[MarkdownTextObject(text=fit(p, MAX_CONTEXT_TEXT)) for p in texts][
            :MAX_CONTEXT_ELEMENTS
        ]
    )


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=one_line(text, MAX_HEADER_TEXT), emoji=True))


def _packed(lines: Sequence[str], *, heading: str, more: Callable[[int], str]) -> list[Block]:
    """``lines`` packed into as few sections as fit; past ``MAX_STEP_SECTIONS``, a count."""
    chunks: list[list[str]] = [[heading]]
    size = len(heading)
    for index, raw in enumerate(lines):
        line = fit(raw, MAX_LINE)
        if size + 1 + len(line) > MAX_SECTION_TEXT:
            if len(chunks) == MAX_STEP_SECTIONS:
                return [
                    *(_section("\n".join(c)) for c in chunks),
                    _context(more(len(lines) - index)),
                ]
            chunks.append([])
            size = -1
        chunks[-1].append(line)
        size += 1 + len(line)
    return [_section("\n".join(c)) for c in chunks]


def _done(text: str, blocks: list[Block]) -> Rendered:
    """Cap the block count (keeping a trailing actions block) and validate via ``to_dict``."""
    if len(blocks) > MAX_BLOCKS:
        tail = blocks[-1:] if isinstance(blocks[-1], ActionsBlock) else []
        keep = MAX_BLOCKS - 1 - len(tail)
        notice = _context(s.MORE_BLOCKS.format(count=len(blocks) - keep - len(tail)))
        blocks = [*blocks[:keep], notice, *tail]
    return Rendered(
        text=fit(text, MAX_FALLBACK_TEXT) or s.NONE, blocks=[b.to_dict() for b in blocks]
    )


# The helpers under public names, for the other renderers (``bot.digest``).
section = _section
context = _context
header = _header
finish = _done


# --- incident root ------------------------------------------------------------------------


def _policy(step: Payload) -> str:
    verdict = str(step.get("verdict") or "")
    reason = esc_reason(step.get("reason"), 300)
    if verdict == Verdict.ALLOW:
        return s.POLICY_ALLOW
    if verdict == Verdict.REQUIRE_APPROVAL:
        quorum = _int(step.get("quorum"), 1)
        excl = s.POLICY_NOT_REQUESTER if step.get("exclude_requester") else ""
        return s.POLICY_APPROVALS.format(
            quorum=quorum, plural=_plural(quorum), excl=excl, reason=reason
        )
    if verdict == Verdict.DENY:
        return s.POLICY_DENY.format(reason=reason)
    return s.POLICY_OTHER.format(verdict=esc(verdict or None, 40), reason=reason)


def _step_line(n: int, step: Payload) -> str:
    emoji, risk = _risk(step.get("risk"))
    declared = str(step.get("declared_risk") or "")
    risk_text = (
        s.RISK_RAISED.format(risk=risk, declared=esc(declared, 40))
        if declared and declared != str(step.get("risk") or "")
        else s.RISK.format(risk=risk)
    )
    return s.STEP_LINE.format(
        emoji=emoji,
        n=n,
        title=esc(step.get("title"), 200),
        tool=esc(step.get("tool_action"), 100),
        dot=s.DOT,
        risk=risk_text,
        policy=_policy(step),
    )


def _forecast(payload: Payload) -> str:
    forecast, budget = _float(payload.get("forecast_usd")), _float(payload.get("budget_usd"))
    values = {"forecast": usd(forecast), "budget": usd(budget)}
    if not budget:
        return s.FORECAST_NO_BUDGET.format(**values)
    if forecast is not None and forecast > budget:
        return s.FORECAST_OVER.format(**values)
    return s.FORECAST.format(**values)


def render_incident_root(payload: Payload, status: str) -> Rendered:
    """The incident's root message in ``status`` (``open``, ``resolved``, ``cancelled``)."""
    label = s.INCIDENT_STATUS.get(status) or esc(status, 60)
    fields = [
        s.FIELD_STATUS.format(status=label),
        s.FIELD_REQUESTER.format(requester=mention(payload.get("requester"))),
        s.FIELD_PLAN.format(title=esc(payload.get("title"), 500)),
        s.FIELD_RUNBOOK.format(
            runbook=esc(payload.get("runbook_id"), 200),
            version=esc(payload.get("plan_version"), 20),
            hash=esc(str(payload.get("plan_hash") or "")[:12] or None, 20),
            dot=s.DOT,
        ),
    ]
    blocks: list[Block] = [
        _header(s.INCIDENT_HEADER.format(text=one_line(payload.get("text"), MAX_HEADER_TEXT))),
        _section(None, fields=fields),
    ]
    params = payload.get("params")
    if isinstance(params, Mapping) and params:
        pairs = sorted((str(k), v) for k, v in params.items())
        shown = s.LIST_SEP.join(f"`{esc(k, 100)}`={esc(v, 200)}" for k, v in pairs)
        blocks.append(_context(s.PARAMS.format(params=shown)))
    blocks.append(DividerBlock())
    steps = _mappings(payload.get("steps"))
    lines = [_step_line(n, step) for n, step in enumerate(steps, start=1)] or [s.NO_STEPS]
    blocks += _packed(
        lines,
        heading=s.STEPS_HEADING,
        more=lambda count: s.MORE_STEPS.format(emoji=s.MORE_STEPS_EMOJI, count=count),
    )
    blocks.append(_context(_forecast(payload), _trace(payload)))
    text = s.INCIDENT_FALLBACK.format(status=label, text=esc(payload.get("text"), 500))
    return _done(text, blocks)


def render_incident_opened(payload: Payload) -> Rendered:
    """``incident_opened``: the root message of a freshly opened incident."""
    return render_incident_root(payload, "open")


# --- approval cards -----------------------------------------------------------------------


def _card_body(card: Payload, *, approvals: int, quorum: int, pending: bool) -> list[Block]:
    excl = s.QUORUM_NOT_REQUESTER if card.get("exclude_requester") else ""
    quorum_field = s.FIELD_QUORUM.format(approvals=approvals, quorum=quorum, excl=excl)
    expires_field = s.FIELD_EXPIRES.format(when=slack_date(card.get("expires_at")))
    why = s.WHY.format(reason=esc_reason(card.get("reason")))
    blocks: list[Block]
    if card.get("purpose") == ApprovalPurpose.BUDGET:
        blocks = [
            _section(f"{s.APPROVAL_BUDGET_TITLE}\n{why}", fields=[quorum_field, expires_field])
        ]
    else:
        emoji, risk = _risk(card.get("risk"))
        template = s.APPROVAL_STEP_TITLE if pending else s.APPROVAL_DECIDED_TITLE
        title = template.format(emoji=emoji, title=esc(card.get("title"), 500))
        fields = [
            s.FIELD_TOOL.format(tool=esc(card.get("tool_action"), 200)),
            s.FIELD_RISK.format(emoji=emoji, risk=risk),
            quorum_field,
            expires_field,
        ]
        blocks = [
            _section(title, fields=fields),
            _section(why),
            _section(s.ARGS.format(code=code_block(card.get("args") or {}))),
        ]
        if card.get("expect"):
            blocks.append(_section(s.EXPECT.format(code=code_block(card.get("expect")))))
        comp = card.get("compensate")
        if isinstance(comp, Mapping) and comp:
            comp_text = s.COMPENSATION.format(
                title=esc(comp.get("title"), 300),
                tool=esc(comp.get("tool"), 200),
                code=code_block(comp.get("args") or {}, 1500),
            )
            blocks.append(_section(comp_text))
        else:
            blocks.append(_section(s.NO_COMPENSATION))
    requested = s.REQUESTED_BY.format(
        requester=mention(card.get("requester")),
        dot=s.DOT,
        version=esc(card.get("plan_version"), 20),
    )
    blocks.append(_context(requested, _trace(card)))
    return blocks


def _buttons(nonce: object) -> Block:
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_BUTTON_VALUE:
        return _context(s.NO_BUTTONS)  # a clipped nonce would bind the vote to nothing
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
    reason_text = str(
        (rejects[-1].get("reason") if rejects else None) or update.get("reason") or ""
    )
    reason = s.VOTE_REASON.format(reason=esc_reason(reason_text)) if reason_text else ""
    if state == ApprovalState.APPROVED:
        voters = s.LIST_SEP.join(mention(v) for v in approvers[:20])
        return s.STATE_APPROVED.format(voters=voters or mention(update.get("decided_by")))
    if state == ApprovalState.REJECTED:
        voter = update.get("decided_by") or (rejects[-1].get("voter") if rejects else None)
        return s.STATE_REJECTED.format(voter=mention(voter), reason=reason)
    if state == ApprovalState.EXPIRED:
        approvals = _int(update.get("approvals"), len(approvers))
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
    update = update or {}
    state = str(update.get("state") or ApprovalState.PENDING)
    quorum = _int(update.get("quorum"), _int(card.get("quorum"), 1))
    votes = _mappings(update.get("votes"))
    approvers = [v.get("voter") for v in votes if v.get("choice") == VoteChoice.APPROVE]
    approvals = _int(update.get("approvals"), len(approvers))
    pending = state == ApprovalState.PENDING
    blocks = _card_body(card, approvals=approvals, quorum=quorum, pending=pending)
    if votes:
        voters = s.LIST_SEP.join(mention(v) for v in approvers[:20])
        progress = (
            s.PROGRESS.format(approvals=approvals, quorum=quorum, voters=voters)
            if voters
            else s.PROGRESS_NOBODY.format(approvals=approvals, quorum=quorum)
        )
        rejections = [
            s.REJECT_VOTE.format(
                voter=mention(v.get("voter")),
                reason=s.VOTE_REASON.format(reason=esc(v.get("reason"), 500))
                if v.get("reason")
                else "",
            )
            for v in votes
            if v.get("choice") == VoteChoice.REJECT
        ][:5]
        blocks.append(_section("\n".join([progress, *rejections])))
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
            else s.APPROVAL_FALLBACK_STEP.format(title=esc(title, 500))
        )
    else:
        blocks.append(_section(_final_state(state, update, votes, quorum)))
        text = s.STATE_FALLBACK.format(state=esc(state, 60), title=esc(title, 500))
    return _done(text, blocks)


def render_approval_requested(payload: Payload) -> Rendered:
    """``approval_requested``: a fresh card with Approve/Reject bound to the approval nonce."""
    return render_approval_card(payload, None)


def render_vote_refused(payload: Payload) -> Rendered:
    """``vote_refused``: the ephemeral reply telling a voter why the click did not count."""
    reason = esc_reason(payload.get("reason"))
    text = s.VOTE_REFUSED.format(voter=mention(payload.get("voter")), reason=reason)
    code = payload.get("code")
    blocks: list[Block] = [_section(text)]
    if code:
        blocks.append(_context(s.CODE.format(code=esc(code, 100)), _trace(payload)))
    return _done(s.VOTE_REFUSED_FALLBACK.format(reason=reason), blocks)


# --- results ------------------------------------------------------------------------------


def render_step_finished(payload: Payload) -> Rendered:
    """``step_finished``: result, duration, cost delta, spend vs budget and trace of one step."""
    status = str(payload.get("status") or "")
    compensation = payload.get("kind") == StepKind.COMPENSATION
    title, tool = esc(payload.get("title"), 500), esc(payload.get("tool_action"), 200)
    if status == StepStatus.SUCCEEDED:
        template = s.COMP_SUCCEEDED if compensation else s.STEP_SUCCEEDED
    elif status == StepStatus.FAILED:
        template = s.COMP_FAILED if compensation else s.STEP_FAILED
    else:
        template = s.STEP_OTHER
    lines = [template.format(title=title, tool=tool, status=esc(status, 40))]
    if payload.get("summary"):
        lines.append(s.RESULT.format(summary=esc(payload.get("summary"), 1200)))
    attempts = _int(payload.get("attempts"), 1)
    if status == StepStatus.FAILED:
        code = payload.get("error_code")
        lines.append(
            s.ERROR.format(
                code=s.ERROR_CODE.format(code=esc(code, 100)) if code else "",
                error=esc(payload.get("error"), 1000),
            )
        )
        lines.append(
            s.NEXT_AFTER_COMP_FAILURE
            if compensation
            else s.NEXT_AFTER_FAILURE.format(attempts=attempts, plural=_plural(attempts))
        )
    budget = _float(payload.get("plan_budget_usd"))
    spent = usd(payload.get("plan_spent_usd"))
    context = _context(
        s.DURATION.format(duration=duration(payload.get("duration_ms"))),
        s.COST.format(cost=usd(payload.get("cost_usd"))),
        s.SPENT.format(spent=spent, budget=usd(budget))
        if budget
        else s.SPENT_NO_BUDGET.format(spent=spent),
        s.ATTEMPTS.format(attempts=attempts),
        _trace(payload),
    )
    text = s.STEP_FALLBACK.format(status=esc(status, 40), title=title)
    return _done(text, [_section("\n".join(lines)), context])


def render_step_denied(payload: Payload) -> Rendered:
    """``step_denied``: the policy refused a step (the plan halts and escalates)."""
    title = esc(payload.get("title"), 500)
    text = s.STEP_DENIED.format(
        title=title,
        tool=esc(payload.get("tool_action"), 200),
        reason=esc_reason(payload.get("reason")),
    )
    code = s.CODE.format(code=esc(payload.get("code"), 100))
    return _done(
        s.STEP_DENIED_FALLBACK.format(title=title),
        [_section(text), _context(code, _trace(payload))],
    )


def render_plan_blocked(payload: Payload) -> Rendered:
    """``plan_blocked``: refused before it started (budget forecast)."""
    reason = esc_reason(payload.get("reason"))
    forecast = s.FORECAST_ONLY.format(forecast=usd(payload.get("forecast_usd")))
    blocks: list[Block] = [
        _section(s.PLAN_BLOCKED.format(reason=reason)),
        _context(forecast, _trace(payload)),
    ]
    return _done(s.PLAN_BLOCKED_FALLBACK.format(reason=reason), blocks)


def render_plan_finished(payload: Payload) -> Rendered:
    """``plan_finished``: final status, why, and what it cost."""
    status = str(payload.get("status") or "")
    label = s.PLAN_STATUS.get(status) or esc(status, 60)
    text = s.PLAN_FINISHED.format(status=label, reason=esc_reason(payload.get("reason")))
    budget = _float(payload.get("budget_usd"))
    spent = usd(payload.get("spent_usd"))
    code = payload.get("code")
    context = _context(
        s.SPENT.format(spent=spent, budget=usd(budget))
        if budget
        else s.SPENT_NO_BUDGET.format(spent=spent),
        s.CODE.format(code=esc(code, 100)) if code else "",
        _trace(payload),
    )
    return _done(s.PLAN_FINISHED_FALLBACK.format(status=label), [_section(text), context])


def render_escalation(payload: Payload) -> Rendered:
    """``escalation``: opsgate stopped; ``@here`` asks humans to take over."""
    reason = esc_reason(payload.get("reason"))
    code = s.CODE.format(code=esc(payload.get("code"), 100))
    blocks: list[Block] = [
        _section(s.ESCALATION.format(reason=reason)),
        _context(code, _trace(payload)),
    ]
    return _done(s.ESCALATION_FALLBACK.format(reason=reason), blocks)


def _render_closed(kind: MessageKind, payload: Payload) -> Rendered:
    reason = payload.get("reason")
    text = s.INCIDENT_CLOSED[kind].format(
        actor=mention(payload.get("actor")),
        reason=s.VOTE_REASON.format(reason=esc_reason(reason)) if reason else "",
    )
    blocks: list[Block] = [_section(text)]
    if payload.get("correlation_id"):
        blocks.append(_context(_trace(payload)))
    return _done(s.INCIDENT_CLOSED_FALLBACK[kind], blocks)


def render_incident_resolved(payload: Payload) -> Rendered:
    """``incident_resolved``: who resolved it, and why (in the thread)."""
    return _render_closed(MessageKind.INCIDENT_RESOLVED, payload)


def render_incident_cancelled(payload: Payload) -> Rendered:
    """``incident_cancelled``: who cancelled it, and why (in the thread)."""
    return _render_closed(MessageKind.INCIDENT_CANCELLED, payload)


def render_unknown(kind: str, payload: Payload) -> Rendered:
    """A plain, safe message for a kind this surface does not know yet."""
    shown = esc(kind, 100)
    blocks: list[Block] = [_section(s.UNKNOWN_KIND.format(kind=shown))]
    if payload.get("correlation_id"):
        blocks.append(_context(_trace(payload)))
    return _done(s.UNKNOWN_KIND_FALLBACK.format(kind=shown), blocks)


def _render_update_alone(payload: Payload) -> Rendered:
    return render_approval_card({}, payload)


RENDERERS: Final[Mapping[str, Callable[[Payload], Rendered]]] = {
    MessageKind.INCIDENT_OPENED: render_incident_opened,
    MessageKind.APPROVAL_REQUESTED: render_approval_requested,
    MessageKind.APPROVAL_UPDATED: _render_update_alone,
    MessageKind.VOTE_REFUSED: render_vote_refused,
    MessageKind.STEP_FINISHED: render_step_finished,
    MessageKind.STEP_DENIED: render_step_denied,
    MessageKind.PLAN_BLOCKED: render_plan_blocked,
    MessageKind.PLAN_FINISHED: render_plan_finished,
    MessageKind.ESCALATION: render_escalation,
    MessageKind.INCIDENT_RESOLVED: render_incident_resolved,
    MessageKind.INCIDENT_CANCELLED: render_incident_cancelled,
}


def render(kind: str, payload: Payload) -> Rendered:
    """Render one outbox message; unknown kinds get :func:`render_unknown`."""
    renderer = RENDERERS.get(kind)
    return renderer(payload) if renderer else render_unknown(kind, payload)


# --- slash-command replies and modals -----------------------------------------------------


def _help_lines() -> str:
    return "\n".join(
        s.HELP_LINE.format(command=escape(command), what=what) for command, what in s.HELP_COMMANDS
    )


def help_text() -> Rendered:
    """``/incident help``: every subcommand, one line each (ephemeral)."""
    return _done(s.HELP, [_section(s.HELP_TITLE), _section(_help_lines())])


def help_blocks() -> list[dict[str, Any]]:
    """The blocks of :func:`help_text` (its fallback text is ``strings.HELP``)."""
    return help_text().blocks


def usage_for_unknown(sub: str) -> Rendered:
    """The reply to ``/incident <sub>`` when ``sub`` is no command (ephemeral)."""
    shown = esc(one_line(sub, 100), 200)
    blocks: list[Block] = [_section(s.UNKNOWN_SUB.format(sub=shown)), _section(_help_lines())]
    return _done(s.UNKNOWN_SUB_FALLBACK.format(sub=shown), blocks)


_DONE_STEP_STATES: Final = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.DENIED, StepStatus.REJECTED}
    | {StepStatus.SKIPPED, StepStatus.COMPENSATED}
)


def _status_line(step: Payload, n: int) -> str:
    status = str(step.get("status") or "")
    error = step.get("error")
    detail = s.VOTE_REASON.format(reason=esc_reason(error, 300)) if error else ""
    return s.STATUS_STEP.format(
        emoji=s.STEP_STATUS_EMOJI.get(status, s.STEP_STATUS_UNKNOWN_EMOJI),
        n=n,
        title=esc(step.get("title"), 200),
        tool=esc(step.get("tool_action"), 100),
        dot=s.DOT,
        status=esc(status.replace("_", " ") or None, 40),
        detail=detail,
    )


def status_blocks(plan_view: Payload) -> Rendered:
    """``/incident status``: a plan's steps with status, its spend vs budget, status and reason.

    ``plan_view`` is ``PlanView.model_dump(mode="json")``.
    """
    status = str(plan_view.get("status") or "")
    label = s.PLAN_STATUS.get(status) or esc(status, 60)
    budget = _float(plan_view.get("budget_usd"))
    spent = usd(plan_view.get("spent_usd"))
    summary = s.STATUS_SUMMARY.format(
        status=label,
        dot=s.DOT,
        runbook=esc(plan_view.get("runbook_id"), 200),
        version=esc(plan_view.get("version"), 20),
        spent=s.SPENT.format(spent=spent, budget=usd(budget))
        if budget
        else s.SPENT_NO_BUDGET.format(spent=spent),
    )
    reason = plan_view.get("status_reason")
    if reason:
        summary += "\n" + s.STATUS_REASON.format(reason=esc_reason(reason))
    steps = _mappings(plan_view.get("steps"))
    lines = [_status_line(step, n) for n, step in enumerate(steps, start=1)] or [s.NO_STEPS]
    blocks: list[Block] = [
        _header(s.STATUS_HEADER),
        _section(summary),
        *_packed(
            lines,
            heading=s.STEPS_HEADING,
            more=lambda count: s.MORE_STEPS.format(emoji=s.MORE_STEPS_EMOJI, count=count),
        ),
    ]
    done = sum(1 for step in steps if step.get("status") in _DONE_STEP_STATES)
    text = s.STATUS_FALLBACK.format(status=label, done=done, total=len(steps))
    return _done(text, blocks)


def reject_modal(nonce: str) -> dict[str, Any]:
    """The optional rejection-reason modal; ``private_metadata`` carries the approval nonce."""
    view = View(
        type="modal",
        callback_id=CallbackId.REJECT_REASON,
        private_metadata=nonce,
        title=PlainTextObject(text=s.REJECT_MODAL_TITLE),
        submit=PlainTextObject(text=s.REJECT_MODAL_SUBMIT),
        close=PlainTextObject(text=s.REJECT_MODAL_CLOSE),
        blocks=[
            _section(s.REJECT_MODAL_INTRO),
            InputBlock(
                block_id=BlockId.REJECT_REASON,
                label=PlainTextObject(text=s.REJECT_MODAL_LABEL),
                optional=True,
                element=PlainTextInputElement(
                    action_id=ActionId.REJECT_REASON_INPUT,
                    multiline=True,
                    max_length=MAX_REJECT_REASON,
                    placeholder=PlainTextObject(text=s.REJECT_MODAL_PLACEHOLDER),
                ),
            ),
        ],
    )
    return view.to_dict()
