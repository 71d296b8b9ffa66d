"""Events: an ``@opsgate`` mention, or a message in a configured incident channel."""

import re
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.listeners.commands import open_incident
from bot.surface import Surface

_MENTION = re.compile(r"<@[A-Z0-9]+>")
EVENTS = ("app_mention", "message")


def register(app: AsyncApp, surface: Surface) -> None:
    """Attach the event listeners."""

    @app.event("app_mention")
    async def mention(
        event: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        text = _MENTION.sub("", str(event.get("text", ""))).strip()
        if not text:
            return
        metrics.INCIDENTS.labels(source="mention").inc()
        surface.run(
            open_incident(
                surface,
                client,
                text=text,
                user=str(event.get("user")),
                channel=str(event.get("channel")),
                correlation_id=str(context.get("correlation_id") or ""),
                source="mention",
            ),
            name="incident-mention",
        )

    @app.event("message")
    async def message(
        event: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        channel = str(event.get("channel", ""))
        if (
            channel not in surface.config.slack.incident_channels
            or event.get("subtype")
            or event.get("bot_id")
            or event.get("thread_ts")
        ):
            return
        text = str(event.get("text", "")).strip()
        if not text or _MENTION.search(text):
            return  # mentions are handled by app_mention
        if not surface.control.matches(text):
            return  # ordinary conversation: no runbook recognises it
        metrics.INCIDENTS.labels(source="channel_message").inc()
        surface.run(
            open_incident(
                surface,
                client,
                text=text,
                user=str(event.get("user")),
                channel=channel,
                correlation_id=str(context.get("correlation_id") or ""),
                source="channel_message",
            ),
            name="incident-message",
        )
