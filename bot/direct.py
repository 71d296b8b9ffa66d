"""``/incident`` over HTTP, answered by the route itself instead of Bolt's dispatch.

Under a burst of slash commands Bolt's own dispatch cost most of each ack: its request and
context objects, the middleware chain, listener matching, keyword injection, and a listener
run as a task that the dispatcher polls every 10 ms for its ack. For a command the route has
already done what Bolt's built-in middleware would (the signature is verified, the payload
checked: ``bot.decode``, ``bot.payloads``); what is left is opsgate's own middleware
(``bot.middleware.begin_request``, the redacting ``ack``) and the listener
(``IncidentCommand.handle``), which this runs in Bolt's order with the same context keys, and
the answer is what the same ``ack`` builds.

Bolt's single-workspace authorization confirms the bot token with ``auth.test`` once and
answers every request with its install message while it cannot: until it has confirmed the
token, commands go through Bolt. Socket Mode, clicks, views and events always do.
"""

from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.authorization.async_single_team_authorization import (
    AsyncSingleTeamAuthorization,
)
from slack_bolt.request.internals import extract_channel_id, extract_user_id
from slack_bolt.response import BoltResponse

from bot.decode import SlackBody
from bot.listeners.commands import COMMAND, IncidentCommand
from bot.middleware import begin_request, end_request
from bot.payloads import Kind
from bot.quiet import QuietGate
from bot.redaction import RedactingAck
from bot.surface import HOLDS_ACK
from orchestration.telemetry import get_logger

log = get_logger("opsgate.direct")


class DirectCommands:
    """The route's own path for ``/incident``: Bolt's answer, without Bolt's dispatch."""

    def __init__(self, *, bolt: AsyncApp, incident: IncidentCommand, quiet: QuietGate) -> None:
        self.incident = incident
        self.quiet = quiet
        self.client = bolt.client
        # Bolt keeps the middleware it built in this list (it has no public accessor).
        self.authorization = next(
            (m for m in bolt._async_middleware_list if isinstance(m, AsyncSingleTeamAuthorization)),
            None,
        )

    def takes(self, slack: SlackBody) -> bool:
        """Whether the route answers this checked request itself."""
        return (
            slack.kind is Kind.COMMAND
            and slack.body.get("command") == COMMAND
            and self.authorization is not None
            and self.authorization.auth_test_result is not None
        )

    async def answer(
        self, slack: SlackBody, request: web.Request
    ) -> tuple[BoltResponse, dict[str, Any]]:
        """The ack Bolt's listener would have given, and the request's context.

        Args:
            slack: the checked body (``takes`` said yes).
            request: the HTTP request, for the signature and retry headers.

        Returns:
            The answer (the 2xx is the route's to hold until the record is durable) and the
            context the listener filled in (``bot.surface.PENDING`` and the rest).
        """
        body = slack.body
        context: dict[str, Any] = {HOLDS_ACK: True}
        started = begin_request(
            self.quiet,
            context,
            body=body,
            user_id=extract_user_id(body),
            channel_id=extract_channel_id(body),
            signature=request.headers.get("X-Slack-Signature", ""),
            retry=request.headers.get("X-Slack-Retry-Num", ""),
        )
        ack = RedactingAck()  # type: ignore[no-untyped-call]
        try:
            await self.incident.handle(body, ack=ack, client=self.client, context=context)
        except Exception:
            # Bolt's answer to a listener that raises: 500, empty, and a logged traceback.
            log.exception("command_failed", command=COMMAND)
            if ack.response is None:
                ack.response = BoltResponse(status=500, body="")
        response = ack.response
        if response is None:  # the listener always acks; Bolt's answer if it did not
            response = BoltResponse(status=404, body={"error": "unhandled request"})
        end_request(Kind.COMMAND.value, started=started, status=response.status)
        return response, context
