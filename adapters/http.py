"""The ``http`` tool: GET and POST to allow-listed hosts, bounded in time and body size.

Every request carries the call's idempotency key as ``Idempotency-Key`` (stable across the
retries of a step, so a target can deduplicate); runbook headers may not set it. The circuit
breaker target of a call is its URL's host, and a 5xx answer counts as the host failing.

Per-host credentials live in the config, never in runbooks: ``adapters.http.credentials`` names
each one, the hosts and actions it is presented for, its headers (``${secret:...}``
references only) and the roles that hold it (:class:`HttpCredential`). The headers are resolved
at call time, inside the call's secret scope (:func:`adapters.secrets.current_scope`), so the
plan, its args hash and its card show the runbook's arguments only.
"""

import codecs
import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from yarl import URL

from adapters.base import (
    ActionSpec,
    Grant,
    ToolCall,
    ToolResult,
    ToolSpec,
    parse_args,
    summarise_validation_error,
)
from adapters.credentials import CredentialSpec
from adapters.errors import ArgsInvalid, HostNotAllowed, ToolFailed, ToolTimeout
from adapters.secrets import SecretResolver, current_scope
from adapters.settings.http import (
    IDEMPOTENCY_HEADER,
    HttpConfig,
    HttpCredential,
    normalise_host_pattern,
)
from common import Risk


class HttpGetArgs(BaseModel):
    """Arguments of ``http.get``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            url = URL(value)
        except ValueError as exc:
            raise ValueError(f"not a valid URL ({exc})") from None
        if url.scheme not in {"http", "https"}:
            raise ValueError("only http and https URLs are allowed")
        if not url.host:
            raise ValueError("the URL has no host")
        if url.user is not None or url.password is not None:
            raise ValueError("credentials in the URL are not allowed; send them as a header")
        return value

    @field_validator("headers")
    @classmethod
    def _no_idempotency_key(cls, value: dict[str, str]) -> dict[str, str]:
        if any(name.strip().lower() == IDEMPOTENCY_HEADER.lower() for name in value):
            raise ValueError(
                f"opsgate sets the {IDEMPOTENCY_HEADER} header itself (one key per step); "
                "remove it from the headers"
            )
        return value


class HttpPostArgs(HttpGetArgs):
    """Arguments of ``http.post``; ``json`` is the request body."""

    json_body: Any = Field(default=None, alias="json")


def _host_of(call: ToolCall) -> str:
    # Arguments were validated by the grant guard; a malformed URL still gets a key of its own.
    try:
        host = URL(str(call.args.get("url", ""))).host
    except ValueError:
        host = None
    return (host or "?").lower().rstrip(".")


def _server_failed(result: ToolResult) -> bool:
    return not result.ok or (result.status is not None and result.status >= 500)


HTTP_SPEC = ToolSpec(
    name="http",
    target_of=_host_of,
    failure_of=_server_failed,
    actions={
        "get": ActionSpec(
            name="get",
            args_model=HttpGetArgs,
            risk=Risk.LOW,
            read_only=True,
            idempotent=True,
            description="GET a URL on an allow-listed host",
        ),
        "post": ActionSpec(
            name="post",
            args_model=HttpPostArgs,
            risk=Risk.MEDIUM,
            read_only=False,
            idempotent=False,
            description="POST JSON to a URL on an allow-listed host",
        ),
    },
)


def _host_allowed(host: str, patterns: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


class HttpTool:
    """Calls HTTP endpoints on allow-listed hosts; every response, whatever its status, is a result.

    Redirects are not followed (a redirect could leave the allow-list); the 3xx is the result.
    Request headers never appear in the output, since they may carry credentials.
    """

    def __init__(
        self,
        *,
        allow_hosts: Sequence[str],
        timeout_s: float = 10.0,
        max_body_bytes: int = 65536,
        cost_per_call_usd: float = 0.0,
        credentials: Mapping[str, HttpCredential | Mapping[str, Any]] | None = None,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        """Allow ``allow_hosts`` (exact names, or ``*.example.com`` for any subdomain)."""
        self._allow_hosts = tuple(normalise_host_pattern(p) for p in allow_hosts)
        self._timeout_s = timeout_s
        self._max_body_bytes = max_body_bytes
        self._session_factory = session_factory or aiohttp.ClientSession
        self._session: aiohttp.ClientSession | None = None
        self._credentials: list[tuple[str, HttpCredential, tuple[str, ...]]] = []
        for name, raw in (credentials or {}).items():
            credential = HttpCredential.model_validate(raw)
            hosts = tuple(normalise_host_pattern(p) for p in credential.hosts)
            self._credentials.append((name, credential, hosts))
        self._spec = dataclasses.replace(
            HTTP_SPEC,
            cost_per_call_usd=cost_per_call_usd,
            credential_of=self._credential_spec if self._credentials else None,
        )

    def _credential(self, call: ToolCall) -> tuple[str, HttpCredential] | None:
        host = _host_of(call)
        for name, credential, hosts in self._credentials:
            if call.action in credential.actions and _host_allowed(host, hosts):
                return name, credential
        return None

    def _credential_spec(self, call: ToolCall) -> CredentialSpec | None:
        found = self._credential(call)
        return found[1].spec(found[0]) if found is not None else None

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> "HttpTool":
        """Build the tool from the ``adapters.http`` config section; bad config -> ValueError."""
        try:
            config = HttpConfig.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(
                f"adapters.http config is invalid: {summarise_validation_error(exc)}"
            ) from None
        return cls(**config.model_dump())

    @property
    def spec(self) -> ToolSpec:
        """The ``http`` tool's actions: ``get`` and ``post``."""
        return self._spec

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Send the request and record the response; grants are checked by the guards."""
        action = self._spec.action(call.action)
        args = parse_args(action, call.args)
        assert isinstance(args, HttpGetArgs)
        url = URL(args.url)
        if url.host is None or not _host_allowed(url.host, self._allow_hosts):
            raise HostNotAllowed(
                f"{url.host!r} is not an allowed host for http; allowed: "
                f"{', '.join(self._allow_hosts) or 'none'}"
            )
        method = call.action.upper()
        body = args.json_body if isinstance(args, HttpPostArgs) else None
        timeout = args.timeout_s or self._timeout_s
        headers = dict(args.headers)
        headers.update(await self._credential_headers(call, headers))
        if call.idempotency_key:
            headers[IDEMPOTENCY_HEADER] = call.idempotency_key
        started = time.perf_counter()
        try:
            async with self._get_session().request(
                method,
                url,
                headers=headers,
                json=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw, truncated = await self._read_capped(response)
                status = response.status
                charset = _known_charset(response.charset)
                is_json = response.content_type.endswith("json")
        except TimeoutError as exc:
            raise ToolTimeout(
                f"{method} {url} got no complete answer within {timeout:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise ToolFailed(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        duration_ms = (time.perf_counter() - started) * 1000
        text = raw.decode(charset, errors="replace")
        return ToolResult(
            ok=True,
            status=status,
            output={
                "status": status,
                "body": text,
                "json": _parse_json(text) if is_json and not truncated else None,
                "truncated": truncated,
                "url": str(url),
            },
            summary=f"{method} {url} -> {status} ({duration_ms:.0f} ms)",
            duration_ms=duration_ms,
            cost_usd=self._spec.cost_per_call_usd,
        )

    async def _credential_headers(
        self, call: ToolCall, headers: Mapping[str, str]
    ) -> dict[str, str]:
        found = self._credential(call)
        if found is None:
            return {}
        name, credential = found
        clash = {h.lower() for h in headers} & {h.lower() for h in credential.headers}
        if clash:
            raise ArgsInvalid(
                f"the header {', '.join(sorted(clash))} is set by the credential {name!r} "
                "configured for this host; remove it from the step's headers"
            )
        scope = current_scope()
        if scope is not None:
            return dict(await scope.resolve(credential.headers))
        async with SecretResolver().scope() as own:  # called without the guards
            return dict(await own.resolve(credential.headers))

    async def aclose(self) -> None:
        """Close the HTTP session, if one was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        return self._session

    async def _read_capped(self, response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
        # Read one byte past the cap to know whether anything was cut off.
        limit = self._max_body_bytes
        buf = bytearray()
        while len(buf) <= limit:
            chunk = await response.content.read(limit + 1 - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf[:limit]), len(buf) > limit


def _known_charset(charset: str | None) -> str:
    # A server may announce an encoding Python does not know; fall back rather than fail.
    try:
        return codecs.lookup(charset or "utf-8").name
    except LookupError:
        return "utf-8"


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
