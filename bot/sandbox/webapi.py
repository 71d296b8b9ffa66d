"""`FakeSlack`: an aiohttp server that answers Slack Web API calls the way Slack does.

Point `slack_sdk`'s `AsyncWebClient(base_url=...)` at `await fake.start()`. Requests are
accepted as query string, form or JSON bodies, authenticated by bearer token (or a `token`
argument), checked against Slack's documented limits and recorded in `calls`. Tests can inject
rate limiting (`fail_next`, `rate_limit_per_channel`) and outages (`outage`).

Socket Mode: `apps.connections.open` (app-level `xapp-` token only) returns a `ws://` URL on
this same server. A client connecting there gets Slack's `hello`; `await fake.socket_send(...)`
then delivers an envelope (`slash_commands`, `interactive`, `events_api`) and returns the
client's acknowledgement, the way Slack's Socket Mode does.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from aiohttp import WSCloseCode, WSMsgType, web

from bot.sandbox.methods import APP_LEVEL_METHODS, METHODS, SOCKET_PATH, ApiError, Context
from bot.sandbox.workspace import APP_ID, Ephemeral, Message, Workspace

DEFAULT_TOKEN = "xoxb-sandbox-token"  # noqa: S105 - a fixed fake token, never a real credential
DEFAULT_APP_TOKEN = "xapp-sandbox-token"  # noqa: S105 - the fake's app-level token (Socket Mode)
ENVELOPE_TYPES = ("slash_commands", "interactive", "events_api")


class Call(NamedTuple):
    """One request the fake received: the method and its merged arguments."""

    method: str
    args: dict[str, Any]


class _Fault(NamedTuple):
    remaining: int
    status: int
    retry_after: int


class FakeSlack:
    """An in-memory Slack workspace behind a local Web API server."""

    def __init__(
        self,
        *,
        tokens: tuple[str, ...] = (DEFAULT_TOKEN,),
        app_tokens: tuple[str, ...] = (DEFAULT_APP_TOKEN,),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = set(tokens)
        self.app_tokens = set(app_tokens)
        self.workspace = Workspace()
        self.calls: list[Call] = []
        self.warnings: list[str] = []
        self._clock = clock
        self._faults: dict[str, _Fault] = {}
        self._outage = False
        self._channel_rate: float | None = None
        self._channel_burst = 1
        self._buckets: dict[str, tuple[float, float]] = {}
        self._subscribers: list[asyncio.Queue[dict[str, Any]]] = []
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._runner: web.AppRunner | None = None
        self._root_url = "http://127.0.0.1/"
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_connected = asyncio.Event()
        self._pending_acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.envelopes: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/api/{method}", self._handle_api)
        self.app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        self.app.router.add_get(SOCKET_PATH, self._handle_socket)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on `host:port` (0 = any free port); return the Web API base URL."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        bound_port = server.sockets[0].getsockname()[1]
        self._root_url = f"http://{host}:{bound_port}/"
        return f"{self._root_url}api/"

    async def stop(self) -> None:
        """Stop serving (Socket Mode connections are closed first); state stays readable."""
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """The Web API base URL (valid after `start`)."""
        return f"{self._root_url}api/"

    # -- test controls -------------------------------------------------------------------------

    def add_user(self, user_id: str, *, name: str, real_name: str | None = None) -> None:
        """Make `users.info` know `user_id`."""
        self.workspace.add_user(user_id, name=name, real_name=real_name)

    def add_usergroup(self, usergroup_id: str, users: list[str]) -> None:
        """Make `usergroups.users.list` answer for `usergroup_id`."""
        self.workspace.usergroups[usergroup_id] = list(users)

    def add_channel(self, name: str, *, members: list[str] | None = None) -> str:
        """Create a channel; return its id."""
        return self.workspace.add_channel(name, members=members).id

    def fail_next(
        self, method: str, n: int = 1, *, status: int = 429, retry_after: int = 1
    ) -> None:
        """Refuse the next `n` calls of `method` with HTTP `status` (429 = Slack rate limiting)."""
        self._faults[method] = _Fault(n, status, retry_after)

    def outage(self, on: bool) -> None:
        """While on, every call gets HTTP 503."""
        self._outage = on

    def rate_limit_per_channel(
        self, on: bool = True, *, per_second: float = 1.0, burst: int = 1
    ) -> None:
        """Refuse `chat.postMessage` past `per_second` per channel after `burst`, like Slack."""
        self._channel_rate = per_second if on else None
        self._channel_burst = burst
        self._buckets.clear()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """Return a queue receiving every posted, updated or ephemeral message and view."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop feeding `queue`."""
        self._subscribers.remove(queue)

    def listen(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call `callback` synchronously with every event, before any subscriber queue sees it.

        Events of `views.open` and `views.push` carry the call's `trigger_id`, so a listener can
        tell whose click opened the view.
        """
        self._listeners.append(callback)

    def publish(self, event: dict[str, Any]) -> None:
        """Announce `event` to listeners and subscribers (the browser sandbox's own changes)."""
        self._publish(event)

    # -- Socket Mode ---------------------------------------------------------------------------

    @property
    def socket_connections(self) -> int:
        """How many Socket Mode clients are connected now."""
        return len(self._sockets)

    async def wait_for_socket(self, within_s: float = 10.0) -> None:
        """Return once a Socket Mode client is connected; `TimeoutError` after `within_s`."""
        async with asyncio.timeout(within_s):
            await self._socket_connected.wait()

    async def socket_send(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        ack_within_s: float = 3.0,
    ) -> dict[str, Any] | None:
        """Deliver `payload` in a Socket Mode envelope; return the client's ack, None on timeout.

        `payload` is what HTTP mode would carry: the slash command's form fields as a dict, the
        interactivity `payload` dict, or the Events API `event_callback` body. Like Slack, the
        envelope goes to the newest connection, and `accepts_response_payload` defaults to true
        for slash commands and non-`block_actions` interactivity. The ack is
        `{"envelope_id": ..., "payload": ...}` as the client sent it.
        """
        if envelope_type not in ENVELOPE_TYPES:
            raise ValueError(f"envelope type must be one of {ENVELOPE_TYPES}: {envelope_type!r}")
        if not self._sockets:
            raise RuntimeError("no Socket Mode client is connected")
        if accepts_response_payload is None:
            accepts_response_payload = envelope_type == "slash_commands" or (
                envelope_type == "interactive" and payload.get("type") != "block_actions"
            )
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        ack: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending_acks[envelope_id] = ack
        self.envelopes.append(envelope)
        try:
            await self._sockets[-1].send_json(envelope)
            return await asyncio.wait_for(ack, ack_within_s)
        except TimeoutError:
            return None
        finally:
            self._pending_acks.pop(envelope_id, None)

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Send Slack's `disconnect` message to every client (they reconnect on their own)."""
        for ws in list(self._sockets):
            await ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "sandbox"}}
            )

    # -- inspection ----------------------------------------------------------------------------

    def messages(self, channel: str) -> list[Message]:
        """Top-level messages of a channel (id or name), oldest first."""
        return self.workspace.top_level(self.workspace.find_channel(channel).id)

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The thread rooted at `ts`: parent first, then replies."""
        return self.workspace.thread(self.workspace.find_channel(channel).id, ts)

    def ephemerals(self, user: str) -> list[Ephemeral]:
        """Ephemeral messages shown to `user`, oldest first."""
        return list(self.workspace.ephemeral.get(user, []))

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        """Arguments of every call to `method`, in order."""
        return [call.args for call in self.calls if call.method == method]

    # -- HTTP ----------------------------------------------------------------------------------

    def _publish(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            listener(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            args = await _read_args(request)
        except ApiError as exc:
            return _json(exc.body(), status=exc.status)
        token = _bearer(request) or args.pop("token", None)
        self.calls.append(Call(method, args))
        try:
            return _json({"ok": True, **self._dispatch(method, args, token)})
        except ApiError as exc:
            return _json(exc.body(), status=exc.status, headers=exc.headers)

    def _dispatch(self, method: str, args: dict[str, Any], token: object) -> dict[str, Any]:
        if self._outage:
            raise ApiError("service_unavailable", status=503)
        self._take_fault(method)
        handler = METHODS.get(method)
        if handler is None:
            raise ApiError("unknown_method")
        if not token:
            raise ApiError("not_authed")
        allowed, other = (
            (self.app_tokens, self.tokens)
            if method in APP_LEVEL_METHODS
            else (self.tokens, self.app_tokens)
        )
        if token not in allowed:
            raise ApiError("not_allowed_token_type" if token in other else "invalid_auth")
        if method == "chat.postMessage" and args.get("channel"):
            self._take_channel_slot(str(args["channel"]))
        publish = self._publish
        if method in ("views.open", "views.push"):
            trigger_id = str(args.get("trigger_id") or "")

            def publish(event: dict[str, Any]) -> None:
                self._publish({**event, "trigger_id": trigger_id})

        ctx = Context(self.workspace, self._root_url, publish, self.warnings, self._tickets)
        return handler(ctx, args)

    def _take_fault(self, method: str) -> None:
        fault = self._faults.get(method)
        if fault is None:
            return
        if fault.remaining <= 1:
            del self._faults[method]
        else:
            self._faults[method] = fault._replace(remaining=fault.remaining - 1)
        if fault.status == 429:
            raise ApiError(
                "ratelimited", status=429, headers={"Retry-After": str(fault.retry_after)}
            )
        raise ApiError(
            "internal_error" if fault.status >= 500 else "request_failed", status=fault.status
        )

    def _take_channel_slot(self, channel: str) -> None:
        # A token bucket per channel: `burst` posts at once, refilled at `per_second`.
        if self._channel_rate is None:
            return
        now = self._clock()
        tokens, last = self._buckets.get(channel, (float(self._channel_burst), now))
        tokens = min(float(self._channel_burst), tokens + (now - last) * self._channel_rate)
        if tokens < 1:
            self._buckets[channel] = (tokens, now)
            raise ApiError("ratelimited", status=429, headers={"Retry-After": "1"})
        self._buckets[channel] = (tokens - 1, now)

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:  # tickets are single-use, as Slack's are
            return web.Response(status=401, text="invalid or already used ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse()  # autoping answers the client's keep-alive pings
        await ws.prepare(request)
        self._sockets.append(ws)
        self._socket_connected.set()
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": {
                        "host": "sandbox",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": APP_ID},
                }
            )
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._take_ack(message.data)
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self._socket_connected.clear()
        return ws

    def _take_ack(self, data: str) -> None:
        try:
            ack = json.loads(data)
        except ValueError:
            ack = None
        pending = (
            self._pending_acks.get(ack.get("envelope_id", "")) if isinstance(ack, dict) else None
        )
        if pending is None or not isinstance(ack, dict):
            self.warnings.append(f"socket mode: unexpected message from the client: {data[:200]}")
            return
        if not pending.done():
            pending.set_result(ack)

    async def _handle_upload(self, request: web.Request) -> web.Response:
        file = self.workspace.files.get(request.match_info["file_id"])
        if self._outage:
            return web.Response(status=503, text="service unavailable")
        if file is None:
            return web.Response(status=404, text="file not found")
        data = await request.read()
        file.data = data
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")


def _json(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme == "Bearer" else None


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Merge query string and body (form or JSON) into one argument dict, as Slack does."""
    args: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return args
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError as exc:
            raise ApiError("invalid_json") from exc
        if not isinstance(body, dict):
            raise ApiError("invalid_json")
        args.update(body)
    else:
        args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return args
