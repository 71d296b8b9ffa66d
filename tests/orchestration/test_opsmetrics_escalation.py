"""Escalation counts plans where humans had to take over, not plans that asked by design."""

from collections.abc import AsyncIterator

import pytest
from sqlmodel import Session

from bot.digest import ops_fields
from orchestration.db import Database
from orchestration.models import Approval
from orchestration.opsmetrics import OpsReport, ops_report
from tests.orchestration.history import END, START, Seeder, at


def _seed(session: Session) -> None:
    s = Seeder(session)
    cases = {
        # id: (plan status, approval state or None, step states)
        "ok-approved": ("succeeded", "approved", ["succeeded", "succeeded"]),
        "ok-auto": ("succeeded", None, ["succeeded"]),
        "nothing-to-do": ("succeeded", None, ["succeeded", "skipped"]),
        "rejected": ("halted", "rejected", ["succeeded", "rejected"]),
        "denied": ("halted", None, ["succeeded", "denied"]),
        "timed-out": ("halted", "expired", ["succeeded", "skipped"]),
        "failed": ("failed", None, ["failed"]),
        "closed-by-hand": ("cancelled", "cancelled", ["succeeded", "skipped"]),
        "stale": ("stale", None, ["succeeded", "skipped"]),
    }
    for n, (pid, (status, approval, steps)) in enumerate(cases.items()):
        s.incident(f"i-{pid}", f"svc-{n} is down", "2026-01-05 08:00")
        s.plan(
            pid,
            f"i-{pid}",
            "web-restart",
            "2026-01-05 08:00",
            status=status,
            finished="2026-01-05 08:10",
        )
        ids = [s.step(pid, f"s{k}", st, read_only=k == 0) for k, st in enumerate(steps)]
        if approval:
            s.approval(pid, f"i-{pid}", "2026-01-05 08:01", step=ids[-1], state=approval)
    # A step that went in doubt, was answered "it ran", and the plan then succeeded.
    s.incident("i-in-doubt", "svc-x is down", "2026-01-05 09:00")
    s.plan(
        "in-doubt",
        "i-in-doubt",
        "web-restart",
        "2026-01-05 09:00",
        status="succeeded",
        finished="2026-01-05 09:30",
    )
    sid = s.step("in-doubt", "restart", "succeeded", read_only=False)
    session.add(
        Approval(
            id="appr-in-doubt",
            nonce="nonce-in-doubt",
            purpose="in_doubt",
            incident_id="i-in-doubt",
            plan_id="in-doubt",
            plan_version=1,
            step_id=sid,
            args_hash="x",
            quorum=1,
            exclude_requester=False,
            requester="UREQ",
            state="approved",
            created_at=at("2026-01-05 09:05"),
            expires_at=at("2026-01-05 09:35"),
        )
    )


@pytest.fixture
async def report(db_url: str) -> AsyncIterator[OpsReport]:
    db = Database(db_url)
    await db.start()
    await db.run(_seed)
    yield await db.run(lambda session: ops_report(session, START, END))
    await db.close()


def test_only_takeovers_count_as_escalations(report: OpsReport) -> None:
    """Rejected, denied, timed out, failed and in doubt count; a granted approval, an automatic
    plan, a plan with nothing to do, a hand-closed incident and a stale plan do not."""
    assert report.plans_finished == 10
    assert report.plans_escalated == 5
    assert report.escalation_rate == pytest.approx(0.5)


def test_the_figure_says_what_it_counts(report: OpsReport) -> None:
    [field] = [f for f in ops_fields(report) if "took over" in f]
    assert "50.0% (5/10 plans halted, denied, failed, in doubt or timed out" in field
    assert "designed approval is not counted" in field
