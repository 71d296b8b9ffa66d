"""Slack's text limits and the mrkdwn text helpers: escape, clip, mention, dates, money, time."""

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

from bot import strings as s
from bot.blocks.model import Payload, as_float
from bot.strings import escape

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

# ``approvals.step_error`` writes a rejected step's error as "Rejected by <voter>[: reason]".
_REJECTED_BY: Final = re.compile(r"Rejected by ([UW][A-Z0-9]{1,30})\b")


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


def esc_reason(value: object, limit: int = MAX_REASON, *, people: Iterable[object] = ()) -> str:
    """Like :func:`esc`, but mentions of ``people`` (``<@U123>``) stay live.

    Reasons the control plane composes name the person who acted (``<@U123> rejected ...``)
    and may carry what someone typed (``Reason: ...``). Only the ids the payload says acted
    may be mentioned: a ``<@U999>`` typed into the reason stays text, so nobody can ping a
    third person through opsgate.
    """
    allowed = {p for p in people if isinstance(p, str) and _USER_ID.fullmatch(p)}
    escaped = escape(value)
    if allowed:
        escaped = _ESCAPED_MENTION.sub(lambda m: f"<@{m[1]}>" if m[1] in allowed else m[0], escaped)
    return fit(escaped, limit) or s.NONE


def esc_control(value: object, limit: int = MAX_REASON) -> str:
    """Escaped text the control plane wrote alone (no user text in it): its mentions stay live."""
    return fit(_ESCAPED_MENTION.sub(r"<@\1>", escape(value)), limit) or s.NONE


def actors(payload: Payload, *keys: str) -> set[str]:
    """The user ids a payload names under ``keys`` (default: its ``actor``), for ``people``."""
    return {v for k in (keys or ("actor",)) if isinstance(v := payload.get(k), str)}


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
    amount = as_float(value)
    if amount is None:
        return s.NONE
    return f"${amount:,.2f}" if abs(amount) >= 1 else f"${amount:.4f}"


def duration(ms: object) -> str:
    """``850 ms``, ``2.4 s`` or ``3m 5s``."""
    value = as_float(ms)
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


def plural(count: int) -> str:
    """The plural suffix for ``count``."""
    return "" if count == 1 else "s"


def trace_text(payload: Payload) -> str:
    """The payload's correlation id as a trace note, or "" when it has none; with a ``View
    trace`` link when delivery signed one (``trace_url``)."""
    trace = payload.get("correlation_id")
    if not trace:
        return ""
    url = payload.get("trace_url")
    if isinstance(url, str) and url.startswith(("https://", "http://")) and "|" not in url:
        return s.TRACE_LINKED.format(trace=esc(trace, 100), url=s.escape(url))
    return s.TRACE.format(trace=esc(trace, 100))


def risk_badge(value: object) -> tuple[str, str]:
    """A risk level as ``(emoji, escaped label)``."""
    risk = str(value or "")
    return s.RISK_EMOJI.get(risk, s.RISK_UNKNOWN_EMOJI), esc(risk or None, 40)


def said_by(plan_reason: str, error: object) -> bool:
    """True when a step's error only repeats the plan's reason (shown once, for the plan).

    A rejection reason added later extends the plan's reason, so a skipped step's copy of the
    earlier reason is a prefix of it.
    """
    text = str(error or "").strip()
    return bool(text) and plan_reason.strip().startswith(text)


def ended_by_probe(steps: Iterable[Mapping[str, object]]) -> bool:
    """True when a probe's observation ended the plan (its ``end_if`` saw what it names)."""
    return any(
        isinstance(observe := step.get("observe"), Mapping)
        and bool(observe.get("seen"))
        and observe.get("end_if") == observe.get("seen")
        for step in steps
    )


_LEADING_MENTION: Final = re.compile(r"<@([UW][A-Z0-9]{1,30})>")


def halted_by(status: object, reason: object) -> set[str]:
    """Who a halted plan's reason names first: the person who stopped it.

    Every halt reason is the control plane's sentence (``<@U1> rejected 'x'; the plan is
    halted. Reason: ...``, ``<@U1> stopped the plan while ...``); what a person typed only
    follows it. So the leading mention of a *halted* plan's reason is live, and only it. A
    cancelled plan's reason may be what someone typed, start to end: it gets no live mention.
    """
    if status != "halted" or not isinstance(reason, str):
        return set()
    match = _LEADING_MENTION.match(reason)
    return {match[1]} if match else set()


def rejecter(error: object) -> str | None:
    """The user id in a rejected step's error (``Rejected by U123: ...``), or None."""
    match = _REJECTED_BY.match(error) if isinstance(error, str) else None
    return match[1] if match else None


def _answer(observe: Mapping[str, object]) -> str:
    """What a probe answered, in a few words (``answered 503``, ``exited 1``)."""
    code = observe.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool):
        return s.ANSWERED_EXIT.format(code=code)
    status = observe.get("status")
    if isinstance(status, int) and not isinstance(status, bool):
        return s.ANSWERED_STATUS.format(status=status)
    return s.ANSWERED_OK


def observation_text(observe: object) -> str:
    """A probe's observation (``answered 503: unhealthy``), or "" when it judged nothing.

    ``observe`` is the step's ``observe`` record (``orchestration.observe``): ``seen`` is
    ``healthy`` or ``unhealthy`` once the probe's answer was judged against its ``healthy``
    expectation; ``why`` says what differed; ``status``/``exit_code`` is what it answered.
    """
    if not isinstance(observe, Mapping) or observe.get("seen") not in ("healthy", "unhealthy"):
        return ""
    answer = _answer(observe)
    if observe.get("seen") == "healthy":
        return s.OBSERVED_HEALTHY.format(answer=answer)
    why = observe.get("why")
    detail = s.OBSERVED_WHY.format(why=esc(why, 200)) if why else ""
    return s.OBSERVED_UNHEALTHY.format(answer=answer, why=detail)
