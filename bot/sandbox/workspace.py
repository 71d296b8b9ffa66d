"""The sandbox's in-memory Slack workspace: users, channels, messages, views and files.

Pure state with no HTTP: `webapi.FakeSlack` serves it, and a browser sandbox can read it.
Message timestamps are strings like Slack's (`"1700000000.000100"`), strictly increasing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

TEAM_ID = "T0001"
BOT_USER_ID = "U0BOT0001"
BOT_ID = "B0001"
APP_ID = "A0001"
_TS_BASE = 1_700_000_000


class NotFound(LookupError):
    """A channel, message, view or file the workspace does not hold; args[0] is Slack's error."""


@dataclass
class Channel:
    """A conversation; `members` empty means anyone may be addressed in it."""

    id: str
    name: str
    is_private: bool = False
    members: list[str] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        """Render as Slack's conversation object."""
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private,
            "is_group": False,
            "is_im": False,
            "is_private": self.is_private,
            "is_archived": False,
            "is_member": True,
            "created": _TS_BASE,
            "num_members": len(self.members),
        }


@dataclass
class Message:
    """A message in a channel; replies carry the parent's `thread_ts`."""

    channel: str
    ts: str
    user: str
    text: str
    blocks: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    edited_ts: str | None = None
    reply_count: int = 0

    def to_api(self) -> dict[str, Any]:
        """Render as Slack's message object."""
        data: dict[str, Any] = {"type": "message", "user": self.user, "text": self.text}
        data["ts"] = self.ts
        data["team"] = TEAM_ID
        if self.user == BOT_USER_ID:
            data |= {"bot_id": BOT_ID, "app_id": APP_ID}
        if self.blocks is not None:
            data["blocks"] = copy.deepcopy(self.blocks)
        if self.thread_ts is not None:
            data["thread_ts"] = self.thread_ts
        if self.reply_count:
            data["reply_count"] = self.reply_count
        if self.files:
            data["files"] = copy.deepcopy(self.files)
        if self.edited_ts is not None:
            data["edited"] = {"user": self.user, "ts": self.edited_ts}
        return data


@dataclass
class Ephemeral:
    """A message only `user` sees; Slack keeps no history of it."""

    channel: str
    user: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None = None
    thread_ts: str | None = None


@dataclass
class UploadedFile:
    """A file from the upload v2 flow; `data` is None until its bytes arrive."""

    id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str | None = None

    def to_api(self) -> dict[str, Any]:
        """Render as Slack's file object."""
        return {
            "id": self.id,
            "name": self.filename,
            "title": self.title or self.filename,
            "size": len(self.data or b""),
            "user": BOT_USER_ID,
        }


class Workspace:
    """Everything the fake Slack remembers, addressed the way the Web API addresses it."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.channels: dict[str, Channel] = {}
        self.history: dict[str, list[Message]] = {}
        self.ephemeral: dict[str, list[Ephemeral]] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.files: dict[str, UploadedFile] = {}
        self._serial = 0
        self.add_user(BOT_USER_ID, name="opsgate", is_bot=True)

    def next_id(self, prefix: str) -> str:
        """Return a fresh Slack-looking id such as `C00000001`."""
        self._serial += 1
        return f"{prefix}{self._serial:08d}"

    def next_ts(self) -> str:
        """Return a message timestamp greater than every one before it."""
        self._serial += 1
        return f"{_TS_BASE + self._serial // 10_000}.{(self._serial % 10_000) * 100:06d}"

    def add_user(
        self, user_id: str, *, name: str, real_name: str | None = None, is_bot: bool = False
    ) -> dict[str, Any]:
        """Register a user so `users.info` knows them."""
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": real_name or name,
            "is_bot": is_bot,
            "deleted": False,
            "tz": "UTC",
            "profile": {"display_name": name, "real_name": real_name or name},
        }
        self.users[user_id] = user
        return user

    def add_channel(
        self, name: str, *, channel_id: str | None = None, members: list[str] | None = None
    ) -> Channel:
        """Create (or return) the channel called `name`."""
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        channel = Channel(id=channel_id or self.next_id("C"), name=name, members=members or [])
        self.channels[channel.id] = channel
        self.history[channel.id] = []
        return channel

    def find_channel(self, ref: str) -> Channel:
        """Return the channel named by id, `name` or `#name`; raise NotFound otherwise."""
        if ref in self.channels:
            return self.channels[ref]
        name = ref.removeprefix("#")
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        raise NotFound("channel_not_found")

    def channel(self, ref: str) -> Channel:
        """Return the channel `ref` names, creating it on the fly as posting does."""
        try:
            return self.find_channel(ref)
        except NotFound:
            if ref[:1] in ("C", "G", "D") and ref[1:].isalnum() and ref.isupper():
                return self.add_channel(ref.lower(), channel_id=ref)
            return self.add_channel(ref.removeprefix("#"))

    def message(self, channel_id: str, ts: str) -> Message:
        """Return the message at `ts`; raise NotFound("message_not_found")."""
        for message in self.history.get(channel_id, []):
            if message.ts == ts:
                return message
        raise NotFound("message_not_found")

    def post(
        self,
        channel_id: str,
        *,
        user: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> Message:
        """Append a message (a reply when `thread_ts` names an existing message)."""
        if thread_ts is not None:
            try:
                parent = self.message(channel_id, thread_ts)
            except NotFound:
                parent = None
            if parent is not None:
                thread_ts = parent.thread_ts or parent.ts
                root = self.message(channel_id, thread_ts)
                root.thread_ts = root.ts
                root.reply_count += 1
        message = Message(
            channel=channel_id,
            ts=self.next_ts(),
            user=user,
            text=text,
            blocks=self.with_block_ids(blocks),
            thread_ts=thread_ts,
            files=files or [],
        )
        self.history.setdefault(channel_id, []).append(message)
        return message

    def update(
        self, message: Message, *, text: str | None, blocks: list[dict[str, Any]] | None
    ) -> Message:
        """Edit a message in place as `chat.update` does."""
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = self.with_block_ids(blocks)
        message.edited_ts = self.next_ts()
        return message

    def thread(self, channel_id: str, ts: str) -> list[Message]:
        """Return the parent at `ts` then its replies, oldest first."""
        parent = self.message(channel_id, ts)
        root = parent.thread_ts or parent.ts
        return [
            m
            for m in self.history[channel_id]
            if m.ts == root or (m.thread_ts == root and m.ts != root)
        ]

    def top_level(self, channel_id: str) -> list[Message]:
        """Return the channel's messages that are not thread replies, oldest first."""
        return [m for m in self.history.get(channel_id, []) if m.thread_ts in (None, m.ts)]

    def with_block_ids(self, blocks: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        """Return a copy of `blocks` with a block_id on each block."""
        # Slack stores a block_id on every block; interaction payloads carry it back.
        if blocks is None:
            return None
        stored = copy.deepcopy(blocks)
        for block in stored:
            if "block_id" not in block:
                self._serial += 1
                block["block_id"] = f"b{self._serial:04x}"
        return stored
