"""``opsgate serve --socket-mode`` as a real process against the fake Slack's Socket Mode.

The fake issues the WebSocket URL from ``apps.connections.open`` (app-level token only), says
``hello``, delivers envelopes and hands back the app's acknowledgements; the app answers through
the Web API as in HTTP mode.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot import strings
from bot.ids import ActionId
from bot.sandbox import signing
from bot.sandbox.webapi import DEFAULT_APP_TOKEN, DEFAULT_TOKEN, FakeSlack
from bot.sandbox.workspace import Message
from tests.orchestration.helpers import (
    APPROVER_A,
    APPROVER_B,
    REQUESTER,
    DemoService,
    write_runbook,
)

CHANNEL = "C0SOCK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSGATE_"))}


class SocketServed:
    """One ``opsgate serve --socket-mode`` child process (no signing secret)."""

    def __init__(self, tmp: Path, api_url: str) -> None:
        self.port = free_port()
        self.env = {
            **clean_env(),
            "SLACK_BOT_TOKEN": DEFAULT_TOKEN,
            "SLACK_APP_TOKEN": DEFAULT_APP_TOKEN,
            "OPSGATE_SLACK_API_URL": api_url,
            "OPSGATE_CONFIG": str(tmp / "opsgate.yaml"),
            "OPSGATE_DATABASE_URL": f"sqlite:///{tmp / 'serve.db'}",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, slack: FakeSlack) -> None:
        """Start the process; return once it is ready over HTTP and connected over Socket Mode."""
        command = [
            *(sys.executable, "-m", "bot.cli", "serve", "--socket-mode"),
            *("--host", "127.0.0.1", "--port", str(self.port)),
        ]
        with self.log.open("ab") as handle:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - started once, polled below
                command, env=self.env, stdout=handle, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    async with http.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200 and slack.socket_connections:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(self.log.read_text())

    async def stop(self, within_s: float = 20.0) -> int | None:
        """SIGTERM, then wait without blocking the loop (the fake Slack answers the client's
        close frame on it); return the exit code, None if it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return await asyncio.to_thread(self.proc.wait, within_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return None
        return self.proc.returncode


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[FakeSlack, DemoService, Path]]:
    service = await DemoService().start()
    slack = FakeSlack()
    await slack.start()
    for user in (REQUESTER, APPROVER_A, APPROVER_B):
        slack.add_user(user, name=user.lower())
    write_runbook(tmp_path / "runbooks", service.port)
    (tmp_path / "opsgate.yaml").write_text(
        f"runbooks: ./runbooks\napprovers: [{REQUESTER}, {APPROVER_A}, {APPROVER_B}]\n"
        "slack: {channel_rate_per_s: 100}\n"
    )
    yield slack, service, tmp_path
    await slack.stop()
    await service.stop()


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def replies(slack: FakeSlack) -> list[Message]:
    """The incident thread (empty until the root is posted)."""
    try:
        roots = slack.messages(CHANNEL)
    except LookupError:
        return []
    return slack.thread(CHANNEL, roots[0].ts) if roots else []


def card(slack: FakeSlack) -> Message | None:
    """The restart's approval card, once it has buttons."""
    for message in replies(slack):
        if "Restart checkout-api" in message.text and any(
            b.get("type") == "actions" for b in message.blocks or []
        ):
            return message
    return None


def slash_payload(text: str, user_id: str) -> dict[str, Any]:
    """The slash command's fields as Socket Mode carries them: the HTTP form, as a dict."""
    body = signing.slash_command_body(
        command="/incident", text=text, user_id=user_id, channel_id=CHANNEL
    )
    return dict(parse_qsl(body))


def click_payload(message: Message, action_id: str, user_id: str) -> dict[str, Any]:
    """The block_actions payload of a click on `message` (the HTTP body's `payload=` JSON)."""
    body = signing.button_click_body(
        message=message.to_api(), channel_id=CHANNEL, action_id=action_id, user_id=user_id
    )
    payload: dict[str, Any] = json.loads(parse_qs(body)["payload"][0])
    return payload


# -- the app over Socket Mode ---------------------------------------------------------------------


async def test_socket_mode_incident_then_approval(
    world: tuple[FakeSlack, DemoService, Path],
) -> None:
    slack, _service, tmp = world
    served = SocketServed(tmp, slack.base_url)
    try:
        await served.start(slack)
        opened = slack.calls_to("apps.connections.open")
        assert len(opened) == 1
        assert slack.socket_connections == 1

        started = time.monotonic()
        ack = await slack.socket_send(
            "slash_commands", slash_payload("checkout-api is down", REQUESTER), ack_within_s=3
        )
        assert ack is not None, served.log.read_text()
        assert time.monotonic() - started < 3
        assert ack["envelope_id"] == slack.envelopes[-1]["envelope_id"]
        assert ack["payload"]["text"] == strings.opening_plan(
            "checkout-api is down", "Restart an unhealthy web service"
        )

        await wait_for(lambda: card(slack) is not None)
        roots = slack.messages(CHANNEL)
        assert len(roots) == 1
        assert {c["channel"] for c in slack.calls_to("chat.postMessage")} == {CHANNEL}
        approval = card(slack)
        assert approval is not None
        assert "1/2" not in str(approval.blocks)

        click = await slack.socket_send(
            "interactive",
            click_payload(approval, ActionId.APPROVE.value, APPROVER_A),
            ack_within_s=3,
        )
        assert click is not None
        assert click["envelope_id"] == slack.envelopes[-1]["envelope_id"]
        assert slack.envelopes[-1]["accepts_response_payload"] is False
        await wait_for(lambda: "1/2" in str(getattr(card(slack), "blocks", "")))
        assert len(slack.messages(CHANNEL)) == 1
        assert slack.warnings == []

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{served.url}/healthz") as resp:
                assert resp.status == 200
            # No signing secret in Socket Mode: the HTTP endpoint must not take unsigned payloads.
            body = signing.slash_command_body(
                command="/incident", text="forged", user_id=REQUESTER, channel_id=CHANNEL
            )
            async with http.post(f"{served.url}/slack/events", data=body) as resp:
                assert resp.status == 404
    finally:
        stopping = time.monotonic()
        code = await served.stop()
    assert code == 0, served.log.read_text()
    assert time.monotonic() - stopping < 5, "Socket Mode close should not stall shutdown"
    await wait_for(lambda: slack.socket_connections == 0, 5)  # the client closed its socket


def test_socket_mode_without_app_token_refuses_to_start(tmp_path: Path) -> None:
    env = clean_env() | {"SLACK_BOT_TOKEN": "xoxb-1"}  # no signing secret: not needed here
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", "--socket-mode"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "SLACK_APP_TOKEN" in done.stderr
    assert "SLACK_SIGNING_SECRET" not in done.stderr


# -- the fake's Socket Mode, against slack_sdk's own client ---------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    yield slack
    await slack.stop()


async def test_apps_connections_open_takes_only_app_level_tokens(fake: FakeSlack) -> None:
    opened = await AsyncWebClient(base_url=fake.base_url).apps_connections_open(
        app_token=DEFAULT_APP_TOKEN
    )
    assert str(opened["url"]).startswith(fake.base_url.replace("http", "ws").removesuffix("api/"))
    for token, error in (
        (DEFAULT_TOKEN, "not_allowed_token_type"),
        ("xapp-unknown", "invalid_auth"),
    ):
        with pytest.raises(SlackApiError) as refused:
            await AsyncWebClient(base_url=fake.base_url).apps_connections_open(app_token=token)
        assert refused.value.response["error"] == error
    with pytest.raises(SlackApiError) as refused:
        await AsyncWebClient(token=DEFAULT_APP_TOKEN, base_url=fake.base_url).auth_test()
    assert refused.value.response["error"] == "not_allowed_token_type"


async def test_socket_envelopes_reach_slack_sdk_client_and_acks_come_back(
    fake: FakeSlack,
) -> None:
    received: list[SocketModeRequest] = []
    hellos: list[dict[str, Any]] = []

    async def on_request(client: SocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        if req.type != "events_api":
            await client.send_socket_mode_response(
                SocketModeResponse(envelope_id=req.envelope_id, payload={"text": "got it"})
            )

    async def on_message(_client: Any, message: dict[str, Any], _raw: str | None) -> None:
        if message.get("type") == "hello":
            hellos.append(message)

    client = SocketModeClient(
        app_token=DEFAULT_APP_TOKEN,
        web_client=AsyncWebClient(token=DEFAULT_TOKEN, base_url=fake.base_url),
    )
    client.socket_mode_request_listeners.append(on_request)  # type: ignore[arg-type]
    client.message_listeners.append(on_message)  # type: ignore[arg-type]
    try:
        await client.connect()
        await fake.wait_for_socket(5)
        assert await client.is_connected()
        await wait_for(lambda: bool(hellos), 5)
        assert hellos[0]["num_connections"] == 1

        ack = await fake.socket_send("slash_commands", slash_payload("help", REQUESTER))
        assert ack == {"envelope_id": received[-1].envelope_id, "payload": {"text": "got it"}}
        assert received[-1].type == "slash_commands"
        assert received[-1].accepts_response_payload is True
        assert received[-1].payload["command"] == "/incident"

        event = json.loads(signing.event_body(event={"type": "app_mention"}, event_id="Ev1"))
        assert await fake.socket_send("events_api", event, ack_within_s=0.3) is None
        assert received[-1].type == "events_api"
        assert received[-1].retry_attempt == 0
        assert received[-1].payload["event_id"] == "Ev1"
    finally:
        await client.close()
    await wait_for(lambda: fake.socket_connections == 0, 5)
