"""The daily digest job: claim, post to the ops channel, chart in the thread, mark posted.

Two APScheduler jobs call it (see :func:`schedule_digest`): a ``CronTrigger`` at the configured
local time, and a catch-up every ``digest.retry_minutes`` that posts a digest still due (a
replica that was down at the scheduled minute, a post that failed, a claim whose holder crashed).
Every run goes through the claim of ``orchestration.digest``, so however many replicas and
restarts, one digest per channel and day reaches Slack.
"""

import os
import secrets
import socket
from datetime import date, timedelta

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot import strings as s
from bot.chart import spend_chart
from bot.digest import day_label, digest_blocks
from bot.tasks import stoppable
from orchestration.control import ControlPlane
from orchestration.digest import (
    Digest,
    build_digest,
    claim,
    due_day,
    mark_failed,
    mark_posted,
    previous_day,
)
from orchestration.telemetry import get_logger

log = get_logger("opsgate.digest")

CRON_JOB_ID = "daily-digest"
CATCH_UP_JOB_ID = "daily-digest-catch-up"


def new_replica_id() -> str:
    """Who claims: host, process and a random tag (a restarted process is a new claimer)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def load_digest(control: ControlPlane, day: date) -> Digest:
    """The digest of the local ``day`` (configured time zone), read in one unit of work."""
    tz = control.config.digest.tz
    rate = control.config.digest.people_usd_per_hour
    return await control.db.run(
        lambda session: build_digest(
            session,
            day=day,
            tz=tz,
            people_usd_per_hour=rate,
            rollout=control.config.rollout,
            mode=control.config.mode,
        )
    )


class DigestPoster:
    """Posts the digest once per channel and day, whichever replica gets there first."""

    def __init__(
        self, *, control: ControlPlane, client: AsyncWebClient, replica_id: str | None = None
    ) -> None:
        self.control = control
        self.client = client
        self.config = control.config.digest
        self.channel = control.config.digest_channel()
        self.replica_id = replica_id or new_replica_id()

    async def run_scheduled(self) -> bool:
        """The cron job: post yesterday's digest (local time)."""
        return await self.post(previous_day(self.control.clock.now(), self.config.tz))

    async def run_due(self) -> bool:
        """The catch-up job: post the digest that is due now, if it was not posted yet."""
        day = due_day(self.control.clock.now(), at=self.config.at, tz=self.config.tz)
        return False if day is None else await self.post(day)

    async def post(self, day: date) -> bool:
        """Claim, post and mark ``day``'s digest; True when this call posted it."""
        channel = self.channel
        if channel is None:
            return False
        stale = timedelta(minutes=self.config.claim_timeout_minutes)
        now = self.control.clock.now()
        won = await self.control.db.run(
            lambda session: claim(
                session,
                channel=channel,
                day=day,
                replica_id=self.replica_id,
                now=now,
                stale_after=stale,
            )
        )
        if not won:
            return False
        log.info("digest_claimed", channel=channel, day=day.isoformat(), replica=self.replica_id)
        try:
            digest = await load_digest(self.control, day)
            rendered = digest_blocks(digest)
            response = await self.client.chat_postMessage(
                channel=channel, text=rendered.text, blocks=rendered.blocks
            )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            await self.control.db.run(
                lambda session: mark_failed(
                    session, channel=channel, day=day, replica_id=self.replica_id, error=error
                )
            )
            log.error("digest_failed", channel=channel, day=day.isoformat(), error=error)
            return False
        await self._mark(day, error=None)
        log.info("digest_posted", channel=channel, day=day.isoformat(), ts=response.get("ts"))
        if self.config.chart:
            chart_error = await self._chart(digest, str(response["channel"]), str(response["ts"]))
            if chart_error:
                await self._mark(day, error=chart_error)
        return True

    async def _mark(self, day: date, *, error: str | None) -> None:
        assert self.channel is not None
        channel = self.channel
        now = self.control.clock.now()
        ours = await self.control.db.run(
            lambda session: mark_posted(
                session, channel=channel, day=day, replica_id=self.replica_id, now=now, error=error
            )
        )
        if not ours:
            log.warning("digest_claim_lost", channel=channel, day=day.isoformat())

    async def _chart(self, digest: Digest, channel: str, thread_ts: str) -> str | None:
        """Upload the 7-day chart in the digest's thread; the error text when it failed."""
        label = day_label(digest.day)
        try:
            png = spend_chart(digest.report.trend, title=s.DIGEST_CHART_TITLE.format(day=label))
            await self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                file=png,
                filename="spend-7d.png",
                title=s.DIGEST_CHART_TITLE.format(day=label),
                initial_comment=s.DIGEST_CHART_COMMENT.format(day=label),
            )
        except (SlackApiError, SlackClientError, OSError, ValueError) as exc:
            log.warning("digest_chart_failed", error=repr(exc))
            return f"chart: {type(exc).__name__}: {exc}"
        return None


def schedule_digest(scheduler: BaseScheduler, poster: DigestPoster) -> list[str]:
    """Add the digest's cron and catch-up jobs; returns their ids (none without a channel)."""
    if poster.channel is None:
        return []
    config = poster.config
    at = config.at
    scheduler.add_job(
        stoppable(poster.run_scheduled),
        CronTrigger(hour=at.hour, minute=at.minute, timezone=config.tz),
        id=CRON_JOB_ID,
        replace_existing=True,
        misfire_grace_time=config.misfire_grace_s,
        coalesce=True,
        max_instances=1,
    )
    scheduler.add_job(
        stoppable(poster.run_due),
        IntervalTrigger(minutes=config.retry_minutes, timezone=config.tz),
        id=CATCH_UP_JOB_ID,
        replace_existing=True,
        misfire_grace_time=config.retry_minutes * 60,
        coalesce=True,
        max_instances=1,
    )
    return [CRON_JOB_ID, CATCH_UP_JOB_ID]
