"""``/incident``: open, help, status, resolve, cancel, metrics."""

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import Session

from adapters import BreakerState
from bot import blocks, metrics, strings
from bot.digest import metrics_blocks
from bot.surface import Surface
from orchestration.breakers import BreakerView, breaker_views
from orchestration.errors import OrchestrationError
from orchestration.opsmetrics import OpsReport, ops_report
from orchestration.toolbox import tool_limits

COMMAND = "/incident"
SUBCOMMANDS = ("help", "status", "resolve", "cancel")


class SlashCommand(BaseModel):
    """The fields of Slack's slash-command payload that opsgate uses."""

    model_config = ConfigDict(extra="ignore")
    command: str
    text: str = ""
    user_id: str
    channel_id: str


def register(app: AsyncApp, surface: Surface) -> None:
    """Attach the ``/incident`` listener."""

    @app.command(COMMAND)
    async def incident(
        ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        cmd = SlashCommand.model_validate(command)
        text = cmd.text.strip()
        sub = text.split(" ", 1)[0].lower() if text else "help"
        if sub == "help":
            await ack(text=strings.HELP, blocks=blocks.help_blocks())
            return
        if sub == "metrics":
            await ack(text=strings.WORKING)
            surface.run(_metrics(surface, client, cmd), name="incident-metrics")
            return
        if sub in SUBCOMMANDS:
            await ack(text=strings.WORKING)
            reason = text.split(" ", 1)[1].strip() if " " in text else ""
            surface.run(_subcommand(surface, client, cmd, sub, reason), name=f"incident-{sub}")
            return
        if " " not in text and not surface.control.matches(text):
            usage = blocks.usage_for_unknown(text)  # a mistyped subcommand, not an incident
            await ack(text=usage.text, blocks=usage.blocks)
            return
        await ack(text=strings.opening(text))
        metrics.INCIDENTS.labels(source="slash_command").inc()
        surface.run(
            open_incident(
                surface,
                client,
                text=text,
                user=cmd.user_id,
                channel=cmd.channel_id,
                correlation_id=str(context.get("correlation_id") or ""),
            ),
            name="incident-open",
        )


async def open_incident(
    surface: Surface,
    client: AsyncWebClient,
    *,
    text: str,
    user: str,
    channel: str,
    correlation_id: str,
    source: str = "slack",
) -> None:
    """Open an incident; a refusal goes back to the person, privately, in plain words."""
    try:
        await surface.control.open_incident(
            text=text,
            requester=user,
            channel=channel,
            source=source,
            correlation_id=correlation_id or None,
        )
    except OrchestrationError as exc:
        await client.chat_postEphemeral(
            channel=channel, user=user, text=strings.refused(exc.message)
        )


async def _subcommand(
    surface: Surface, client: AsyncWebClient, cmd: SlashCommand, sub: str, reason: str
) -> None:
    incident = await surface.control.open_incident_in(cmd.channel_id)
    if incident is None:
        await client.chat_postEphemeral(
            channel=cmd.channel_id, user=cmd.user_id, text=strings.NO_OPEN_INCIDENT
        )
        return
    if sub == "status":
        view = await surface.control.incident_plan(incident.id)
        paused = [b.model_dump(mode="json") for b in await _paused_breakers(surface)]
        rendered = blocks.status_blocks(view.model_dump(mode="json"), paused)
        await client.chat_postEphemeral(
            channel=cmd.channel_id, user=cmd.user_id, text=rendered.text, blocks=rendered.blocks
        )
        return
    await surface.control.close_incident(
        incident_id=incident.id, actor=cmd.user_id, resolved=sub == "resolve", reason=reason
    )


async def _paused_breakers(surface: Surface) -> list[BreakerView]:
    """The circuit breakers, shared by every replica, that are not closed."""
    now = surface.control.clock.now()
    resets = {tool: limits.breaker_reset_s for tool, limits in tool_limits(surface.config).items()}

    def work(session: Session) -> list[BreakerView]:
        views = breaker_views(session, now=now, reset_after_s=resets)
        return [v for v in views if v.state is not BreakerState.CLOSED]

    return await surface.control.db.run(work)


async def _metrics(surface: Surface, client: AsyncWebClient, cmd: SlashCommand) -> None:
    """The operational figures of the last 24 hours and 7 days, to the asker only."""
    end = surface.control.clock.now()

    def work(session: Session) -> tuple[OpsReport, OpsReport]:
        return (
            ops_report(session, end - timedelta(hours=24), end),
            ops_report(session, end - timedelta(days=7), end),
        )

    day, week = await surface.control.db.run(work)
    rendered = metrics_blocks(day, week)
    await client.chat_postEphemeral(
        channel=cmd.channel_id, user=cmd.user_id, text=rendered.text, blocks=rendered.blocks
    )
