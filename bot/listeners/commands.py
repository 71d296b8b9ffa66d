"""``/incident``: open, help, status, resolve, cancel, metrics.

The ack says only what is known when it goes out. Opening: intake and runbook matching run in
memory first, so ``/incident the moon is made of cheese`` is told at once that no runbook
matches. Resolve, cancel and status read the database before the ack, so they answer which
incident they mean (an id or its prefix as first word, else the channel's only open one; with
several open, nothing is guessed: the ack lists them and asks which).

Slack does not send slash commands from threads (developer commands cannot be invoked in
message threads), so a thread is named by an ``@opsgate resolve|cancel`` mention instead
(see ``bot.listeners.events``).

Open, resolve and cancel change state (or, refused, are audited): each is recorded in the
inbox before its ack, so the ack's promise survives a crash, and a replayed request (same
signature) is answered alike and does nothing. Help and status are answered in the ack and
change nothing; metrics posts its figures once per request (a replay within the process's
window posts nothing more).
"""

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import Session, col, select

from adapters import BreakerState
from bot import blocks, strings
from bot.blocks.incidents import close_answer, open_list, with_incident
from bot.digest import metrics_blocks
from bot.listeners import debug, rollout
from bot.listeners.debug import Later
from bot.surface import HOLDS_ACK, INTAKE, Intake, Surface
from orchestration import closing, intake
from orchestration.breakers import BreakerView, breaker_views
from orchestration.closing import Summary
from orchestration.errors import OrchestrationError
from orchestration.inbox import ANNOUNCED_OPENING, ANNOUNCED_REFUSED, Request, RequestKind
from orchestration.models import Incident, Plan
from orchestration.opsmetrics import OpsReport, ops_report
from orchestration.telemetry import get_logger
from orchestration.toolbox import tool_limits

log = get_logger("opsgate.commands")

COMMAND = "/incident"
CLOSING = {"resolve": RequestKind.RESOLVE, "cancel": RequestKind.CANCEL}
ANSWER = "incident_answer"  # context key: the routed command
DEBUG = {"replay": debug.answer_replay, "audit": debug.answer_audit}
ROLLOUT = {"did": rollout.answer_did, "rollout": rollout.answer_rollout}


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
    request: Request | None = None  # recorded before the ack
    read: str | None = None  # "metrics": answered privately after the ack
    later: Later | None = None  # replay, audit: posted to the incident's thread after the ack


def _request(cmd: SlashCommand, kind: RequestKind, text: str, correlation_id: str) -> Request:
    return Request(
        kind=kind,
        requester=cmd.user_id,
        channel=cmd.channel_id,
        text=text,
        correlation_id=correlation_id,
    )


def answer_open(surface: Surface, request: Request) -> Answer:
    """Open: what intake and the runbooks say of the text, from memory (the snapshot)."""
    try:
        title = intake.screen(surface.control.snapshot, request.text)
    except OrchestrationError as exc:  # refused: recorded all the same, so it is audited
        refused = request.model_copy(update={"announced": ANNOUNCED_REFUSED})
        return Answer(strings.refused(exc.message), request=refused)
    opening = request.model_copy(update={"announced": ANNOUNCED_OPENING})
    return Answer(strings.opening_plan(request.text, title), request=opening)


async def answer_close(surface: Surface, request: Request, action: str) -> Answer:
    """Resolve or cancel: which incident, and whether the asker may, before the ack."""
    try:
        found = await surface.control.assess_close(request)
    except Exception as exc:  # the database is down: promise nothing
        log.error("close_not_assessed", error=repr(exc))
        return Answer(strings.READ_FAILED)
    text = close_answer({**found.detail(), "action": action})
    # Recorded whatever it comes to, so a replay is recognised (and audited); the work then
    # does no more than the ack announced, on the incident it named.
    update: dict[str, Any] = {"announced": found.outcome.value}
    if found.incident is not None:
        update["incident_ref"] = found.incident.id
    return Answer(text, request=request.model_copy(update=update))


def subcommand(text: str) -> tuple[str, str]:
    """``("resolve", "ab12 fixed by hand")`` from the command's text (``help`` when empty)."""
    text = text.strip()
    sub = text.split(" ", 1)[0].lower() if text else "help"
    rest = text.split(" ", 1)[1].strip() if " " in text else ""
    return sub, rest


async def answer(  # noqa: PLR0911 - one return per subcommand
    cmd: SlashCommand, surface: Surface, *, correlation_id: str, fresh: bool = True
) -> Answer:
    """Route one ``/incident`` command (``fresh``: not a replay of one this process saw)."""
    text = cmd.text.strip()
    sub, rest = subcommand(text)
    if sub in ROLLOUT:
        said, said_blocks = await ROLLOUT[sub](
            surface, user=cmd.user_id, channel=cmd.channel_id, rest=rest, fresh=fresh
        )
        return Answer(said, said_blocks)
    if sub == "help":
        return Answer(strings.HELP, blocks.help_blocks())
    if sub == "metrics":
        return Answer(strings.METRICS_WORKING, read=sub)
    if sub == "status":
        return await answer_status(surface, cmd, rest)
    if sub in DEBUG:
        found = await DEBUG[sub](surface, cmd.channel_id, rest)
        return Answer(found.text, later=found.later)
    if sub in CLOSING:
        ref, reason = closing.split_ref(rest)
        request = _request(cmd, CLOSING[sub], reason, correlation_id)
        return await answer_close(surface, request.model_copy(update={"incident_ref": ref}), sub)
    if " " not in text and not surface.control.matches(text):
        usage = blocks.usage_for_unknown(text)  # a mistyped subcommand, not an incident
        return Answer(usage.text, usage.blocks)
    return answer_open(surface, _request(cmd, RequestKind.OPEN, text, correlation_id))


class IncidentCommand:
    """``/incident``, answered alike by Bolt's listener and by the HTTP route's own path.

    Over HTTP the route answers ``/incident`` itself (``bot.routes``), without Bolt's dispatch;
    Socket Mode goes through Bolt. Both run ``route`` then ``reply`` with the same context
    keys, and share one ``RecentKeys``, so a replay is recognised whichever path saw the first.
    """

    def __init__(self, surface: Surface) -> None:
        self.surface = surface
        self.seen = RecentKeys()

    async def handle(
        self,
        command: dict[str, Any],
        *,
        ack: AsyncAck,
        client: AsyncWebClient,
        context: dict[str, Any],
    ) -> None:
        """Route the command, start recording it, then acknowledge it (what Bolt runs)."""
        await self.route(command, context)
        await self.reply(command, ack=ack, client=client, context=context)

    async def route(self, command: dict[str, Any], context: dict[str, Any]) -> Answer:
        """Route the command into ``context[ANSWER]``; start recording what it asks for."""
        surface = self.surface
        cmd = SlashCommand.model_validate(command)
        writes = subcommand(cmd.text)[0] in rollout.WRITES
        routed = await answer(
            cmd,
            surface,
            correlation_id=str(context.get("correlation_id") or ""),
            fresh=self.seen.first(str(context["inbox_key"])) if writes else True,
        )
        context[ANSWER] = routed
        if routed.request is not None:
            surface.submit(routed.request, key=str(context["inbox_key"]), context=context)
        return routed

    async def reply(
        self,
        command: dict[str, Any],
        *,
        ack: AsyncAck,
        client: AsyncWebClient,
        context: dict[str, Any],
    ) -> None:
        """Acknowledge the routed command; start the work it promised, after the ack."""
        surface = self.surface
        routed: Answer = context[ANSWER]
        request = routed.request
        if request is None:
            await ack(text=routed.text, blocks=routed.blocks)
            if routed.read is not None and self.seen.first(str(context["inbox_key"])):
                cmd = SlashCommand.model_validate(command)
                surface.run(_metrics(surface, client, cmd), name=f"incident-{routed.read}")
            if routed.later is not None and self.seen.first(str(context["inbox_key"])):
                surface.run(routed.later(client), name="incident-debug")
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


def register(app: AsyncApp, surface: Surface) -> IncidentCommand:
    """Attach the ``/incident`` listener; the command, for the HTTP route to answer too."""
    slash = IncidentCommand(surface)

    async def record_first(
        command: dict[str, Any], context: AsyncBoltContext, next: Callable[[], Awaitable[None]]
    ) -> None:
        # Bolt runs a listener only once the rest of a burst is dispatched; started here, the
        # request's commit overlaps that, and the listener mostly finds it durable already.
        await slash.route(command, context)
        await next()

    @app.command(COMMAND, middleware=[record_first])
    async def incident(
        ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        await slash.reply(command, ack=ack, client=client, context=context)

    return slash


class RecentKeys:
    """Request keys seen in the last five minutes (Slack's signature window), this process.

    Read-only answers posted after the ack (metrics) use it so that a replayed request posts
    nothing more; a replay reaching another replica posts the asker's figures once more, to
    the same asker, which changes nothing.
    """

    WINDOW_S = 300.0
    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def first(self, key: str, *, now: float | None = None) -> bool:
        """True the first time ``key`` is seen inside the window."""
        at = time.monotonic() if now is None else now
        if len(self._seen) >= self.MAX_KEYS:
            self._seen = {k: t for k, t in self._seen.items() if at - t < self.WINDOW_S}
        seen_at = self._seen.get(key)
        if seen_at is not None and at - seen_at < self.WINDOW_S:
            return False
        self._seen[key] = at
        return True


async def answer_status(surface: Surface, cmd: SlashCommand, rest: str) -> Answer:
    """``/incident status [id]``: one incident's plan, or every open incident of the channel."""
    ref, _ = closing.split_ref(rest)

    def work(session: Session) -> tuple[list[Incident], dict[str, str]]:
        if ref:
            found = list(
                session.exec(
                    select(Incident)
                    .where(col(Incident.id).startswith(ref))
                    .limit(closing.MAX_LISTED + 1)
                )
            )
        else:
            found = closing.open_incidents(session, cmd.channel_id)
        statuses: dict[str, str] = {}
        for plan in session.exec(
            select(Plan)
            .where(col(Plan.incident_id).in_([i.id for i in found]))
            .order_by(col(Plan.version))
        ):
            statuses[plan.incident_id] = plan.status  # the latest version wins
        return found, statuses

    try:
        found, statuses = await surface.control.db.run(work)
        if len(found) == 1:
            return await _one_status(surface, found[0])
    except Exception as exc:  # the database is down: say so, never a stale answer
        log.error("status_not_read", error=repr(exc))
        return Answer(strings.READ_FAILED)
    if not found:
        text = strings.NO_SUCH_INCIDENT.format(ref=ref) if ref else strings.NO_OPEN_INCIDENT
        return Answer(text)
    items = [
        {
            **Summary.of(i).as_json(),
            "created_at": i.created_at.isoformat(),
            "plan_status": statuses.get(i.id, ""),
        }
        for i in found
    ]
    rendered = open_list(items)
    return Answer(rendered.text, rendered.blocks)


async def _one_status(surface: Surface, incident: Incident) -> Answer:
    view = await surface.control.incident_plan(incident.id)
    paused = [b.model_dump(mode="json") for b in await _paused_breakers(surface)]
    rendered = blocks.status_blocks(view.model_dump(mode="json"), paused)
    headed = with_incident(rendered, Summary.of(incident).as_json())
    return Answer(headed.text, headed.blocks)


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
    scopes = await surface.control.rollout.status() if surface.config.rollout.scopes else []
    rendered = metrics_blocks(day, week, [r.as_json() for r in scopes])
    await client.chat_postEphemeral(
        channel=cmd.channel_id, user=cmd.user_id, text=rendered.text, blocks=rendered.blocks
    )
