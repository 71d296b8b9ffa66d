"""Real ``opsgate serve`` child processes for the benchmarks (and the fault tests): the demo's
runbook shape, a free port, start until ``/readyz`` answers, stop, and the process's CPU."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from bot.sandbox.webapi import DEFAULT_TOKEN

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The demo's shape: a low-risk probe (runs by itself), a high-risk restart (two approvers,
# neither the requester) and a low-risk verify; ``{port}`` is the target service's.
RUNBOOK = """\
id: web-restart
version: 1
title: Restart an unhealthy web service
match:
  keywords: ["down"]
  patterns: ['(?P<service>[a-z][a-z0-9-]{{1,40}}) is down']
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


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago (``Serve.start`` copes if it is not)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Serve:
    """One ``opsgate serve`` child process, configured by ``folder / "opsgate.yaml"``."""

    def __init__(
        self,
        folder: Path,
        *,
        api_url: str,
        db_url: str,
        secret: str,
        name: str = "serve",
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.name = name
        self.log = folder / f"{name}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSGATE_"))},
            "SLACK_BOT_TOKEN": DEFAULT_TOKEN,
            "SLACK_SIGNING_SECRET": secret,
            "OPSGATE_SLACK_API_URL": api_url,
            "OPSGATE_CONFIG": str(folder / "opsgate.yaml"),
            "OPSGATE_DATABASE_URL": db_url,
            "OPSGATE_GRANT_KEY": "ab" * 32,
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    async def start(self, *, timeout_s: float = 60.0, port_tries: int = 3) -> "Serve":
        """Start the process and return once ``/readyz`` answers 200."""
        command = [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1"]
        with self.log.open("ab") as handle:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - started once, polled below
                [*command, "--port", str(self.port)],
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.dead:
                    if port_tries > 1 and self._port_taken():
                        # Another process took the free port between our check and the bind.
                        self.port = free_port()
                        return await self.start(timeout_s=timeout_s, port_tries=port_tries - 1)
                    raise RuntimeError(f"opsgate serve exited:\n{self.log.read_text()[-3000:]}")
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/readyz") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"opsgate serve not ready:\n{self.log.read_text()[-3000:]}")

    def _port_taken(self) -> bool:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return bool(lines) and f"port {self.port} is taken" in lines[-1]

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it does not stop in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
