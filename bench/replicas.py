"""Scale-out: the same load through one and through two ``opsgate serve`` replicas on one
PostgreSQL database.

DESIGN target (issue 11 item 3): with a target whose calls take 200 ms (I/O-bound, as real tools
are), two replicas finish incidents at least 1.8x as fast as one; with a no-op target, report
the ratio and the server CPU per incident (goal: at least 3x less than 60 ms).

Each run starts ``--replicas`` real ``opsgate serve`` processes on a fresh PostgreSQL schema,
a fake Slack Web API (``bot.sandbox.webapi.FakeSlack``) and the target service in this process.
The runbook is the demo's shape: a low-risk probe (runs by itself), a high-risk restart (two
approvers, neither the requester) and a low-risk verify: three tool calls per incident. Each
incident is driven as on-call engineers would drive it, with signed Slack requests spread over
the replicas: ``/incident svc-N is down``, then, once the approval card is posted, two Approve
clicks (on different replicas). At most ``--inflight`` incidents are open at once (enough
that every call slot of two replicas stays busy: with fewer, the driver, not opsgate, sets the
pace: 48 open incidents capped two replicas at about 10 incidents/s). After a
warm-up of ``--warmup`` incidents (off the clock), ``--incidents`` incidents are timed from the
first command until every plan has finished (read from the database).

Each replica holds at most ``execution.max_concurrent_calls`` tool calls in flight
(``--slots``, per replica; the bulkhead a production replica runs with). With 200 ms calls a
replica's throughput is its slots over the call time, so one more replica should add as much
again, unless something shared serialises them (a global lock, a hot row, one relay).

Figures per configuration: incidents per second, median and p90 time from command to finished
plan, CPU of the ``opsgate serve`` processes per incident (utime + stime from
``/proc/<pid>/stat`` over the timed phase), CPU of this driver per incident, and the target's
call counts (each restart exactly once). Runs alternate (1 replica, 2 replicas) for
``--rounds`` rounds; ratios are of medians.

Run: ``make bench-replicas`` or ``python -m bench.replicas [--delay-ms 200] [--slots 4]
[--incidents 160] [--rounds 2] [--json]``; ``--delay-ms 0 --slots 32`` is the no-op target.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import create_engine

from bench.serving import RUNBOOK, Serve, cpu_s, free_port
from bench.step_overhead import drop_pg_schema, fresh_pg_schema
from bot.ids import ActionId
from bot.sandbox import signing
from bot.sandbox.webapi import FakeSlack

SECRET = "bench-replicas-secret"
REQUESTER = "UREQ"
APPROVERS = ("UAPP1", "UAPP2")
CHANNELS = tuple(f"C0LOAD{n}" for n in range(16))
TARGET_RATIO = 1.8
BASELINE_CPU_MS = 60.0
CARD = re.compile(r"Restart svc-(\d+)(?!\d)")


@dataclass
class Target:
    """The service the runbook acts on: each call takes ``delay_s``; every call is counted."""

    delay_s: float
    calls: Counter[str] = field(default_factory=Counter)
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> "Target":
        app = web.Application()
        app.router.add_get("/svc/{name}/health", self._call)
        app.router.add_post("/svc/{name}/restart", self._call)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def _call(self, request: web.Request) -> web.Response:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        verb = request.path.rsplit("/", 1)[1]
        self.calls[f"{verb}:{request.match_info['name']}"] += 1
        return web.json_response({"ok": True})

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Cards:
    """The newest approval card of each incident, as the fake Slack posts or updates it."""

    def __init__(self, slack: FakeSlack) -> None:
        self.latest: dict[int, dict[str, Any]] = {}
        self.channel: dict[int, str] = {}
        self.arrived: dict[int, asyncio.Event] = {}
        slack.listen(self._seen)

    def wait_for(self, n: int) -> asyncio.Event:
        return self.arrived.setdefault(n, asyncio.Event())

    def _seen(self, event: dict[str, Any]) -> None:
        if event.get("type") not in ("message_posted", "message_updated"):
            return
        message = event["message"]
        blocks = message.get("blocks") or []
        if not any(
            element.get("action_id") == ActionId.APPROVE
            for block in blocks
            if block.get("type") == "actions"
            for element in block.get("elements", [])
        ):
            return
        found = CARD.search(json.dumps(blocks))
        if found is None:
            return
        n = int(found.group(1))
        self.latest[n] = message
        self.channel[n] = event["channel"]
        self.wait_for(n).set()


@dataclass
class World:
    slack: FakeSlack
    cards: Cards
    target: Target
    replicas: list[Serve]
    http: aiohttp.ClientSession
    db_url: str
    done: dict[int, asyncio.Event] = field(default_factory=dict)
    opened_at: dict[int, float] = field(default_factory=dict)
    finished_at: dict[int, float] = field(default_factory=dict)

    async def post(self, replica: Serve, body: str) -> None:
        headers = signing.sign(body, secret=SECRET)
        async with self.http.post(replica.url, data=body.encode(), headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{replica.url} answered {resp.status}: {await resp.text()}")

    async def incident(self, n: int, gate: asyncio.Semaphore) -> None:
        count = len(self.replicas)
        async with gate:
            channel = CHANNELS[n % len(CHANNELS)]
            self.opened_at[n] = time.perf_counter()
            body = signing.slash_command_body(
                command="/incident", text=f"svc-{n} is down", user_id=REQUESTER, channel_id=channel
            )
            await self.post(self.replicas[n % count], body)
            await asyncio.wait_for(self.cards.wait_for(n).wait(), timeout=120)
            for i, voter in enumerate(APPROVERS):
                click = signing.button_click_body(
                    message=self.cards.latest[n],
                    channel_id=channel,
                    action_id=ActionId.APPROVE,
                    user_id=voter,
                )
                await self.post(self.replicas[(n + 1 + i) % count], click)
            await self.finished(n)

    def done_event(self, n: int) -> asyncio.Event:
        return self.done.setdefault(n, asyncio.Event())

    async def finished(self, n: int) -> None:
        await asyncio.wait_for(self.done_event(n).wait(), timeout=300)

    async def watch(self, stop: asyncio.Event) -> None:
        """Mark incidents whose plan finished; one query every 50 ms for all of them."""
        engine = create_engine(self.db_url)
        try:
            while not stop.is_set():
                rows = await asyncio.to_thread(_finished_texts, engine)
                now = time.perf_counter()
                for each in rows:
                    n = int(each.split()[0].removeprefix("svc-"))
                    if not self.done_event(n).is_set():
                        self.finished_at[n] = now
                        self.done_event(n).set()
                await asyncio.sleep(0.05)
        finally:
            engine.dispose()


def _finished_texts(engine: Any) -> list[str]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT i.text FROM plans p JOIN incidents i ON i.id = p.incident_id "
            "WHERE p.finished_at IS NOT NULL"
        )
        return [row[0] for row in rows]


def pg_commits(url: str) -> int:
    """Transactions committed in the database so far (``pg_stat_database``, all sessions)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            row = conn.exec_driver_sql(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            ).one()
            return int(row[0])
    finally:
        engine.dispose()


def pg_cpu_s() -> float:
    """CPU seconds of every PostgreSQL server process on this machine (the shared database)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"postgres" not in (entry / "comm").read_bytes():
                continue
            total += cpu_s(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


async def run_config(
    base_url: str, *, replicas: int, incidents: int, warmup: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One configuration on a fresh schema: its figures."""
    schema, db_url = fresh_pg_schema(base_url)
    slack = FakeSlack()
    api_url = await slack.start()
    for user in (REQUESTER, *APPROVERS):
        slack.add_user(user, name=user.lower())
    target = await Target(delay_s=args.delay_ms / 1000).start()
    folder = Path(tempfile.mkdtemp(prefix="opsgate-replicas-"))
    (folder / "runbooks").mkdir()
    (folder / "runbooks" / "web-restart.yaml").write_text(RUNBOOK.format(port=target.port))
    (folder / "opsgate.yaml").write_text(
        "runbooks: ./runbooks\n"
        f"approvers: [{REQUESTER}, {', '.join(APPROVERS)}]\n"
        "slack: {channel_rate_per_s: 1000}\n"
        f"execution: {{max_concurrent_calls: {args.slots}}}\n"
        "adapters: {http: {rate_per_s: 100000, burst: 100000}}\n"
    )
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    world = World(
        slack=slack,
        cards=Cards(slack),
        target=target,
        replicas=[
            Serve(folder, api_url=api_url, db_url=db_url, secret=SECRET, name=f"replica{i}")
            for i in range(replicas)
        ],
        http=http,
        db_url=db_url,
    )
    stop = asyncio.Event()
    watcher: asyncio.Task[None] | None = None
    try:
        # The first replica creates the schema; the others start against it at the same time.
        await asyncio.gather(*(r.start() for r in world.replicas))
        watcher = asyncio.create_task(world.watch(stop))
        gate = asyncio.Semaphore(args.inflight)
        await asyncio.gather(*(world.incident(n, gate) for n in range(warmup)))
        await asyncio.sleep(0.5)  # the warm-up's outbox drains off the clock
        first, last = warmup, warmup + incidents
        server0 = sum(r.cpu_s() for r in world.replicas)
        driver0 = time.process_time()
        pg0 = pg_cpu_s()
        commits0 = pg_commits(base_url)
        calls0 = Counter(call.method for call in slack.calls)
        started = time.perf_counter()
        await asyncio.gather(*(world.incident(n, gate) for n in range(first, last)))
        elapsed = time.perf_counter() - started
        server = sum(r.cpu_s() for r in world.replicas) - server0
        driver = time.process_time() - driver0
        pg = pg_cpu_s() - pg0
        await asyncio.sleep(1.5)  # PostgreSQL flushes its counters at most once a second
        commits = pg_commits(base_url) - commits0
        calls = Counter(call.method for call in slack.calls) - calls0
        timed = range(first, last)
        latencies = sorted(world.finished_at[n] - world.opened_at[n] for n in timed)
        restarts = [target.calls[f"restart:svc-{n}"] for n in range(last)]
        return {
            "replicas": replicas,
            "incidents": incidents,
            "seconds": round(elapsed, 2),
            "incidents_per_s": round(incidents / elapsed, 2),
            "latency_p50_s": round(statistics.median(latencies), 3),
            "latency_p90_s": round(latencies[int(0.9 * (len(latencies) - 1))], 3),
            "server_cpu_ms_per_incident": round(server * 1000 / incidents, 1),
            "postgres_cpu_ms_per_incident": round(pg * 1000 / incidents, 1),
            "driver_cpu_ms_per_incident": round(driver * 1000 / incidents, 1),
            "commits_per_incident": round(commits / incidents, 1),
            "slack_calls_per_incident": {
                method: round(n / incidents, 2) for method, n in sorted(calls.items())
            },
            "double_restarts": sum(1 for c in restarts if c > 1),
            "missed_restarts": sum(1 for c in restarts if c == 0),
        }
    finally:
        stop.set()
        if watcher is not None:
            await watcher
        for replica in world.replicas:
            replica.stop()
        await http.close()
        await target.stop()
        await slack.stop()
        drop_pg_schema(base_url, schema)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay-ms", type=float, default=200.0, help="each target call's time")
    parser.add_argument("--slots", type=int, default=4, help="max_concurrent_calls per replica")
    parser.add_argument("--incidents", type=int, default=160)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--inflight", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--configs", default="1,2", help="replica counts to run, e.g. 1")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "OPSGATE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = args.pg.replace("postgresql://", "postgresql+psycopg://", 1)

    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    say(
        f"{args.incidents} incidents (3 tool calls of {args.delay_ms:.0f} ms each), "
        f"{args.slots} call slots per replica, {args.inflight} incidents open at once"
    )
    counts = [int(c) for c in args.configs.split(",")]
    runs: dict[int, list[dict[str, Any]]] = {c: [] for c in counts}
    for round_no in range(args.rounds):
        for count in counts:
            result = await run_config(
                base, replicas=count, incidents=args.incidents, warmup=args.warmup, args=args
            )
            runs[count].append(result)
            say(
                f"  round {round_no + 1}, {count} replica{'s' if count > 1 else ''}: "
                f"{result['incidents_per_s']:.1f} incidents/s, p50 {result['latency_p50_s']} s, "
                f"server CPU {result['server_cpu_ms_per_incident']} ms/incident "
                f"(PostgreSQL {result['postgres_cpu_ms_per_incident']} ms, driver "
                f"{result['driver_cpu_ms_per_incident']} ms); "
                f"{result['commits_per_incident']} commits and "
                f"{sum(result['slack_calls_per_incident'].values()):.1f} Slack calls per incident;"
                " restarts twice "
                f"{result['double_restarts']}, missed {result['missed_restarts']}"
            )

    def median(count: int, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[count]))

    if 1 not in runs or 2 not in runs:
        if args.json:
            print(json.dumps({"runs": runs}))
        return
    ratio = median(2, "incidents_per_s") / median(1, "incidents_per_s")
    cpu = median(1, "server_cpu_ms_per_incident")
    summary = {
        "delay_ms": args.delay_ms,
        "slots": args.slots,
        "one": {k: median(1, k) for k in runs[1][0] if isinstance(runs[1][0][k], int | float)},
        "two": {k: median(2, k) for k in runs[2][0] if isinstance(runs[2][0][k], int | float)},
        "throughput_ratio": round(ratio, 2),
        "server_cpu_ms_per_incident": cpu,
        "cpu_vs_baseline": round(BASELINE_CPU_MS / cpu, 2) if cpu else None,
        "within_target": ratio >= TARGET_RATIO if args.delay_ms >= 100 else None,
        "runs": runs,
    }
    say(
        f"two replicas / one: {ratio:.2f}x throughput (target >= {TARGET_RATIO}x with I/O-bound "
        f"calls); server CPU {cpu} ms per incident ({BASELINE_CPU_MS:.0f} ms before: "
        f"{summary['cpu_vs_baseline']}x less)"
    )
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
