"""The Web API client opsgate talks to Slack with: every request body is redacted on its way out.

Cards, results and escalations are rendered from sanitised outbox payloads already; this is the
last exit, so that text rendered from anywhere else (a plan view, an ephemeral answer, a modal)
cannot carry a credential to Slack either. The request's own credential (the ``token`` Slack
authenticates the call with) is left alone, since it goes to Slack by design.
"""

from typing import Any

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
