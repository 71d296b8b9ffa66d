"""The real-server scenario: real Prometheus and Alertmanager, a real ``opsgate serve``.

Prometheus scrapes the demo service, whose error-rate rule fires once ``checkout-api`` breaks;
Alertmanager delivers the webhook to ``opsgate serve`` (a child process, on SQLite and
PostgreSQL); the shipped monitored ``web-restart`` runbook queries Prometheus, silences the
alert in Alertmanager while the restart runs, and expires the silence at its end; the alert
resolves and the incident closes. Approvals are signed Slack requests, as in ``test_process``.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from sqlmodel import Session, create_engine, select

from bot.demo import monitoring
from bot.demo.monitoring import Monitoring, MonitoringSpec
from bot.demo.runner import SERVICE, write_runbooks
from bot.demo.service import DemoService
from bot.ids import ActionId
from bot.sandbox import signing
from bot.sandbox.webapi import FakeSlack
from bot.sandbox.workspace import Message
from orchestration.models import Incident
from tests.bot.test_process import Served, free_port
from tests.monitoring import require_monitoring

CHANNEL = "C0PROM"
APPROVER_A, APPROVER_B = "U0PROMA01", "U0PROMB02"
ALERT_TOKEN = "prom-scenario-alert-token-0123"
DEADLINE_S = 120.0  # generous: the machine is shared; nothing here measures time


@dataclass
class World:
    slack: FakeSlack
    service: DemoService
    mon: Monitoring
    served: Served
    db_url: str


@pytest.fixture
async def world(tmp_path: Path, db_url: str) -> AsyncIterator[World]:
    require_monitoring()
    service = DemoService()
    runner = web.AppRunner(service.app)
    await runner.setup()
    service_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", service_port).start()
    traffic = asyncio.create_task(service.traffic([SERVICE], every_s=0.1))
    slack = FakeSlack()
    await slack.start()
    for user in (APPROVER_A, APPROVER_B):
        slack.add_user(user, name=user.lower())
    served = Served(tmp_path, slack.base_url, ready_s=90)
    served.env["OPSGATE_DATABASE_URL"] = db_url
    served.env["OPSGATE_ALERT_TOKEN"] = ALERT_TOKEN
    mon = Monitoring(
        MonitoringSpec(
            scrape_targets=[f"127.0.0.1:{service_port}"],
            webhook_url=f"http://127.0.0.1:{served.port}/alerts/alertmanager",
            webhook_token=ALERT_TOKEN,
        ),
        tmp_path / "monitoring",
    )
    try:
        await mon.start()
        write_runbooks(tmp_path / "runbooks", f"http://127.0.0.1:{service_port}", monitored=True)
        config = {
            "runbooks": "./runbooks",
            "approvers": [APPROVER_A, APPROVER_B],
            "slack": {
                "alert_channel": CHANNEL,
                "incident_channels": [CHANNEL],
                "channel_rate_per_s": 100,
            },
            "execution": {"backoff_initial_s": 0.2, "backoff_max_s": 1},
            "adapters": {
                "prometheus": {"base_url": mon.prometheus_url},
                "alertmanager": {
                    "base_url": mon.alertmanager_url,
                    "allow_matchers": {
                        "service": [SERVICE],
                        "alertname": [monitoring.ALERT_NAME],
                    },
                },
            },
        }
        (tmp_path / "opsgate.yaml").write_text(yaml.safe_dump(config))
        await served.start()
        yield World(slack, service, mon, served, db_url)
    finally:
        served.stop()
        await mon.stop()
        traffic.cancel()
        await asyncio.gather(traffic, return_exceptions=True)
        await slack.stop()
        await runner.cleanup()


async def eventually(what: str, check: Callable[[], Any], world: World) -> Any:
    """Poll ``check`` (sync or async) until truthy; on the deadline, fail with the logs."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out waiting for {what}\n--- thread:\n{thread_text(world.slack)}\n"
                f"--- serve:\n{world.served.log.read_text()[-4000:]}\n"
                f"--- prometheus:\n{world.mon.log_tail('prometheus')}\n"
                f"--- alertmanager:\n{world.mon.log_tail('alertmanager')}"
            )
        await asyncio.sleep(0.2)


def thread(slack: FakeSlack) -> list[Message]:
    try:
        roots = slack.messages(CHANNEL)
    except LookupError:
        return []
    return slack.thread(CHANNEL, roots[0].ts) if roots else []


def thread_text(slack: FakeSlack) -> str:
    return "\n".join(f"{m.text} {m.blocks}" for m in thread(slack))


def card(slack: FakeSlack, title: str) -> Message | None:
    """The approval card of the step ``title`` while it still has buttons."""
    for message in thread(slack):
        buttons = any(b.get("type") == "actions" for b in message.blocks or [])
        if buttons and message.text.startswith("Approval needed") and title in message.text:
            return message
    return None


async def approve(world: World, title: str, *voters: str) -> None:
    """Signed clicks on Approve of the card of ``title``, one per voter."""
    await eventually(f"the card of {title!r}", lambda: card(world.slack, title), world)
    for voter in voters:
        found = card(world.slack, title)
        assert found is not None, f"the card of {title!r} lost its buttons before {voter} voted"
        body = signing.button_click_body(
            message=found.to_api(),
            channel_id=CHANNEL,
            action_id=ActionId.APPROVE.value,
            user_id=voter,
        )
        assert await world.served.post(body) == 200


async def am_get(world: World, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{world.mon.alertmanager_url}{path}") as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def silences(world: World) -> list[dict[str, Any]]:
    return list(await am_get(world, "/api/v2/silences"))


def incidents(world: World) -> list[Incident]:
    engine = create_engine(world.db_url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(Incident)).all())
    finally:
        engine.dispose()


async def test_prometheus_alert_to_silenced_restart_to_closed_incident(world: World) -> None:
    world.service.break_service(SERVICE)

    # Prometheus's rule fires; Alertmanager's webhook opens the incident in opsgate serve.
    await eventually("the incident opened by the alert", lambda: thread(world.slack), world)
    (incident,) = incidents(world)
    assert incident.source == "alertmanager"
    assert incident.requester == "alertmanager"
    assert incident.status == "open"

    # The probe is a Prometheus query of the error rate; it finds the service unhealthy.
    probe = await eventually(
        "the probe's result",
        lambda: next(
            (m for m in thread(world.slack) if m.text.startswith("Step succeeded: Read")), None
        ),
        world,
    )
    assert "prometheus.query" in str(probe.blocks)
    assert 'demo_http_errors_total{service="checkout-api"}' in str(probe.blocks), probe.blocks
    assert "unhealthy" in str(probe.blocks), probe.blocks

    # One approval silences the alert in Alertmanager, before the restart.
    assert await silences(world) == []
    await approve(world, "Silence checkout-api", APPROVER_A)
    (silence,) = await eventually("the silence", lambda: silences(world), world)
    assert silence["createdBy"] == "opsgate"
    assert silence["status"]["state"] == "active"
    assert silence["matchers"] == [
        {"name": "service", "value": SERVICE, "isRegex": False, "isEqual": True}
    ]

    async def suppressed() -> bool:
        alerts = await am_get(world, f'/api/v2/alerts?filter=service="{SERVICE}"')
        return any(silence["id"] in a["status"]["silencedBy"] for a in alerts)

    await eventually("the alert silenced during the restart", suppressed, world)
    assert world.service.state.restarts.get(SERVICE, 0) == 0

    # The restart (two approvers), then verify; the last step expires the silence.
    await approve(world, "Restart checkout-api", APPROVER_A, APPROVER_B)
    await eventually("the restart", lambda: world.service.state.restarts.get(SERVICE) == 1, world)
    still = await silences(world)
    assert [s["status"]["state"] for s in still] == ["active"], "silenced while verifying"

    # The on-call expires the silence only after Prometheus has resolved the alert: the
    # resolution reached Alertmanager while silenced, and must still reach opsgate afterwards.
    async def resolved_in_prometheus() -> bool:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{world.mon.prometheus_url}/api/v1/alerts") as resp,
        ):
            return (await resp.json())["data"]["alerts"] == []

    await eventually("Prometheus resolving the alert", resolved_in_prometheus, world)
    assert [i.status for i in incidents(world)] == ["open"], "its plan has not ended"
    await approve(world, "Expire the silence on checkout-api", APPROVER_B)

    async def expired() -> bool:
        return [s["status"]["state"] for s in await silences(world)] == ["expired"]

    await eventually("the silence expired when the plan ends", expired, world)

    # The error rate falls, Prometheus resolves the alert, Alertmanager sends the resolution:
    # every alert of the group resolved and the plan ended, so the incident closes.
    await eventually(
        "the incident resolved",
        lambda: [i.status for i in incidents(world)] == ["resolved"],
        world,
    )
    (closed,) = incidents(world)
    assert closed.id == incident.id
    assert closed.resolved_at is not None
    await eventually(
        "the root message showing the incident resolved",
        lambda: "Resolved" in world.slack.messages(CHANNEL)[0].text,
        world,
    )
    assert ALERT_TOKEN not in world.served.log.read_text()
    assert len(world.slack.messages(CHANNEL)) == 1, "one incident for the alert group"
