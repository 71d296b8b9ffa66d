"""The Web API methods the sandbox implements, as plain functions over a `Workspace`.

Each handler takes the call's arguments (already merged from query, form or JSON body) and
returns the response body without `"ok"`, or raises `ApiError` carrying Slack's error code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox import limits
from bot.sandbox.workspace import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    Ephemeral,
    NotFound,
    UploadedFile,
    Workspace,
)

_TRIGGER_ID = re.compile(r"^\d+\.\d+\.[0-9a-f]+$")
_MAX_VIEW_STACK = 3


class ApiError(Exception):
    """A refusal as Slack words it: `error`, optional `errors` details, HTTP status and headers."""

    def __init__(
        self,
        error: str,
        *,
        errors: list[str] | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.errors = errors or []
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Render the JSON body Slack returns for this refusal."""
        body: dict[str, Any] = {"ok": False, "error": self.error}
        if self.errors:
            if self.error == "invalid_blocks":
                body["errors"] = list(self.errors)
            body["response_metadata"] = {"messages": [f"[ERROR] {e}" for e in self.errors]}
        return body


@dataclass
class Context:
    """What a handler may touch besides its arguments."""

    workspace: Workspace
    root_url: str
    publish: Callable[[dict[str, Any]], None]
    warnings: list[str] = field(default_factory=list)


Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]
METHODS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    """Register a handler under a Web API method name."""

    def register(handler: Handler) -> Handler:
        METHODS[name] = handler
        return handler

    return register


def _require(args: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if args.get(n) in (None, "")]
    if missing:
        raise ApiError(
            "invalid_arguments", errors=[f"missing required field: {n}" for n in missing]
        )


def _json_arg(args: dict[str, Any], name: str, *, error: str) -> Any:
    value = args.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ApiError(error) from exc
    return value


def _int_arg(args: dict[str, Any], name: str, default: int) -> int:
    try:
        return int(args.get(name) or default)
    except (TypeError, ValueError) as exc:
        raise ApiError("invalid_arguments", errors=[f"must be an integer: {name}"]) from exc


def _lookup(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except NotFound as exc:
        raise ApiError(str(exc.args[0])) from exc


def _content(ctx: Context, args: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
    """Validate a message's text and blocks; return what Slack would store."""
    blocks = _json_arg(args, "blocks", error="invalid_blocks_format")
    text = args.get("text")
    refusal = limits.message_refusal(text, blocks)
    if refusal is not None:
        raise ApiError(refusal.error, errors=refusal.errors)
    text = text or ""
    if len(text) > limits.TEXT_ADVISED:
        ctx.warnings.append(f"text of {len(text)} characters; Slack advises at most 4000")
    return text[: limits.TEXT_LIMIT], blocks


def _truncation(args: dict[str, Any]) -> dict[str, Any]:
    warnings = limits.message_warnings(args.get("text"))
    if not warnings:
        return {}
    note = "[WARN] Your message was truncated but still posted."
    return {"response_metadata": {"warnings": warnings, "messages": [note]}}


def _paged(items: list[Any], args: dict[str, Any], default: int) -> tuple[list[Any], str]:
    start = _int_arg(args, "cursor", 0)
    limit = _int_arg(args, "limit", default) or default
    page = items[start : start + limit]
    return page, str(start + limit) if start + limit < len(items) else ""


@method("auth.test")
def auth_test(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Identify the bot, as Slack does for a valid bot token."""
    return {
        "url": ctx.root_url,
        "team": "Sandbox",
        "user": "opsgate",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "is_enterprise_install": False,
    }


@method("chat.postMessage")
def chat_post_message(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Post a message or a thread reply."""
    if not args.get("channel"):
        raise ApiError("channel_not_found")
    text, blocks = _content(ctx, args)
    channel = ctx.workspace.channel(str(args["channel"]))
    thread_ts = args.get("thread_ts") or None
    if thread_ts is not None and not any(
        m.ts == thread_ts for m in ctx.workspace.history[channel.id]
    ):
        ctx.warnings.append(f"thread_ts {thread_ts} names no message in {channel.id}")
    message = ctx.workspace.post(
        channel.id, user=BOT_USER_ID, text=text, blocks=blocks, thread_ts=thread_ts
    )
    ctx.publish({"type": "message_posted", "channel": channel.id, "message": message.to_api()})
    return {"channel": channel.id, "ts": message.ts, "message": message.to_api()} | _truncation(
        args
    )


@method("chat.update")
def chat_update(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Edit one of the bot's messages in place."""
    if not args.get("channel"):
        raise ApiError("channel_not_found")
    if not args.get("ts"):
        raise ApiError("message_not_found")
    channel = _lookup(lambda: ctx.workspace.find_channel(str(args["channel"])))
    message = _lookup(lambda: ctx.workspace.message(channel.id, str(args["ts"])))
    if message.user != BOT_USER_ID:
        raise ApiError("cant_update_message")
    text, blocks = _content(ctx, args)
    ctx.workspace.update(
        message, text=text if args.get("text") is not None else None, blocks=blocks
    )
    ctx.publish({"type": "message_updated", "channel": channel.id, "message": message.to_api()})
    body = {"channel": channel.id, "ts": message.ts, "text": message.text}
    return body | {"message": message.to_api()} | _truncation(args)


@method("chat.postEphemeral")
def chat_post_ephemeral(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Show a message to one user in a channel."""
    if not args.get("channel"):
        raise ApiError("channel_not_found")
    _require(args, "user")
    user = str(args["user"])
    if user not in ctx.workspace.users:
        raise ApiError("user_not_found")
    channel = ctx.workspace.channel(str(args["channel"]))
    if channel.members and user not in channel.members:
        raise ApiError("user_not_in_channel")
    text, blocks = _content(ctx, args)
    ephemeral = _store_ephemeral(
        ctx,
        channel_id=channel.id,
        user=user,
        text=text,
        blocks=blocks,
        thread_ts=args.get("thread_ts") or None,
    )
    return {"message_ts": ephemeral["ts"]}


def _store_ephemeral(
    ctx: Context,
    *,
    channel_id: str,
    user: str,
    text: str,
    blocks: list[dict[str, Any]] | None,
    thread_ts: str | None,
) -> dict[str, Any]:
    """Store an ephemeral message and announce it."""
    record = Ephemeral(channel_id, user, ctx.workspace.next_ts(), text, blocks, thread_ts)
    ctx.workspace.ephemeral.setdefault(user, []).append(record)
    event = {"channel": channel_id, "user": user, "ts": record.ts, "text": text, "blocks": blocks}
    ctx.publish({"type": "ephemeral_posted", **event})
    return event


@method("chat.getPermalink")
def chat_get_permalink(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Return a link to a message."""
    _require(args, "channel", "message_ts")
    channel = _lookup(lambda: ctx.workspace.find_channel(str(args["channel"])))
    message = _lookup(lambda: ctx.workspace.message(channel.id, str(args["message_ts"])))
    link = f"{ctx.root_url}archives/{channel.id}/p{message.ts.replace('.', '')}"
    if message.thread_ts and message.thread_ts != message.ts:
        link += f"?thread_ts={message.thread_ts}&cid={channel.id}"
    return {"channel": channel.id, "permalink": link}


def _view_arg(args: dict[str, Any]) -> dict[str, Any]:
    view = _json_arg(args, "view", error="invalid_arguments")
    errors = limits.check_view(view)
    if errors:
        raise ApiError("invalid_arguments", errors=errors)
    assert isinstance(view, dict)
    return view


def _check_trigger(args: dict[str, Any]) -> None:
    _require(args, "trigger_id")
    if not _TRIGGER_ID.match(str(args["trigger_id"])):
        raise ApiError("invalid_trigger_id")


def _store_view(
    ctx: Context, view: dict[str, Any], *, view_id: str | None = None, root: str | None = None
) -> dict[str, Any]:
    view_id = view_id or ctx.workspace.next_id("V")
    stored = {
        **view,
        "id": view_id,
        "team_id": TEAM_ID,
        "app_id": APP_ID,
        "bot_id": BOT_ID,
        "hash": ctx.workspace.next_ts(),
        "root_view_id": root or view_id,
        "state": {"values": {}},
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "blocks": ctx.workspace.with_block_ids(view.get("blocks")),
    }
    ctx.workspace.views[view_id] = stored
    ctx.publish({"type": "view_opened", "view": stored})
    return {"view": stored}


@method("views.open")
def views_open(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Open a modal for the user who caused `trigger_id`."""
    _check_trigger(args)
    return _store_view(ctx, _view_arg(args))


@method("views.push")
def views_push(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Push a modal on top of the open one (at most three deep)."""
    _check_trigger(args)
    view = _view_arg(args)
    stack = [v for v in ctx.workspace.views.values() if v.get("type") == "modal"]
    if stack:
        root = stack[-1]["root_view_id"]
        depth = sum(1 for v in stack if v["root_view_id"] == root)
        if depth >= _MAX_VIEW_STACK:
            raise ApiError("push_limit_reached")
        return _store_view(ctx, view, root=root)
    return _store_view(ctx, view)


@method("views.update")
def views_update(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Replace an open view, refusing a stale `hash`."""
    view = _view_arg(args)
    view_id = args.get("view_id")
    if not view_id and args.get("external_id"):
        matches = [
            k for k, v in ctx.workspace.views.items() if v.get("external_id") == args["external_id"]
        ]
        view_id = matches[-1] if matches else None
    if not view_id:
        raise ApiError("invalid_arguments", errors=["missing required field: view_id"])
    old = ctx.workspace.views.get(str(view_id))
    if old is None:
        raise ApiError("not_found")
    if args.get("hash") and args["hash"] != old["hash"]:
        raise ApiError("hash_conflict")
    return _store_view(ctx, view, view_id=old["id"], root=old["root_view_id"])


@method("users.info")
def users_info(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Describe a known user."""
    user = ctx.workspace.users.get(str(args.get("user") or ""))
    if user is None:
        raise ApiError("user_not_found")
    return {"user": user}


@method("usergroups.users.list")
def usergroups_users_list(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """List the members of a user group."""
    _require(args, "usergroup")
    users = ctx.workspace.usergroups.get(str(args["usergroup"]))
    if users is None:
        raise ApiError("no_such_subteam")
    return {"users": list(users)}


@method("conversations.info")
def conversations_info(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Describe a channel."""
    _require(args, "channel")
    return {"channel": _lookup(lambda: ctx.workspace.find_channel(str(args["channel"]))).to_api()}


@method("conversations.list")
def conversations_list(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """List channels, paginated by `cursor` and `limit`."""
    channels = [c.to_api() for c in ctx.workspace.channels.values()]
    page, cursor = _paged(channels, args, 100)
    return {"channels": page, "response_metadata": {"next_cursor": cursor}}


@method("conversations.members")
def conversations_members(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """List a channel's members, paginated."""
    _require(args, "channel")
    channel = _lookup(lambda: ctx.workspace.find_channel(str(args["channel"])))
    page, cursor = _paged(channel.members, args, 100)
    return {"members": page, "response_metadata": {"next_cursor": cursor}}


@method("conversations.history")
def conversations_history(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """List a channel's top-level messages, newest first."""
    _require(args, "channel")
    channel = _lookup(lambda: ctx.workspace.find_channel(str(args["channel"])))
    messages = list(reversed(ctx.workspace.top_level(channel.id)))
    if args.get("latest"):
        messages = [m for m in messages if float(m.ts) < float(args["latest"])]
    if args.get("oldest"):
        messages = [m for m in messages if float(m.ts) > float(args["oldest"])]
    page, cursor = _paged(messages, args, 100)
    return {
        "messages": [m.to_api() for m in page],
        "has_more": bool(cursor),
        "response_metadata": {"next_cursor": cursor},
    }


@method("conversations.replies")
def conversations_replies(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """List a thread: the parent then its replies, oldest first."""
    _require(args, "channel", "ts")
    channel = _lookup(lambda: ctx.workspace.find_channel(str(args["channel"])))
    try:
        thread = ctx.workspace.thread(channel.id, str(args["ts"]))
    except NotFound as exc:
        raise ApiError("thread_not_found") from exc
    page, cursor = _paged(thread, args, 1000)
    return {
        "messages": [m.to_api() for m in page],
        "has_more": bool(cursor),
        "response_metadata": {"next_cursor": cursor},
    }


@method("files.upload")
def files_upload(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Slack retired files.upload for new apps; the v2 flow replaces it."""
    raise ApiError("method_deprecated")


@method("files.getUploadURLExternal")
def files_get_upload_url(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Reserve a file id and hand out the URL its bytes go to."""
    _require(args, "filename", "length")
    length = _int_arg(args, "length", 0)
    if length <= 0:
        raise ApiError("invalid_arguments", errors=["must be greater than 0: length"])
    file = UploadedFile(
        id=ctx.workspace.next_id("F"), filename=str(args["filename"]), length=length
    )
    ctx.workspace.files[file.id] = file
    return {"upload_url": f"{ctx.root_url}upload/v1/{file.id}", "file_id": file.id}


@method("files.completeUploadExternal")
def files_complete_upload(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Finish uploads and share them to a channel or thread."""
    _require(args, "files")
    entries = _json_arg(args, "files", error="invalid_arguments")
    if not isinstance(entries, list) or not entries:
        raise ApiError("invalid_arguments", errors=["must provide at least 1 items: files"])
    shared = []
    for entry in entries:
        file = ctx.workspace.files.get(str(entry.get("id")) if isinstance(entry, dict) else "")
        if file is None or file.data is None:
            raise ApiError("file_not_found")
        file.title = entry.get("title") or file.filename
        shared.append(file.to_api())
    channel_ref = args.get("channel_id") or (str(args.get("channels") or "").split(",")[0] or None)
    if channel_ref:
        channel = ctx.workspace.channel(str(channel_ref))
        message = ctx.workspace.post(
            channel.id,
            user=BOT_USER_ID,
            text=str(args.get("initial_comment") or ""),
            thread_ts=args.get("thread_ts") or None,
            files=shared,
        )
        ctx.publish({"type": "message_posted", "channel": channel.id, "message": message.to_api()})
    return {"files": shared}
