"""Run the Slack app: an aiohttp server (HTTP mode) or a Socket Mode connection."""

import asyncio
import signal
from pathlib import Path

from aiohttp import web

from bot.alerts import require_alert_intake
from bot.app import build_app
from bot.main import build_control
from bot.settings import SlackSettings
from orchestration.telemetry import get_logger

log = get_logger("opsgate.server")


async def serve(
    config: Path | None, settings: SlackSettings, *, host: str, port: int, socket_mode: bool
) -> None:
    """Serve until SIGINT/SIGTERM; background work is drained before exit."""
    control = build_control(config_path=config)
    require_alert_intake(control.config, settings)  # no open alert intake by default
    slack = build_app(control, settings)
    runner = web.AppRunner(slack.web)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("http_listening", host=host, port=port)
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
