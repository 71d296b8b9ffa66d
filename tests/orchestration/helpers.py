"""Factories for control-plane tests: a demo service, runbooks, a control plane."""

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters import GrantSigner, ToolRegistry
from common import Clock
from orchestration.config import OpsgateConfig
from orchestration.control import ControlPlane
from orchestration.db import Database
from orchestration.toolbox import build_registry
from policies import default_pack

REQUESTER = "UREQ"
APPROVER_A = "UAPP1"
APPROVER_B = "UAPP2"
STRANGER = "USTRANGER"

RUNBOOK = """
id: web-restart
version: 1
title: Restart an unhealthy web service
match:
  keywords: ["down", "unhealthy", "5xx"]
  patterns: ['(?P<service>[a-z][a-z0-9-]{{1,40}}) is (down|unhealthy)']
steps:
  - id: probe
    title: Probe {{service}} health
    tool: http.get
    args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/health"}}
    risk: low
  - id: restart
    title: Restart {{service}}
    tool: http.post
    args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/restart"}}
    risk: high
  - id: verify
    title: Verify {{service}} is healthy
    tool: http.get
    args: {{url: "http://127.0.0.1:{port}/svc/{{service}}/health"}}
    expect: {{status: 200}}
    risk: low
"""


async def serve_locally(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on an ephemeral port of 127.0.0.1; returns the runner and the port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]


@dataclass
class DemoService:
    """A local HTTP service that is broken until restarted."""

    healthy: bool = False
    restarts: int = 0
    health_checks: int = 0
    port: int = 0
    runner: web.AppRunner | None = None
    log: list[str] = field(default_factory=list)

    async def start(self) -> "DemoService":
        app = web.Application()
        app.router.add_get("/svc/{name}/health", self._health)
        app.router.add_post("/svc/{name}/restart", self._restart)
        self.runner, self.port = await serve_locally(app)
        return self

    async def _health(self, request: web.Request) -> web.Response:
        self.health_checks += 1
        self.log.append(f"health {request.match_info['name']}")
        if self.healthy:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "down"}, status=503)

    async def _restart(self, request: web.Request) -> web.Response:
        await asyncio.sleep(0)
        self.restarts += 1
        self.healthy = True
        self.log.append(f"restart {request.match_info['name']}")
        return web.json_response({"restarted": True})

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def write_runbook(folder: Path, port: int, text: str = RUNBOOK, name: str = "web-restart") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text.format(port=port), encoding="utf-8")
    return path


def make_config(runbooks: Path, **overrides: Any) -> OpsgateConfig:
    data: dict[str, Any] = {
        "runbooks": str(runbooks),
        "approvers": [REQUESTER, APPROVER_A, APPROVER_B],
        "execution": {"backoff_initial_s": 0.01, "backoff_max_s": 0.02, "max_attempts": 3},
        # The rate limit runs on the test's clock, which stands still: a test of many calls
        # would otherwise queue them seconds apart in real time (rate tests set their own).
        "adapters": {"http": {"rate_per_s": 10000, "burst": 10000}},
    }
    data.update(overrides)
    return OpsgateConfig.model_validate(data)


async def make_control(
    db_url: str,
    config: OpsgateConfig,
    clock: Clock,
    *,
    tools: ToolRegistry | None = None,
    signer: GrantSigner | None = None,
    cache_ttls: dict[str, float] | None = None,
) -> ControlPlane:
    signer = signer or GrantSigner(b"k" * 32)
    registry = tools or build_registry(config, signer=signer, clock=clock)

    async def no_sleep(_seconds: float) -> None:
        await asyncio.sleep(0)

    control = ControlPlane(
        db=Database(db_url),
        config=config,
        tools=registry,
        pack=default_pack(),
        signer=signer,
        clock=clock,
        sleep=no_sleep,
        cache_ttls=cache_ttls,
    )
    problems = await control.start()
    assert not problems, problems
    return control
