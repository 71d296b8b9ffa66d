"""A small JSON client the vendor adapters share (PagerDuty, GitHub, Jira).

It sends one request with a deadline, reads at most ``max_body_bytes`` of the answer and parses
it as JSON when it is JSON. It never follows redirects and never raises for an HTTP status: the
adapter decides what a status means, and maps it with :func:`refused` to a
:class:`~adapters.errors.ToolFailed` (retryable for 429 and 5xx). Transport errors and timeouts
become ``tool_failed`` and ``tool_timeout`` here. Credentials travel only in headers, which
never appear in a result or an error.
"""

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters.errors import ToolFailed, ToolTimeout
from adapters.settings.base import normalise_base_url
from common.redaction import redact_text

MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """A status and the parsed JSON body (None when the body is not JSON)."""

    status: int
    body: Any
    text: str

    @property
    def ok(self) -> bool:
        """True for a 2xx."""
        return 200 <= self.status < 300


class JsonApi:
    """Requests against one base URL, each bounded in time and in answer size."""

    def __init__(
        self,
        *,
        base_url: str,
        timeout_s: float = 10.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        """Talk to ``base_url`` (``https://api.pagerduty.com``, say)."""
        self.base_url = normalise_base_url(base_url)
        self._timeout_s = timeout_s
        self._max_body_bytes = max_body_bytes
        self._session_factory = session_factory or aiohttp.ClientSession
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        json_body: Any = None,
    ) -> ApiResponse:
        """Send ``method path`` and return the answer, whatever its status."""
        url = self.base_url + path
        try:
            async with self._get_session().request(
                method,
                url,
                headers=dict(headers),
                json=json_body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            ) as response:
                raw = await response.content.read(self._max_body_bytes + 1)
                status = response.status
        except TimeoutError as exc:
            raise ToolTimeout(
                f"{method} {path} got no complete answer within {self._timeout_s:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise ToolFailed(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc
        text = raw[: self._max_body_bytes].decode("utf-8", errors="replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        return ApiResponse(status=status, body=body, text=text)

    async def aclose(self) -> None:
        """Close the HTTP session, if one was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        return self._session


def refused(vendor: str, what: str, response: ApiResponse, detail: str) -> ToolFailed:
    """The error of a non-2xx answer: ``PagerDuty refused PUT /incidents/X: 404 Not Found``.

    Retryable for 429 and 5xx (the service may answer later), not for other 4xx.
    """
    retryable = response.status == 429 or response.status >= 500
    message = f"{vendor} refused {what}: {response.status}"
    if detail:
        message += f" {detail}"
    return ToolFailed(redact_text(message)[:500], retryable=retryable)
