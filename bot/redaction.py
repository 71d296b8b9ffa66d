"""The last exits to Slack, redacted: the Web API client, and the answer to each request (ack).

Cards, results and escalations are rendered from sanitised outbox payloads already; these are
the last exits, so that text rendered from anywhere else (a plan view, an ephemeral answer, a
modal, the acknowledgement that echoes a slash command's text) cannot carry a credential to
Slack either. :class:`RedactingWebClient` redacts every Web API call's fields (the ``token``
the call authenticates with is left alone: it goes to Slack by design), and the
:func:`redacting_client` middleware gives it to every listener; the :func:`redacting_ack`
middleware makes every listener's ``ack()`` redact what it answers.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from common.redaction import redact

# Top-level fields that authenticate the request to Slack itself, not content posted to it.
_REQUEST_AUTH = frozenset({"token", "client_id", "client_secret", "refresh_token", "code"})
# Block Kit nests deeper than log lines do (view -> blocks -> element -> options -> text).
_MAX_DEPTH = 64


def _redacted(fields: Any) -> Any:
    if not isinstance(fields, dict):
        return fields  # multipart uploads and form objects are passed through as they are
    return {
        key: value if key in _REQUEST_AUTH else redact(value, max_depth=_MAX_DEPTH)
        for key, value in fields.items()
    }


class RedactingWebClient(AsyncWebClient):
    """An ``AsyncWebClient`` that redacts the fields of every call before it is sent."""

    async def api_call(
        self,
        api_method: str,
        *,
        http_verb: str = "POST",
        files: dict[str, Any] | None = None,
        data: Any = None,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        auth: dict[str, Any] | None = None,
    ) -> AsyncSlackResponse:
        """Send the call with ``data``, ``params`` and ``json`` redacted (headers untouched)."""
        return await super().api_call(
            api_method,
            http_verb=http_verb,
            files=files,
            data=_redacted(data),
            params=_redacted(params),
            json=_redacted(json),
            headers=headers,
            auth=auth,
        )


class RedactingAck(AsyncAck):
    """Bolt's ``ack()`` with the answer's text, blocks, view and errors redacted."""

    async def __call__(  # type: ignore[override]
        self, text: str | dict[str, Any] = "", **fields: Any
    ) -> BoltResponse:
        """Acknowledge with redacted content (the same arguments as Bolt's ``ack``)."""
        for name in ("blocks", "attachments", "view", "errors", "options", "option_groups"):
            value = fields.get(name)
            if value is not None:
                fields[name] = redact(_plain(value), max_depth=_MAX_DEPTH)
        return await super().__call__(redact(text, max_depth=_MAX_DEPTH), **fields)


def _plain(value: Any) -> Any:
    """Block Kit objects as the dicts Slack receives (redaction works on plain data)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


async def redacting_ack(
    req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
) -> BoltResponse:
    """Middleware: every listener of this request acknowledges through :class:`RedactingAck`."""
    req.context["ack"] = RedactingAck()  # type: ignore[no-untyped-call]
    return await next()


def redacting_client(
    client: RedactingWebClient,
) -> Callable[
    [AsyncBoltRequest, BoltResponse, Callable[[], Awaitable[BoltResponse]]], Awaitable[BoltResponse]
]:
    """Middleware: every listener of this request calls Slack through ``client``.

    Bolt hands each request's listeners a plain ``AsyncWebClient`` it builds per request (a
    copy of the app's settings, not of its class), so without this the calls listeners make
    (ephemeral answers, modals, debug posts) would skip :class:`RedactingWebClient`.
    """

    async def middleware(
        req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        req.context["client"] = client
        return await next()

    return middleware
