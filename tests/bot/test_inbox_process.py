"""An acknowledged request survives ``kill -9``: real ``opsgate serve`` processes, one database.

The fault point ``after_intake`` kills the process right after the 2xx is written, so the
sender holds its acknowledgement while the request exists only in the inbox; nothing of its
work has started. A new process on the same database redoes it once its owner's lease lapses.
"""

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import select

from bot.sandbox import signing
from bot.sandbox.webapi import FakeSlack
from bot.sandbox.workspace import Message
from orchestration.db import Database
from orchestration.models import AuditEvent, InboxItem
from tests.bot.test_process import SECRET, Served, wait_for
from tests.orchestration.helpers import (
    APPROVER_A,
    APPROVER_B,
    REQUESTER,
    DemoService,
    write_runbook,
)

CHANNEL = "C0INBOX"
ALERTS = "C0ALERTS"
ALERT_TOKEN = "process-alert-token"
RECOVERY_S = 60.0  # lease (10 s) + sweep interval + a process start on a busy machine


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[FakeSlack, DemoService, Path]]:
    service = await DemoService().start()
    slack = FakeSlack()
    await slack.start()
    for user in (REQUESTER, APPROVER_A, APPROVER_B):
        slack.add_user(user, name=user.lower())
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    write_runbook(runbooks, service.port)
    (tmp_path / "opsgate.yaml").write_text(
        f"runbooks: ./runbooks\napprovers: [{REQUESTER}, {APPROVER_A}, {APPROVER_B}]\n"
        f"slack: {{channel_rate_per_s: 100, alert_channel: {ALERTS}}}\n"
    )
    yield slack, service, tmp_path
    await slack.stop()
    await service.stop()


def serve(tmp: Path, slack: FakeSlack, db_url: str, *, kill_at: str | None = None) -> Served:
    served = Served(tmp, slack.base_url)
    served.env["OPSGATE_DATABASE_URL"] = db_url
    served.env["OPSGATE_ALERT_TOKEN"] = ALERT_TOKEN
    if kill_at:
        served.env["OPSGATE_FAULT_KILL_AT"] = kill_at
    return served


async def post(served: Served, path: str, body: str, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{served.port}{path}", data=body.encode(), headers=headers
        ) as resp,
    ):
        await resp.read()
        return resp.status


async def died_by_its_fault_point(served: Served) -> None:
    assert served.proc is not None
    code = await asyncio.to_thread(served.proc.wait, 20)
    assert code == -signal.SIGKILL, served.log.read_text()


def roots(slack: FakeSlack, channel: str) -> list[Message]:
    try:
        return [m for m in slack.messages(channel) if m.thread_ts in (None, m.ts)]
    except LookupError:
        return []


def has_card(slack: FakeSlack, channel: str) -> bool:
    """The plan reached its approval card: the probe ran and nothing more runs by itself."""
    found = roots(slack, channel)
    return bool(found) and any(
        "Restart checkout-api" in m.text for m in slack.thread(channel, found[0].ts)
    )


async def inbox_rows(db_url: str) -> list[InboxItem]:
    db = Database(db_url)
    try:
        return await db.run(lambda s: list(s.exec(select(InboxItem))))
    finally:
        await db.close()


async def audit_count(db_url: str, name: str) -> int:
    db = Database(db_url)
    try:
        return await db.run(
            lambda s: len(list(s.exec(select(AuditEvent.id).where(AuditEvent.event == name))))
        )
    finally:
        await db.close()


async def test_a_slash_command_acked_then_killed_opens_its_incident_once_after_restart(
    world: tuple[FakeSlack, DemoService, Path], db_url: str
) -> None:
    slack, service, tmp = world
    body = signing.slash_command_body(
        command="/incident", text="checkout-api is down", user_id=REQUESTER, channel_id=CHANNEL
    )
    headers = signing.sign(body, secret=SECRET)
    first = serve(tmp, slack, db_url, kill_at="after_intake")
    second = serve(tmp, slack, db_url)
    try:
        await first.start()
        assert await post(first, "/slack/events", body, headers) == 200  # Slack has its ack
        await died_by_its_fault_point(first)
        assert roots(slack, CHANNEL) == []
        assert service.health_checks == 0
        (row,) = await inbox_rows(db_url)
        assert row.done_at is None

        await second.start()
        await wait_for(lambda: has_card(slack, CHANNEL), timeout_s=RECOVERY_S)
        assert len(roots(slack, CHANNEL)) == 1
        assert service.health_checks == 1  # one probe at the target
        (row,) = await inbox_rows(db_url)
        assert row.done_at is not None
        assert row.attempts == 2  # the live try (killed) and the redo
        assert second.proc is not None
        assert f":{second.proc.pid}:" in (row.owner or "")  # redone by the new process

        # The same signed request again, inside Slack's window: acked, nothing more.
        for _ in range(4):
            assert await post(second, "/slack/events", body, headers) == 200
        assert await audit_count(db_url, "request_replayed") == 4

        resolve = signing.slash_command_body(
            command="/incident", text="resolve fixed by hand", user_id=REQUESTER, channel_id=CHANNEL
        )
        resolve_headers = signing.sign(resolve, secret=SECRET)
        for _ in range(3):
            assert await post(second, "/slack/events", resolve, resolve_headers) == 200
        await wait_for(
            lambda: any(
                "fixed by hand" in m.text + str(m.blocks)
                for m in slack.thread(CHANNEL, roots(slack, CHANNEL)[0].ts)
            ),
            timeout_s=RECOVERY_S,
        )
        assert await audit_count(db_url, "incident_resolved") == 1
        assert await audit_count(db_url, "incident_opened") == 1
        assert len(roots(slack, CHANNEL)) == 1
        assert service.health_checks == 1
    finally:
        first.stop()
        second.stop()


async def test_an_alert_acked_then_killed_opens_its_incident_once_after_restart(
    world: tuple[FakeSlack, DemoService, Path],
) -> None:
    slack, service, tmp = world
    db_url = f"sqlite:///{tmp / 'alerts.db'}"
    body = (
        '{"version": "4", "status": "firing", "alerts": [{"status": "firing", '
        '"labels": {"alertname": "ServiceDown", "service": "checkout-api"}, '
        '"annotations": {"summary": "checkout-api is down"}, '
        '"startsAt": "2026-11-25T10:00:00Z", "fingerprint": "fp1"}]}'
    )
    headers = {"Authorization": f"Bearer {ALERT_TOKEN}", "Content-Type": "application/json"}
    first = serve(tmp, slack, db_url, kill_at="after_intake")
    second = serve(tmp, slack, db_url)
    try:
        await first.start()
        assert await post(first, "/alerts/alertmanager", body, headers) == 202
        await died_by_its_fault_point(first)
        await second.start()
        assert await post(second, "/alerts/alertmanager", body, headers) == 202  # a repeat
        await wait_for(lambda: has_card(slack, ALERTS), timeout_s=RECOVERY_S)
        assert len(roots(slack, ALERTS)) == 1
        assert service.health_checks == 1
        (row,) = await inbox_rows(db_url)
        assert row.attempts == 2
    finally:
        first.stop()
        second.stop()
