"""Slash-command replies (help, usage, status) and the rejection-reason modal."""

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from slack_sdk.models.blocks import (
    Block,
    InputBlock,
    PlainTextInputElement,
    PlainTextObject,
)
from slack_sdk.models.views import View

from bot import strings as s
from bot.blocks.layout import finish, header, packed, section
from bot.blocks.model import Payload, Rendered, as_float, mappings
from bot.blocks.text import (
    MAX_REJECT_REASON,
    ended_by_probe,
    esc,
    esc_reason,
    halted_by,
    mention,
    observation_text,
    one_line,
    rejecter,
    said_by,
    slack_date,
    usd,
)
from bot.ids import ActionId, BlockId, CallbackId
from bot.strings import escape
from orchestration.enums import PlanStatus, StepStatus


def _help_lines() -> str:
    return "\n".join(
        s.HELP_LINE.format(command=escape(command), what=what) for command, what in s.HELP_COMMANDS
    )


def help_text() -> Rendered:
    """``/incident help``: every subcommand, one line each (ephemeral)."""
    return finish(s.HELP, [section(s.HELP_TITLE), section(_help_lines())])


def help_blocks() -> list[dict[str, Any]]:
    """The blocks of :func:`help_text` (its fallback text is ``strings.HELP``)."""
    return help_text().blocks


def usage_for_unknown(sub: str) -> Rendered:
    """The reply to ``/incident <sub>`` when ``sub`` is no command (ephemeral)."""
    shown = esc(one_line(sub, 100), 200)
    blocks: list[Block] = [section(s.UNKNOWN_SUB.format(sub=shown)), section(_help_lines())]
    return finish(s.UNKNOWN_SUB_FALLBACK.format(sub=shown), blocks)


_DONE_STEP_STATES: Final = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.DENIED, StepStatus.REJECTED}
    | {StepStatus.SKIPPED, StepStatus.COMPENSATED}
)


def _rejecters(steps: Sequence[Payload]) -> set[str]:
    """The user ids that rejected steps of the plan (the people its reasons may mention)."""
    return {
        voter
        for step in steps
        if step.get("error_code") == "rejected" and (voter := rejecter(step.get("error")))
    }


def _status_detail(step: Payload, *, plan_reason: str, people: set[str]) -> str:
    """What to say after a step's status: who rejected it, or its error unless the plan's
    reason (shown once, above the steps) already says it."""
    error = step.get("error")
    if not error:
        return ""
    voter = rejecter(error) if step.get("error_code") == "rejected" else None
    if voter:  # the reason itself is in the plan's reason line
        return s.STATUS_REJECTED_BY.format(voter=mention(voter))
    if said_by(plan_reason, error):
        return ""
    return s.VOTE_REASON.format(reason=esc_reason(error, 300, people=people))


def _status_line(step: Payload, n: int, *, plan_reason: str, people: set[str]) -> str:
    status = str(step.get("status") or "")
    emoji = s.STEP_STATUS_EMOJI.get(status, s.STEP_STATUS_UNKNOWN_EMOJI)
    shown = esc(status.replace("_", " ") or None, 40)
    detail = _status_detail(step, plan_reason=plan_reason, people=people)
    observed = observation_text(step.get("observe"))
    if observed:  # the call worked; what it says about the service is the news
        emoji, shown, detail = s.OBSERVED_EMOJI, observed, ""
    return s.STATUS_STEP.format(
        emoji=emoji,
        n=n,
        title=esc(step.get("title"), 200),
        tool=esc(step.get("tool_action"), 100),
        dot=s.DOT,
        status=shown,
        detail=detail,
    ) + _scope_text(step.get("scope"))


def _scope_text(scope: object) -> str:
    """The authority a running step holds: its action, credentials, the grant's expiry and the
    tokens minted for it (service account and expiry)."""
    if not isinstance(scope, Mapping):
        return ""
    names = [f"`{esc(name, 100)}`" for name in scope.get("credentials") or ()]
    tokens = [
        s.STATUS_SCOPE_MINTED.format(
            account=esc(token.get("service_account"), 200),
            until=slack_date(token.get("expires_at")),
        )
        for token in scope.get("tokens") or ()
        if isinstance(token, Mapping)
    ]
    return s.STATUS_SCOPE.format(
        action=esc(scope.get("tool_action"), 100),
        credentials=s.STATUS_SCOPE_CREDENTIALS.format(names=", ".join(names)) if names else "",
        until=slack_date(scope.get("expires_at")),
    ) + "".join(tokens)


def _breaker_line(breaker: Payload) -> str | None:
    key = esc(breaker.get("key"), 200)
    state = breaker.get("state")
    if state == "open":
        wait = as_float(breaker.get("probe_in_s"))
        since = slack_date(breaker.get("opened_at"))
        if wait is not None and wait > 0:
            return s.BREAKER_OPEN.format(key=key, since=since, wait=math.ceil(wait))
        return s.BREAKER_OPEN_DUE.format(key=key, since=since)
    if state == "half_open":
        return (s.BREAKER_PROBING if breaker.get("probing") else s.BREAKER_HALF_OPEN).format(
            key=key
        )
    return None  # closed: nothing paused


def _breaker_blocks(breakers: Sequence[Payload]) -> list[Block]:
    lines = [line for line in map(_breaker_line, breakers) if line is not None]
    if not lines:
        return []
    return packed(
        lines,
        heading=s.BREAKERS_HEADING,
        more=lambda count: s.MORE_BREAKERS.format(count=count),
    )


def status_blocks(plan_view: Payload, breakers: Sequence[Payload] = ()) -> Rendered:
    """``/incident status``: a plan's steps with status, its spend vs budget, status and reason,
    then a line per circuit breaker that is not closed.

    ``plan_view`` is ``PlanView.model_dump(mode="json")``; each of ``breakers`` is
    ``BreakerView.model_dump(mode="json")``.
    """
    status = str(plan_view.get("status") or "")
    label = s.PLAN_STATUS.get(status) or esc(status, 60)
    if status == PlanStatus.SUCCEEDED and ended_by_probe(mappings(plan_view.get("steps"))):
        label = s.PLAN_NOTHING_TO_DO
    budget = as_float(plan_view.get("budget_usd"))
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
    steps = mappings(plan_view.get("steps"))
    reason = str(plan_view.get("status_reason") or "")
    people = _rejecters(steps) | halted_by(status, reason)
    if reason:
        summary += "\n" + s.STATUS_REASON.format(reason=esc_reason(reason, people=people))
    lines = [
        _status_line(step, n, plan_reason=reason, people=people)
        for n, step in enumerate(steps, start=1)
    ] or [s.NO_STEPS]
    blocks: list[Block] = [
        header(s.STATUS_HEADER),
        section(summary),
        *packed(
            lines,
            heading=s.STEPS_HEADING,
            more=lambda count: s.MORE_STEPS.format(emoji=s.MORE_STEPS_EMOJI, count=count),
        ),
        *_breaker_blocks(breakers),
    ]
    done = sum(1 for step in steps if step.get("status") in _DONE_STEP_STATES)
    text = s.STATUS_FALLBACK.format(status=label, done=done, total=len(steps))
    return finish(text, blocks)


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
            section(s.REJECT_MODAL_INTRO),
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
