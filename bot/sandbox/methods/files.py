"""`files.*`: the v2 upload flow (reserve a URL, upload the bytes, complete and share)."""

from __future__ import annotations

from typing import Any

from bot.sandbox.methods.base import ApiError, Context, int_arg, json_arg, method, require
from bot.sandbox.workspace import BOT_USER_ID, UploadedFile


@method("files.upload")
def files_upload(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Slack retired files.upload for new apps; the v2 flow replaces it."""
    raise ApiError("method_deprecated")


@method("files.getUploadURLExternal")
def files_get_upload_url(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Reserve a file id and hand out the URL its bytes go to."""
    require(args, "filename", "length")
    length = int_arg(args, "length", 0)
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
    require(args, "files")
    entries = json_arg(args, "files", error="invalid_arguments")
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
