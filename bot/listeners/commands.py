"""``/incident``: open, help, status, resolve, cancel, metrics.

Open, resolve and cancel change state: each is recorded in the inbox before its ack, so the
ack's promise survives a crash, and a replayed request is answered alike and does nothing.
"""

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import Session

from bot import blocks, metrics, strings
from bot.digest import metrics_blocks
from bot.surface import Intake, Surface
from orchestration.inbox import Request, RequestKind
from orchestration.opsmetrics import OpsReport, ops_report

COMMAND = "/incident"
READ_ONLY = ("status", "metrics")  # answered from the database; nothing to record
CLOSING = {"resolve": RequestKind.RESOLVE, "cancel": RequestKind.CANCEL}


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
        if sub in READ_ONLY:
            await ack(text=strings.WORKING)
            work = (
                _metrics(surface, client, cmd)
                if sub == "metrics"
                else _status(surface, client, cmd)
            )
            surface.run(work, name=f"incident-{sub}")
            return
        if sub in CLOSING:
            reason = text.split(" ", 1)[1].strip() if " " in text else ""
            kind, reply = CLOSING[sub], strings.WORKING
        elif " " not in text and not surface.control.matches(text):
            usage = blocks.usage_for_unknown(text)  # a mistyped subcommand, not an incident
            await ack(text=usage.text, blocks=usage.blocks)
            return
        else:
            kind, reason, reply = RequestKind.OPEN, text, strings.opening(text)
        request = Request(
            kind=kind,
            requester=cmd.user_id,
            channel=cmd.channel_id,
            text=reason,
            correlation_id=str(context.get("correlation_id") or ""),
        )
        key = str(context["inbox_key"])
        # Recorded before the ack: once Slack has its 200, the request survives a crash.
        intake = await surface.accept(request, key=key, context=context)
        if intake is Intake.UNRECORDED:
            await ack(text=strings.NOT_RECORDED)
            return
        await ack(text=reply)
        if intake is Intake.NEW:
            if kind is RequestKind.OPEN:
                metrics.INCIDENTS.labels(source="slash_command").inc()
            surface.perform(key, request, client)


async def _status(surface: Surface, client: AsyncWebClient, cmd: SlashCommand) -> None:
    """The open incident's plan progress, to the asker only."""
    incident = await surface.control.open_incident_in(cmd.channel_id)
    if incident is None:
        await client.chat_postEphemeral(
            channel=cmd.channel_id, user=cmd.user_id, text=strings.NO_OPEN_INCIDENT
        )
        return
    view = await surface.control.incident_plan(incident.id)
    rendered = blocks.status_blocks(view.model_dump(mode="json"))
    await client.chat_postEphemeral(
        channel=cmd.channel_id, user=cmd.user_id, text=rendered.text, blocks=rendered.blocks
    )


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
