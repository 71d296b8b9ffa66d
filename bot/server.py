"""Run the Slack app: an aiohttp server (HTTP mode) or a Socket Mode connection."""

import asyncio
import signal
import socket
from pathlib import Path

from aiohttp import web

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


async def serve(
    config: Path | None, settings: SlackSettings, *, host: str, port: int, socket_mode: bool
) -> None:
    """Serve until SIGINT/SIGTERM; background work is drained before exit."""
    listener = bind(host, port)  # before anything starts: a taken port changes nothing
    control = build_control(config_path=config)
    slack = build_app(control, settings)
    runner = web.AppRunner(slack.web)
    await runner.setup()
    site = web.SockSite(runner, listener)
    await site.start()
    log.info("http_listening", host=host, port=listener.getsockname()[1])
    socket = None
    if socket_mode:
        from slack_bolt.adapter.socket_mode.async_handler import (  # noqa: PLC0415
            AsyncSocketModeHandler,
        )

        socket = AsyncSocketModeHandler(slack.bolt, settings.app_token)
        await socket.connect_async()  # type: ignore[no-untyped-call]
        log.info("socket_mode_connected")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting_down")
    if socket is not None:
        await socket.close_async()  # type: ignore[no-untyped-call]
    await runner.cleanup()
