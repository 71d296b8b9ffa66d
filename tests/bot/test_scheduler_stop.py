"""Stopping the app while a scheduler job runs: one log line, no traceback.

The scheduler is shut down with the app; a job still running then (the reconciler waiting on
the database, say) is cancelled. Without care APScheduler logs that as ``Job ... raised an
exception`` with a ``CancelledError`` traceback, on every Ctrl-C that lands mid-run.
"""

import asyncio
import logging
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot.tasks import stoppable
from orchestration.control import ControlPlane
from tests.bot.scenario import Stack


async def test_a_job_running_when_the_app_stops_ends_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()

    async def reconcile_forever(_self: ControlPlane) -> int:
        started.set()
        await asyncio.Event().wait()  # still running when the app stops
        return 0

    # The scheduler runs the reconciler at start-up; this one is mid-run at shutdown.
    monkeypatch.setattr(ControlPlane, "reconcile", reconcile_forever)
    caplog.set_level(logging.INFO)
    with capture_logs() as logs:
        async with Stack(db_url=f"sqlite:///{tmp_path / 'o.db'}", tmp_path=tmp_path):
            await asyncio.wait_for(started.wait(), timeout=30)
        await asyncio.sleep(0.1)  # the cancelled job's last word, if any
    tracebacks = [r for r in caplog.records if r.exc_info or "raised an exception" in r.message]
    assert not tracebacks, tracebacks[0].getMessage()
    assert [e["job"] for e in logs if e["event"] == "job_stopped"] == ["reconcile_forever"]


async def test_stoppable_returns_what_the_job_returns_and_lets_errors_through() -> None:
    async def answer() -> int:
        return 42

    async def broken() -> int:
        raise ValueError("boom")

    assert await stoppable(answer)() == 42
    with pytest.raises(ValueError, match="boom"):
        await stoppable(broken)()
