"""A seeded week of opsgate history with hand-computable figures (digest and metrics tests).

The reported day is Monday 2026-01-05 in Europe/Paris (UTC+1): the window is
[2026-01-04 23:00Z, 2026-01-05 23:00Z). Every figure the tests expect is derived in comments
beside the rows that produce it.
"""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session

from orchestration.models import (
    Approval,
    AuditEvent,
    CacheCounter,
    CostEntry,
    Incident,
    Plan,
    Step,
)

DAY = date(2026, 1, 5)
TZ = ZoneInfo("Europe/Paris")
START = datetime(2026, 1, 4, 23, 0, tzinfo=UTC)
END = datetime(2026, 1, 5, 23, 0, tzinfo=UTC)
INC = "C0INC"
DB_CHANNEL = "C0DB"


def at(text: str) -> datetime:
    """``"2026-01-05 08:00"`` as aware UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Seeder:
    """Small factories writing rows with fixed ids, so renders are reproducible."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.positions: dict[str, int] = {}

    def incident(
        self,
        iid: str,
        text: str,
        created: str,
        *,
        status: str = "open",
        closed: str | None = None,
        channel: str = INC,
    ) -> None:
        self.session.add(
            Incident(
                id=iid,
                text=text,
                requester="UREQ",
                channel=channel,
                status=status,
                correlation_id=f"corr-{iid}",
                created_at=at(created),
                resolved_at=at(closed) if closed else None,
            )
        )

    def plan(
        self,
        pid: str,
        iid: str,
        runbook: str,
        created: str,
        *,
        status: str,
        finished: str | None = None,
        channel: str = INC,
    ) -> None:
        self.session.add(
            Plan(
                id=pid,
                incident_id=iid,
                version=1,
                runbook_id=runbook,
                runbook_version=1,
                plan_hash=f"hash-{pid}",
                status=status,
                mode="supervised",
                requester="UREQ",
                channel=channel,
                budget_usd=1.0,
                budget_tokens=2000,
                correlation_id=f"corr-{iid}",
                created_at=at(created),
                finished_at=at(finished) if finished else None,
            )
        )

    def step(
        self,
        pid: str,
        key: str,
        status: str,
        *,
        read_only: bool,
        tool: str = "http.get",
        kind: str = "runbook",
        started: str | None = None,
    ) -> str:
        position = self.positions.get(pid, 0)
        self.positions[pid] = position + 1
        sid = f"{pid}-{key}"
        self.session.add(
            Step(
                id=sid,
                plan_id=pid,
                position=position,
                key=key,
                kind=kind,
                title=key,
                tool_action=tool,
                args_hash=f"args-{sid}",
                declared_risk="low" if read_only else "high",
                risk="low" if read_only else "high",
                read_only=read_only,
                idempotent=read_only,
                status=status,
                started_at=at(started) if started else None,
            )
        )
        return sid

    def approval(
        self, pid: str, iid: str, created: str, *, step: str | None, state: str = "approved"
    ) -> None:
        when = at(created)
        self.session.add(
            Approval(
                id=f"appr-{pid}-{step or 'budget'}",
                nonce=f"nonce-{pid}-{step or 'budget'}",
                purpose="step" if step else "budget",
                incident_id=iid,
                plan_id=pid,
                plan_version=1,
                step_id=step,
                args_hash="x",
                quorum=1,
                exclude_requester=False,
                requester="UREQ",
                state=state,
                created_at=when,
                expires_at=when + timedelta(minutes=30),
            )
        )

    def audit(
        self,
        when: str,
        event: str,
        pid: str,
        *,
        code: str | None = None,
        detail: dict[str, object] | None = None,
    ) -> None:
        self.session.add(
            AuditEvent(
                at=at(when),
                event=event,
                actor="opsgate",
                role="auditor",
                correlation_id=f"corr-{pid}",
                plan_id=pid,
                code=code,
                detail=detail or {},
            )
        )

    def cost(
        self,
        when: str,
        pid: str,
        usd: float,
        *,
        tool: str = "http",
        role: str = "executor",
        runbook: str = "web-restart",
        channel: str = INC,
        tokens: int = 0,
    ) -> None:
        self.session.add(
            CostEntry(
                at=at(when),
                plan_id=pid,
                role=role,
                tool=tool,
                runbook_id=runbook,
                channel=channel,
                usd=usd,
                tokens=tokens,
            )
        )


def seed_history(session: Session) -> None:
    """Write the week; see the figures in tests/orchestration/test_opsmetrics.py."""
    s = Seeder(session)

    # An old plan: spend on 2025-12-29 (outside the 7-day trend), 2026-01-01 and 2026-01-04.
    s.incident(
        "i0",
        "disk full on build-01",
        "2025-12-29 10:00",
        status="resolved",
        closed="2026-01-01 12:00",
    )
    s.plan(
        "p0",
        "i0",
        "disk-cleanup",
        "2025-12-29 10:00",
        status="succeeded",
        finished="2026-01-01 12:00",
    )
    s.cost("2025-12-29 12:00", "p0", 5.0, runbook="disk-cleanup")
    s.cost("2026-01-01 10:00", "p0", 0.03, tool="shell", runbook="disk-cleanup")
    s.cost("2026-01-04 10:00", "p0", 0.01, runbook="disk-cleanup")

    # P1 succeeded without asking anyone: 3 actions ok; resolved in 30 min; lead 20 min.
    s.incident(
        "i1",
        "checkout-api is down",
        "2026-01-05 08:00",
        status="resolved",
        closed="2026-01-05 08:30",
    )
    s.plan(
        "p1",
        "i1",
        "web-restart",
        "2026-01-05 08:00",
        status="succeeded",
        finished="2026-01-05 08:20",
    )
    s.step("p1", "probe", "succeeded", read_only=True, started="2026-01-05 08:01")
    s.step(
        "p1", "restart", "succeeded", read_only=False, tool="http.post", started="2026-01-05 08:05"
    )
    s.step("p1", "verify", "succeeded", read_only=True, started="2026-01-05 08:10")
    s.cost("2026-01-05 08:00", "p1", 0.02, tool="llm", role="planner", tokens=1500)
    for minute in ("01", "05", "10"):
        s.cost(f"2026-01-05 08:{minute}", "p1", 0.0001)

    # P2 failed: the failover was compensated (a false positive), then escalated; resolved in 2 h.
    s.incident(
        "i2",
        "billing-db is unhealthy",
        "2026-01-05 09:00",
        status="resolved",
        closed="2026-01-05 11:00",
        channel=DB_CHANNEL,
    )
    s.plan(
        "p2",
        "i2",
        "db-failover",
        "2026-01-05 09:00",
        status="failed",
        finished="2026-01-05 09:45",
        channel=DB_CHANNEL,
    )
    s.step("p2", "check", "succeeded", read_only=True, started="2026-01-05 09:01")
    failover = s.step(
        "p2",
        "failover",
        "compensated",
        read_only=False,
        tool="shell.failover",
        started="2026-01-05 09:10",
    )
    s.step(
        "p2",
        "undo-failover",
        "succeeded",
        read_only=False,
        tool="shell.failback",
        kind="compensation",
        started="2026-01-05 09:30",
    )
    s.approval("p2", "i2", "2026-01-05 09:02", step=failover)
    s.audit("2026-01-05 09:45", "plan_escalated", "p2", code="step_failed")
    s.cost("2026-01-05 09:01", "p2", 0.0001, runbook="db-failover", channel=DB_CHANNEL)
    for minute in ("10", "30"):
        s.cost(
            f"2026-01-05 09:{minute}",
            "p2",
            0.005,
            tool="shell",
            runbook="db-failover",
            channel=DB_CHANNEL,
        )

    # P3 halted: a human rejected the flush (a false positive); the incident was cancelled.
    s.incident(
        "i3", "cache-api is down", "2026-01-05 12:00", status="cancelled", closed="2026-01-05 12:10"
    )
    s.plan(
        "p3", "i3", "cache-flush", "2026-01-05 12:00", status="halted", finished="2026-01-05 12:10"
    )
    s.step("p3", "probe", "succeeded", read_only=True, started="2026-01-05 12:01")
    flush = s.step("p3", "flush", "rejected", read_only=False, tool="http.post")
    s.step("p3", "verify", "skipped", read_only=True)
    s.approval("p3", "i3", "2026-01-05 12:02", step=flush, state="rejected")
    s.cost("2026-01-05 12:01", "p3", 0.0001, runbook="cache-flush")

    # P4: the planner overspent; a soft-limit warning, then the hard limit stopped it.
    s.incident("i4", "search-api 5xx", "2026-01-05 14:00")
    s.plan(
        "p4", "i4", "web-restart", "2026-01-05 14:00", status="halted", finished="2026-01-05 14:05"
    )
    s.step("p4", "probe", "succeeded", read_only=True, started="2026-01-05 14:01")
    s.step("p4", "restart", "skipped", read_only=False, tool="http.post")
    s.approval("p4", "i4", "2026-01-05 14:02", step=None, state="approved")
    s.audit(
        "2026-01-05 14:02",
        "approval_requested",
        "p4",
        detail={"purpose": "budget", "reason": "Spent 80% of the $1.00 budget."},
    )
    s.audit("2026-01-05 14:03", "approval_requested", "p4", detail={"purpose": "step"})
    s.audit(
        "2026-01-05 14:05",
        "plan_finished",
        "p4",
        code="budget_exceeded",
        detail={"reason": "The next step would exceed the $1.00 budget."},
    )
    s.audit("2026-01-05 14:05", "plan_escalated", "p4", code="budget_exceeded")
    s.cost("2026-01-05 14:00", "p4", 0.9, tool="llm", role="planner", tokens=1900)
    s.cost("2026-01-05 14:01", "p4", 0.0001)

    # P5 was blocked by its forecast before it started: a stop, but no outcome yet.
    s.incident("i5", "payments-api is down", "2026-01-05 15:00")
    s.plan("p5", "i5", "web-restart", "2026-01-05 15:00", status="blocked")
    s.audit(
        "2026-01-05 15:00",
        "plan_blocked",
        "p5",
        code="budget_forecast",
        detail={"forecast_usd": 2.5, "budget_usd": 1.0},
    )

    # P6: shadow mode, excluded from outcome figures.
    s.incident("i6", "web is unhealthy", "2026-01-05 16:00")
    s.plan(
        "p6", "i6", "web-restart", "2026-01-05 16:00", status="shadow", finished="2026-01-05 16:00"
    )
    s.step("p6", "restart", "skipped", read_only=False, tool="http.post")

    # P7 waits for approval: its spend counts, its outcome not yet. Its researcher spend at
    # 23:30Z on the 4th is 00:30 on the 5th in Paris (in the day); 23:30Z on the 5th is not.
    s.incident("i7", "web-api is down", "2026-01-04 23:30")
    s.plan("p7", "i7", "web-restart", "2026-01-04 23:30", status="waiting")
    s.step("p7", "probe", "succeeded", read_only=True, started="2026-01-05 20:01")
    s.step("p7", "restart", "awaiting_approval", read_only=False, tool="http.post")
    s.cost("2026-01-04 23:30", "p7", 0.001, tool="prometheus", role="researcher")
    s.cost("2026-01-05 20:01", "p7", 0.0001)
    s.cost("2026-01-05 23:30", "p7", 0.0002)

    # Cache: only the UTC day starting inside the window (2026-01-05) counts: 35 / 50.
    session.add(CacheCounter(day="2026-01-04", tool_action="http.get", hits=100, misses=0))
    session.add(CacheCounter(day="2026-01-05", tool_action="http.get", hits=30, misses=10))
    session.add(CacheCounter(day="2026-01-05", tool_action="prometheus.query", hits=5, misses=5))
