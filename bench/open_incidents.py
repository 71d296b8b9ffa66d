"""Memory of one ``opsgate serve`` process holding many open incidents, on SQLite and PostgreSQL.

DESIGN target: one ``opsgate serve`` holding 1,000 open incidents stays under 300 MB RSS.

For each backend it starts a real ``opsgate serve`` child process on a fresh database (a SQLite
file, or a new schema on the PostgreSQL server), wired to a fake Slack Web API
(``bot.sandbox.webapi.FakeSlack``) and a service that answers every health probe 503, both in
this process. Its runbook probes the service (low risk, runs at once), then restarts it (high
risk: two approvers, neither the requester), so every incident stays open with an approval
card pending. Once ``/readyz`` answers it reads the child's RSS (the baseline), then sends
``--incidents`` signed ``/incident svc-<n> is down`` slash commands, ``--concurrency`` in
flight, spread over ``--channels`` channels, and waits until every incident's approval card has
been posted to the fake Slack and the outbox has gone quiet. Then it reads the child's RSS
(``VmRSS`` in ``/proc/<pid>/status``) and its peak (``VmHWM``), and counts the open incidents
and pending approvals in the database.
Figures per backend: baseline RSS, RSS and peak with the incidents open, RSS per incident
above the baseline, and the time from the first command to the last card.

Run: ``make bench-open`` or ``python -m bench.open_incidents [--incidents 1000] [--no-pg]
[--json]``. With ``--json`` it prints one JSON object and nothing else:
``{"incidents", "target_mb", "within", "sqlite": {"baseline_rss_mib", "rss_mib",
"peak_rss_mib", "open_incidents", "pending_approvals", "open_s", ...}, "postgres": {...}}``.
"""

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import create_engine, func, select

from bench.serving import RUNBOOK, Serve
from bench.step_overhead import drop_pg_schema, fresh_pg_schema
from bot.ids import ActionId
from bot.sandbox import signing
from bot.sandbox.webapi import FakeSlack
from orchestration.enums import ApprovalState, IncidentStatus
from orchestration.models import Approval, Incident

TARGET_MB = 300.0  # MB as the target says it: 10**6 bytes
SECRET = "bench-signing-secret"
REQUESTER = "UREQ"
APPROVERS = ["UAPP1", "UAPP2"]
READY_TIMEOUT_S = 60.0
QUIET_S = 1.0  # the outbox counts as delivered after this long without a Slack call
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (the peak RSS) of process ``pid``, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])  # "123456 kB"
    return out


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


async def unhealthy_service() -> tuple[web.AppRunner, int]:
    """A service whose health is always 503 (the restart is never approved, so never called)."""

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({}, status=503)

    app = web.Application()
    app.router.add_get("/svc/{name}/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    return runner, int(server.sockets[0].getsockname()[1])


class Cards:
    """Counts the incidents whose approval card the fake Slack has received."""

    def __init__(self) -> None:
        self.threads: set[tuple[str, str]] = set()

    def __call__(self, event: dict[str, Any]) -> None:
        message = event.get("message") or {}
        if event.get("type") != "message_posted" or not message.get("thread_ts"):
            return
        for block in message.get("blocks") or []:
            if block.get("type") != "actions":
                continue
            if any(e.get("action_id") == ActionId.APPROVE for e in block.get("elements", [])):
                self.threads.add((event["channel"], message["thread_ts"]))


def write_config(folder: Path, *, service_port: int) -> None:
    runbooks = folder / "runbooks"
    runbooks.mkdir()
    (runbooks / "web-restart.yaml").write_text(RUNBOOK.format(port=service_port))
    # Delivery and the probe's guard are opened up so that the run measures holding the
    # incidents, not waiting out Slack's 1 message/s per channel or the http tool's 5 calls/s.
    (folder / "opsgate.yaml").write_text(
        "runbooks: ./runbooks\n"
        f"approvers: [{', '.join(APPROVERS)}]\n"
        "slack: {channel_rate_per_s: 200}\n"
        "adapters: {http: {rate_per_s: 1000, burst: 100}}\n"
    )


async def open_incidents(
    http: aiohttp.ClientSession, url: str, *, count: int, channels: int, concurrency: int
) -> list[float]:
    """Send ``count`` signed slash commands, ``concurrency`` at a time; their ack times (ms)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> float:
        body = signing.slash_command_body(
            command="/incident",
            text=f"svc-{n} is down",
            user_id=REQUESTER,
            channel_id=f"C0OPEN{n % channels:03d}",
        )
        async with gate:
            t0 = time.perf_counter()
            async with http.post(
                url, data=body.encode(), headers=signing.sign(body, secret=SECRET)
            ) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"/incident svc-{n}: HTTP {resp.status}")
            return (time.perf_counter() - t0) * 1000

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def wait_until(
    done: Callable[[], bool], serve: Serve, *, timeout_s: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if serve.dead:
            raise RuntimeError(f"opsgate serve exited:\n{serve.log.read_text()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}; see {serve.log}")
        await asyncio.sleep(0.2)


def count_open(db_url: str) -> tuple[int, int]:
    """(open incidents, pending approvals) in the database."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            incidents = conn.execute(
                select(func.count())
                .select_from(Incident)
                .where(Incident.status == IncidentStatus.OPEN)  # type: ignore[arg-type]
            ).scalar_one()
            approvals = conn.execute(
                select(func.count())
                .select_from(Approval)
                .where(Approval.state == ApprovalState.PENDING)  # type: ignore[arg-type]
            ).scalar_one()
    finally:
        engine.dispose()
    return int(incidents), int(approvals)


async def run_backend(
    db_url: str, *, incidents: int, channels: int, concurrency: int, timeout_s: float
) -> dict[str, Any]:
    """Start one ``opsgate serve`` on ``db_url``, open the incidents, read its memory."""
    with tempfile.TemporaryDirectory(prefix="opsgate-bench-open-") as tmp:
        folder = Path(tmp)
        slack = FakeSlack()
        cards = Cards()
        slack.listen(cards)
        await slack.start()
        for user in (REQUESTER, *APPROVERS):
            slack.add_user(user, name=user.lower())
        service, service_port = await unhealthy_service()
        write_config(folder, service_port=service_port)
        serve = Serve(folder, api_url=slack.base_url, db_url=db_url, secret=SECRET)
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        try:
            await serve.start(timeout_s=READY_TIMEOUT_S)
            baseline = memory_kib(serve.pid)
            t0 = time.monotonic()
            acks = await open_incidents(
                http, serve.url, count=incidents, channels=channels, concurrency=concurrency
            )
            acked_s = time.monotonic() - t0
            await wait_until(
                lambda: len(cards.threads) >= incidents,
                serve,
                timeout_s=timeout_s,
                what=f"{incidents} approval cards",
            )
            open_s = time.monotonic() - t0
            calls = -1
            while calls != len(slack.calls):  # root updates and results still on their way
                calls = len(slack.calls)
                await asyncio.sleep(QUIET_S)
            held = memory_kib(serve.pid)
            still_open, pending = count_open(db_url)
        finally:
            await http.close()
            serve.stop()
            await service.cleanup()
            await slack.stop()
    acks.sort()
    return {
        "baseline_rss_mib": mib(baseline["VmRSS"]),
        "rss_mib": mib(held["VmRSS"]),
        "peak_rss_mib": mib(held["VmHWM"]),
        "per_incident_kib": round((held["VmRSS"] - baseline["VmRSS"]) / max(incidents, 1), 1),
        "open_incidents": still_open,
        "pending_approvals": pending,
        "cards": len(cards.threads),
        "slack_calls": len(slack.calls),
        "acked_s": round(acked_s, 2),
        "open_s": round(open_s, 2),
        "ack_p50_ms": round(acks[len(acks) // 2], 1),
        "ack_max_ms": round(acks[-1], 1),
        "within": held["VmHWM"] * 1024 < TARGET_MB * 10**6,
    }


def line(label: str, r: dict[str, Any], incidents: int) -> str:
    return (
        f"  {label:<11} baseline {r['baseline_rss_mib']:6.1f} MiB   with {r['open_incidents']} "
        f"open: RSS {r['rss_mib']:6.1f} MiB, peak {r['peak_rss_mib']:6.1f} MiB "
        f"({r['per_incident_kib']:.0f} KiB/incident)   {incidents} opened in {r['open_s']:.1f} s "
        f"(acked in {r['acked_s']:.1f} s, ack p50 {r['ack_p50_ms']:.0f} ms)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=20, help="commands in flight")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the cards")
    parser.add_argument("--pg", default=os.environ.get("OPSGATE_TEST_DATABASE_URL", PG_DEFAULT))
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    options = {
        "incidents": args.incidents,
        "channels": args.channels,
        "concurrency": args.concurrency,
        "timeout_s": args.timeout,
    }
    say(
        f"one opsgate serve holding {args.incidents} open incidents, each with an approval card "
        f"pending ({args.concurrency} commands in flight, {args.channels} channels)"
    )
    result: dict[str, Any] = {"incidents": args.incidents, "target_mb": TARGET_MB}
    with tempfile.TemporaryDirectory() as tmp:
        result["sqlite"] = await run_backend(f"sqlite:///{tmp}/bench.db", **options)
    say(line("SQLite", result["sqlite"], args.incidents))
    if not args.no_pg:
        base = args.pg.replace("postgresql://", "postgresql+psycopg://", 1)
        schema, url = fresh_pg_schema(base)
        try:
            result["postgres"] = await run_backend(url, **options)
        finally:
            drop_pg_schema(base, schema)
        say(line("PostgreSQL", result["postgres"], args.incidents))
    backends = [result[k] for k in ("sqlite", "postgres") if k in result]
    result["within"] = all(r["within"] for r in backends)
    worst = max(r["peak_rss_mib"] for r in backends)
    say(
        f"  target: peak RSS < {TARGET_MB:.0f} MB ({TARGET_MB * 10**6 / 2**20:.0f} MiB) -> "
        f"{'PASS' if result['within'] else 'FAIL'} (worst peak {worst:.1f} MiB)"
    )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
