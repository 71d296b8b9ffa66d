"""Answers scoped to one incident: what a resolve or cancel did or would do, and the channel's
open incidents (``/incident status``). Pure: payloads in, text and blocks out.

A close payload is ``orchestration.closing.Assessment.detail()`` plus ``action`` (``resolve``
or ``cancel``); an incident in it is ``Summary.as_json()``.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from bot import strings as s
from bot.blocks.layout import context, finish, section
from bot.blocks.model import Payload, Rendered, mappings
from bot.blocks.text import MAX_BLOCKS, esc, esc_reason, slack_date

MAX_LINES = 10


def incident_ref(incident: Mapping[str, Any] | None) -> str:
    """``ab12cd34`` (checkout-api is down), escaped."""
    incident = incident or {}
    return s.INCIDENT_REF.format(
        short=esc(incident.get("short"), 40), text=esc(incident.get("text"), 200)
    )


def _action(payload: Payload) -> str:
    action = str(payload.get("action") or "resolve")
    return action if action in s.CLOSE_VERB else "resolve"


def _choices(payload: Payload, action: str) -> str:
    lines = [
        s.WHICH_LINE.format(
            action=action, short=esc(c.get("short"), 40), text=esc(c.get("text"), 200)
        )
        for c in mappings(payload.get("candidates"))[:MAX_LINES]
    ]
    ref = payload.get("ref")
    count = len(mappings(payload.get("candidates")))
    heading = (
        s.WHICH_ID.format(count=count, ref=esc(ref, 40))
        if ref
        else s.WHICH_INCIDENT.format(count=count)
    )
    return "\n".join([heading, *lines])


def _no_such(payload: Payload, action: str) -> str:
    ref = payload.get("ref")
    if ref:
        return s.NO_SUCH_INCIDENT.format(ref=esc(ref, 40))
    return s.NOT_AN_INCIDENT_THREAD.format(action=action)


def _about(payload: Payload, action: str, outcome: str) -> str:
    incident = payload.get("incident")
    found = incident if isinstance(incident, Mapping) else {}
    ref = incident_ref(found)
    if outcome == "closed":
        return s.CLOSING[action].format(incident=ref)
    if outcome == "already_closed":
        return s.ALREADY_CLOSED.format(incident=ref, status=esc(found.get("status"), 40))
    return s.CLOSE_REFUSED.format(
        action=action, incident=ref, reason=esc_reason(payload.get("reason"))
    )


def close_answer(payload: Payload) -> str:
    """The plain words of a resolve or cancel's outcome (mrkdwn, user text escaped)."""
    outcome = str(payload.get("outcome") or "")
    action = _action(payload)
    if outcome in ("closed", "already_closed", "close_refused"):
        return _about(payload, action, outcome)
    if outcome == "which_incident":
        return _choices(payload, action)
    if outcome == "no_such_incident":
        return _no_such(payload, action)
    return s.NO_OPEN_INCIDENT


def open_list(items: Sequence[Payload]) -> Rendered:
    """``/incident status`` with several open incidents: one line each, newest first.

    Each item is ``Summary.as_json()`` plus ``created_at`` (ISO) and ``plan_status``.
    """
    lines = [
        s.OPEN_LIST_LINE.format(
            short=esc(item.get("short"), 40),
            text=esc(item.get("text"), 200),
            dot=s.DOT,
            status=s.PLAN_STATUS.get(str(item.get("plan_status") or ""))
            or esc(item.get("plan_status"), 40),
            when=slack_date(item.get("created_at")),
        )
        for item in items[:MAX_LINES]
    ]
    if len(items) > MAX_LINES:
        lines.append(s.OPEN_LIST_MORE)
    heading = s.OPEN_LIST_HEADING.format(count=len(items))
    blocks = [section(heading), section("\n".join(lines)), context(s.OPEN_LIST_HINT)]
    return finish(heading + "\n" + "\n".join(lines), list(blocks))


def with_incident(rendered: Rendered, incident: Payload) -> Rendered:
    """A plan's status answer, headed by the incident it belongs to."""
    line = s.STATUS_INCIDENT.format(
        incident=incident_ref(incident),
        dot=s.DOT,
        status=s.INCIDENT_STATUS.get(str(incident.get("status") or ""))
        or esc(incident.get("status"), 40),
    )
    blocks = [section(line).to_dict(), *rendered.blocks][:MAX_BLOCKS]
    return Rendered(text=f"{line}\n{rendered.text}", blocks=blocks)
