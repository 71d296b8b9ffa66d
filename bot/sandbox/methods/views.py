"""`views.*`: open, push and update modals."""

from __future__ import annotations

import re
from typing import Any

from bot.sandbox import limits
from bot.sandbox.methods.base import ApiError, Context, json_arg, method, require
from bot.sandbox.workspace import APP_ID, BOT_ID, TEAM_ID

_TRIGGER_ID = re.compile(r"^\d+\.\d+\.[0-9a-f]+$")

_MAX_VIEW_STACK = 3


def _view_arg(args: dict[str, Any]) -> dict[str, Any]:
    view = json_arg(args, "view", error="invalid_arguments")
    errors = limits.check_view(view)
    if errors:
        raise ApiError("invalid_arguments", errors=errors)
    assert isinstance(view, dict)
    return view


def _check_trigger(args: dict[str, Any]) -> None:
    require(args, "trigger_id")
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
