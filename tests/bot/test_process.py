"""``opsgate serve`` as a real process: start-up checks, SIGKILL between two votes loses nothing,
and a final vote killed right after its commit (before its 2xx) survives."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import Session, col, create_engine, select

from bot.ids import ActionId
from bot.sandbox import signing
from bot.sandbox.webapi import DEFAULT_TOKEN, FakeSlack
from bot.sandbox.workspace import Message
from orchestration.models import Approval, Step, Vote
from tests.orchestration.helpers import (
    APPROVER_A,
    APPROVER_B,
    REQUESTER,
    DemoService,
    write_runbook,
)

SECRET = "process-test-secret"
CHANNEL = "C0PROC"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """One ``opsgate serve`` child process."""

    def __init__(self, tmp: Path, api_url: str, *, ready_s: float = 60) -> None:
        self.port = free_port()
        self.ready_s = ready_s
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSGATE_"))},
            "SLACK_BOT_TOKEN": DEFAULT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "OPSGATE_SLACK_API_URL": api_url,
            "OPSGATE_CONFIG": str(tmp / "opsgate.yaml"),
            "OPSGATE_DATABASE_URL": f"sqlite:///{tmp / 'serve.db'}",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "serve.log"

    async def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "bot.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with self.log.open("ab") as handle:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - started once, polled below
                command, env=self.env, stdout=handle, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.ready_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(self.log.read_text())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    async def post(self, body: str) -> int:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{self.port}/slack/events",
                data=body.encode(),
                headers=signing.sign(body, secret=SECRET),
            ) as resp,
        ):
            return resp.status


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


async def wait_for(predicate: object, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def replies(slack: FakeSlack) -> list[Message]:
    """The incident thread (empty until the root is posted)."""
    try:
        roots = slack.messages(CHANNEL)
    except LookupError:
        return []
    return slack.thread(CHANNEL, roots[0].ts) if roots else []


def card(slack: FakeSlack) -> Message:
    """The restart's approval card."""
    for message in replies(slack):
        if "Restart checkout-api" in message.text and message.blocks:
            return message
    raise LookupError("no card")


def has_buttons(slack: FakeSlack) -> bool:
    return any(b.get("type") == "actions" for m in replies(slack) for b in m.blocks or [])


async def test_sigkill_between_two_votes_loses_nothing(
    world: tuple[FakeSlack, DemoService, Path],
) -> None:
    slack, service, tmp = world
    served = Served(tmp, slack.base_url)
    try:
        await served.start()
        body = signing.slash_command_body(
            command="/incident", text="checkout-api is down", user_id=REQUESTER, channel_id=CHANNEL
        )
        assert await served.post(body) == 200
        await wait_for(lambda: has_buttons(slack))
        first = signing.button_click_body(
            message=card(slack).to_api(),
            channel_id=CHANNEL,
            action_id=ActionId.APPROVE.value,
            user_id=APPROVER_A,
        )
        assert await served.post(first) == 200
        await wait_for(lambda: "1/2" in str(card(slack).blocks))
        served.kill()

        served = Served(tmp, slack.base_url)
        await served.start()
        second = signing.button_click_body(
            message=card(slack).to_api(),
            channel_id=CHANNEL,
            action_id=ActionId.APPROVE.value,
            user_id=APPROVER_B,
        )
        assert await served.post(second) == 200
        await wait_for(
            lambda: service.restarts == 1 and "Verify" in str([m.text for m in replies(slack)])
        )
        assert len(slack.messages(CHANNEL)) == 1
    finally:
        served.stop()


def approve(slack: FakeSlack, voter: str) -> str:
    """A click on the restart card's Approve button by ``voter``."""
    return signing.button_click_body(
        message=card(slack).to_api(),
        channel_id=CHANNEL,
        action_id=ActionId.APPROVE.value,
        user_id=voter,
    )


def stored(tmp: Path) -> tuple[list[str], list[tuple[str, str]], dict[str, str]]:
    """Straight from the database file: approval states, votes, step statuses by key."""
    engine = create_engine(f"sqlite:///{tmp / 'serve.db'}")
    try:
        with Session(engine) as session:
            states = list(session.exec(select(Approval.state)))
            votes = [(v.voter, v.choice) for v in session.exec(select(Vote).order_by(col(Vote.id)))]
            steps = {s.key: s.status for s in session.exec(select(Step))}
    finally:
        engine.dispose()
    return states, votes, steps


async def test_sigkill_after_the_final_vote_commits_loses_neither_vote_nor_decision(
    world: tuple[FakeSlack, DemoService, Path],
) -> None:
    """The process dies right after the final vote's commit, before its ack: the click got no
    2xx, yet the vote and the approval are stored, and a fresh process shows the card decided.
    The step's ticket was issued but never ran (it is left running for the reconciler); the
    restart endpoint is called at most once."""
    slack, service, tmp = world
    served = Served(tmp, slack.base_url)
    served.env["OPSGATE_FAULT_KILL_AT"] = "after_vote_commit:2"  # the second vote: the final one
    try:
        await served.start()
        body = signing.slash_command_body(
            command="/incident", text="checkout-api is down", user_id=REQUESTER, channel_id=CHANNEL
        )
        assert await served.post(body) == 200
        await wait_for(lambda: has_buttons(slack))
        assert await served.post(approve(slack, APPROVER_A)) == 200
        await wait_for(lambda: "1/2" in str(card(slack).blocks))
        with pytest.raises(aiohttp.ClientError):  # killed after the commit, before the ack
            await served.post(approve(slack, APPROVER_B))
        assert served.proc is not None
        assert served.proc.wait(10) == -signal.SIGKILL
        states, votes, steps = stored(tmp)
        assert states == ["approved"]
        assert votes == [(APPROVER_A, "approve"), (APPROVER_B, "approve")]
        assert steps["restart"] == "running"

        served = Served(tmp, slack.base_url)
        await served.start()
        await wait_for(lambda: not has_buttons(slack) and "Approved" in str(card(slack).blocks))
        assert f"<@{APPROVER_A}>, <@{APPROVER_B}>" in str(card(slack).blocks)
        assert service.restarts <= 1
        assert stored(tmp)[0] == ["approved"]
    finally:
        served.stop()


def test_serve_refuses_to_start_without_slack_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSGATE_"))}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "SLACK_BOT_TOKEN" in done.stderr


def test_serve_refuses_to_start_with_a_broken_config(tmp_path: Path) -> None:
    (tmp_path / "opsgate.yaml").write_text("mode: yolo\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSGATE_"))}
    env |= {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "opsgate.yaml:1: mode" in done.stderr
