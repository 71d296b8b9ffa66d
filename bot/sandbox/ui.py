"""The browser sandbox: use opsgate in a local web page that looks and behaves like Slack.

`Sandbox` wraps a `FakeSlack` and adds browser routes to `fake.app` (create it before
`fake.start()`):

- `GET /` serves the single-page app (`static/`: plain HTML, CSS and JavaScript, no build step).
- `GET /sandbox/state?session=ID` returns the workspace as one page load sees it
  (`Sandbox.state()`): ephemeral messages only from the moment that load first asked, since
  Slack keeps no history of them and a reloaded client shows none.
- `GET /sandbox/stream` is a Server-Sent Events stream: one `data:` line per change (every
  event of `fake.subscribe()`), so the page refreshes live.
- `POST /sandbox/command`, `/sandbox/click`, `/sandbox/view_submit`, `/sandbox/view_close`,
  `/sandbox/dismiss` act as a persona: each builds the request Slack would send the app
  (`signing`), signs it with the app's signing secret and POSTs it to `bot_url`, then shows what
  Slack would show (a slash command's ack as an ephemeral, a modal closed on success). A slash
  command typed in a thread is refused as Slack refuses it ("… is not supported in threads").

Each action answers the page with a `Delivery` (JSON): `ok`, the bot's HTTP `status` (0 when the
bot could not be reached or timed out), `error` (text to show) and `ms`. The same actions are
methods (`slash_command`, `say`, `click`, `submit_view`, `close_view`) for scripts and tests.
"""

from __future__ import annotations

import asyncio
import collections
import html
import json
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from bot.sandbox import signing
from bot.sandbox.responses import ResponseUrls
from bot.sandbox.webapi import FakeSlack
from bot.sandbox.workspace import (
    APP_ID,
    BOT_USER_ID,
    TEAM_ID,
    Channel,
    Ephemeral,
    Message,
    NotFound,
)

STATIC_DIR = Path(__file__).with_name("static")
SLACKBOT_ID = "USLACKBOT"
PALETTE = ("#e8912d", "#2eb67d", "#1d9bd1", "#e01e5a", "#8f5bd6", "#d4a017", "#00a3a3")
_SHUTDOWN = {"type": "_sandbox_shutdown"}
_KEEPALIVE_S = 15.0
_MAX_TEXT = 40_000
_HANDLE = re.compile(r"[^a-z0-9._-]")
_MAX_SESSIONS = 256  # page loads remembered; an older one is treated as a fresh load


@dataclass(frozen=True)
class Persona:
    """Someone the page can act as: a Slack user id, a display name and what they are for."""

    user_id: str
    name: str
    role_label: str
    color: str | None = None

    @property
    def handle(self) -> str:
        """The Slack username: the name's first word, lowercased (`riley`)."""
        first = (self.name.split() or [self.user_id])[0].lower()
        return _HANDLE.sub("", first) or self.user_id.lower()


DEFAULT_PERSONAS: tuple[Persona, ...] = (
    Persona("U0RILEY01", "Riley", "on-call · approver"),
    Persona("U0SAM0002", "Sam", "approver"),
    Persona("U0ALEX003", "Alex", "approver"),
    Persona("U0JORDAN4", "Jordan", "not an approver"),
)


class Delivery(TypedDict, total=False):
    """What happened to one request the sandbox sent the bot, as the page is told."""

    ok: bool
    kind: str
    summary: str
    user: str
    status: int
    ms: float
    error: str | None
    at: float
    body: str
    deliveries: list[Delivery]
    errors: dict[str, str]


class SandboxError(Exception):
    """A page request the sandbox cannot act on (unknown persona, message, button or view)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Sandbox:
    """A browser Slack client for one `FakeSlack` and the bot behind `bot_url`."""

    def __init__(
        self,
        fake: FakeSlack,
        *,
        bot_url: str,
        signing_secret: str,
        personas: list[Persona],
        channel_name: str = "incidents",
        ack_timeout_s: float = 3.0,
        workspace_name: str = "opsgate sandbox",
    ) -> None:
        """Create the channel and the personas' users, and add the browser routes.

        Args:
            fake: The fake Slack whose `app` gets the routes (not started yet).
            bot_url: The bot's `POST /slack/events` URL.
            signing_secret: The app's signing secret (what the bot verifies against).
            personas: Who the page can act as; the first one is the default.
            channel_name: The channel the page opens on.
            ack_timeout_s: How long Slack waits for the bot's HTTP answer (3 s in Slack).
            workspace_name: Shown at the top of the sidebar.
        """
        if not personas:
            raise ValueError("a sandbox needs at least one persona")
        if fake.app.frozen:
            raise RuntimeError("create the Sandbox before fake.start(): routes are added to it")
        self.fake = fake
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.ack_timeout_s = ack_timeout_s
        self.workspace_name = workspace_name
        self.personas = list(personas)
        self.colors = {
            p.user_id: p.color or PALETTE[i % len(PALETTE)] for i, p in enumerate(self.personas)
        }
        self.channel_id = fake.add_channel(channel_name)
        for persona in self.personas:
            fake.add_user(persona.user_id, name=persona.handle, real_name=persona.name)
        fake.workspace.add_user(SLACKBOT_ID, name="slackbot", real_name="Slackbot", is_bot=True)
        self._triggers: dict[str, str] = {}  # trigger_id -> the user whose action made it
        self._view_owner: dict[str, str] = {}  # view id -> user it is open for
        self._seen: dict[str, float] = {}  # message ts -> wall-clock time first seen
        self._ephemeral_from: dict[str, str] = {}  # ephemeral ts -> sender (default: the bot)
        self._sessions: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._deliveries: collections.deque[Delivery] = collections.deque(maxlen=50)
        self._streams: set[asyncio.Queue[dict[str, Any]]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.responses = ResponseUrls(fake, post_ephemeral=self._post_ephemeral)
        fake.listen(self._on_event)
        router = fake.app.router
        router.add_get("/", self._page)
        router.add_static("/sandbox/static/", STATIC_DIR, append_version=False)
        router.add_get("/sandbox/state", self._state)
        router.add_get("/sandbox/stream", self._stream)
        router.add_post("/sandbox/command", self._command)
        router.add_post("/sandbox/click", self._click)
        router.add_post("/sandbox/view_submit", self._view_submit)
        router.add_post("/sandbox/view_close", self._view_close)
        router.add_post("/sandbox/dismiss", self._dismiss)
        fake.app.on_shutdown.append(self._end_streams)
        fake.app.on_cleanup.append(self._close_session)

    # -- public actions ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The page's URL (valid after `fake.start()`)."""
        return self.fake.base_url.removesuffix("api/")

    async def close(self) -> None:
        """Close the HTTP client the sandbox talks to the bot with (also done on fake.stop())."""
        await self._close_session()

    async def slash_command(
        self, user: str, text: str, *, channel: str | None = None, thread_ts: str | None = None
    ) -> Delivery:
        """Type `/command text` as `user`; the bot's ack becomes an ephemeral for `user`.

        Typed in a thread (`thread_ts`), nothing reaches the bot: Slack refuses app slash
        commands in threads and tells the user so, privately, in the thread.
        """
        persona = self._persona(user)
        chan = self._channel(channel)
        command, _, rest = text.strip().partition(" ")
        if thread_ts is not None:
            self._message(chan, thread_ts)
            note = f"{_escape(command)} is not supported in threads. Sorry!"
            self._post_ephemeral(
                chan.id, persona.user_id, note, sender=SLACKBOT_ID, thread_ts=thread_ts
            )
            return Delivery(
                ok=False,
                kind="slash_command",
                summary=text[:200],
                user=persona.user_id,
                status=0,
                ms=0.0,
                error=f"{command} is not supported in threads: type it in the channel",
            )
        trigger_id = self._trigger(persona.user_id)
        body = signing.slash_command_body(
            command=command,
            text=_escape(rest.strip()),
            user_id=persona.user_id,
            channel_id=chan.id,
            trigger_id=trigger_id,
            user_name=persona.handle,
            channel_name=chan.name,
            response_url=self.responses.issue("commands", channel=chan.id, user=persona.user_id),
        )
        delivery = await self._deliver("slash_command", body, user=persona.user_id, summary=text)
        if delivery["ok"]:
            self._show_ack(chan, persona.user_id, delivery.get("body", ""), typed=text.strip())
        else:
            reason = _slack_failure(delivery)
            self._post_ephemeral(
                chan.id,
                persona.user_id,
                f'{_escape(command)} failed with the error "{reason}"',
                sender=SLACKBOT_ID,
            )
        return delivery

    async def say(
        self, user: str, text: str, *, channel: str | None = None, thread_ts: str | None = None
    ) -> Delivery:
        """Post `text` as `user` and deliver the `message` event (and `app_mention` when due)."""
        persona = self._persona(user)
        chan = self._channel(channel)
        stored = self._mentions(_escape(text.strip()))[:_MAX_TEXT]
        if thread_ts is not None:
            self._message(chan, thread_ts)  # a reply to nothing is refused, as Slack's client does
        message = self.fake.workspace.post(
            chan.id, user=persona.user_id, text=stored, thread_ts=thread_ts
        )
        self.fake.publish(
            {"type": "message_posted", "channel": chan.id, "message": message.to_api()}
        )
        event = _message_event(message)
        if message.thread_ts and message.thread_ts != message.ts:
            parent = self.fake.workspace.message(chan.id, message.thread_ts)
            event |= {"thread_ts": message.thread_ts, "parent_user_id": parent.user}
        deliveries = [
            await self._deliver_event(
                event | {"channel_type": "channel"}, user=persona.user_id, summary=text
            )
        ]
        if f"<@{BOT_USER_ID}>" in message.text:
            mention = {k: v for k, v in event.items() if k != "parent_user_id"}
            deliveries.append(
                await self._deliver_event(
                    mention | {"type": "app_mention"}, user=persona.user_id, summary=text
                )
            )
        worst = next((d for d in deliveries if not d["ok"]), deliveries[-1])
        return Delivery(
            ok=all(d["ok"] for d in deliveries),
            kind="message",
            summary=text,
            user=persona.user_id,
            status=worst["status"],
            ms=sum(d["ms"] for d in deliveries),
            error=worst.get("error"),
            deliveries=deliveries,
        )

    async def click(
        self,
        user: str,
        *,
        ts: str,
        action_id: str,
        block_id: str | None = None,
        channel: str | None = None,
    ) -> Delivery:
        """Click the button `action_id` (in `block_id`, when given) of the message at `ts`.

        The payload carries the button's stored `value`, not one the page sends, as in Slack.
        A message only `user` sees (an ephemeral) gets Slack's ephemeral container.
        """
        persona = self._persona(user)
        chan = self._channel(channel)
        ephemeral = False
        api_message: dict[str, Any] | None
        try:
            message = self.fake.workspace.message(chan.id, ts)
            blocks, api_message = message.blocks or [], message.to_api()
            thread_ts = message.thread_ts if message.thread_ts != message.ts else None
        except NotFound:
            mine = [e for e in self.fake.workspace.ephemeral.get(persona.user_id, []) if e.ts == ts]
            if not mine:
                raise SandboxError(f"no message {ts} in #{chan.name}", 404) from None
            blocks, api_message, ephemeral = mine[0].blocks or [], None, True
            thread_ts = mine[0].thread_ts
        found = _find_button(blocks, action_id, block_id)
        if found is None:
            raise SandboxError(f"no button {action_id!r} in message {ts}", 404)
        block, element = found
        body = signing.block_actions_body(
            user_id=persona.user_id,
            channel_id=chan.id,
            action_id=action_id,
            value=str(element.get("value", "")),
            message_ts=ts,
            block_id=str(block.get("block_id", "")),
            trigger_id=self._trigger(persona.user_id),
            message=api_message,
            button_text=str((element.get("text") or {}).get("text", "")),
            is_ephemeral=ephemeral,
            user_name=persona.handle,
            channel_name=chan.name,
            response_url=self.responses.issue(
                "actions",
                channel=chan.id,
                user=persona.user_id,
                message_ts=ts,
                ephemeral=ephemeral,
                thread_ts=thread_ts,
            ),
        )
        label = str((element.get("text") or {}).get("text") or action_id)
        return await self._deliver("block_actions", body, user=persona.user_id, summary=label)

    async def submit_view(
        self, user: str, view_id: str, values: dict[str, dict[str, dict[str, Any]]]
    ) -> Delivery:
        """Submit the modal `view_id` with `state.values`; close it when the bot accepts."""
        persona = self._persona(user)
        view = self._open_view(persona.user_id, view_id)
        body = signing.view_submission_body(
            user_id=persona.user_id,
            view=view,
            values=values,
            trigger_id=self._trigger(persona.user_id),
            user_name=persona.handle,
        )
        title = str((view.get("title") or {}).get("text") or "modal")
        delivery = await self._deliver("view_submission", body, user=persona.user_id, summary=title)
        if delivery["ok"]:
            self._apply_response_action(persona.user_id, view, delivery)
        return delivery

    async def close_view(self, user: str, view_id: str) -> Delivery:
        """Cancel the modal; Slack tells the app (`view_closed`) only when it asked to know."""
        persona = self._persona(user)
        view = self._open_view(persona.user_id, view_id)
        self._close(view_id, persona.user_id)
        if not view.get("notify_on_close"):
            return Delivery(ok=True, kind="view_closed", user=persona.user_id, status=200, ms=0.0)
        payload = {
            "type": "view_closed",
            "team": {"id": TEAM_ID, "domain": signing.TEAM_DOMAIN},
            "user": {"id": persona.user_id, "username": persona.handle, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": signing.VERIFICATION_TOKEN,
            "view": view,
            "is_cleared": False,
            "is_enterprise_install": False,
            "enterprise": None,
        }
        body = urlencode({"payload": json.dumps(payload)})
        return await self._deliver("view_closed", body, user=persona.user_id, summary="cancel")

    def state(self, session: str | None = None) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready data.

        Keys: `workspace`, `bot`, `channel_id` (the default channel), `personas`, `users`,
        `channels` (each with `messages`: top-level messages, each with `replies`, `is_edited`
        and `seen_at`), `ephemerals` and `views` (both keyed by user id), `deliveries`.

        Args:
            session: One page load's id. Its ephemerals are those posted since it first asked:
                Slack keeps no history of ephemeral messages, so a reloaded page (a new id)
                starts without them. None (scripts, tests) lists every ephemeral still held.
        """
        since = self._session_start(session) if session is not None else None
        ws = self.fake.workspace
        channels = []
        for channel in ws.channels.values():
            history = ws.history.get(channel.id, [])
            by_ts = {m.ts: m for m in history}
            replies: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
            top: list[Message] = []
            for m in history:
                if m.thread_ts in (None, m.ts) or m.thread_ts not in by_ts:
                    top.append(m)
                else:
                    replies[str(m.thread_ts)].append(self._message_json(m))
            messages = [self._message_json(m) | {"replies": replies.get(m.ts, [])} for m in top]
            channels.append(channel.to_api() | {"messages": messages})
        views: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for view_id, owner in self._view_owner.items():
            if view_id in ws.views:
                views[owner].append(ws.views[view_id])
        return {
            "workspace": {"name": self.workspace_name, "team_id": TEAM_ID},
            "bot": {"user_id": BOT_USER_ID, "name": "opsgate"},
            "channel_id": self.channel_id,
            "personas": [self._persona_json(p) for p in self.personas],
            "users": {
                uid: {
                    "name": u["name"],
                    "real_name": u["real_name"],
                    "is_bot": u["is_bot"],
                    "color": self.colors.get(uid),
                }
                for uid, u in ws.users.items()
            },
            "channels": channels,
            "ephemerals": {
                user: [
                    self._ephemeral_json(e)
                    for e in items
                    if since is None or self._seen.get(e.ts, 0.0) >= since
                ]
                for user, items in ws.ephemeral.items()
            },
            "views": dict(views),
            "deliveries": list(self._deliveries),
        }

    # -- HTTP: page, state, stream -------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.Response:
        template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        chan = self.fake.workspace.channels[self.channel_id]
        chips = "\n".join(self._chip_html(p, i == 0) for i, p in enumerate(self.personas))
        page = (
            template.replace("{{channel}}", html.escape(chan.name))
            .replace("{{workspace}}", html.escape(self.workspace_name))
            .replace("{{personas}}", chips)
        )
        return web.Response(
            text=page, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    def _chip_html(self, persona: Persona, active: bool) -> str:
        uid = html.escape(persona.user_id, quote=True)
        initial = html.escape(persona.name[:1].upper())
        return (
            f'<button type="button" class="chip{" active" if active else ""}" '
            f'data-testid="persona-{uid}" data-user="{uid}" '
            f'aria-pressed="{"true" if active else "false"}">'
            f'<span class="avatar" style="background:{html.escape(self.colors[persona.user_id])}">'
            f"{initial}</span><span class='chip-text'><span class='chip-name'>"
            f"{html.escape(persona.name)}</span><span class='chip-role'>"
            f"{html.escape(persona.role_label)}</span></span></button>"
        )

    async def _state(self, request: web.Request) -> web.Response:
        session = request.query.get("session") or None
        if session is not None and len(session) > 64:
            return web.json_response({"ok": False, "error": "session id too long"}, status=400)
        return web.json_response(self.state(session), headers={"Cache-Control": "no-store"})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue = self.fake.subscribe()
        self._streams.add(queue)
        try:
            await response.write(b'retry: 1000\ndata: {"type": "hello"}\n\n')
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=_KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event is _SHUTDOWN:
                    break
                data = json.dumps(self._client_event(event), default=str)
                await response.write(f"data: {data}\n\n".encode())
        except ConnectionError:
            pass  # the page went away
        finally:
            self._streams.discard(queue)
            self.fake.unsubscribe(queue)
        return response

    async def _end_streams(self, app: web.Application) -> None:
        for queue in list(self._streams):
            queue.put_nowait(_SHUTDOWN)

    async def _close_session(self, app: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- HTTP: actions -------------------------------------------------------------------------

    async def _command(self, request: web.Request) -> web.Response:
        async def act(data: dict[str, Any]) -> Delivery:
            text = str(data.get("text") or "").strip()
            if not text:
                raise SandboxError("nothing to send")
            user, channel = str(data.get("user")), _opt(data.get("channel"))
            thread_ts = _opt(data.get("thread_ts"))
            if text.startswith("/"):
                return await self.slash_command(user, text, channel=channel, thread_ts=thread_ts)
            return await self.say(user, text, channel=channel, thread_ts=thread_ts)

        return await _act(request, act)

    async def _click(self, request: web.Request) -> web.Response:
        async def act(data: dict[str, Any]) -> Delivery:
            return await self.click(
                str(data.get("user")),
                ts=str(data.get("ts")),
                action_id=str(data.get("action_id")),
                block_id=_opt(data.get("block_id")),
                channel=_opt(data.get("channel")),
            )

        return await _act(request, act)

    async def _view_submit(self, request: web.Request) -> web.Response:
        async def act(data: dict[str, Any]) -> Delivery:
            values = data.get("values") or {}
            if not isinstance(values, dict):
                raise SandboxError("values must be an object: block_id -> action_id -> state")
            return await self.submit_view(str(data.get("user")), str(data.get("view_id")), values)

        return await _act(request, act)

    async def _view_close(self, request: web.Request) -> web.Response:
        async def act(data: dict[str, Any]) -> Delivery:
            return await self.close_view(str(data.get("user")), str(data.get("view_id")))

        return await _act(request, act)

    async def _dismiss(self, request: web.Request) -> web.Response:
        async def act(data: dict[str, Any]) -> Delivery:
            user, ts = self._persona(str(data.get("user"))).user_id, str(data.get("ts"))
            items = self.fake.workspace.ephemeral.get(user, [])
            self.fake.workspace.ephemeral[user] = [e for e in items if e.ts != ts]
            self.fake.publish({"type": "ephemeral_dismissed", "user": user, "ts": ts})
            return Delivery(ok=True, kind="dismiss", user=user, status=200, ms=0.0)

        return await _act(request, act)

    # -- internals -----------------------------------------------------------------------------

    def _persona(self, user: str) -> Persona:
        for persona in self.personas:
            if persona.user_id == user:
                return persona
        raise SandboxError(f"unknown persona {user!r}")

    def _channel(self, ref: str | None) -> Channel:
        try:
            return self.fake.workspace.find_channel(ref or self.channel_id)
        except NotFound:
            raise SandboxError(f"unknown channel {ref!r}", 404) from None

    def _message(self, channel: Channel, ts: str) -> Message:
        try:
            return self.fake.workspace.message(channel.id, ts)
        except NotFound:
            raise SandboxError(f"no message {ts} in #{channel.name}", 404) from None

    def _open_view(self, user: str, view_id: str) -> dict[str, Any]:
        view = self.fake.workspace.views.get(view_id)
        if view is None or self._view_owner.get(view_id) != user:
            raise SandboxError(f"no open view {view_id!r} for {user}", 404)
        return view

    def _session_start(self, session: str) -> float:
        """When the page load `session` first asked (now, for a load not seen before)."""
        start = self._sessions.get(session)
        if start is None:
            start = self._sessions[session] = time.time()
            while len(self._sessions) > _MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return start

    def _trigger(self, user: str) -> str:
        trigger_id = signing.new_trigger_id()
        self._triggers[trigger_id] = user
        return trigger_id

    def _mentions(self, text: str) -> str:
        """Turn `@opsgate` and `@handle` into Slack's `<@U…>`, as the client's autocomplete does."""
        handles = {"opsgate": BOT_USER_ID} | {p.handle: p.user_id for p in self.personas}

        def replace(match: re.Match[str]) -> str:
            user_id = handles.get(match.group(2).lower())
            return f"{match.group(1)}<@{user_id}>" if user_id else match.group(0)

        text = re.sub(r"(^|[\s(])@([A-Za-z0-9._-]+)\b", replace, text)
        return re.sub(r"(^|\s)@(here|channel|everyone)\b", r"\1<!\2>", text)

    def _post_ephemeral(
        self,
        channel_id: str,
        user: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        sender: str = BOT_USER_ID,
        thread_ts: str | None = None,
    ) -> Ephemeral:
        ws = self.fake.workspace
        record = Ephemeral(
            channel_id, user, ws.next_ts(), text, ws.with_block_ids(blocks), thread_ts=thread_ts
        )
        ws.ephemeral.setdefault(user, []).append(record)
        if sender != BOT_USER_ID:
            self._ephemeral_from[record.ts] = sender
        self.fake.publish(
            {
                "type": "ephemeral_posted",
                "channel": channel_id,
                "user": user,
                "ts": record.ts,
                "text": text,
                "blocks": record.blocks,
            }
        )
        return record

    def _show_ack(self, channel: Channel, user: str, body: str, *, typed: str) -> None:
        """Show a slash command's HTTP answer as Slack does: ephemeral unless `in_channel`.

        An empty answer shows nothing. An `in_channel` one shows, as in Slack, the command the
        user typed as their message, then the answer.
        """
        body = body.strip()
        if not body:
            return
        try:
            ack = json.loads(body)
        except ValueError:
            ack = {"text": body}
        if not isinstance(ack, dict):
            ack = {"text": body}
        text = str(ack.get("text") or "")
        blocks = ack.get("blocks") if isinstance(ack.get("blocks"), list) else None
        if not text and not blocks:
            return
        if ack.get("response_type") == "in_channel":
            ws = self.fake.workspace
            for author, said, said_blocks in (
                (user, _escape(typed), None),
                (BOT_USER_ID, text, blocks),
            ):
                message = ws.post(channel.id, user=author, text=said, blocks=said_blocks)
                self.fake.publish(
                    {"type": "message_posted", "channel": channel.id, "message": message.to_api()}
                )
            return
        self._post_ephemeral(channel.id, user, text, blocks=blocks)

    def _apply_response_action(self, user: str, view: dict[str, Any], delivery: Delivery) -> None:
        """Do what the view_submission ack asks (`errors`, `update`, `push`, `clear`) or close."""
        try:
            ack = json.loads(delivery.get("body") or "{}")
        except ValueError:
            ack = {}
        action = ack.get("response_action") if isinstance(ack, dict) else None
        ws = self.fake.workspace
        if action == "errors":
            delivery["errors"] = {str(k): str(v) for k, v in (ack.get("errors") or {}).items()}
        elif action in ("update", "push") and isinstance(ack.get("view"), dict):
            view_id = view["id"] if action == "update" else ws.next_id("V")
            stored = {
                **ack["view"],
                "id": view_id,
                "team_id": TEAM_ID,
                "app_id": APP_ID,
                "hash": ws.next_ts(),
                "root_view_id": view.get("root_view_id") or view["id"],
                "state": {"values": {}},
                "blocks": ws.with_block_ids(ack["view"].get("blocks")),
            }
            ws.views[view_id] = stored
            self._view_owner[view_id] = user
            self.fake.publish({"type": "view_opened", "view": stored})
        elif action == "clear":
            for view_id, owner in list(self._view_owner.items()):
                if owner == user:
                    self._close(view_id, user)
        else:
            self._close(view["id"], user)

    def _close(self, view_id: str, user: str) -> None:
        self._view_owner.pop(view_id, None)
        self.fake.publish({"type": "view_closed", "view_id": view_id, "user": user})

    def _on_event(self, event: dict[str, Any]) -> None:
        """Runs synchronously on every FakeSlack event: timestamps and modal owners."""
        kind = event.get("type")
        now = time.time()
        if kind in ("message_posted", "message_updated"):
            self._seen.setdefault(str(event["message"]["ts"]), now)
        elif kind == "ephemeral_posted":
            self._seen.setdefault(str(event["ts"]), now)
        elif kind == "view_opened":
            view = event["view"]
            view_id = str(view["id"])
            owner = self._triggers.pop(str(event.get("trigger_id") or ""), None)
            owner = owner or self._view_owner.get(view_id)
            owner = owner or self._view_owner.get(str(view.get("root_view_id")))
            if owner is not None:
                self._view_owner[view_id] = owner

    def _client_event(self, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("type") == "view_opened":
            view_id = str(event["view"]["id"])
            return {
                "type": "view_opened",
                "view_id": view_id,
                "user": self._view_owner.get(view_id),
            }
        return event

    def _message_json(self, message: Message) -> dict[str, Any]:
        data = message.to_api()
        data["channel"] = message.channel
        data["is_edited"] = message.edited_ts is not None
        data["seen_at"] = self._seen.get(message.ts)
        return data

    def _ephemeral_json(self, ephemeral: Ephemeral) -> dict[str, Any]:
        return {
            "type": "message",
            "channel": ephemeral.channel,
            "user": self._ephemeral_from.get(ephemeral.ts, BOT_USER_ID),
            "for_user": ephemeral.user,
            "ts": ephemeral.ts,
            "text": ephemeral.text,
            "blocks": ephemeral.blocks,
            "thread_ts": ephemeral.thread_ts,
            "is_ephemeral": True,
            "seen_at": self._seen.get(ephemeral.ts),
        }

    def _persona_json(self, persona: Persona) -> dict[str, Any]:
        return {
            "user_id": persona.user_id,
            "name": persona.name,
            "role_label": persona.role_label,
            "handle": persona.handle,
            "color": self.colors[persona.user_id],
        }

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _deliver_event(self, event: dict[str, Any], *, user: str, summary: str) -> Delivery:
        event_id = f"Ev{secrets.token_hex(5).upper()}"
        body = signing.event_body(event=event, event_id=event_id)
        return await self._deliver(str(event["type"]), body, user=user, summary=summary)

    async def _deliver(self, kind: str, body: str, *, user: str, summary: str) -> Delivery:
        """Sign `body` and POST it to the bot, as Slack does; record and announce the outcome."""
        headers = signing.sign(body, secret=self.signing_secret)
        session = await self._client()
        started = time.perf_counter()
        status, text, error = 0, "", None
        try:
            async with session.post(
                self.bot_url,
                data=body.encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.ack_timeout_s),
            ) as response:
                status, text = response.status, await response.text()
        except TimeoutError:
            error = f"operation_timeout: the bot did not answer within {self.ack_timeout_s:g} s"
        except aiohttp.ClientError as exc:
            error = f"the bot is unreachable at {self.bot_url}: {exc}"
        if error is None and not 200 <= status < 300:
            detail = " ".join(text.split())[:300]
            error = f"the bot answered HTTP {status}" + (f": {detail}" if detail else "")
        delivery = Delivery(
            ok=error is None,
            kind=kind,
            summary=summary[:200],
            user=user,
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 1),
            error=error,
            at=time.time(),
        )
        self._deliveries.append(delivery)
        self.fake.publish({"type": "delivery", **delivery})
        return delivery | Delivery(body=text)


async def _act(
    request: web.Request, act: Callable[[dict[str, Any]], Awaitable[Delivery]]
) -> web.Response:
    """Parse the page's JSON, run `act`, answer with the Delivery (or the refusal)."""
    try:
        data = await request.json()
    except ValueError:
        return web.json_response({"ok": False, "error": "the body must be JSON"}, status=400)
    if not isinstance(data, dict):
        return web.json_response({"ok": False, "error": "the body must be an object"}, status=400)
    try:
        delivery: Delivery = await act(data)
    except SandboxError as exc:
        return web.json_response({"ok": False, "error": str(exc)}, status=exc.status)
    return web.json_response(delivery)


def _opt(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _escape(text: str) -> str:
    """Escape `& < >` as Slack does in the text users type."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _slack_failure(delivery: Delivery) -> str:
    """The error word Slack shows when a slash command's request failed."""
    if delivery["status"] == 0:
        error = delivery.get("error") or ""
        return "operation_timeout" if error.startswith("operation_timeout") else "dispatch_failed"
    return "http_service_error" if delivery["status"] >= 500 else "http_client_error"


def _find_button(
    blocks: list[dict[str, Any]], action_id: str, block_id: str | None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    for block in blocks:
        if block_id is not None and block.get("block_id") != block_id:
            continue
        elements = list(block.get("elements") or [])
        if block.get("accessory"):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("type") == "button" and element.get("action_id") == action_id:
                return block, element
    return None


def _message_event(message: Message) -> dict[str, Any]:
    """The Events API `message` event for a user's message, with its rich_text block."""
    elements: list[dict[str, Any]] = []
    for i, part in enumerate(re.split(r"<@([A-Z0-9]+)>", message.text)):
        if i % 2:
            elements.append({"type": "user", "user_id": part})
        elif part:
            elements.append({"type": "text", "text": _unescape(part)})
    block = {
        "type": "rich_text",
        "block_id": secrets.token_hex(3),
        "elements": [{"type": "rich_text_section", "elements": elements}],
    }
    return {
        "user": message.user,
        "type": "message",
        "ts": message.ts,
        "client_msg_id": str(uuid.uuid4()),
        "text": message.text,
        "team": TEAM_ID,
        "blocks": [block],
        "channel": message.channel,
        "event_ts": message.ts,
    }
