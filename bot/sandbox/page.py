"""The browser side of the sandbox: the page, its live stream and the actions it posts.

`Page` adds to the fake Slack's server:

- `GET /` (the single-page app, `static/`: plain HTML, CSS and JavaScript, no build step) and
  `GET /sandbox/static/...`.
- `GET /sandbox/state?session=ID`: the workspace as one page load sees it. A page load names
  itself with a random id; its ephemeral messages are those posted since it first asked, since
  Slack keeps no history of them and a reloaded client shows none.
- `GET /sandbox/stream`: Server-Sent Events, one `data:` line per change of the fake Slack.
- `POST /sandbox/command`, `/sandbox/click`, `/sandbox/view_submit`, `/sandbox/view_close`,
  `/sandbox/dismiss`: the page's actions, run by `Sandbox` as the chosen persona; each answers
  with the `Delivery` (JSON), or `{"ok": false, "error": ...}` with a 4xx for a request the
  sandbox cannot act on.
"""

from __future__ import annotations

import asyncio
import collections
import html
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.sandbox.courier import Delivery
from bot.sandbox.personas import Persona

if TYPE_CHECKING:
    from bot.sandbox.ui import Sandbox

STATIC_DIR = Path(__file__).with_name("static")
_SHUTDOWN = {"type": "_sandbox_shutdown"}
_KEEPALIVE_S = 15.0
_MAX_SESSIONS = 256  # page loads remembered; an older one is treated as a fresh load
_MAX_SESSION_ID = 64


class SandboxError(Exception):
    """A page request the sandbox cannot act on (unknown persona, message, button or view)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Page:
    """The routes a browser uses to show and drive one `Sandbox`."""

    def __init__(self, sandbox: Sandbox) -> None:
        """Add the routes to the sandbox's fake Slack (before it starts)."""
        self.sandbox = sandbox
        self._streams: set[asyncio.Queue[dict[str, Any]]] = set()
        self._sessions: collections.OrderedDict[str, float] = collections.OrderedDict()
        app = sandbox.fake.app
        router = app.router
        router.add_get("/", self._page)
        router.add_static("/sandbox/static/", STATIC_DIR, append_version=False)
        router.add_get("/sandbox/state", self._state)
        router.add_get("/sandbox/stream", self._stream)
        router.add_post("/sandbox/command", self._command)
        router.add_post("/sandbox/click", self._click)
        router.add_post("/sandbox/view_submit", self._view_submit)
        router.add_post("/sandbox/view_close", self._view_close)
        router.add_post("/sandbox/dismiss", self._dismiss)
        app.on_shutdown.append(self._end_streams)

    async def _page(self, request: web.Request) -> web.Response:
        template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        chan = self.sandbox.fake.workspace.channels[self.sandbox.channel_id]
        chips = "\n".join(self._chip_html(p, i == 0) for i, p in enumerate(self.sandbox.personas))
        page = (
            template.replace("{{channel}}", html.escape(chan.name))
            .replace("{{workspace}}", html.escape(self.sandbox.workspace_name))
            .replace("{{personas}}", chips)
        )
        return web.Response(
            text=page, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    def _chip_html(self, persona: Persona, active: bool) -> str:
        uid = html.escape(persona.user_id, quote=True)
        color = html.escape(self.sandbox.colors[persona.user_id])
        initial = html.escape(persona.name[:1].upper())
        return (
            f'<button type="button" class="chip{" active" if active else ""}" '
            f'data-testid="persona-{uid}" data-user="{uid}" '
            f'aria-pressed="{"true" if active else "false"}">'
            f'<span class="avatar" style="background:{color}">'
            f"{initial}</span><span class='chip-text'><span class='chip-name'>"
            f"{html.escape(persona.name)}</span><span class='chip-role'>"
            f"{html.escape(persona.role_label)}</span></span></button>"
        )

    async def _state(self, request: web.Request) -> web.Response:
        session = request.query.get("session") or None
        if session is not None and len(session) > _MAX_SESSION_ID:
            return web.json_response({"ok": False, "error": "session id too long"}, status=400)
        since = self._session_start(session) if session is not None else None
        return web.json_response(
            self.sandbox.state(since=since), headers={"Cache-Control": "no-store"}
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue = self.sandbox.fake.subscribe()
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
                data = json.dumps(self.sandbox.client_event(event), default=str)
                await response.write(f"data: {data}\n\n".encode())
        except ConnectionError:
            pass  # the page went away
        finally:
            self._streams.discard(queue)
            self.sandbox.fake.unsubscribe(queue)
        return response

    async def _end_streams(self, app: web.Application) -> None:
        for queue in list(self._streams):
            queue.put_nowait(_SHUTDOWN)

    # -- HTTP: actions -------------------------------------------------------------------------

    async def _command(self, request: web.Request) -> web.Response:
        async def act(data: dict[str, Any]) -> Delivery:
            text = str(data.get("text") or "").strip()
            if not text:
                raise SandboxError("nothing to send")
            user, channel = str(data.get("user")), _opt(data.get("channel"))
            thread_ts = _opt(data.get("thread_ts"))
            if text.startswith("/"):
                return await self.sandbox.slash_command(
                    user, text, channel=channel, thread_ts=thread_ts
                )
            return await self.sandbox.say(user, text, channel=channel, thread_ts=thread_ts)

        return await _act(request, act)

    async def _click(self, request: web.Request) -> web.Response:
        async def act(data: dict[str, Any]) -> Delivery:
            return await self.sandbox.click(
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
            return await self.sandbox.submit_view(
                str(data.get("user")), str(data.get("view_id")), values
            )

        return await _act(request, act)

    async def _view_close(self, request: web.Request) -> web.Response:
        async def act(data: dict[str, Any]) -> Delivery:
            return await self.sandbox.close_view(str(data.get("user")), str(data.get("view_id")))

        return await _act(request, act)

    async def _dismiss(self, request: web.Request) -> web.Response:
        async def act(data: dict[str, Any]) -> Delivery:
            return self.sandbox.dismiss(str(data.get("user")), str(data.get("ts")))

        return await _act(request, act)

    def _session_start(self, session: str) -> float:
        """When the page load `session` first asked (now, for a load not seen before)."""
        start = self._sessions.get(session)
        if start is None:
            start = self._sessions[session] = time.time()
            while len(self._sessions) > _MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return start


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
