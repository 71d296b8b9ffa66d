"""Runs the demo: service, alert watcher, bot and sandbox, until Ctrl-C; leaves nothing behind."""

import asyncio
import contextlib
import secrets
import signal
import socket
import tempfile
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import aiohttp
from aiohttp import web

from adapters import GrantSigner
from bot.app import build_app
from bot.demo.service import DemoService
from bot.sandbox.ui import DEFAULT_PERSONAS, Sandbox
from bot.sandbox.webapi import DEFAULT_TOKEN, FakeSlack
from bot.settings import SlackSettings
from common import SystemClock
from orchestration.config import OpsgateConfig
from orchestration.control import ControlPlane
from orchestration.db import Database
from orchestration.telemetry import get_logger
from orchestration.toolbox import build_registry
from policies import Incidents, default_pack

log = get_logger("opsgate.demo")

SERVICE = "checkout-api"
# Riley (on call), Sam and Alex may approve; Jordan may not. Whoever types `/incident` is its
# requester, and cannot approve its high-risk steps: Riley, in the cache-flush scenario. An
# alert's incident is requested by `alertmanager`, so any two of the three approve its restart.
PERSONAS = list(DEFAULT_PERSONAS)
APPROVERS = ["U0RILEY01", "U0SAM0002", "U0ALEX003"]
# Riley is also a responder: on call, the one expected to close what an alert opened.
RESPONDERS = ("U0RILEY01",)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_runbooks(folder: Path, service_url: str) -> None:
    """The demo runbooks and recovery playbooks, pointed at this run's demo service."""
    shipped = resources.files("bot.demo").joinpath("runbooks")
    for source, target in ((shipped, folder), (shipped.joinpath("recovery"), folder / "recovery")):
        target.mkdir(parents=True, exist_ok=True)
        for item in source.iterdir():
            if item.name.endswith(".yaml"):
                text = item.read_text(encoding="utf-8").replace(
                    "http://127.0.0.1:9000", service_url
                )
                (target / item.name).write_text(text, encoding="utf-8")


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def watch_and_alert(
    service: DemoService, *, break_after_s: float, alert_url: str, alert_token: str
) -> None:
    """Break the service after a while; when its health fails twice, fire an alert."""
    await asyncio.sleep(break_after_s)
    service.break_service(SERVICE)
    log.info("demo_service_broken", service=SERVICE)
    # Part of the story, not a fault: the terminal tells it in words, not as a log line.
    print(f"  {SERVICE} is failing now (health answers 503); an alert follows.", flush=True)
    failures = 0
    while failures < 2:
        await asyncio.sleep(1)
        failures = failures + 1 if SERVICE in service.state.broken else 0
    alert = {
        "version": "4",
        "status": "firing",
        "receiver": "opsgate",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "ServiceDown", "service": SERVICE, "severity": "page"},
                "annotations": {"summary": f"{SERVICE} is down"},
                "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "fingerprint": secrets.token_hex(8),
            }
        ],
    }
    headers = {"Authorization": f"Bearer {alert_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(alert_url, json=alert, headers=headers) as resp,
    ):
        log.info("demo_alert_sent", status=resp.status)


@dataclass(frozen=True)
class DemoHandles:
    """What a running demo exposes to tests and scripts."""

    url: str
    service: DemoService
    control: ControlPlane
    sandbox: Sandbox


async def run_demo(
    *,
    port: int,
    open_browser: bool,
    break_after_s: float,
    on_started: Callable[[DemoHandles], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Start everything, print the URL, run until ``stop`` (or SIGINT/SIGTERM), clean up."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    runners: list[web.AppRunner] = []
    tasks: list[asyncio.Task[None]] = []
    with tempfile.TemporaryDirectory(prefix="opsgate-demo-") as tmp:
        work = Path(tmp)
        service = DemoService()
        service_port, bot_port = free_port(), free_port()
        runners.append(await _serve(service.app, service_port))
        secret = secrets.token_hex(16)
        alert_token = secrets.token_hex(16)  # the demo's alerts authenticate like real ones
        fake = FakeSlack()
        sandbox = Sandbox(
            fake,
            bot_url=f"http://127.0.0.1:{bot_port}/slack/events",
            signing_secret=secret,
            personas=PERSONAS,
        )
        await fake.start(port=port)
        write_runbooks(work / "runbooks", f"http://127.0.0.1:{service_port}")
        config = OpsgateConfig.model_validate(
            {
                "runbooks": str(work / "runbooks"),
                "approvers": APPROVERS,
                "slack": {
                    "alert_channel": sandbox.channel_id,
                    "incident_channels": [sandbox.channel_id],
                    "channel_rate_per_s": 4,
                },
                "execution": {"backoff_initial_s": 0.5, "backoff_max_s": 2},
            }
        )
        clock = SystemClock()
        signer = GrantSigner(secrets.token_bytes(32))
        control = ControlPlane(
            db=Database(f"sqlite:///{work / 'demo.db'}"),
            config=config,
            tools=build_registry(config, signer=signer, clock=clock),
            pack=default_pack().model_copy(update={"incidents": Incidents(responders=RESPONDERS)}),
            signer=signer,
            clock=clock,
        )
        settings = SlackSettings(
            bot_token=DEFAULT_TOKEN,
            signing_secret=secret,
            app_token=None,
            api_url=fake.base_url,
            alert_token=alert_token,
        )
        slack = build_app(control, settings, relay_idle_s=0.2)
        try:
            runners.append(await _serve(slack.web, bot_port))
            tasks.append(asyncio.create_task(service.traffic([SERVICE])))
            tasks.append(
                asyncio.create_task(
                    watch_and_alert(
                        service,
                        break_after_s=break_after_s,
                        alert_url=f"http://127.0.0.1:{bot_port}/alerts/alertmanager",
                        alert_token=alert_token,
                    )
                )
            )
            url = f"http://127.0.0.1:{port}/"
            service_url = f"http://127.0.0.1:{service_port}"
            print(
                f"\nopsgate demo is running: open {url}\n"
                f"  {SERVICE} starts failing in {break_after_s:.0f} s; an alert then opens an "
                "incident in #incidents.\n"
                "  Or type: /incident checkout-api is down   (second scenario: "
                "/incident orders-db disk full, /incident web serves stale data)\n"
                "  Switch person at the top to approve as Sam and Alex. Ctrl-C stops.\n"
                f"  Demo service: {service_url}/metrics, {service_url}/svc/{SERVICE}/health\n",
                flush=True,
            )
            if open_browser:
                with contextlib.suppress(Exception):
                    webbrowser.open(url)
            if on_started is not None:
                on_started(DemoHandles(url=url, service=service, control=control, sandbox=sandbox))
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for runner in reversed(runners):
                await runner.cleanup()
            await sandbox.close()
            await fake.stop()
            print("opsgate demo stopped.", flush=True)
