"""The daily digest in Slack: golden blocks, chart, exactly-once across replicas and restarts,
the dry-run CLI after a real flow, ``/incident metrics`` and the ``/metrics`` gauges."""

import asyncio
import json
import os
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from slack_sdk.web.async_client import AsyncWebClient

from bot.chart import spend_chart
from bot.cli import main
from bot.digest import digest_blocks, digest_text, metrics_blocks
from bot.digest_job import CATCH_UP_JOB_ID, CRON_JOB_ID, DigestPoster, schedule_digest
from bot.ids import ActionId
from bot.sandbox.limits import check_blocks
from bot.sandbox.webapi import DEFAULT_TOKEN, FakeSlack
from common import FakeClock
from orchestration.control import ControlPlane
from orchestration.digest import build_digest, claim
from orchestration.opsmetrics import ops_report
from tests.bot.scenario import APPROVER_A, APPROVER_B, CHANNEL, REQUESTER, Stack
from tests.orchestration.helpers import make_config, make_control, write_runbook
from tests.orchestration.history import DAY, END, START, TZ, seed_history

GOLDEN = Path(__file__).parent / "golden" / "digest.json"
OPS = "C0OPS"
# 09:00 in Paris on the 6th: the digest of the 5th is due.
SCHEDULED = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)


# --- rendering ----------------------------------------------------------------------------


@pytest.fixture
async def seeded(db_url: str, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    write_runbook(tmp_path / "runbooks", 9)
    config = make_config(tmp_path / "runbooks")
    control = await make_control(db_url, config, FakeClock(SCHEDULED))
    await control.db.run(seed_history)
    yield control
    await control.close()


async def test_digest_blocks_match_the_golden_file(seeded: ControlPlane) -> None:
    """Regenerate deliberately with REGEN_GOLDEN=1 after a wanted change, and review the diff."""
    digest = await seeded.db.run(lambda s: build_digest(s, day=DAY, tz=TZ))
    rendered = digest_blocks(digest)
    assert check_blocks(rendered.blocks) == []
    assert len(rendered.blocks) <= 50
    actual = {"text": rendered.text, "blocks": rendered.blocks}
    if os.environ.get("REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
    assert actual == json.loads(GOLDEN.read_text())


async def test_digest_text_tells_the_same_figures(seeded: ControlPlane) -> None:
    digest = await seeded.db.run(lambda s: build_digest(s, day=DAY, tz=TZ))
    text = digest_text(digest)
    for expected in (
        "opsgate daily digest for 2026-01-05 (Europe/Paris)",
        "Spend: $0.9317, 3,400 tokens; 7 incident(s) opened, 2 resolved",
        "1. $0.9001  web-restart  halted  'search-api 5xx'  plan p4",
        "Budget: 1 warning(s), 2 stop(s)",
        "mean time to resolve        1h 15m (2 resolved)",
        "action success rate         85.7% (6/7 actions)",
        "humans took over            75.0% (3/4 plans halted, denied, failed, in doubt "
        "or timed out)",
        "cost per successful action  $0.1551",
        "false-positive rate         66.7% (2/3 changes)",
        "change lead time            20m 0s (4 plans, 1 succeeded)",
        "cache hit rate              70.0% (35/50 lookups)",
    ):
        assert expected in text


async def test_chart_is_a_small_png_of_the_seven_days(seeded: ControlPlane) -> None:
    digest = await seeded.db.run(lambda s: build_digest(s, day=DAY, tz=TZ))
    png = spend_chart(digest.report.trend, title="Spend by tool")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (640, 300)
    assert len(png) < 20_000
    assert spend_chart((), title="empty").startswith(b"\x89PNG")


async def test_metrics_blocks_fit_slack_and_say_n_a_for_nothing(seeded: ControlPlane) -> None:
    day = await seeded.db.run(lambda s: ops_report(s, START, END))
    empty = await seeded.db.run(lambda s: ops_report(s, END, END + timedelta(hours=1)))
    rendered = metrics_blocks(day, empty)
    assert check_blocks(rendered.blocks) == []
    body = json.dumps(rendered.blocks, ensure_ascii=False)
    assert "85.7% (6/7 actions)" in body
    assert "n/a (0 resolved)" in body


# --- exactly-once -------------------------------------------------------------------------


class Replicas:
    """Two opsgate processes (control planes, databases, Slack clients) on one database."""

    def __init__(self, db_url: str, tmp_path: Path, slack: FakeSlack, api_url: str) -> None:
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.slack = slack
        self.api_url = api_url
        self.clock = FakeClock(SCHEDULED)
        self.controls: list[ControlPlane] = []
        self.clients: list[AsyncWebClient] = []

    async def replica(self, name: str) -> DigestPoster:
        write_runbook(self.tmp_path / "runbooks", 9)
        config = make_config(
            self.tmp_path / "runbooks",
            digest={"channel": OPS, "time": "09:00", "timezone": "Europe/Paris"},
        )
        control = await make_control(self.db_url, config, self.clock)
        client = AsyncWebClient(token=DEFAULT_TOKEN, base_url=self.api_url)
        self.controls.append(control)
        self.clients.append(client)
        return DigestPoster(control=control, client=client, replica_id=name)

    def posts(self) -> list[str]:
        try:
            return [m.text for m in self.slack.messages(OPS)]
        except Exception:  # the channel does not exist until the first post
            return []

    async def close(self) -> None:
        for client in self.clients:
            if client.session is not None:
                await client.session.close()
        for control in self.controls:
            await control.close()


@pytest.fixture
async def replicas(db_url: str, tmp_path: Path) -> AsyncIterator[Replicas]:
    slack = FakeSlack()
    api_url = await slack.start()
    group = Replicas(db_url, tmp_path, slack, api_url)
    first = await group.replica("seed")
    await first.control.db.run(seed_history)
    yield group
    await group.close()
    await slack.stop()


async def test_two_scheduler_instances_racing_the_same_day_post_once(replicas: Replicas) -> None:
    a, b = await replicas.replica("A"), await replicas.replica("B")
    schedulers = []
    for poster in (a, b):
        scheduler = AsyncIOScheduler()
        assert schedule_digest(scheduler, poster) == [CRON_JOB_ID, CATCH_UP_JOB_ID]
        trigger = scheduler.get_job(CRON_JOB_ID).trigger
        assert isinstance(trigger, CronTrigger)
        # The cron fires at 09:00 Paris time (08:00 UTC in January), controlled time in, out.
        fire = trigger.get_next_fire_time(None, datetime(2026, 1, 6, 3, 0, tzinfo=UTC))
        assert fire == SCHEDULED
        job = scheduler.get_job(CRON_JOB_ID)
        assert (job.misfire_grace_time, job.coalesce, job.max_instances) == (3600, True, 1)
        schedulers.append(scheduler)
    ran: list[str] = []
    for scheduler in schedulers:
        scheduler.add_listener(lambda event: ran.append(event.job_id), mask=2**12)  # executed
        scheduler.start(paused=True)
        # Both replicas' cron jobs fire now, at the scheduled minute of the fake clock.
        scheduler.modify_job(CRON_JOB_ID, next_run_time=datetime.now(UTC))
        scheduler.resume()
    deadline = asyncio.get_running_loop().time() + 10
    while ran.count(CRON_JOB_ID) < 2:
        assert asyncio.get_running_loop().time() < deadline, ran
        await asyncio.sleep(0.02)
    for scheduler in schedulers:
        scheduler.shutdown(wait=False)
    assert replicas.posts() == [
        "opsgate digest for 2026-01-05: spent $0.9317; 4 plans finished; action success 85.7%"
    ]
    root = replicas.slack.messages(OPS)[0]
    chart = [m for m in replicas.slack.thread(OPS, root.ts) if m.files]
    assert len(chart) == 1
    assert chart[0].files[0]["name"] == "spend-7d.png"
    assert len(replicas.slack.calls_to("files.completeUploadExternal")) == 1


async def test_direct_races_and_a_restart_at_the_scheduled_minute_still_post_once(
    replicas: Replicas,
) -> None:
    a, b = await replicas.replica("A"), await replicas.replica("B")
    results = await asyncio.gather(a.run_scheduled(), b.run_scheduled(), a.run_due(), b.run_due())
    assert sorted(results) == [False, False, False, True]
    # A restart during the scheduled minute: a new process, a new replica id, both jobs run.
    replicas.clock.advance(30)
    restarted = await replicas.replica("A-restarted")
    assert not await restarted.run_scheduled()
    assert not await restarted.run_due()
    replicas.clock.advance(3600)
    assert not await restarted.run_due()  # the catch-up finds it posted
    assert len(replicas.posts()) == 1


async def test_a_crash_after_claiming_is_taken_over_later(replicas: Replicas) -> None:
    a, b = await replicas.replica("A"), await replicas.replica("B")
    now = replicas.clock.now()
    assert await a.control.db.run(
        lambda s: claim(
            s, channel=OPS, day=DAY, replica_id="A", now=now, stale_after=timedelta(minutes=10)
        )
    )  # ... and A dies before posting
    assert not await b.run_due()
    replicas.clock.advance(5 * 60)
    assert not await b.run_due()  # A might still be posting
    assert replicas.posts() == []
    replicas.clock.advance(5 * 60 + 1)
    assert await b.run_due()
    assert len(replicas.posts()) == 1
    replicas.clock.advance(5 * 60)
    assert not await b.run_due()
    assert not await a.run_due()
    assert len(replicas.posts()) == 1


async def test_a_slack_failure_is_retried_by_the_next_run(replicas: Replicas) -> None:
    a, b = await replicas.replica("A"), await replicas.replica("B")
    replicas.slack.fail_next("chat.postMessage", 1, status=400)
    assert not await a.run_scheduled()
    assert replicas.posts() == []
    assert await b.run_due()
    assert len(replicas.posts()) == 1


async def test_before_the_configured_time_nothing_is_due(replicas: Replicas) -> None:
    a = await replicas.replica("A")
    replicas.clock.advance(-60)  # 08:59 in Paris
    assert not await a.run_due()
    assert replicas.posts() == []


# --- after a real flow through the Slack app -----------------------------------------------


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(db_url=db_url, tmp_path=tmp_path) as running:
        yield running


async def approve_checkout(stack: Stack) -> None:
    status, _ = await stack.command("checkout-api is down")
    assert status == 200
    await stack.settle()
    for user in (APPROVER_A, APPROVER_B):
        await stack.click(stack.card("Restart checkout-api"), ActionId.APPROVE.value, user=user)
        await stack.settle()
    assert stack.service.restarts == 1


async def test_dry_run_after_a_real_flow_shows_its_cost_and_outcome(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await approve_checkout(stack)
    view = await stack.control.incident_plan((await stack.control.open_incident_in(CHANNEL)).id)  # type: ignore[union-attr]
    assert view.status == "succeeded"
    monkeypatch.setenv("OPSGATE_DATABASE_URL", stack.db_url)
    monkeypatch.chdir(stack.tmp_path)
    today = datetime.now(UTC).date().isoformat()
    posts_before = len(stack.slack.calls)
    # The console script itself, in a thread of its own (it runs its own event loop).
    assert await asyncio.to_thread(main, ["digest", "--dry-run", "--date", today]) == 0
    out = capsys.readouterr().out
    assert f"opsgate daily digest for {today} (UTC)" in out
    spent = f"${view.spent_usd:.4f}"
    assert f"Spend: {spent}" in out
    assert f"1. {spent}  web-restart  succeeded  'checkout-api is down'  plan {view.id}" in out
    assert "action success rate         100.0% (3/3 actions)" in out
    # Two approvals the runbook asks for by design: nobody had to take over.
    assert "humans took over            0.0% (0/1 plans" in out
    assert len(stack.slack.calls) == posts_before  # a dry run posts nothing


async def test_incident_metrics_replies_privately_with_24h_and_7d(stack: Stack) -> None:
    await approve_checkout(stack)
    status, _ = await stack.command("metrics")
    assert status == 200
    await stack.settle()
    replies = [e for e in stack.slack.ephemerals(REQUESTER) if "metrics" in e.text]
    assert len(replies) == 1
    blocks = json.dumps(replies[0].blocks, ensure_ascii=False)
    assert "Last 24 hours" in blocks
    assert "Last 7 days" in blocks
    assert "100.0% (3/3 actions)" in blocks
    assert "0.0% (0/1 plans halted, denied, failed, in doubt or timed out" in blocks
    assert check_blocks(replies[0].blocks or []) == []


async def test_metrics_endpoint_serves_the_operational_gauges(stack: Stack) -> None:
    await approve_checkout(stack)
    assert stack.http is not None
    assert stack.server is not None
    async with stack.http.get(stack.server.make_url("/metrics")) as resp:
        assert resp.status == 200
        text = await resp.text()
    for name in (
        "opsgate_mttr_seconds",
        "opsgate_escalation_ratio",
        "opsgate_cost_per_successful_action_usd",
        "opsgate_false_positive_ratio",
        "opsgate_change_lead_time_seconds",
        "opsgate_cache_hit_ratio",
        "opsgate_slack_requests_total",
    ):
        assert f"# TYPE {name} gauge" in text or name == "opsgate_slack_requests_total", name
    assert "opsgate_action_success_ratio 1.0" in text
    assert "opsgate_escalation_ratio 0.0" in text  # an approved plan is no escalation
    assert 'opsgate_spend_usd{dimension="tool",key="http"}' in text
    assert "opsgate_false_positive_ratio 0.0" in text


async def test_no_digest_channel_means_no_digest_jobs(seeded: ControlPlane) -> None:
    client = AsyncWebClient(token=DEFAULT_TOKEN)
    poster = DigestPoster(control=seeded, client=client, replica_id="A")
    assert poster.channel is None
    assert schedule_digest(AsyncIOScheduler(), poster) == []
    assert not await poster.post(DAY)
