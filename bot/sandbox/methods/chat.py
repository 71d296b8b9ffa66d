"""`chat.*`: post, update and link messages; ephemeral messages."""

from __future__ import annotations

from typing import Any

from bot.sandbox import limits
from bot.sandbox.methods.base import ApiError, Context, json_arg, lookup, method, require
from bot.sandbox.workspace import BOT_USER_ID, Ephemeral


def _content(ctx: Context, args: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
    """Validate a message's text and blocks; return what Slack would store."""
    blocks = json_arg(args, "blocks", error="invalid_blocks_format")
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
    channel = lookup(lambda: ctx.workspace.find_channel(str(args["channel"])))
    message = lookup(lambda: ctx.workspace.message(channel.id, str(args["ts"])))
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
    require(args, "user")
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
    require(args, "channel", "message_ts")
    channel = lookup(lambda: ctx.workspace.find_channel(str(args["channel"])))
    message = lookup(lambda: ctx.workspace.message(channel.id, str(args["message_ts"])))
    link = f"{ctx.root_url}archives/{channel.id}/p{message.ts.replace('.', '')}"
    if message.thread_ts and message.thread_ts != message.ts:
        link += f"?thread_ts={message.thread_ts}&cid={channel.id}"
    return {"channel": channel.id, "permalink": link}
