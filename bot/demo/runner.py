"""Runs the demo: service, alerts, bot and sandbox, until Ctrl-C; leaves nothing behind.

With Debian's ``prometheus`` and ``prometheus-alertmanager`` installed, the alert is real:
Prometheus scrapes the demo service, its error-rate rule fires, Alertmanager delivers the
webhook, and the runbook (``runbooks/monitored/``) queries Prometheus and silences the alert in
Alertmanager during the restart. Without them a built-in watcher sends the webhook itself and
the runbook probes the service's health over HTTP.
"""

import asyncio
import contextlib
import os
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
from typing import Any

import aiohttp
from aiohttp import web

from adapters import GrantSigner
from bot.app import build_app
from bot.demo import monitoring
from bot.demo.monitoring import Monitoring, MonitoringSpec
from bot.demo.service import DemoService
from bot.sandbox.llm import FakeModel
from bot.sandbox.llm_scripts import RecordedRun
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


def write_runbooks(folder: Path, service_url: str, *, monitored: bool = False) -> None:
    """The demo runbooks and recovery playbooks, pointed at this run's demo service; with
    ``monitored`` the ones of ``runbooks/monitored/`` replace their namesakes."""
    shipped = resources.files("bot.demo").joinpath("runbooks")
    sources = [(shipped, folder), (shipped.joinpath("recovery"), folder / "recovery")]
    if monitored:
        sources.append((shipped.joinpath("monitored"), folder))
    for source, target in sources:
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


async def break_later(service: DemoService, *, break_after_s: float) -> None:
    """Break the service after a while; Prometheus and Alertmanager raise the alert."""
    await asyncio.sleep(break_after_s)
    service.break_service(SERVICE)
    log.info("demo_service_broken", service=SERVICE)
    print(
        f"  {SERVICE} is failing now (health answers 503); Prometheus's alert follows "
        "through Alertmanager.",
        flush=True,
    )


def monitored_adapters(mon: Monitoring) -> dict[str, object]:
    """The ``adapters`` settings of a demo with real Prometheus and Alertmanager."""
    return {
        "prometheus": {"base_url": mon.prometheus_url},
        "alertmanager": {
            "base_url": mon.alertmanager_url,
            "allow_matchers": {"service": [SERVICE], "alertname": [monitoring.ALERT_NAME]},
        },
    }


async def _start_monitoring(
    work: Path, service_port: int, bot_port: int, alert_token: str
) -> Monitoring:
    mon = Monitoring(
        MonitoringSpec(
            scrape_targets=[f"127.0.0.1:{service_port}"],
            webhook_url=f"http://127.0.0.1:{bot_port}/alerts/alertmanager",
            webhook_token=alert_token,
        ),
        work / "monitoring",
    )
    await mon.start()  # stops what it started when it fails
    return mon


def _alerts(
    service: DemoService,
    mon: Monitoring | None,
    *,
    break_after_s: float,
    bot_port: int,
    token: str,
) -> tuple["asyncio.Task[None]", str]:
    """The task that breaks the service (and, without monitoring, sends the alert), and the
    banner's line saying where alerts come from."""
    if mon is not None:
        task = asyncio.create_task(break_later(service, break_after_s=break_after_s))
        return task, (
            f"  Alerts: real Prometheus {mon.prometheus_url} and Alertmanager "
            f"{mon.alertmanager_url}; the runbook queries one and silences in the other.\n"
        )
    task = asyncio.create_task(
        watch_and_alert(
            service,
            break_after_s=break_after_s,
            alert_url=f"http://127.0.0.1:{bot_port}/alerts/alertmanager",
            alert_token=token,
        )
    )
    why = (
        "asked for with --builtin-alerts"
        if monitoring.installed()
        else "Prometheus and Alertmanager are not installed: "
        "apt-get install prometheus prometheus-alertmanager"
    )
    return task, f"  Alerts: a built-in watcher ({why}).\n"


# The recorded run costs about 3,000 tokens; the card asks a person past 80% of this budget.
DEMO_LLM_TOKENS = 4000


async def _agents(scripted: bool, service_url: str, runners: list[web.AppRunner]) -> dict[str, Any]:
    """The ``llm:`` config of the demo: a real endpoint from ``OPSGATE_LLM_BASE_URL``, else
    with ``scripted`` the stand-in playing a recorded run, else none (runbooks only)."""
    if os.environ.get("OPSGATE_LLM_BASE_URL"):
        return {"budgets": {"plan_tokens": DEMO_LLM_TOKENS}}  # the env names it all
    if not scripted:
        return {}
    model = FakeModel(responder=RecordedRun(service_url))
    base_url = await model.start()
    assert model._runner is not None
    runners.append(model._runner)
    return {
        "llm": {"base_url": base_url, "model": "scripted-demo"},
        "budgets": {"plan_tokens": DEMO_LLM_TOKENS},
    }


def _banner(
    url: str, service_url: str, *, break_after_s: float, agents: bool, alerts_line: str
) -> None:
    """Print where the demo runs and what to type."""
    print(
        f"\nopsgate demo is running: open {url}\n"
        f"  {SERVICE} starts failing in {break_after_s:.0f} s; an alert then opens an "
        "incident in #incidents.\n"
        "  Or type: /incident checkout-api is down   (second scenario: "
        "/incident orders-db disk full, /incident web serves stale data)\n"
        "  Switch person at the top to approve as Sam and Alex. Ctrl-C stops.\n"
        + (
            "  Agents: /incident checkout-api is slow   (no runbook matches: the "
            "Researcher reads, the LLM Planner proposes)\n"
            if agents
            else ""
        )
        + f"  Demo service: {service_url}/metrics, {service_url}/svc/{SERVICE}/health\n"
        + alerts_line,
        flush=True,
    )


@dataclass(frozen=True)
class DemoHandles:
    """What a running demo exposes to tests and scripts."""

    url: str
    service: DemoService
    control: ControlPlane
    sandbox: Sandbox
    monitoring: Monitoring | None = None


async def run_demo(
    *,
    port: int,
    open_browser: bool,
    break_after_s: float,
    on_started: Callable[[DemoHandles], None] | None = None,
    stop: asyncio.Event | None = None,
    real_monitoring: bool | None = None,
    scripted_llm: bool = False,
) -> None:
    """Start everything, print the URL, run until ``stop`` (or SIGINT/SIGTERM), clean up.

    ``real_monitoring``: use Prometheus and Alertmanager (None: when both are installed).
    """
    real_monitoring = monitoring.installed() if real_monitoring is None else real_monitoring
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
        write_runbooks(
            work / "runbooks", f"http://127.0.0.1:{service_port}", monitored=real_monitoring
        )
        mon = (
            await _start_monitoring(work, service_port, bot_port, alert_token)
            if real_monitoring
            else None
        )
        agents = await _agents(scripted_llm, f"http://127.0.0.1:{service_port}", runners)
        config = OpsgateConfig.model_validate(
            agents
            | {
                "adapters": monitored_adapters(mon) if mon is not None else {},
                "runbooks": str(work / "runbooks"),
                "approvers": APPROVERS,
                "slack": {
                    "alert_channel": sandbox.channel_id,
                    "incident_channels": [sandbox.channel_id],
                    "channel_rate_per_s": 4,
                    # Messages link their trace to this demo's own signed trace pages.
                    "public_url": f"http://127.0.0.1:{bot_port}",
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
            task, alerts_line = _alerts(
                service, mon, break_after_s=break_after_s, bot_port=bot_port, token=alert_token
            )
            tasks.append(task)
            url = f"http://127.0.0.1:{port}/"
            _banner(
                url,
                f"http://127.0.0.1:{service_port}",
                break_after_s=break_after_s,
                agents="llm" in agents or bool(os.environ.get("OPSGATE_LLM_BASE_URL")),
                alerts_line=alerts_line,
            )
            if open_browser:
                with contextlib.suppress(Exception):
                    webbrowser.open(url)
            if on_started is not None:
                on_started(
                    DemoHandles(
                        url=url, service=service, control=control, sandbox=sandbox, monitoring=mon
                    )
                )
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for runner in reversed(runners):
                await runner.cleanup()
            if mon is not None:
                await mon.stop()
            await sandbox.close()
            await fake.stop()
            print("opsgate demo stopped.", flush=True)
