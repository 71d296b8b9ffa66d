"""A whole Slack stack in one test: the real aiohttp app, a fake Slack Web API, a demo service."""

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bot.app import SlackApp, build_app
from bot.sandbox import signing
from bot.sandbox.webapi import DEFAULT_TOKEN, FakeSlack
from bot.sandbox.workspace import Message
from bot.settings import SlackSettings
from common import Clock, SystemClock
from orchestration.config import OpsgateConfig
from orchestration.control import ControlPlane
from tests.orchestration.helpers import (
    APPROVER_A,
    APPROVER_B,
    REQUESTER,
    STRANGER,
    DemoService,
    make_config,
    make_control,
    write_runbook,
)

SECRET = "test-signing-secret"
CHANNEL = "C0INCIDENT"
APPROVERS = [REQUESTER, APPROVER_A, APPROVER_B, "UAPP3", "UAPP4", "UAPP5", "UAPP6"]
__all__ = ["APPROVER_A", "APPROVER_B", "CHANNEL", "REQUESTER", "STRANGER", "Stack"]


class Stack:
    """One running opsgate with its fake Slack; restartable on the same database."""

    def __init__(
        self, *, db_url: str, tmp_path: Path, clock: Clock | None = None, **config: Any
    ) -> None:
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.clock = clock or SystemClock()
        self.config_overrides = config
        self.service = DemoService()
        self.slack = FakeSlack()
        self.app: SlackApp | None = None
        self.server: TestServer | None = None
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "Stack":
        await self.service.start()
        api_url = await self.slack.start()
        for user in (*APPROVERS, STRANGER):
            self.slack.add_user(user, name=user.lower())
        write_runbook(self.tmp_path / "runbooks", self.service.port)
        self.settings = SlackSettings(
            bot_token=DEFAULT_TOKEN,
            signing_secret=SECRET,
            app_token=None,
            api_url=api_url,
            alert_token=os.environ.get("OPSGATE_ALERT_TOKEN") or None,
        )
        self.http = aiohttp.ClientSession()
        await self.boot()
        return self

    def make_config(self) -> OpsgateConfig:
        options: dict[str, Any] = {"approvers": APPROVERS, "slack": {"channel_rate_per_s": 1000}}
        options.update(self.config_overrides)
        return make_config(self.tmp_path / "runbooks", **options)

    async def boot(self) -> None:
        """Start (or restart) the opsgate process on the same database and fake Slack."""
        control = await make_control(self.db_url, self.make_config(), self.clock)
        self.control: ControlPlane = control
        self.app = build_app(control, self.settings, relay_idle_s=0.05)
        self.server = TestServer(self.app.web)
        await self.server.start_server()

    async def shutdown(self) -> None:
        """Stop the opsgate process (what a restart or deploy does)."""
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def __aexit__(self, *_exc: object) -> None:
        await self.shutdown()
        if self.http is not None:
            await self.http.close()
        await self.slack.stop()
        await self.service.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/slack/events"))

    async def post(
        self, body: str, *, headers: dict[str, str] | None = None, signed: bool = True
    ) -> tuple[int, str]:
        """POST a Slack request body to /slack/events."""
        assert self.http is not None
        send = (
            signing.sign(body, secret=SECRET)
            if signed
            else {"Content-Type": "application/x-www-form-urlencoded"}
        )
        send.update(headers or {})
        async with self.http.post(self.url, data=body.encode(), headers=send) as resp:
            return resp.status, await resp.text()

    async def command(
        self, text: str, *, user: str = REQUESTER, channel: str = CHANNEL
    ) -> tuple[int, str]:
        """Type ``/incident text`` as ``user``."""
        body = signing.slash_command_body(
            command="/incident", text=text, user_id=user, channel_id=channel
        )
        return await self.post(body)

    async def click(self, message: Message, action_id: str, *, user: str) -> tuple[int, str]:
        """Click a button of a posted message as ``user``."""
        body = signing.button_click_body(
            message=message.to_api(), channel_id=message.channel, action_id=action_id, user_id=user
        )
        return await self.post(body)

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Wait until background work is done and the outbox is delivered."""
        assert self.app is not None
        surface = self.app.surface
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            await surface.tasks.drain(timeout_s)
            await surface.relay.drain()
            if not len(surface.tasks) and not await surface.relay.pending():
                return
            await asyncio.sleep(0.02)
        raise TimeoutError("the stack did not settle")

    def roots(self, channel: str = CHANNEL) -> list[Message]:
        """Top-level messages of the channel (incident roots)."""
        return [m for m in self.slack.messages(channel) if m.thread_ts in (None, m.ts)]

    def root(self, channel: str = CHANNEL) -> Message:
        """The newest top-level message of the channel (the incident's root)."""
        roots = self.roots(channel)
        assert roots, "no root message"
        return roots[-1]

    def thread(self, channel: str = CHANNEL) -> list[Message]:
        """Replies under the newest root."""
        root = self.root(channel)
        return [m for m in self.slack.thread(channel, root.ts) if m.ts != root.ts]

    def card(self, title_part: str, channel: str = CHANNEL) -> Message:
        """The approval card whose text mentions ``title_part``."""
        for message in self.thread(channel):
            if (
                any(b.get("type") == "actions" for b in message.blocks or [])
                or "approv" in message.text.lower()
            ) and (title_part in str(message.blocks) or title_part in message.text):
                return message
        raise LookupError(f"no approval card for {title_part!r}")

    def texts(self, channel: str = CHANNEL) -> str:
        """Everything posted in the thread, as one string (for assertions)."""
        return "\n".join(m.text + " " + str(m.blocks) for m in self.thread(channel))
