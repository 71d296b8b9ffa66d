"""Run the Slack app: an aiohttp server (HTTP mode) or a Socket Mode connection."""

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable
from pathlib import Path

from aiohttp import web

from bot.alerts import require_alert_intake
from bot.app import build_app
from bot.main import build_control
from bot.settings import SlackSettings
from orchestration.telemetry import get_logger

log = get_logger("opsgate.server")


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``, not yet listening.

    Raises:
        OSError: the port is taken (``EADDRINUSE``), privileged, or ``host`` is not local.
    """
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As aiohttp's own TCPSite does: a restart may rebind while old connections linger.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


async def _unless_stopped(stop: asyncio.Event, work: Awaitable[None]) -> bool:
    """Run ``work`` unless ``stop`` is set first (then cancel it); whether it finished."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()  # start-up errors surface as before
    return True


async def serve(
    config: Path | None, settings: SlackSettings, *, host: str, port: int, socket_mode: bool
) -> None:
    """Serve until SIGINT/SIGTERM; background work is drained before exit.

    A signal during start-up (migrations, a Socket Mode connection that cannot reach Slack)
    stops it there: what started is cleaned up and the process exits.
    """
    listener = bind(host, port)  # before anything starts: a taken port changes nothing
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    control = build_control(config_path=config)
    require_alert_intake(control.config, settings)  # no open alert intake by default
    slack = build_app(control, settings)
    runner = web.AppRunner(slack.web)
    handler = None
    try:
        if not await _unless_stopped(stop, runner.setup()):
            return
        await web.SockSite(runner, listener).start()
        log.info("http_listening", host=host, port=listener.getsockname()[1])
        if socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import (  # noqa: PLC0415
                AsyncSocketModeHandler,
            )

            handler = AsyncSocketModeHandler(slack.bolt, settings.app_token)
            connect = handler.connect_async()  # type: ignore[no-untyped-call]
            if not await _unless_stopped(stop, connect):
                return
            log.info("socket_mode_connected")
        await stop.wait()
    finally:
        log.info("shutting_down")
        if handler is not None:
            await handler.close_async()  # type: ignore[no-untyped-call]
        await runner.cleanup()
        listener.close()
