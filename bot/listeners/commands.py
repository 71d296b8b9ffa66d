"""``/incident``: open, help, status, resolve, cancel, metrics.

Open, resolve and cancel change state: each is recorded in the inbox before its ack, so the
ack's promise survives a crash, and a replayed request is answered alike and does nothing.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import Session

from adapters import BreakerState
from bot import blocks, strings
from bot.digest import metrics_blocks
from bot.surface import HOLDS_ACK, INTAKE, Intake, Surface
from orchestration.breakers import BreakerView, breaker_views
from orchestration.inbox import Request, RequestKind
from orchestration.opsmetrics import OpsReport, ops_report
from orchestration.toolbox import tool_limits

COMMAND = "/incident"
READ_ONLY = ("status", "metrics")  # answered from the database; nothing to record
CLOSING = {"resolve": RequestKind.RESOLVE, "cancel": RequestKind.CANCEL}
ANSWER = "incident_answer"  # context key: the routed command


class SlashCommand(BaseModel):
    """The fields of Slack's slash-command payload that opsgate uses."""

    model_config = ConfigDict(extra="ignore")
    command: str
    text: str = ""
    user_id: str
    channel_id: str


@dataclass(frozen=True)
class Answer:
    """What ``/incident <text>`` gets: an ack, and a request to record or a read to run."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    request: Request | None = None  # state-changing: recorded before the ack
    read: str | None = None  # "status" or "metrics": answered privately after the ack


def answer(cmd: SlashCommand, surface: Surface, *, correlation_id: str) -> Answer:
    """Route one ``/incident`` command."""
    text = cmd.text.strip()
    sub = text.split(" ", 1)[0].lower() if text else "help"
    if sub == "help":
        return Answer(strings.HELP, blocks.help_blocks())
    if sub in READ_ONLY:
        return Answer(strings.WORKING, read=sub)
    if sub in CLOSING:
        kind, reply = CLOSING[sub], strings.WORKING
        text = text.split(" ", 1)[1].strip() if " " in text else ""
    elif " " not in text and not surface.control.matches(text):
        usage = blocks.usage_for_unknown(text)  # a mistyped subcommand, not an incident
        return Answer(usage.text, usage.blocks)
    else:
        kind, reply = RequestKind.OPEN, strings.opening(text)
    request = Request(
        kind=kind,
        requester=cmd.user_id,
        channel=cmd.channel_id,
        text=text,
        correlation_id=correlation_id,
    )
    return Answer(reply, request=request)


def register(app: AsyncApp, surface: Surface) -> None:
    """Attach the ``/incident`` listener."""

    async def record_first(
        command: dict[str, Any], context: AsyncBoltContext, next: Callable[[], Awaitable[None]]
    ) -> None:
        # Bolt runs a listener only once the rest of a burst is dispatched; started here, the
        # request's commit overlaps that, and the listener mostly finds it durable already.
        routed = answer(
            SlashCommand.model_validate(command),
            surface,
            correlation_id=str(context.get("correlation_id") or ""),
        )
        context[ANSWER] = routed
        if routed.request is not None:
            surface.submit(routed.request, key=str(context["inbox_key"]), context=context)
        await next()

    @app.command(COMMAND, middleware=[record_first])
    async def incident(
        ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        routed: Answer = context[ANSWER]
        request = routed.request
        if request is None:
            await ack(text=routed.text, blocks=routed.blocks)
            if routed.read is not None:
                cmd = SlashCommand.model_validate(command)
                read = _metrics if routed.read == "metrics" else _status
                surface.run(read(surface, client, cmd), name=f"incident-{routed.read}")
            return
        # No 2xx before the commit: over HTTP the route holds the response until the record
        # is durable (the ack is then usually ready when it is); over Socket Mode the ack waits.
        if not context.get(HOLDS_ACK):
            await surface.accepted(context)
        if context.get(INTAKE) is Intake.UNRECORDED:
            await ack(text=strings.NOT_RECORDED)
            return
        await ack(text=routed.text)  # a replay gets the same answer, and nothing more happens
        surface.perform_once_recorded(context, client, counted_as="slash_command")


async def _status(surface: Surface, client: AsyncWebClient, cmd: SlashCommand) -> None:
    """The open incident's plan progress, to the asker only."""
    incident = await surface.control.open_incident_in(cmd.channel_id)
    if incident is None:
        await client.chat_postEphemeral(
            channel=cmd.channel_id, user=cmd.user_id, text=strings.NO_OPEN_INCIDENT
        )
        return
    view = await surface.control.incident_plan(incident.id)
    paused = [b.model_dump(mode="json") for b in await _paused_breakers(surface)]
    rendered = blocks.status_blocks(view.model_dump(mode="json"), paused)
    await client.chat_postEphemeral(
        channel=cmd.channel_id, user=cmd.user_id, text=rendered.text, blocks=rendered.blocks
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
