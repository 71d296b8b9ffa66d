"""The browser sandbox: use opsgate in a local web page that looks and behaves like Slack.

`Sandbox` acts as chosen personas on a `FakeSlack`: each action builds the request Slack would
send the app (`signing`), signs and POSTs it (`courier`), then shows what Slack would show: a
slash command's ack as an ephemeral message (nothing for an empty ack; the typed command and the
answer in the channel for an `in_channel` one), a modal closed once the app accepts it, a
`response_url` for every command and click (`responses`). A slash command typed in a thread
never reaches the app: Slack refuses it ("… is not supported in threads. Sorry!").

The actions are methods (`slash_command`, `say`, `click`, `submit_view`, `close_view`,
`dismiss`) for scripts and tests; `page.Page` serves them, the page and its live stream to the
browser (create the Sandbox before `fake.start()`: it adds routes). Each action returns a
`Delivery`: `ok`, the bot's HTTP `status` (0 when the bot could not be reached or timed out),
`error` (text to show) and `ms`.
"""

from __future__ import annotations

import collections
import json
import re
import time
from typing import Any
from urllib.parse import urlencode

from bot.sandbox import signing
from bot.sandbox.courier import Courier, Delivery, slack_failure
from bot.sandbox.modals import Modals
from bot.sandbox.page import Page, SandboxError
from bot.sandbox.personas import DEFAULT_PERSONAS, PALETTE, Persona
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

__all__ = ["DEFAULT_PERSONAS", "Delivery", "Persona", "Sandbox", "SandboxError"]

SLACKBOT_ID = "USLACKBOT"
_MAX_TEXT = 40_000


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
        self.courier = Courier(
            bot_url=bot_url,
            signing_secret=signing_secret,
            ack_timeout_s=ack_timeout_s,
            publish=fake.publish,
        )
        self.workspace_name = workspace_name
        self.personas = list(personas)
        self.colors = {
            p.user_id: p.color or PALETTE[i % len(PALETTE)] for i, p in enumerate(self.personas)
        }
        self.channel_id = fake.add_channel(channel_name)
        for persona in self.personas:
            fake.add_user(persona.user_id, name=persona.handle, real_name=persona.name)
        fake.workspace.add_user(SLACKBOT_ID, name="slackbot", real_name="Slackbot", is_bot=True)
        self.modals = Modals(fake)
        self._seen: dict[str, float] = {}  # message ts -> wall-clock time first seen
        self._ephemeral_from: dict[str, str] = {}  # ephemeral ts -> sender (default: the bot)
        self.responses = ResponseUrls(fake, post_ephemeral=self._post_ephemeral)
        self.page = Page(self)
        fake.listen(self._on_event)
        fake.app.on_cleanup.append(self._on_cleanup)

    # -- public actions ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The page's URL (valid after `fake.start()`)."""
        return self.fake.base_url.removesuffix("api/")

    async def close(self) -> None:
        """Close the HTTP client the sandbox talks to the bot with (also done on fake.stop())."""
        await self.courier.close()

    def dismiss(self, user: str, ts: str) -> Delivery:
        """Dismiss the ephemeral message at `ts` that `user` sees, as its Dismiss link does."""
        user = self._persona(user).user_id
        items = self.fake.workspace.ephemeral.get(user, [])
        self.fake.workspace.ephemeral[user] = [e for e in items if e.ts != ts]
        self.fake.publish({"type": "ephemeral_dismissed", "user": user, "ts": ts})
        return Delivery(ok=True, kind="dismiss", user=user, status=200, ms=0.0)

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
            note = f"{signing.escape(command)} is not supported in threads. Sorry!"
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
        trigger_id = self.modals.trigger(persona.user_id)
        body = signing.slash_command_body(
            command=command,
            text=signing.escape(rest.strip()),
            user_id=persona.user_id,
            channel_id=chan.id,
            trigger_id=trigger_id,
            user_name=persona.handle,
            channel_name=chan.name,
            response_url=self.responses.issue("commands", channel=chan.id, user=persona.user_id),
        )
        delivery = await self.courier.deliver(
            "slash_command", body, user=persona.user_id, summary=text
        )
        if delivery["ok"]:
            self._show_ack(chan, persona.user_id, delivery.get("body", ""), typed=text.strip())
        else:
            reason = slack_failure(delivery)
            self._post_ephemeral(
                chan.id,
                persona.user_id,
                f'{signing.escape(command)} failed with the error "{reason}"',
                sender=SLACKBOT_ID,
            )
        return delivery

    async def say(
        self, user: str, text: str, *, channel: str | None = None, thread_ts: str | None = None
    ) -> Delivery:
        """Post `text` as `user` and deliver the `message` event (and `app_mention` when due)."""
        persona = self._persona(user)
        chan = self._channel(channel)
        stored = self._mentions(signing.escape(text.strip()))[:_MAX_TEXT]
        if thread_ts is not None:
            self._message(chan, thread_ts)  # a reply to nothing is refused, as Slack's client does
        message = self.fake.workspace.post(
            chan.id, user=persona.user_id, text=stored, thread_ts=thread_ts
        )
        self.fake.publish(
            {"type": "message_posted", "channel": chan.id, "message": message.to_api()}
        )
        event = signing.message_event(message)
        if message.thread_ts and message.thread_ts != message.ts:
            parent = self.fake.workspace.message(chan.id, message.thread_ts)
            event |= {"thread_ts": message.thread_ts, "parent_user_id": parent.user}
        deliveries = [
            await self.courier.deliver_event(
                event | {"channel_type": "channel"}, user=persona.user_id, summary=text
            )
        ]
        if f"<@{BOT_USER_ID}>" in message.text:
            mention = {k: v for k, v in event.items() if k != "parent_user_id"}
            deliveries.append(
                await self.courier.deliver_event(
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
            trigger_id=self.modals.trigger(persona.user_id),
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
        return await self.courier.deliver(
            "block_actions", body, user=persona.user_id, summary=label
        )

    async def submit_view(
        self, user: str, view_id: str, values: dict[str, dict[str, dict[str, Any]]]
    ) -> Delivery:
        """Submit the modal `view_id` with `state.values`; close it when the bot accepts."""
        persona = self._persona(user)
        view = self.modals.open_view(persona.user_id, view_id)
        body = signing.view_submission_body(
            user_id=persona.user_id,
            view=view,
            values=values,
            trigger_id=self.modals.trigger(persona.user_id),
            user_name=persona.handle,
        )
        title = str((view.get("title") or {}).get("text") or "modal")
        delivery = await self.courier.deliver(
            "view_submission", body, user=persona.user_id, summary=title
        )
        if delivery["ok"]:
            self.modals.apply_response_action(persona.user_id, view, delivery)
        return delivery

    async def close_view(self, user: str, view_id: str) -> Delivery:
        """Cancel the modal; Slack tells the app (`view_closed`) only when it asked to know."""
        persona = self._persona(user)
        view = self.modals.open_view(persona.user_id, view_id)
        self.modals.close(view_id, persona.user_id)
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
        return await self.courier.deliver(
            "view_closed", body, user=persona.user_id, summary="cancel"
        )

    def state(self, *, since: float | None = None) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready data.

        Keys: `workspace`, `bot`, `channel_id` (the default channel), `personas`, `users`,
        `channels` (each with `messages`: top-level messages, each with `replies`, `is_edited`
        and `seen_at`), `ephemerals` and `views` (both keyed by user id), `deliveries`.

        Args:
            since: Wall-clock time a page load first asked: only ephemeral messages posted
                since are listed, as Slack keeps no history of them (a reloaded page starts
                without). None (scripts, tests) lists every ephemeral still held.
        """
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
            "views": self.modals.by_owner(),
            "deliveries": list(self.courier.recent),
        }

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
                (user, signing.escape(typed), None),
                (BOT_USER_ID, text, blocks),
            ):
                message = ws.post(channel.id, user=author, text=said, blocks=said_blocks)
                self.fake.publish(
                    {"type": "message_posted", "channel": channel.id, "message": message.to_api()}
                )
            return
        self._post_ephemeral(channel.id, user, text, blocks=blocks)

    async def _on_cleanup(self, app: object) -> None:
        await self.courier.close()

    def _on_event(self, event: dict[str, Any]) -> None:
        """Runs synchronously on every FakeSlack event: timestamps and modal owners."""
        kind = event.get("type")
        now = time.time()
        if kind in ("message_posted", "message_updated"):
            self._seen.setdefault(str(event["message"]["ts"]), now)
        elif kind == "ephemeral_posted":
            self._seen.setdefault(str(event["ts"]), now)
        elif kind == "view_opened":
            self.modals.on_view_opened(event)

    def client_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """A fake Slack event as the page's stream tells it (a view names its owner)."""
        if event.get("type") == "view_opened":
            view_id = str(event["view"]["id"])
            return {
                "type": "view_opened",
                "view_id": view_id,
                "user": self.modals.owner(view_id),
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
