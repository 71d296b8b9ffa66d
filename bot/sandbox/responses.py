"""`response_url`s: where an app answers a slash command or a button click after its ack.

Every slash command and click the sandbox sends carries a `response_url` on the sandbox's own
server (never Slack's `hooks.slack.com`), and a POST of a JSON message to it does what Slack
documents for message responses:

- A URL works 5 times within 30 minutes; past that it is refused (HTTP 404 `used_url` or
  `expired_url`), as is one the sandbox never issued.
- A slash command's URL posts a new message each time: by default an ephemeral one for the user
  who typed the command, with `"response_type": "in_channel"` a message in the channel.
  `replace_original` and `delete_original` do not change the command's earlier answer: Slack
  offers no way to replace a slash command's ephemeral reply (the Bolt maintainers' answer in
  slackapi/bolt-js#2287 and slackapi/bolt-python#1268), so an app that wants no "working…" note
  left behind acks with an empty body and answers once.
- A click's URL replaces the clicked message with `"replace_original": true` (an ephemeral one
  for its user only), deletes it with `"delete_original": true`, and otherwise posts a new
  message as a command's URL does (in the clicked message's thread).

The message is checked against Slack's limits (`limits`) as `chat.postMessage` is; a refusal is
a plain-text HTTP 400 (`invalid_payload`, `no_text`, `invalid_blocks`), as for webhooks.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from bot.sandbox import limits
from bot.sandbox.webapi import FakeSlack
from bot.sandbox.workspace import BOT_USER_ID, TEAM_ID, NotFound

MAX_USES = 5
LIFETIME_S = 30 * 60
PATH = "/hooks/{kind}/{team}/{token}"


class Refused(Exception):
    """A message response Slack would refuse: the HTTP status and its plain-text error."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class EphemeralPoster(Protocol):
    """Shows an ephemeral message to one user, as the browser sandbox does."""

    def __call__(
        self,
        channel_id: str,
        user: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = ...,
        thread_ts: str | None = ...,
    ) -> object: ...


@dataclass
class Hook:
    """One issued `response_url`: what it answers and how much use is left."""

    kind: str  # "commands" or "actions"
    channel: str
    user: str
    expires_at: float
    message_ts: str | None = None  # actions: the clicked message
    ephemeral: bool = False  # actions: the clicked message is an ephemeral one
    thread_ts: str | None = None  # where new messages from a click go
    uses: int = 0


class ResponseUrls:
    """Issues `response_url`s and serves them on the fake Slack's server."""

    def __init__(
        self,
        fake: FakeSlack,
        *,
        post_ephemeral: EphemeralPoster,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Add the route to `fake.app` (before `fake.start()`)."""
        self.fake = fake
        self._post_ephemeral = post_ephemeral
        self._clock = clock
        self._hooks: dict[str, Hook] = {}
        fake.app.router.add_post(PATH, self._handle)

    def issue(
        self,
        kind: str,
        *,
        channel: str,
        user: str,
        message_ts: str | None = None,
        ephemeral: bool = False,
        thread_ts: str | None = None,
    ) -> str:
        """Return a fresh `response_url` for one command (`commands`) or click (`actions`)."""
        now = self._clock()
        for token in [t for t, h in self._hooks.items() if h.expires_at <= now]:
            del self._hooks[token]
        token = secrets.token_urlsafe(18)
        self._hooks[token] = Hook(
            kind=kind,
            channel=channel,
            user=user,
            expires_at=now + LIFETIME_S,
            message_ts=message_ts,
            ephemeral=ephemeral,
            thread_ts=thread_ts,
        )
        root = self.fake.base_url.removesuffix("api/")
        return f"{root}hooks/{kind}/{TEAM_ID}/{token}"

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            hook, body = self._accept(request.match_info, await request.text())
        except Refused as exc:
            return web.Response(status=exc.status, text=exc.error)
        hook.uses += 1
        self._apply(hook, body)
        return web.Response(text="ok")

    def _accept(self, match: Mapping[str, str], raw: str) -> tuple[Hook, dict[str, Any]]:
        """The hook and message of one POST; raise `Refused` as Slack would refuse it."""
        hook = self._hooks.get(match["token"])
        if hook is None or hook.kind != match["kind"] or hook.expires_at <= self._clock():
            raise Refused(404, "expired_url")
        if hook.uses >= MAX_USES:
            raise Refused(404, "used_url")
        try:
            body = json.loads(raw)
        except ValueError:
            raise Refused(400, "invalid_payload") from None
        if not isinstance(body, dict):
            raise Refused(400, "invalid_payload")
        if hook.kind == "actions" and _flag(body.get("delete_original")):
            return hook, body
        if not body.get("text") and not body.get("blocks"):
            raise Refused(400, "no_text")
        refusal = limits.message_refusal(body.get("text"), body.get("blocks"))
        if refusal is not None:
            raise Refused(400, refusal.error)
        return hook, body

    def _apply(self, hook: Hook, body: dict[str, Any]) -> None:
        """Do what an accepted message response asks."""
        if hook.kind == "actions" and _flag(body.get("delete_original")):
            self._delete_original(hook)
            return
        text = str(body.get("text") or "")[: limits.TEXT_LIMIT]
        blocks = body.get("blocks")
        if hook.kind == "actions" and _flag(body.get("replace_original")):
            self._replace_original(hook, text, blocks)
        elif body.get("response_type") == "in_channel":
            self._post_in_channel(hook, text, blocks)
        else:
            self._post_ephemeral(
                hook.channel, hook.user, text, blocks=blocks, thread_ts=hook.thread_ts
            )

    def _post_in_channel(self, hook: Hook, text: str, blocks: list[dict[str, Any]] | None) -> None:
        ws = self.fake.workspace
        message = ws.post(
            hook.channel, user=BOT_USER_ID, text=text, blocks=blocks, thread_ts=hook.thread_ts
        )
        self.fake.publish(
            {"type": "message_posted", "channel": hook.channel, "message": message.to_api()}
        )

    def _replace_original(self, hook: Hook, text: str, blocks: list[dict[str, Any]] | None) -> None:
        ws = self.fake.workspace
        if hook.ephemeral:
            for item in ws.ephemeral.get(hook.user, []):
                if item.ts == hook.message_ts:
                    item.text, item.blocks = text, ws.with_block_ids(blocks)
                    self.fake.publish({"type": "ephemeral_updated", "user": hook.user})
            return
        try:
            message = ws.message(hook.channel, str(hook.message_ts))
        except NotFound:
            return  # deleted meanwhile: Slack answers ok and shows nothing
        ws.update(message, text=text, blocks=blocks if blocks is not None else [])
        self.fake.publish(
            {"type": "message_updated", "channel": hook.channel, "message": message.to_api()}
        )

    def _delete_original(self, hook: Hook) -> None:
        ws = self.fake.workspace
        if hook.ephemeral:
            items = ws.ephemeral.get(hook.user, [])
            ws.ephemeral[hook.user] = [e for e in items if e.ts != hook.message_ts]
            self.fake.publish(
                {"type": "ephemeral_dismissed", "user": hook.user, "ts": hook.message_ts}
            )
            return
        history = ws.history.get(hook.channel, [])
        ws.history[hook.channel] = [m for m in history if m.ts != hook.message_ts]
        self.fake.publish(
            {"type": "message_deleted", "channel": hook.channel, "ts": hook.message_ts}
        )


def _flag(value: object) -> bool:
    """Slack accepts `true` and `"true"` for the message-response flags."""
    return value is True or (isinstance(value, str) and value.lower() == "true")
