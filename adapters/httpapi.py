"""A small JSON-over-HTTP client shared by the adapters of services with an HTTP API.

The base URL comes from the adapter's config (trusted, unlike runbook args); request headers
may carry ``${secret:NAME}`` references, resolved at each call and registered for redaction,
so a credential is never held in the config object, a log line or an error message. Answers
are read up to a byte cap; transport failures and timeouts map to :class:`ToolFailed` and
:class:`ToolTimeout` at this boundary.
"""

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from adapters.errors import ToolFailed, ToolTimeout
from adapters.secrets import SecretSource, resolve_setting
from adapters.settings.base import ApiConfig


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """One HTTP answer: status, the JSON document (None when the body is not JSON), raw text."""

    status: int
    document: Any
    text: str
    duration_ms: float
    url: str


class JsonApi:
    """Sends requests under one base URL and reads JSON answers, bounded in time and size."""

    def __init__(
        self,
        *,
        service: str,
        config: ApiConfig,
        secrets: SecretSource | None = None,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        """Talk to ``config.base_url``; ``service`` names it in error messages."""
        self._service = service
        self._config = config
        self._base = URL(config.base_url)
        self._secrets = secrets or SecretSource()
        self._session_factory = session_factory or aiohttp.ClientSession
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        """The service's base URL."""
        return str(self._base)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | list[str]] | None = None,
        body: Any = None,
    ) -> ApiAnswer:
        """Send one request; every answer, whatever its status, is returned.

        Raises:
            ToolTimeout: no complete answer within the timeout.
            ToolFailed: the connection failed, or the answer is larger than the cap.
        """
        url = self._base.with_path(self._base.path.rstrip("/") + path)
        query = [
            (key, item)
            for key, value in (params or {}).items()
            for item in (value if isinstance(value, list) else [value])
        ]
        headers = await resolve_setting(dict(self._config.headers), self._secrets)
        where = f"{method} {self._service} {path}"
        started = time.perf_counter()
        try:
            async with self._get_session().request(
                method,
                url.with_query(query) if query else url,
                headers=headers,
                json=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._config.timeout_s),
            ) as response:
                raw = await response.content.read(self._config.max_body_bytes + 1)
                status = response.status
        except TimeoutError as exc:
            raise ToolTimeout(
                f"{where} got no complete answer within {self._config.timeout_s:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise ToolFailed(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        if len(raw) > self._config.max_body_bytes:
            raise ToolFailed(
                f"{where}: the answer is larger than {self._config.max_body_bytes} bytes "
                "(max_body_bytes); narrow the request",
                retryable=False,
            )
        text = raw.decode("utf-8", errors="replace")
        return ApiAnswer(
            status=status,
            document=_json_or_none(text),
            text=text,
            duration_ms=(time.perf_counter() - started) * 1000,
            url=str(url),
        )

    async def aclose(self) -> None:
        """Close the HTTP session, if one was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        return self._session


def _json_or_none(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
