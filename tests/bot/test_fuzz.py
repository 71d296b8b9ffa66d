"""10,000+ hostile requests to the real app: none gets a 5xx, and the server is healthy after.

The requests come from ``tests/bot/malformed.py`` (a seeded generator; ``FUZZ_SEED=N`` replays
run N): signed and unsigned Slack requests with broken shapes, bytes and headers, and alert
webhooks (Alertmanager and PagerDuty) with broken bodies, authenticated or not. They go over
HTTP to the real ``build_app`` (aiohttp test server, fake Slack Web API, demo service), on SQLite
and on PostgreSQL. The figures (requests per path, statuses) are logged as ``fuzz_figures``
(``pytest -o log_cli=true``). Before the intake checks of ``bot.decode`` and ``bot.payloads``,
about half of them got a 500.
"""

import asyncio
import io
import logging
import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.decode import MAX_BODY_BYTES
from tests.bot.malformed import ALERT_PATH, PAGERDUTY_PATH, SLACK_PATH, Probe, probes
from tests.bot.scenario import SECRET, Stack

ALERT_CHANNEL = "C0ALERTS"
FRESH_CHANNEL = "C0FRESH"  # no fuzzed request went there
ALERT_TOKEN = "fuzz-alert-token"
PAGERDUTY_SECRET = "fuzz-pagerduty-webhook-secret"
REQUESTS = 10_000
CONCURRENCY = 8


@pytest.fixture
async def stack(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    monkeypatch.setenv("OPSGATE_ALERT_TOKEN", ALERT_TOKEN)
    monkeypatch.setenv("OPSGATE_SECRET_FUZZ_PAGERDUTY", PAGERDUTY_SECRET)
    async with Stack(
        db_url=db_url,
        tmp_path=tmp_path,
        slack={"alert_channel": ALERT_CHANNEL, "channel_rate_per_s": 1000},
        intake={"pagerduty": {"webhook_secret": "${secret:FUZZ_PAGERDUTY}"}},
    ) as s:
        yield s


async def send(stack: Stack, probe: Probe) -> int:
    assert stack.http is not None
    assert stack.server is not None
    # aiohttp wants large bodies as a stream (it warns otherwise); either way it is one request.
    data = io.BytesIO(probe.body) if len(probe.body) > 2**18 else probe.body
    async with stack.http.post(
        stack.server.make_url(probe.path), data=data, headers=probe.headers
    ) as resp:
        await resp.read()
        return resp.status


async def test_ten_thousand_malformed_requests_get_no_5xx_and_leave_the_server_healthy(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    seed = int(os.environ.get("FUZZ_SEED") or random.randrange(2**32))
    batch = probes(
        seed, REQUESTS, secret=SECRET, alert_token=ALERT_TOKEN, pagerduty_secret=PAGERDUTY_SECRET
    )
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(probe: Probe) -> tuple[Probe, int]:
        async with gate:
            return probe, await send(stack, probe)

    results = await asyncio.gather(*(one(p) for p in batch))
    await stack.settle(timeout_s=120)

    signed = sum(1 for p in batch if p.signed and p.path == SLACK_PATH)
    unsigned = sum(1 for p in batch if not p.signed)
    by_path = Counter((p.path, p.signed) for p in batch)
    assert len(results) == REQUESTS
    assert signed >= REQUESTS // 3
    assert unsigned >= REQUESTS // 3
    for path in (ALERT_PATH, PAGERDUTY_PATH):  # every webhook, with and without credentials
        assert by_path[path, True] >= REQUESTS // 25, by_path
        assert by_path[path, False] >= REQUESTS // 100, by_path
    statuses = Counter(status for _p, status in results)
    logging.getLogger("tests.fuzz").warning(
        f"fuzz_figures seed {seed}: {len(results)} requests, "
        f"{sum(1 for _p, st in results if st >= 500)} with a 5xx; by (path, authenticated): "
        f"{dict(by_path)}; statuses {dict(sorted(statuses.items()))}"
    )
    # Every unauthenticated request (a Slack request without a valid signature, a webhook
    # without the bearer token or PagerDuty signature) is refused on that, unless too large
    # to be read at all.
    unsigned_answers = Counter(
        (len(p.body) > MAX_BODY_BYTES, status) for p, status in results if not p.signed
    )
    assert set(unsigned_answers) <= {(False, 401), (True, 413)}, unsigned_answers
    # ... and every authenticated webhook gets past that check: its body is what was judged.
    webhook_401 = [p.label for p, st in results if p.signed and p.path != SLACK_PATH and st == 401]
    assert not webhook_401, Counter(webhook_401)
    failures = [(p, status) for p, status in results if status >= 500]
    by_class = Counter((p.label, p.signed, status) for p, status in failures)
    assert not failures, (
        f"seed {seed}: {len(failures)} of {len(results)} got a 5xx ({dict(by_class)}); statuses "
        f"{dict(statuses)}; first: {[(p.label, p.headers, p.body[:300]) for p, _ in failures[:3]]}"
    )
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, f"seed {seed}: {len(tracebacks)} tracebacks, first: {tracebacks[0]}"

    # Still healthy: health answers, and a valid request still does its work.
    assert stack.http is not None
    assert stack.server is not None
    async with stack.http.get(stack.server.make_url("/healthz")) as resp:
        assert resp.status == 200
    async with stack.http.get(stack.server.make_url("/readyz")) as resp:
        assert resp.status == 200
    status, text = await stack.command("help")
    assert status == 200
    assert "/incident" in text
    status, _ = await stack.command("checkout-api is down", channel=FRESH_CHANNEL)
    assert status == 200
    await stack.settle()
    assert len(stack.roots(FRESH_CHANNEL)) == 1
