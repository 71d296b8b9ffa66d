"""``/incident replay`` and ``/incident audit``: read the store, answer in the incident's thread.

The ack names the incident and plan (or says what is wrong with the request); the replay or
the timeline is posted to the incident's thread after the ack. Both only read the live store:
a replay runs in a temporary copy (``orchestration.replay``). Slack sends no slash command from
a thread, so the incident is named by id, else it is the channel's only open incident; in
a thread, ``@opsgate replay|audit`` names the thread's incident (see :func:`answer_mention`).
"""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import Session, col, select

from bot import blocks, strings
from bot.blocks.model import Rendered
from bot.surface import Surface
from orchestration import closing
from orchestration.errors import OrchestrationError
from orchestration.models import Incident
from orchestration.replay import FailAt, load_recording, replay
from orchestration.telemetry import get_logger
from orchestration.trail import resolve, timeline

log = get_logger("opsgate.debug")
Later = Callable[[AsyncWebClient], Awaitable[None]]
_MENTION = re.compile(r"<@[A-Z0-9]+>")


@dataclass(frozen=True)
class DebugAnswer:
    """The ack's text, and the post to make after it (None when refused)."""

    text: str
    later: Later | None = None


def parse_replay(rest: str) -> tuple[str | None, FailAt | None, bool]:
    """``[id] [--fail-at STEP[:how]] [--live-readonly]`` -> (ref, fail_at, live_readonly)."""
    words = rest.split()
    ref: str | None = None
    fail_at: FailAt | None = None
    live = False
    while words:
        word = words.pop(0)
        if word == "--live-readonly":
            live = True
        elif word.startswith("--fail-at="):
            fail_at = FailAt.parse(word.removeprefix("--fail-at="))
        elif word == "--fail-at":
            if not words:
                raise OrchestrationError("--fail-at needs STEP[:error|timeout|status=CODE]")
            fail_at = FailAt.parse(words.pop(0))
        elif ref is None and not word.startswith("-"):
            ref = word.lower()
        else:
            raise OrchestrationError(
                f"{word!r} is not understood; use [id] [--fail-at STEP[:how]] [--live-readonly]"
            )
    return ref, fail_at, live


def _incident(session: Session, channel: str, ref: str | None) -> Incident | str:
    """The incident ``ref`` names, else the channel's only open one; or why there is none."""
    if ref:
        found = list(
            session.exec(select(Incident).where(col(Incident.id).startswith(ref)).limit(2))
        )
        if len(found) == 1:
            return found[0]
        return strings.NO_SUCH_INCIDENT.format(ref=ref) if not found else strings.DEBUG_AMBIGUOUS
    open_ = closing.open_incidents(session, channel)
    return open_[0] if len(open_) == 1 else ""


async def find_incident(
    surface: Surface, channel: str, ref: str | None, sub: str
) -> Incident | str:
    """The incident, or the ack text saying why none was found."""
    found = await surface.control.db.run(lambda s: _incident(s, channel, ref))
    return found or strings.DEBUG_WHICH.format(sub=sub)


async def post_to_thread(
    client: AsyncWebClient, incident: Incident, channel: str, rendered: Rendered
) -> None:
    """Post ``rendered`` in the incident's thread (its channel when it has no thread yet)."""
    await client.chat_postMessage(
        channel=incident.channel or channel,
        thread_ts=incident.thread_ts,
        text=rendered.text,
        blocks=rendered.blocks or None,
    )


async def answer_replay(surface: Surface, channel: str, rest: str) -> DebugAnswer:
    """``/incident replay [id] [--fail-at STEP[:how]] [--live-readonly]``."""
    try:
        ref, fail_at, live = parse_replay(rest)
        found = await find_incident(surface, channel, ref, "replay")
        if isinstance(found, str):
            return DebugAnswer(found)
        incident = found
        recording = await surface.control.db.run(lambda s: load_recording(s, incident.id))
        if fail_at is not None:
            fail_at.check(recording.runbook_keys())
    except OrchestrationError as exc:
        return DebugAnswer(strings.REPLAY_FAILED.format(reason=strings.escape(exc.message)))
    control = surface.control

    async def later(client: AsyncWebClient) -> None:
        try:
            report = await replay(
                recording,
                config=control.config,
                tools=control.rt.tools,
                signer=control.rt.signer,
                pack=control.rt.pack,
                fail_at=fail_at,
                live_readonly=live,
            )
            rendered = blocks.replay_blocks(report.as_json())
        except Exception as exc:  # the asker hears why, in the thread
            log.error("replay_failed", plan_id=recording.plan_id, error=repr(exc))
            reason = exc.message if isinstance(exc, OrchestrationError) else type(exc).__name__
            text = strings.REPLAY_FAILED.format(reason=strings.escape(reason))
            rendered = Rendered(text=text, blocks=[])
        await post_to_thread(client, incident, channel, rendered)

    forced = strings.REPLAY_FORCED.format(fail_at=fail_at) if fail_at else ""
    text = strings.REPLAY_STARTED.format(
        plan=recording.plan_id[:12], incident=incident.id[:12], forced=forced
    )
    return DebugAnswer(text, later)


async def answer_audit(surface: Surface, channel: str, rest: str) -> DebugAnswer:
    """``/incident audit [id]``: the incident's timeline, posted to its thread."""
    ref = rest.split(maxsplit=1)[0].lower() if rest.split() else None
    try:
        found = await find_incident(surface, channel, ref, "audit")
        if isinstance(found, str):
            return DebugAnswer(found)
        incident = found

        def read(session: Session) -> list[dict[str, object]]:
            return [e.line() for e in timeline(session, resolve(session, incident.id))]

        entries = await surface.control.db.run(read)
    except OrchestrationError as exc:
        return DebugAnswer(strings.REPLAY_FAILED.format(reason=strings.escape(exc.message)))

    async def later(client: AsyncWebClient) -> None:
        rendered = blocks.audit_blocks(f"incident {incident.id}", entries, ref=incident.id[:12])
        await post_to_thread(client, incident, channel, rendered)

    text = strings.AUDIT_STARTED.format(incident=incident.id[:12], count=len(entries))
    return DebugAnswer(text, later)


MENTION_SUBS = ("replay", "audit")


def mention_sub(event: dict[str, object]) -> tuple[str, str] | None:
    """``@opsgate replay ...`` or ``@opsgate audit ...``: the subcommand and the rest."""
    text = _MENTION.sub("", str(event.get("text", ""))).strip()
    sub, _, rest = text.partition(" ")
    return (sub.lower(), rest.strip()) if sub.lower() in MENTION_SUBS else None


def _thread_incident(session: Session, channel: str, thread_ts: str) -> Incident | None:
    return session.exec(
        select(Incident).where(Incident.channel == channel, Incident.thread_ts == thread_ts)
    ).first()


async def answer_mention(
    surface: Surface, client: AsyncWebClient, event: dict[str, object], sub: str, rest: str
) -> None:
    """``@opsgate replay|audit`` typed in an incident's thread: the same as the slash command
    naming that incident; the answer is private to the asker, the result goes to the thread."""
    channel, user = str(event.get("channel", "")), str(event.get("user", ""))
    thread = event.get("thread_ts")
    incident = (
        await surface.control.db.run(lambda s: _thread_incident(s, channel, str(thread)))
        if thread
        else None
    )
    if incident is None:
        found = DebugAnswer(strings.DEBUG_NOT_IN_THREAD.format(sub=sub))
    else:
        answer = answer_replay if sub == "replay" else answer_audit
        found = await answer(surface, channel, f"{incident.id} {rest}".strip())
    await client.chat_postEphemeral(
        channel=channel, user=user, text=found.text, thread_ts=str(thread) if thread else None
    )
    if found.later is not None:
        await found.later(client)
