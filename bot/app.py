"""The Slack app: Bolt AsyncApp on one aiohttp server, wired to the control plane.

Routes: ``POST /slack/events`` (events, slash commands, interactivity), ``GET /healthz``,
``GET /readyz`` (database reachable; knowledge in sync), ``GET /metrics`` (Prometheus),
``GET /traces/{trace_id}`` (a trace's waterfall, behind the signed links messages carry).
Background: the outbox relay, the knowledge refresh (``knowledge.refresh_s``); scheduled jobs:
approval expiry, step-lease renewal and the reconciler of lapsed steps, and the daily digest
when a digest channel is configured.
"""

import asyncio
import gc
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.web.async_client import AsyncWebClient

from bot import refs as _refs  # noqa: F401 - registers the slack_refs table before start
from bot.delivery import SlackNotifier
from bot.digest_job import DigestPoster, schedule_digest
from bot.listeners import register
from bot.middleware import correlation, socket_checked
from bot.quiet import QuietGate
from bot.redaction import RedactingWebClient, redacting_ack, redacting_client
from bot.refs import Refs
from bot.routes import add_routes
from bot.settings import SlackSettings
from bot.surface import Surface
from bot.tasks import TaskTracker, stoppable
from bot.traces import TraceLinks
from orchestration.control import ControlPlane
from orchestration.outbox import OutboxRelay
from orchestration.retention import RetentionJob
from orchestration.telemetry import get_logger

log = get_logger("opsgate.app")

EXPIRY_INTERVAL_S = 30


@dataclass
class SlackApp:
    """Everything ``opsgate serve`` runs: the Bolt app, the web server, the background loops."""

    bolt: AsyncApp
    web: web.Application
    surface: Surface
    client: AsyncWebClient
    digest: DigestPoster


class _NotTokenSkipped(logging.Filter):
    """Drops Bolt's warning that the token is unused when a client is given (it is the client's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def _quiet_token_warning() -> None:
    """Bolt's framework logger (``slack_bolt.AsyncApp``), without that one warning."""
    logger = logging.getLogger(f"slack_bolt.{AsyncApp.__name__}")
    if not any(isinstance(f, _NotTokenSkipped) for f in logger.filters):
        logger.addFilter(_NotTokenSkipped())


def build_app(
    control: ControlPlane,
    settings: SlackSettings,
    *,
    relay_idle_s: float = 0.5,
    expiry_interval_s: float = EXPIRY_INTERVAL_S,
) -> SlackApp:
    """Wire the Bolt app, listeners, outbox delivery and HTTP routes around ``control``."""
    # Every Web API call leaves through the redacting client. Handed a client, Bolt still reads
    # SLACK_BOT_TOKEN and warns "As you gave `client` as well, `token` will be unused": that one
    # line says nothing true of opsgate (the client carries the token), so it is filtered out.
    client = RedactingWebClient(token=settings.bot_token, base_url=settings.api_url)
    _quiet_token_warning()
    bolt = AsyncApp(
        signing_secret=settings.signing_secret or None,
        client=client,
        request_verification_enabled=bool(settings.signing_secret),
        raise_error_for_unhandled_request=False,
    )
    links = TraceLinks.from_config(control.config.slack)
    notifier = SlackNotifier(
        client=client,
        control=control,
        refs=Refs(control.db),
        rate_per_s=control.config.slack.channel_rate_per_s,
        links=links,
        ops_channel=control.config.slack.ops_channel,
    )
    quiet = QuietGate()
    relay = OutboxRelay(db=control.db, notifier=notifier, clock=control.clock, pace=quiet.wait)
    surface = Surface(
        control=control, config=control.config, tasks=TaskTracker(), relay=relay, quiet=quiet
    )
    # HTTP bodies are checked in the route, before Bolt (socket_checked: Socket Mode's);
    # listeners answer and call Slack redacted; every request gets its correlation id.
    for middleware in (
        socket_checked,
        redacting_ack,
        redacting_client(client),
        correlation(surface.quiet),
    ):
        bolt.middleware(middleware)
    incident = register(bolt, surface)
    digest = DigestPoster(control=control, client=client)

    app = web.Application()
    add_routes(
        app,
        bolt=bolt,
        incident=incident,
        control=control,
        settings=settings,
        surface=surface,
        links=links,
    )
    background: dict[str, Any] = {}

    async def on_startup(_app: web.Application) -> None:
        await control.start()  # logs each runbook problem (runbook_problem)
        background["relay"] = asyncio.create_task(
            relay.run_forever(idle_s=relay_idle_s), name="outbox-relay"
        )
        # Every knowledge.refresh_s: publish new file contents, follow the database's versions.
        background["knowledge"] = asyncio.create_task(
            control.knowledge.run_forever(), name="knowledge-refresh"
        )
        # Requests acknowledged by a process that died before doing them: redone from the inbox.
        background["inbox"] = asyncio.create_task(surface.sweep_forever(), name="inbox-sweeper")
        scheduler = _scheduler(control, digest, expiry_interval_s=expiry_interval_s)
        scheduler.start()
        background["scheduler"] = scheduler
        # Long-lived start-up objects leave the GC's generations: full collections on a busy
        # heap otherwise pause the event loop for tens of milliseconds (measured in bench/).
        gc.freeze()
        log.info("opsgate_started", runbooks=len(control.snapshot.runbooks))

    async def on_cleanup(_app: web.Application) -> None:
        sweeper = background.get("inbox")
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
        await surface.tasks.drain()
        scheduler = background.get("scheduler")
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        refresher = background.get("knowledge")
        if refresher is not None:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
        task = background.get("relay")
        if task is not None:
            await relay.drain()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await client.session.close() if client.session else None
        await control.close()
        log.info("opsgate_stopped")

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return SlackApp(bolt=bolt, web=app, surface=surface, client=client, digest=digest)


def _scheduler(
    control: ControlPlane, digest: DigestPoster, *, expiry_interval_s: float
) -> AsyncIOScheduler:
    """The periodic jobs: approval expiry, lease renewal, the reconciler, the daily digest."""
    scheduler = AsyncIOScheduler()
    scheduler.add_job(
        stoppable(control.expire_approvals),
        "interval",
        seconds=expiry_interval_s,
        id="expire-approvals",
        max_instances=1,
        coalesce=True,
    )
    execution = control.config.execution
    scheduler.add_job(
        stoppable(control.renew_leases),
        "interval",
        seconds=execution.lease_s / 3,
        id="renew-step-leases",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        stoppable(control.reconcile),
        "interval",
        seconds=execution.reconcile_s,
        id="reconcile-steps",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),  # at start-up too: a crash left steps behind
    )
    if control.config.retention.enabled:
        job = RetentionJob(
            control.db, control.config.retention, control.clock, replica_id=digest.replica_id
        )
        # Every 15 minutes: the run of the day once its time has come (claimed once across
        # replicas), or nothing; a failed run is retried by the next call.
        scheduler.add_job(
            stoppable(job.run_due),
            "interval",
            minutes=15,
            id="retention",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC) + timedelta(minutes=1),
        )
    if control.config.rollout.scopes:
        # FP spikes and cost drift demote a scope; failures demote at once, in their commit.
        scheduler.add_job(
            stoppable(control.rollout.check),
            "interval",
            seconds=control.config.rollout.check_every_s,
            id="rollout-check",
            max_instances=1,
            coalesce=True,
        )
        # A demotion made by another replica (or in a step's commit) reaches this process's
        # plans in flight within this period (``StageBook``).
        scheduler.add_job(
            stoppable(control.rollout.refresh),
            "interval",
            seconds=5,
            id="rollout-stages",
            max_instances=1,
            coalesce=True,
        )
    if control.llm is not None:
        scheduler.add_job(
            stoppable(control.prune_transcripts),
            "interval",
            hours=1,
            id="prune-transcripts",
            max_instances=1,
            coalesce=True,
        )
    if schedule_digest(scheduler, digest):
        log.info(
            "digest_scheduled",
            channel=digest.channel,
            at=digest.config.time,
            timezone=digest.config.timezone,
        )
    return scheduler
