"""The daily digest: what it reports on, and the claim that makes it exactly-once.

A digest reports one *local* day (the configured time zone) and the 7 local days ending with
it. Posting is made exactly-once per ``(channel, day)`` by the ``digest_runs`` row:

1. **Claim.** A replica inserts the row; the primary key lets one insert win, on SQLite and
   PostgreSQL alike. A loser may still **take over** an existing claim when it was not posted
   (``posted_at`` is null) *and* either the posting failed (``error`` is set) or the claim is
   older than ``stale_after`` (the claimer crashed between claim and post). The take-over is one
   conditional ``UPDATE`` (compare-and-set), so two replicas cannot both take over.
2. **Post**, then **mark posted** at once (before any follow-up such as the chart), which closes
   the window in which a crash could make a later replica post again. Only the claim holder can
   mark it: a claim that was taken over from a slow replica stays with the newer one.
3. On a posting failure, **mark failed**: the error is kept and a later run retries.

The one case this cannot rule out is a replica that posts but takes longer than
``stale_after`` to record it; keep ``stale_after`` well above Slack's client timeout.
"""

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from common import Mode
from orchestration.models import DigestRun
from orchestration.opsmetrics import OpsReport, ops_report
from orchestration.rollout.report import scope_status
from orchestration.rollout.settings import RolloutConfig

TREND_DAYS = 7
_RUNS = DigestRun.__table__  # type: ignore[attr-defined]


class Digest(BaseModel):
    """One day's digest: that day's report and its 7-day spend trend."""

    model_config = ConfigDict(frozen=True)
    day: date
    timezone: str
    report: OpsReport
    people_usd_per_hour: float | None = None  # shown (people time) only when configured
    # Each rollout scope at the end of the day (``ScopeStatus.as_json``), when any is configured.
    rollout: tuple[dict[str, Any], ...] = ()


def day_window(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """``[start, end)`` of the local ``day`` in UTC (23 or 25 hours on DST days)."""
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def previous_day(now: datetime, tz: tzinfo) -> date:
    """Yesterday in ``tz`` as seen at ``now``."""
    return now.astimezone(tz).date() - timedelta(days=1)


def due_day(now: datetime, *, at: time, tz: tzinfo) -> date | None:
    """The day whose digest is due at ``now``: yesterday once the local time reached ``at``."""
    local = now.astimezone(tz)
    if local.time() < at:
        return None
    return local.date() - timedelta(days=1)


def build_digest(
    session: Session,
    *,
    day: date,
    tz: tzinfo,
    people_usd_per_hour: float | None = None,
    rollout: RolloutConfig | None = None,
    mode: Mode = Mode.SUPERVISED,
) -> Digest:
    """The digest of the local ``day``: its report with the 7-day trend ending on it, and each
    rollout scope's stage and evidence at the day's end."""
    start, end = day_window(day, tz)
    trend = []
    for back in range(TREND_DAYS - 1, -1, -1):
        each = day - timedelta(days=back)
        trend.append((each, *day_window(each, tz)))
    report = ops_report(session, start, end, trend_days=trend)
    scopes = (
        tuple(r.as_json() for r in scope_status(session, rollout, default=mode, now=end))
        if rollout is not None and rollout.scopes
        else ()
    )
    return Digest(
        day=day,
        timezone=str(tz),
        report=report,
        people_usd_per_hour=people_usd_per_hour,
        rollout=scopes,
    )


def claim(
    session: Session,
    *,
    channel: str,
    day: date,
    replica_id: str,
    now: datetime,
    stale_after: timedelta,
) -> bool:
    """True when this replica now holds the claim to post ``day``'s digest to ``channel``."""
    key = day.isoformat()
    try:
        # A savepoint: the losing insert must not poison the caller's transaction.
        with session.begin_nested():
            session.connection().execute(
                insert(_RUNS).values(
                    channel=channel, day=key, claimed_by=replica_id, claimed_at=now
                )
            )
        return True
    except IntegrityError:
        pass
    taken = session.connection().execute(
        update(_RUNS)
        .where(
            col(DigestRun.channel) == channel,
            col(DigestRun.day) == key,
            col(DigestRun.posted_at).is_(None),
            or_(
                col(DigestRun.error).is_not(None),
                col(DigestRun.claimed_at) < now - stale_after,
            ),
        )
        .values(claimed_by=replica_id, claimed_at=now, error=None)
    )
    return taken.rowcount == 1


def mark_posted(
    session: Session,
    *,
    channel: str,
    day: date,
    replica_id: str,
    now: datetime,
    error: str | None = None,
) -> bool:
    """Record that the digest was posted (``error`` notes a failed follow-up); False when the
    claim is no longer ours."""
    done = session.connection().execute(
        update(_RUNS)
        .where(
            col(DigestRun.channel) == channel,
            col(DigestRun.day) == day.isoformat(),
            col(DigestRun.claimed_by) == replica_id,
        )
        .values(posted_at=now, error=error)
    )
    return done.rowcount == 1


def mark_failed(session: Session, *, channel: str, day: date, replica_id: str, error: str) -> bool:
    """Record that posting failed, so a later run may retry; False when the claim is not ours."""
    done = session.connection().execute(
        update(_RUNS)
        .where(
            col(DigestRun.channel) == channel,
            col(DigestRun.day) == day.isoformat(),
            col(DigestRun.claimed_by) == replica_id,
            col(DigestRun.posted_at).is_(None),
        )
        .values(error=error[:2000] or "failed")
    )
    return done.rowcount == 1


def digest_run(session: Session, *, channel: str, day: date) -> DigestRun | None:
    """The claim row of ``(channel, day)``, if any."""
    return session.get(DigestRun, (channel, day.isoformat()))
