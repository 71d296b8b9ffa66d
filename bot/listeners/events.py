"""Events: an ``@opsgate`` mention, or a message in a configured incident channel.

Bolt acknowledges events before their listener runs, so the request is recorded in a listener
middleware, which runs before that ack; the listener then does the recorded work. A retried
or replayed delivery (same ``event_id``) is acknowledged again and does nothing more.

``@opsgate resolve [id] [reason]`` and ``@opsgate cancel ...`` close the incident of the thread
they are typed in (Slack sends slash commands from no thread, mentions from any): by id when
one is given, else the thread's incident, else (outside a thread) the channel's only open one.
The asker hears privately what became of it when it did not close; a close shows in the
incident's thread. ``@opsgate replay [--fail-at ...]`` and ``@opsgate audit`` in a thread post
the replay or the timeline of the thread's incident there (``bot.listeners.debug``).
"""

import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.listeners import debug
from bot.listeners.commands import RecentKeys
from bot.surface import Intake, Surface
from orchestration.closing import split_ref
from orchestration.inbox import Request, RequestKind

_MENTION = re.compile(r"<@[A-Z0-9]+>")
EVENTS = ("app_mention", "message")
REQUEST = "inbox_request"  # context key: the recorded request the listener does

Parse = Callable[[dict[str, Any], AsyncBoltContext], Request | None]


def _request(
    event: dict[str, Any], context: AsyncBoltContext, *, text: str, source: str
) -> Request:
    return Request(
        kind=RequestKind.OPEN,
        requester=str(event.get("user")),
        channel=str(event.get("channel")),
        text=text,
        source=source,
        correlation_id=str(context.get("correlation_id") or ""),
    )


CLOSING = {"resolve": RequestKind.RESOLVE, "cancel": RequestKind.CANCEL}


def mention_request(event: dict[str, Any], context: AsyncBoltContext) -> Request | None:
    """What an ``app_mention`` asks for: a resolve or cancel of its thread's incident, or an
    incident to open (None for a bare mention)."""
    text = _MENTION.sub("", str(event.get("text", ""))).strip()
    if not text:
        return None
    sub, _, rest = text.partition(" ")
    kind = CLOSING.get(sub.lower())
    if kind is None:
        return _request(event, context, text=text, source="mention")
    ref, reason = split_ref(rest)
    thread = event.get("thread_ts")
    return _request(event, context, text=reason, source="mention").model_copy(
        update={
            "kind": kind,
            "incident_ref": ref,
            "thread_ts": str(thread) if thread else None,
        }
    )


def message_request(surface: Surface) -> Parse:
    """The incident a channel message asks for: only in an incident channel, only when a
    runbook recognises it (ordinary conversation opens nothing)."""

    def parse(event: dict[str, Any], context: AsyncBoltContext) -> Request | None:
        channel = str(event.get("channel", ""))
        if (
            channel not in surface.config.slack.incident_channels
            or event.get("subtype")
            or event.get("bot_id")
            or event.get("thread_ts")
        ):
            return None
        text = str(event.get("text", "")).strip()
        if not text or _MENTION.search(text):
            return None  # mentions are handled by app_mention
        if not surface.control.matches(text):
            return None
        return _request(event, context, text=text, source="channel_message")

    return parse


def recorded(surface: Surface, parse: Parse) -> Callable[..., Awaitable[BoltResponse | None]]:
    """Listener middleware: record the event's request before Bolt acknowledges it."""

    async def middleware(
        body: dict[str, Any], context: AsyncBoltContext, next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        request = parse(body.get("event") or {}, context)
        if request is None:
            return BoltResponse(status=200, body="")  # nothing to do; the listener is skipped
        intake = await surface.accept(request, key=str(context["inbox_key"]), context=context)
        if intake is Intake.UNRECORDED:
            return BoltResponse(status=503, body="")  # not acknowledged: Slack delivers it again
        if intake is Intake.REPLAY:
            return BoltResponse(status=200, body="")
        context[REQUEST] = request
        await next()
        return None

    return middleware


def read_only(surface: Surface) -> Callable[..., Awaitable[BoltResponse | None]]:
    """Listener middleware: ``@opsgate replay|audit`` only reads, so it is not recorded in
    the inbox; it is answered once per delivery (a retried one does nothing more)."""
    seen = RecentKeys()

    async def middleware(
        body: dict[str, Any], context: AsyncBoltContext, next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        event = body.get("event") or {}
        found = debug.mention_sub(event)
        if found is None:
            await next()
            return None
        client = context.client
        if client is not None and seen.first(str(context["inbox_key"])):
            work = debug.answer_mention(surface, client, event, *found)
            surface.run(work, name=f"mention-{found[0]}")
        return BoltResponse(status=200, body="")

    return middleware


def register(app: AsyncApp, surface: Surface) -> None:
    """Attach the event listeners."""

    async def run(client: AsyncWebClient, context: AsyncBoltContext) -> None:
        request: Request = context[REQUEST]
        surface.perform(str(context["inbox_key"]), request, client, counted_as=request.source)

    app.event("app_mention", middleware=[read_only(surface), recorded(surface, mention_request)])(
        run
    )
    app.event("message", middleware=[recorded(surface, message_request(surface))])(run)
