"""Shared circuit breakers as `/incident status` and `/metrics` show them."""

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters import BreakerPolicy
from bot import blocks
from orchestration.breakers import DbBreakerStore
from tests.bot.scenario import Stack
from tests.bot.test_blocks import all_mrkdwn, assert_accepted, assert_escaped

OPENED = "2026-01-01T10:04:00+00:00"


def plan() -> dict[str, Any]:
    return {
        "status": "running",
        "runbook_id": "web-restart",
        "version": 1,
        "spent_usd": 0.0,
        "budget_usd": 1.0,
        "steps": [{"title": "Probe", "tool_action": "http.get", "status": "running"}],
    }


def breaker(key: str, state: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "state": state, "opened_at": OPENED, **extra}


def test_status_has_a_line_per_breaker_that_is_not_closed() -> None:
    rendered = blocks.status_blocks(
        plan(),
        [
            breaker("http:checkout.internal", "open", probe_in_s=11.2),
            breaker("http:orders.internal", "open", probe_in_s=0),
            breaker("shell:restart", "half_open", probing=True),
            breaker("http:cache.internal", "half_open", probing=False),
            breaker("http:fine.internal", "closed"),
        ],
    )
    assert_accepted(rendered)
    text = all_mrkdwn(rendered)
    epoch = int(datetime(2026, 1, 1, 10, 4, tzinfo=UTC).timestamp())
    since = f"<!date^{epoch}^{{time}}|2026-01-01 10:04 UTC>"
    assert f"`http:checkout.internal` open since {since}, probe in 12 s" in text
    assert f"`http:orders.internal` open since {since}, probe due now" in text
    assert "`shell:restart` half-open, probe running" in text
    assert "`http:cache.internal` half-open, probe due now" in text
    assert "fine.internal" not in text


def test_status_without_paused_breakers_has_no_breaker_section() -> None:
    text = all_mrkdwn(blocks.status_blocks(plan(), [breaker("http:a", "closed")]))
    assert "Circuit breakers" not in text


def test_many_or_hostile_breakers_stay_within_slack_limits() -> None:
    evil = [breaker(f"http:<!channel>&{'x' * 300}{n}", "open", probe_in_s=5) for n in range(300)]
    rendered = blocks.status_blocks(plan(), evil)
    assert_accepted(rendered)
    assert_escaped(rendered)


async def test_status_and_metrics_show_the_breakers_every_replica_shares(
    db_url: str, tmp_path: Path
) -> None:
    async with Stack(db_url=db_url, tmp_path=tmp_path) as stack:
        # Another replica, on the same database, saw checkout.internal fail and opened it.
        replica = DbBreakerStore(stack.control.db, clock=stack.clock)
        for key, threshold in (("http:checkout.internal", 1), ("http:payments.internal", 5)):
            policy = BreakerPolicy(failure_threshold=threshold, reset_after_s=30, probe_lease_s=60)
            admission = await replica.admit(key, policy=policy)
            await replica.record(admission, ok=False, policy=policy)
        await stack.command("checkout-api is down")
        await stack.settle()
        _, shown = await stack.command("status")  # answered in the ack, to the asker only
        assert "Plan status" in shown
        assert re.search(r"`http:checkout.internal` open since <!date\^\d+\^\{time\}\|", shown)
        # The probe is due 30 s after the breaker opened; on a loaded machine seconds pass
        # before the status is read, so only the bound is checked.
        probe = re.search(r"probe in (\d+) s", shown)
        assert probe is not None
        assert 0 < int(probe.group(1)) <= 30
        assert "payments.internal" not in shown  # closed, one failure counted
        assert stack.http is not None
        assert stack.server is not None
        async with stack.http.get(stack.server.make_url("/metrics")) as resp:
            body = await resp.text()
        assert 'opsgate_circuit_breaker_state{target="checkout.internal",tool="http"} 2.0' in body
        assert 'opsgate_circuit_breaker_state{target="payments.internal",tool="http"} 0.0' in body
