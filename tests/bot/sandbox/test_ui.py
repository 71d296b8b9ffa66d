"""The browser sandbox against a tiny fake bot that checks Slack's signature like Bolt does."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.ui import Persona, Sandbox
from bot.sandbox.webapi import DEFAULT_TOKEN, FakeSlack
from bot.sandbox.workspace import BOT_USER_ID

SECRET = "sandbox-test-secret"
RILEY, SAM, ALEX, JORDAN = "U0RILEY01", "U0SAM0002", "U0ALEX003", "U0JORDAN4"
PERSONAS = [
    Persona(RILEY, "Riley", "on-call · approver"),
    Persona(SAM, "Sam", "approver"),
    Persona(ALEX, "Alex", "approver"),
    Persona(JORDAN, "Jordan", "not an approver"),
]
CARD = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Restart checkout-api*"}},
    {
        "type": "actions",
        "block_id": "approval",
        "elements": [
            {
                "type": "button",
                "action_id": "approve_step",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": "nonce-1",
                "style": "primary",
            },
            {
                "type": "button",
                "action_id": "reject_step",
                "text": {"type": "plain_text", "text": "Reject"},
                "value": "nonce-1",
                "style": "danger",
            },
        ],
    },
]
MODAL = {
    "type": "modal",
    "callback_id": "reject_reason",
    "private_metadata": "nonce-1",
    "title": {"type": "plain_text", "text": "Reject step"},
    "submit": {"type": "plain_text", "text": "Reject"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "optional": True,
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "reason_input", "multiline": True},
        }
    ],
}


@dataclass
class Received:
    """One request the fake bot accepted: its kind and parsed body."""

    kind: str
    body: dict[str, Any]


@dataclass
class FakeBot:
    """An app behind POST /slack/events that verifies signatures and records what came in."""

    fake: FakeSlack
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    submission_reply: dict[str, Any] | None = None

    @property
    def client(self) -> AsyncWebClient:
        return AsyncWebClient(token=DEFAULT_TOKEN, base_url=self.fake.base_url)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.text()
        verifier = SignatureVerifier(SECRET)
        if not verifier.is_valid(
            raw,
            request.headers.get("X-Slack-Request-Timestamp", ""),
            request.headers.get("X-Slack-Signature", ""),
        ):
            self.refused += 1
            return web.Response(status=401, text="invalid signature")
        if request.content_type == "application/json":
            body = json.loads(raw)
            self.received.append(Received(body["event"]["type"], body))
            return web.Response()
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        if "payload" in form:
            payload = json.loads(form["payload"])
            self.received.append(Received(payload["type"], payload))
            return await self.interactive(payload)
        self.received.append(Received("slash_command", form))
        if form["text"] == "boom":
            return web.Response(status=500, text="kaboom")
        if form["text"] == "quiet":  # Bolt's bare ack(): an empty 200
            return web.Response()
        if form["text"] == "public":
            return web.json_response({"response_type": "in_channel", "text": "Everyone sees this"})
        await self.client.chat_postMessage(
            channel=form["channel_id"], text="Approval needed", blocks=CARD
        )
        return web.json_response({"text": f"Opening an incident: {form['text']}"})

    async def interactive(self, payload: dict[str, Any]) -> web.Response:
        if payload["type"] == "block_actions" and payload["actions"][0]["action_id"] == (
            "reject_step"
        ):
            await self.client.views_open(trigger_id=payload["trigger_id"], view=MODAL)
        if payload["type"] == "view_submission" and self.submission_reply is not None:
            return web.json_response(self.submission_reply)
        return web.Response()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r.body for r in self.received if r.kind == kind]


@dataclass
class Rig:
    fake: FakeSlack
    sandbox: Sandbox
    bot: FakeBot
    http: aiohttp.ClientSession

    async def post(self, path: str, **data: Any) -> tuple[int, dict[str, Any]]:
        async with self.http.post(self.sandbox.url + path.lstrip("/"), json=data) as response:
            return response.status, await response.json()

    async def state(self, session: str | None = None) -> dict[str, Any]:
        query = f"?session={session}" if session else ""
        async with self.http.get(self.sandbox.url + "sandbox/state" + query) as response:
            assert response.status == 200
            result: dict[str, Any] = await response.json()
            return result

    @property
    def channel(self) -> str:
        return self.sandbox.channel_id

    def card(self) -> dict[str, Any]:
        message = next(m for m in self.fake.messages(self.channel) if m.blocks)
        return message.to_api()


async def make_rig(secret: str = SECRET, bot_url: str | None = None) -> AsyncIterator[Rig]:
    fake = FakeSlack()
    bot = FakeBot(fake)
    app = web.Application()
    app.router.add_post("/slack/events", bot.handle)
    server = TestServer(app)
    await server.start_server()
    sandbox = Sandbox(
        fake,
        bot_url=bot_url or str(server.make_url("/slack/events")),
        signing_secret=secret,
        personas=PERSONAS,
    )
    await fake.start()
    http = aiohttp.ClientSession()
    try:
        yield Rig(fake, sandbox, bot, http)
    finally:
        await http.close()
        await fake.stop()
        await server.close()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async for made in make_rig():
        yield made


async def test_page_is_served_with_test_ids(rig: Rig) -> None:
    async with rig.http.get(rig.sandbox.url) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    for testid in (
        "composer",
        "thread-pane",
        "modal",
        "modal-submit",
        "nav-toggle",
        "sidebar",
        "scrim",
        "channel-name",
        *(f"persona-{p.user_id}" for p in PERSONAS),
    ):
        assert f'data-testid="{testid}"' in page
    assert "Message #incidents — try /incident checkout-api is down" in page
    assert "Riley" in page
    assert "on-call · approver" in page
    async with rig.http.get(rig.sandbox.url + "sandbox/static/sandbox.js") as response:
        assert response.status == 200
        script = await response.text()
    for testid in ("message", "thread-link", "ephemeral", "button-", "persona-"):
        assert testid in script
    async with rig.http.get(rig.sandbox.url + "sandbox/static/sandbox.css") as response:
        assert response.status == 200


async def test_channel_and_personas_are_created(rig: Rig) -> None:
    users = rig.fake.workspace.users
    assert users[RILEY]["real_name"] == "Riley"
    assert users[RILEY]["name"] == "riley"
    assert rig.fake.workspace.find_channel("incidents").id == rig.channel
    state = await rig.state()
    assert [p["user_id"] for p in state["personas"]] == [RILEY, SAM, ALEX, JORDAN]
    assert state["personas"][0]["role_label"] == "on-call · approver"
    assert all(p["color"].startswith("#") for p in state["personas"])
    assert state["channel_id"] == rig.channel


async def test_state_lists_messages_threads_and_edits(rig: Rig) -> None:
    client = rig.bot.client
    root = await client.chat_postMessage(channel=rig.channel, text="Incident", blocks=CARD)
    await client.chat_postMessage(channel=rig.channel, text="probe ok", thread_ts=root["ts"])
    await client.chat_update(channel=rig.channel, ts=root["ts"], text="Incident (approved)")
    state = await rig.state()
    channel = next(c for c in state["channels"] if c["id"] == rig.channel)
    assert len(channel["messages"]) == 1
    message = channel["messages"][0]
    assert message["text"] == "Incident (approved)"
    assert message["is_edited"] is True
    assert message["blocks"][1]["elements"][0]["action_id"] == "approve_step"
    assert [r["text"] for r in message["replies"]] == ["probe ok"]
    assert message["replies"][0]["is_edited"] is False
    assert message["user"] == BOT_USER_ID
    assert state["users"][BOT_USER_ID]["is_bot"] is True


async def test_slash_command_reaches_the_bot_signed_and_acks_as_ephemeral(rig: Rig) -> None:
    status, result = await rig.post(
        "/sandbox/command", user=RILEY, channel=rig.channel, text="/incident checkout-api is down"
    )
    assert status == 200
    assert result["ok"] is True
    assert result["status"] == 200
    assert result["kind"] == "slash_command"
    assert rig.bot.refused == 0
    [command] = rig.bot.of("slash_command")
    assert command["command"] == "/incident"
    assert command["text"] == "checkout-api is down"
    assert command["user_id"] == RILEY
    assert command["user_name"] == "riley"
    assert command["channel_id"] == rig.channel
    assert command["channel_name"] == "incidents"
    assert command["trigger_id"]
    assert command["response_url"].startswith(rig.sandbox.url + "hooks/commands/")
    state = await rig.state()
    [ephemeral] = state["ephemerals"][RILEY]
    assert ephemeral["text"] == "Opening an incident: checkout-api is down"
    assert ephemeral["is_ephemeral"] is True
    assert ephemeral["channel"] == rig.channel
    assert set(state["ephemerals"]) == {RILEY}  # nobody else sees it
    channel = next(c for c in state["channels"] if c["id"] == rig.channel)
    assert [m["text"] for m in channel["messages"]] == ["Approval needed"]


async def test_command_text_is_escaped_like_slack(rig: Rig) -> None:
    await rig.post("/sandbox/command", user=RILEY, text="/incident a <b> & c")
    assert rig.bot.of("slash_command")[0]["text"] == "a &lt;b&gt; &amp; c"


async def test_click_sends_block_actions_for_the_stored_message(rig: Rig) -> None:
    await rig.post("/sandbox/command", user=RILEY, text="/incident checkout-api is down")
    card = rig.card()
    status, result = await rig.post(
        "/sandbox/click",
        user=SAM,
        channel=rig.channel,
        ts=card["ts"],
        action_id="approve_step",
        block_id="approval",
        value="forged-by-the-page",
    )
    assert status == 200
    assert result["ok"] is True
    assert result["kind"] == "block_actions"
    [click] = rig.bot.of("block_actions")
    assert click["user"]["id"] == SAM
    assert click["user"]["username"] == "sam"
    action = click["actions"][0]
    assert action["action_id"] == "approve_step"
    assert action["block_id"] == "approval"
    assert action["value"] == "nonce-1"  # what the message holds, not what the page said
    assert action["text"]["text"] == "Approve"
    assert click["container"] == {
        "type": "message",
        "message_ts": card["ts"],
        "channel_id": rig.channel,
        "is_ephemeral": False,
    }
    assert click["message"]["ts"] == card["ts"]
    assert click["message"]["blocks"] == card["blocks"]
    assert click["channel"] == {"id": rig.channel, "name": "incidents"}
    assert click["trigger_id"]


async def test_reject_opens_the_modal_for_the_clicker_and_submission_closes_it(rig: Rig) -> None:
    await rig.post("/sandbox/command", user=RILEY, text="/incident checkout-api is down")
    card = rig.card()
    await rig.post(
        "/sandbox/click", user=SAM, channel=rig.channel, ts=card["ts"], action_id="reject_step"
    )
    state = await rig.state()
    assert list(state["views"]) == [SAM]
    [view] = state["views"][SAM]
    assert view["callback_id"] == "reject_reason"
    values = {"reason": {"reason_input": {"type": "plain_text_input", "value": "wrong service"}}}
    status, result = await rig.post(
        "/sandbox/view_submit", user=SAM, view_id=view["id"], values=values
    )
    assert status == 200
    assert result["ok"] is True
    [submission] = rig.bot.of("view_submission")
    assert submission["user"]["id"] == SAM
    assert submission["view"]["id"] == view["id"]
    assert submission["view"]["private_metadata"] == "nonce-1"
    assert submission["view"]["state"]["values"] == values
    assert (await rig.state())["views"] == {}


async def test_modal_belongs_to_its_user(rig: Rig) -> None:
    await rig.post("/sandbox/command", user=RILEY, text="/incident checkout-api is down")
    card = rig.card()
    await rig.post("/sandbox/click", user=SAM, ts=card["ts"], action_id="reject_step")
    view_id = (await rig.state())["views"][SAM][0]["id"]
    status, result = await rig.post("/sandbox/view_submit", user=ALEX, view_id=view_id, values={})
    assert status == 404
    assert result["ok"] is False
    assert rig.bot.of("view_submission") == []


async def test_view_submission_errors_keep_the_modal_open(rig: Rig) -> None:
    rig.bot.submission_reply = {"response_action": "errors", "errors": {"reason": "Too short"}}
    await rig.post("/sandbox/command", user=RILEY, text="/incident checkout-api is down")
    await rig.post("/sandbox/click", user=SAM, ts=rig.card()["ts"], action_id="reject_step")
    view_id = (await rig.state())["views"][SAM][0]["id"]
    _, result = await rig.post("/sandbox/view_submit", user=SAM, view_id=view_id, values={})
    assert result["ok"] is True
    assert result["errors"] == {"reason": "Too short"}
    assert [v["id"] for v in (await rig.state())["views"][SAM]] == [view_id]
    status, _ = await rig.post("/sandbox/view_close", user=SAM, view_id=view_id)
    assert status == 200
    assert (await rig.state())["views"] == {}


async def test_plain_message_posts_and_delivers_a_message_event(rig: Rig) -> None:
    status, result = await rig.post("/sandbox/command", user=ALEX, text="looking at it")
    assert status == 200
    assert result["ok"] is True
    assert result["status"] == 200
    [event_body] = rig.bot.of("message")
    event = event_body["event"]
    assert event_body["type"] == "event_callback"
    assert event_body["event_id"].startswith("Ev")
    assert event["user"] == ALEX
    assert event["text"] == "looking at it"
    assert event["channel"] == rig.channel
    assert event["channel_type"] == "channel"
    assert rig.bot.of("app_mention") == []
    [message] = rig.fake.messages(rig.channel)
    assert message.user == ALEX
    assert message.ts == event["ts"]


async def test_mention_delivers_app_mention_too(rig: Rig) -> None:
    await rig.post("/sandbox/command", user=RILEY, text="@opsgate checkout-api is down")
    [mention] = rig.bot.of("app_mention")
    assert mention["event"]["text"] == f"<@{BOT_USER_ID}> checkout-api is down"
    assert mention["event"]["user"] == RILEY
    assert len(rig.bot.of("message")) == 1
    assert rig.fake.messages(rig.channel)[0].text.startswith(f"<@{BOT_USER_ID}>")


async def test_thread_reply_carries_thread_ts(rig: Rig) -> None:
    root = await rig.bot.client.chat_postMessage(channel=rig.channel, text="Incident")
    await rig.post("/sandbox/command", user=SAM, text="on it", thread_ts=root["ts"])
    event = rig.bot.of("message")[0]["event"]
    assert event["thread_ts"] == root["ts"]
    assert event["parent_user_id"] == BOT_USER_ID
    assert [m.text for m in rig.fake.thread(rig.channel, root["ts"])] == ["Incident", "on it"]


async def test_ephemerals_do_not_survive_a_page_reload(rig: Rig) -> None:
    """A page load sees the ephemerals posted since it first asked; a reload (new id) none."""
    assert (await rig.state("load-1"))["ephemerals"] == {}
    await rig.post("/sandbox/command", user=RILEY, text="/incident checkout-api is down")
    [ack] = (await rig.state("load-1"))["ephemerals"][RILEY]
    assert ack["text"] == "Opening an incident: checkout-api is down"
    assert (await rig.state("load-2"))["ephemerals"] == {RILEY: []}  # the reloaded page
    assert [e["text"] for e in (await rig.state("load-1"))["ephemerals"][RILEY]] == [ack["text"]]
    await rig.bot.client.chat_postEphemeral(channel=rig.channel, user=RILEY, text="later")
    for load in ("load-1", "load-2"):  # both pages are open when this one arrives
        texts = [e["text"] for e in (await rig.state(load))["ephemerals"][RILEY]]
        assert texts[-1] == "later"
    assert len((await rig.state("load-2"))["ephemerals"][RILEY]) == 1
    channel = next(c for c in (await rig.state("load-2"))["channels"] if c["id"] == rig.channel)
    assert [m["text"] for m in channel["messages"]] == ["Approval needed"]  # history stays


async def test_an_overlong_session_id_is_refused(rig: Rig) -> None:
    async with rig.http.get(rig.sandbox.url + "sandbox/state?session=" + "x" * 65) as response:
        assert response.status == 400
        assert "session" in (await response.json())["error"]


async def test_a_slash_command_in_a_thread_is_refused_as_slack_does(rig: Rig) -> None:
    root = await rig.bot.client.chat_postMessage(channel=rig.channel, text="Incident")
    status, result = await rig.post(
        "/sandbox/command", user=RILEY, text="/incident resolve", thread_ts=root["ts"]
    )
    assert status == 200
    assert result["ok"] is False
    assert "not supported in threads" in result["error"]
    assert rig.bot.of("slash_command") == []  # Slack never sends it
    [notice] = (await rig.state())["ephemerals"][RILEY]
    assert notice["text"] == "/incident is not supported in threads. Sorry!"
    assert notice["user"] == "USLACKBOT"
    assert notice["thread_ts"] == root["ts"]


async def test_bot_errors_are_returned_and_shown(rig: Rig) -> None:
    status, result = await rig.post("/sandbox/command", user=RILEY, text="/incident boom")
    assert status == 200
    assert result["ok"] is False
    assert result["status"] == 500
    assert "HTTP 500" in result["error"]
    assert "kaboom" in result["error"]
    [notice] = (await rig.state())["ephemerals"][RILEY]
    assert notice["text"] == '/incident failed with the error "http_service_error"'
    assert notice["user"] == "USLACKBOT"


async def test_a_wrong_signing_secret_is_visible() -> None:
    async for rig in make_rig(secret="not-the-bot-secret"):
        _, result = await rig.post("/sandbox/command", user=RILEY, text="/incident x is down")
        assert result["ok"] is False
        assert result["status"] == 401
        assert rig.bot.refused == 1


async def test_an_unreachable_bot_is_visible() -> None:
    async for rig in make_rig(bot_url="http://127.0.0.1:9/slack/events"):
        _, result = await rig.post("/sandbox/command", user=RILEY, text="/incident x is down")
        assert result["ok"] is False
        assert result["status"] == 0
        assert "unreachable" in result["error"]


async def test_bad_requests_are_refused(rig: Rig) -> None:
    status, result = await rig.post("/sandbox/command", user="U0NOBODY", text="hi")
    assert status == 400
    assert "unknown persona" in result["error"]
    status, _ = await rig.post("/sandbox/command", user=RILEY, text="   ")
    assert status == 400
    status, _ = await rig.post("/sandbox/click", user=RILEY, ts="1.000001", action_id="x")
    assert status == 404
    async with rig.http.post(rig.sandbox.url + "sandbox/click", data="nope") as response:
        assert response.status == 400
    assert rig.bot.received == []


async def test_stream_emits_an_event_after_a_post(rig: Rig) -> None:
    async with rig.http.get(rig.sandbox.url + "sandbox/stream") as stream:
        assert stream.status == 200
        assert stream.content_type == "text/event-stream"

        async def next_data() -> dict[str, Any]:
            while True:
                line = (await stream.content.readline()).decode()
                if line.startswith("data: "):
                    data: dict[str, Any] = json.loads(line[6:])
                    return data

        assert (await asyncio.wait_for(next_data(), 5))["type"] == "hello"
        await rig.bot.client.chat_postMessage(channel=rig.channel, text="hello stream")
        event = await asyncio.wait_for(next_data(), 5)
        assert event["type"] == "message_posted"
        assert event["message"]["text"] == "hello stream"


async def test_stop_ends_open_streams_promptly() -> None:
    async for rig in make_rig():
        stream = await rig.http.get(rig.sandbox.url + "sandbox/stream")
        await stream.content.readline()
        await asyncio.wait_for(rig.fake.stop(), 5)
        stream.close()


async def test_sandbox_must_be_created_before_start() -> None:
    fake = FakeSlack()
    await fake.start()
    try:
        with pytest.raises(RuntimeError, match="before"):
            Sandbox(fake, bot_url="http://x/slack/events", signing_secret="s", personas=PERSONAS)
    finally:
        await fake.stop()
