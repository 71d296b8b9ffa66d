"""A small web service that can break: the thing the demo's incidents are about.

``GET /svc/{name}/health`` answers 503 while the service is broken, and every failed request
adds to ``demo_http_errors_total`` on ``GET /metrics``. ``POST /svc/{name}/restart`` heals it.
"""

import asyncio
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class ServiceState:
    """What the demo service knows about each of its services."""

    broken: set[str] = field(default_factory=set)
    errors: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    cache_fresh: dict[str, bool] = field(default_factory=dict)

    def fail(self, name: str) -> None:
        """Count one failed request of ``name``."""
        self.errors[name] = self.errors.get(name, 0) + 1


class DemoService:
    """The aiohttp app of the demo service."""

    def __init__(self) -> None:
        self.state = ServiceState()
        self.app = web.Application()
        routes = self.app.router
        routes.add_get("/svc/{name}/health", self._health)
        routes.add_post("/svc/{name}/restart", self._restart)
        routes.add_post("/svc/{name}/break", self._break)
        routes.add_get("/svc/{name}/disk", self._disk)
        routes.add_get("/svc/{name}/cache", self._cache)
        routes.add_post("/svc/{name}/cache/flush", self._flush)
        routes.add_post("/svc/{name}/cache/warm", self._warm)
        routes.add_get("/metrics", self._metrics)
        self._traffic: asyncio.Task[None] | None = None

    def break_service(self, name: str) -> None:
        """Make ``name`` fail from now on (until restarted)."""
        self.state.broken.add(name)

    async def _health(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in self.state.broken:
            self.state.fail(name)
            return web.json_response(
                {"service": name, "status": "down", "error": "upstream connection pool exhausted"},
                status=503,
            )
        return web.json_response({"service": name, "status": "ok"})

    async def _restart(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await asyncio.sleep(0.3)  # a restart takes a moment
        self.state.broken.discard(name)
        self.state.restarts[name] = self.state.restarts.get(name, 0) + 1
        return web.json_response(
            {"service": name, "restarted": True, "restarts": self.state.restarts[name]}
        )

    async def _break(self, request: web.Request) -> web.Response:
        self.break_service(request.match_info["name"])
        return web.json_response({"broken": request.match_info["name"]})

    async def _disk(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "service": request.match_info["name"],
                "used_percent": 97,
                "largest": "/var/lib/orders/archive (41 GB)",
            }
        )

    async def _cache(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response(
            {"service": name, "fresh": self.state.cache_fresh.get(name, False)}
        )

    async def _flush(self, request: web.Request) -> web.Response:
        self.state.cache_fresh[request.match_info["name"]] = True
        return web.json_response({"flushed": True})

    async def _warm(self, request: web.Request) -> web.Response:
        return web.json_response({"warmed": True})

    async def _metrics(self, _request: web.Request) -> web.Response:
        lines = [
            "# HELP demo_http_errors_total Failed requests per service.",
            "# TYPE demo_http_errors_total counter",
        ]
        lines += [
            f'demo_http_errors_total{{service="{name}"}} {count}'
            for name, count in sorted(self.state.errors.items())
        ]
        lines += ["# TYPE demo_service_up gauge"]
        lines += [f'demo_service_up{{service="{name}"}} 0' for name in sorted(self.state.broken)]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def traffic(self, names: list[str], *, every_s: float = 0.5) -> None:
        """Simulated users: hit each service's health so the error counter rises while broken."""
        while True:
            for name in names:
                if name in self.state.broken:
                    self.state.fail(name)
            await asyncio.sleep(every_s)
