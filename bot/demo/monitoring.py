"""Real Prometheus and Alertmanager for the demo and the tests, on ephemeral ports.

Debian ships them as ``prometheus`` and ``prometheus-alertmanager``. :func:`binaries` says
whether both are installed; :class:`Monitoring` writes their configs into a folder, starts both
(Alertmanager without clustering), waits until each answers ``/-/ready`` and stops them again,
leaving no process behind. Prometheus scrapes the given targets, evaluates one error-rate rule
and sends its alerts to the Alertmanager, which delivers them to opsgate's webhook with a
bearer token.
"""

import asyncio
import contextlib
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp
import yaml

PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"
ALERT_NAME = "ServiceErrorRate"
READY_TIMEOUT_S = 60.0


def binaries() -> dict[str, str | None]:
    """Where each binary is (``None``: not installed)."""
    return {name: shutil.which(name) for name in (PROMETHEUS_BIN, ALERTMANAGER_BIN)}


def installed() -> bool:
    """True when both Prometheus and Alertmanager are installed."""
    return all(binaries().values())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def error_rate_expr(threshold: float, window: str = "30s") -> str:
    """The PromQL of the error-rate rule: services failing more than ``threshold`` per second."""
    return f"sum by (service) (rate(demo_http_errors_total[{window}])) > {threshold:g}"


@dataclass(kw_only=True)
class MonitoringSpec:
    """What to monitor and where alerts go; the defaults are small for quick tests."""

    scrape_targets: list[str]  # host:port serving /metrics
    webhook_url: str
    webhook_token: str
    threshold: float = 0.2  # errors per second
    window: str = "10s"
    interval: str = "1s"  # scrape and evaluation interval
    for_: str = "2s"
    group_wait: str = "1s"
    group_interval: str = "2s"
    repeat_interval: str = "1h"
    # How often Prometheus re-sends an alert, resolved ones too (for 15 min). Alertmanager drops
    # a resolution that arrives while its alert is silenced; the next re-send after the silence
    # is expired delivers it, so a short delay closes the incident soon after the plan ends.
    resend_delay: str = "1s"
    extra_labels: dict[str, str] = field(default_factory=lambda: {"severity": "page"})

    def prometheus_config(self, alertmanager: str) -> dict[str, Any]:
        """The ``prometheus.yml`` document."""
        return {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": ["rules.yml"],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "scrape_configs": [
                {"job_name": "demo", "static_configs": [{"targets": self.scrape_targets}]}
            ],
        }

    def rules(self) -> dict[str, Any]:
        """The rule file: one alert per service whose error rate passes the threshold."""
        return {
            "groups": [
                {
                    "name": "opsgate-demo",
                    "rules": [
                        {
                            "alert": ALERT_NAME,
                            "expr": error_rate_expr(self.threshold, self.window),
                            "for": self.for_,
                            "labels": dict(self.extra_labels),
                            "annotations": {"summary": "{{ $labels.service }} is down"},
                        }
                    ],
                }
            ]
        }

    def alertmanager_config(self) -> dict[str, Any]:
        """The ``alertmanager.yml`` document: everything to opsgate, grouped by service."""
        return {
            "route": {
                "receiver": "opsgate",
                "group_by": ["alertname", "service"],
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [
                {
                    "name": "opsgate",
                    "webhook_configs": [
                        {
                            "url": self.webhook_url,
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {
                                    "type": "Bearer",
                                    "credentials": self.webhook_token,
                                }
                            },
                        }
                    ],
                }
            ],
        }


class Monitoring:
    """A running Prometheus and Alertmanager pair (an async context manager)."""

    def __init__(self, spec: MonitoringSpec, folder: Path) -> None:
        """Keep configs and data in ``folder``; nothing starts before ``start``."""
        self.spec = spec
        self.folder = folder
        self.prometheus_url = ""
        self.alertmanager_url = ""
        self._procs: list[asyncio.subprocess.Process] = []
        self._logs: list[Any] = []

    async def __aenter__(self) -> Self:
        """Start both servers."""
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Stop both servers."""
        await self.stop()

    async def start(self) -> None:
        """Write the configs, start Alertmanager then Prometheus, wait until both are ready."""
        found = binaries()
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise RuntimeError(f"not installed: {', '.join(missing)}")
        self.folder.mkdir(parents=True, exist_ok=True)
        am_port, prom_port = _free_port(), _free_port()
        self.alertmanager_url = f"http://127.0.0.1:{am_port}"
        self.prometheus_url = f"http://127.0.0.1:{prom_port}"
        am_cfg = self.folder / "alertmanager.yml"
        am_cfg.write_text(yaml.safe_dump(self.spec.alertmanager_config()), encoding="utf-8")
        (self.folder / "rules.yml").write_text(yaml.safe_dump(self.spec.rules()), encoding="utf-8")
        prom_cfg = self.folder / "prometheus.yml"
        prom_cfg.write_text(
            yaml.safe_dump(self.spec.prometheus_config(f"127.0.0.1:{am_port}")), encoding="utf-8"
        )
        try:
            await self._spawn(
                "alertmanager",
                str(found[ALERTMANAGER_BIN]),
                f"--config.file={am_cfg}",
                f"--storage.path={self.folder / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            )
            await self._spawn(
                "prometheus",
                str(found[PROMETHEUS_BIN]),
                f"--config.file={prom_cfg}",
                f"--storage.tsdb.path={self.folder / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                f"--rules.alert.resend-delay={self.spec.resend_delay}",
            )
            await self._ready(self.alertmanager_url, "alertmanager")
            await self._ready(self.prometheus_url, "prometheus")
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Terminate both servers (kill after 10 s) and close their logs."""
        for proc in reversed(self._procs):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        self._procs.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last lines of a server's log (``prometheus`` or ``alertmanager``)."""
        path = self.folder / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    async def _spawn(self, name: str, *argv: str) -> None:
        handle = (self.folder / f"{name}.log").open("wb")
        self._logs.append(handle)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=handle, stderr=asyncio.subprocess.STDOUT, cwd=self.folder
        )
        self._procs.append(proc)

    async def _ready(self, url: str, name: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if any(p.returncode is not None for p in self._procs):
                    break
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(
                        f"{url}/-/ready", timeout=aiohttp.ClientTimeout(total=2)
                    ) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready at {url}:\n{self.log_tail(name)}")
