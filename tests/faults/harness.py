"""A world for crash tests: real ``opsgate serve`` processes, the fake Slack, a target that
counts every call it receives (outside the processes being killed)."""

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.serving import Serve
from bot.ids import ActionId
from bot.sandbox import signing
from bot.sandbox.webapi import FakeSlack
from bot.sandbox.workspace import Message
from tests.orchestration.helpers import serve_locally

SECRET = "fault-test-secret"
CHANNEL = "C0FAULT"
REQUESTER = "UREQ"
APPROVER_A = "UAPP1"
APPROVER_B = "UAPP2"
LEASE_S = 2.0

RUNBOOK = """
id: web-restart
version: 1
title: Restart an unhealthy web service
match:
  keywords: ["down"]
  patterns: ['(?P<service>[a-z][a-z0-9-]{{1,40}}) is down']
steps:
  - id: probe
    title: Probe {{service}} health
    tool: http.get
    args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/health"}}
    risk: low
  - id: restart
    title: Restart {{service}}
    tool: http.post
    args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/restart"}}
    risk: high
    check:
      title: Is {{service}} answering again?
      tool: http.get
      args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/health"}}
      expect: {{status: 200}}
  - id: verify
    title: Verify {{service}} is healthy
    tool: http.get
    args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/health"}}
    expect: {{status: 200}}
    risk: low
"""

FLUSH_RUNBOOK = """
id: cache-flush
version: 1
title: Flush a stale cache
match:
  keywords: ["stale"]
  patterns: ['(?P<service>[a-z][a-z0-9-]{{1,40}}) serves stale']
steps:
  - id: flush
    title: Flush {{service}} cache
    tool: http.post
    args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/flush"}}
    risk: medium
    expect: {{status: 200}}
    compensate:
      title: Roll {{service}} back
      tool: http.post
      args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/rollback"}}
      risk: medium
"""


@dataclass
class Target:
    """The service opsgate acts on; counts every call whatever happens to the caller."""

    restart_delay_s: float = 0.0
    rollback_delay_s: float = 0.0
    healthy: bool = False
    calls: Counter[str] = field(default_factory=Counter)
    keys: list[tuple[str, str]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    slow: dict[str, float] = field(default_factory=dict)  # per service name: seconds per POST
    port: int = 0
    runner: web.AppRunner | None = None

    async def start(self) -> "Target":
        app = web.Application()
        app.router.add_get("/svc/{name}/health", self._health)
        app.router.add_post("/svc/{name}/{verb}", self._post)
        self.runner, self.port = await serve_locally(app)
        return self

    async def _health(self, request: web.Request) -> web.Response:
        self.calls["health"] += 1
        return web.json_response({}, status=200 if self.healthy else 503)

    async def _post(self, request: web.Request) -> web.Response:
        verb, name = request.match_info["verb"], request.match_info["name"]
        self.keys.append((verb, request.headers.get("Idempotency-Key", "")))
        self.arrived.set()
        # The effect happens whatever becomes of the caller (a restart takes time).
        delay = {"restart": self.restart_delay_s, "rollback": self.rollback_delay_s}.get(verb, 0)
        await asyncio.sleep(self.slow.get(name, delay))
        self.calls[verb] += 1
        self.calls[f"{verb}:{name}"] += 1
        if verb == "restart":
            self.healthy = True
        status = 500 if verb == "flush" else 200
        return web.json_response({"done": verb}, status=status)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Replica(Serve):
    """One ``opsgate serve`` child process on the shared database (``kill_at``: a fault point
    at which it kills itself, ``common.faults``)."""

    def __init__(self, tmp: Path, *, api_url: str, db_url: str, name: str, kill_at: str = ""):
        env = {"OPSGATE_FAULT_KILL_AT": kill_at} if kill_at else {}
        super().__init__(tmp, api_url=api_url, db_url=db_url, secret=SECRET, name=name, env=env)

    async def start(self, *, timeout_s: float = 30.0, port_tries: int = 3) -> "Replica":
        await super().start(timeout_s=timeout_s, port_tries=port_tries)
        return self

    async def post(self, body: str) -> int | None:
        """POST a signed body; None when the process died before answering."""
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"http://127.0.0.1:{self.port}/slack/events",
                    data=body.encode(),
                    headers=signing.sign(body, secret=SECRET),
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp,
            ):
                return resp.status
        except (aiohttp.ClientError, TimeoutError):
            return None


async def wait_for(
    predicate: Callable[[], Any], *, timeout_s: float = 20.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def roots(slack: FakeSlack, channel: str = CHANNEL) -> list[Message]:
    try:
        return slack.messages(channel)
    except LookupError:
        return []


def thread(slack: FakeSlack, channel: str = CHANNEL, needle: str = "") -> list[Message]:
    """The thread of the first incident in ``channel`` whose root mentions ``needle``."""
    for root in roots(slack, channel):
        if needle in str(root.blocks or root.text):
            return slack.thread(channel, root.ts)
    return []


def card(
    slack: FakeSlack,
    title: str,
    *,
    action: str = ActionId.APPROVE,
    channel: str = CHANNEL,
    needle: str = "",
) -> Message | None:
    """The newest thread message about ``title`` with a button ``action``."""
    for message in reversed(thread(slack, channel, needle)):
        if title not in str(message.blocks):
            continue
        for block in message.blocks or []:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element.get("action_id") == action:
                    return message
    return None


def texts(slack: FakeSlack, channel: str = CHANNEL, needle: str = "") -> str:
    return "\n".join(str(m.blocks or m.text) for m in thread(slack, channel, needle))


def command(text: str, user: str = REQUESTER, channel: str = CHANNEL) -> str:
    return signing.slash_command_body(
        command="/incident", text=text, user_id=user, channel_id=channel
    )


def click(message: Message, user: str, action: str, channel: str = CHANNEL) -> str:
    return signing.button_click_body(
        message=message.to_api(), channel_id=channel, action_id=action, user_id=user
    )
