"""`users.*`, `usergroups.*` and `conversations.*`: who is in the workspace and what was said."""

from __future__ import annotations

from typing import Any

from bot.sandbox.methods.base import ApiError, Context, lookup, method, paged, require
from bot.sandbox.workspace import NotFound


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
    require(args, "usergroup")
    users = ctx.workspace.usergroups.get(str(args["usergroup"]))
    if users is None:
        raise ApiError("no_such_subteam")
    return {"users": list(users)}


@method("conversations.info")
def conversations_info(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Describe a channel."""
    require(args, "channel")
    return {"channel": lookup(lambda: ctx.workspace.find_channel(str(args["channel"]))).to_api()}


@method("conversations.list")
def conversations_list(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """List channels, paginated by `cursor` and `limit`."""
    channels = [c.to_api() for c in ctx.workspace.channels.values()]
    page, cursor = paged(channels, args, 100)
    return {"channels": page, "response_metadata": {"next_cursor": cursor}}


@method("conversations.members")
def conversations_members(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """List a channel's members, paginated."""
    require(args, "channel")
    channel = lookup(lambda: ctx.workspace.find_channel(str(args["channel"])))
    page, cursor = paged(channel.members, args, 100)
    return {"members": page, "response_metadata": {"next_cursor": cursor}}


@method("conversations.history")
def conversations_history(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """List a channel's top-level messages, newest first."""
    require(args, "channel")
    channel = lookup(lambda: ctx.workspace.find_channel(str(args["channel"])))
    messages = list(reversed(ctx.workspace.top_level(channel.id)))
    if args.get("latest"):
        messages = [m for m in messages if float(m.ts) < float(args["latest"])]
    if args.get("oldest"):
        messages = [m for m in messages if float(m.ts) > float(args["oldest"])]
    page, cursor = paged(messages, args, 100)
    return {
        "messages": [m.to_api() for m in page],
        "has_more": bool(cursor),
        "response_metadata": {"next_cursor": cursor},
    }


@method("conversations.replies")
def conversations_replies(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """List a thread: the parent then its replies, oldest first."""
    require(args, "channel", "ts")
    channel = lookup(lambda: ctx.workspace.find_channel(str(args["channel"])))
    try:
        thread = ctx.workspace.thread(channel.id, str(args["ts"]))
    except NotFound as exc:
        raise ApiError("thread_not_found") from exc
    page, cursor = paged(thread, args, 1000)
    return {
        "messages": [m.to_api() for m in page],
        "has_more": bool(cursor),
        "response_metadata": {"next_cursor": cursor},
    }
