"""The ``alertmanager`` tool: read alerts, create and expire silences (Alertmanager API v2).

Actions:

- ``alerts`` (low, read-only): ``GET /api/v2/alerts``, optionally narrowed by matchers.
- ``silence`` (medium; compensated by ``expire_silence``): ``POST /api/v2/silences`` for
  ``duration`` from now, answered with a ``silenceID``. Every matcher must be allowed by the
  adapter's ``allow_matchers`` (label name -> value globs); one that is not is refused with
  :class:`MatcherNotAllowed` before any request. Regex and negative matchers are refused
  unless ``allow_regex``/``allow_negative`` say otherwise, and a silence needs at least one
  positive equality matcher (a silence of only ``!=`` matchers silences almost everything).
  The call is idempotent: the silence's comment carries the call's idempotency key, and a
  retry that finds its own live silence returns it instead of creating a second one.
- ``expire_silence`` (medium, idempotent): ``DELETE /api/v2/silence/{id}``, by ``id`` or by
  ``matchers``: then every live silence this adapter created (``createdBy``) with exactly
  those matchers is expired, which is how a runbook undoes a silence whose id it could not
  know when the plan was made. A silence already expired, or none to expire, is success.
"""

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adapters.base import (
    ActionSpec,
    Grant,
    ToolCall,
    ToolResult,
    ToolSpec,
    parse_args,
    summarise_validation_error,
)
from adapters.errors import MatcherNotAllowed, RequestRefused, ToolFailed
from adapters.httpapi import ApiAnswer, JsonApi
from adapters.prometheus import duration_s
from adapters.secrets import SecretSource
from adapters.settings.alertmanager import AlertmanagerConfig
from common import Risk

_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SILENCE_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
MAX_SILENCE_S = 24 * 3600
TABLE_ROWS = 8
LIVE = frozenset({"active", "pending"})


class Matcher(BaseModel):
    """One label matcher, as Alertmanager's API spells it (``isRegex``, ``isEqual``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=100)
    value: str = Field(max_length=500)
    is_regex: bool = Field(default=False, alias="isRegex")
    is_equal: bool = Field(default=True, alias="isEqual")

    @field_validator("name")
    @classmethod
    def _label(cls, value: str) -> str:
        if not _LABEL.fullmatch(value):
            raise ValueError(f"{value!r} is not a label name")
        return value

    def api(self) -> dict[str, Any]:
        """The matcher in the API's shape."""
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.is_regex,
            "isEqual": self.is_equal,
        }

    def text(self) -> str:
        """``name="value"``, ``name!~"re"``: the filter syntax of ``GET /api/v2/alerts``."""
        op = {(True, False): "=", (False, False): "!=", (True, True): "=~", (False, True): "!~"}[
            (self.is_equal, self.is_regex)
        ]
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{op}"{escaped}"'


class AlertsArgs(BaseModel):
    """Arguments of ``alertmanager.alerts``: which alerts to list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matchers: list[Matcher] = Field(default_factory=list, max_length=20)
    silenced: bool = True
    inhibited: bool = True


class SilenceArgs(BaseModel):
    """Arguments of ``alertmanager.silence``: what to silence, for how long and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matchers: list[Matcher] = Field(min_length=1, max_length=20)
    duration: str = "30m"
    comment: str = Field(min_length=1, max_length=500)

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        if duration_s(value) > MAX_SILENCE_S:
            raise ValueError("a silence lasts at most 24h")
        return value


class ExpireSilenceArgs(BaseModel):
    """Arguments of ``alertmanager.expire_silence``: a silence ``id``, or its ``matchers``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(default=None, pattern=_SILENCE_ID.pattern)
    matchers: list[Matcher] | None = Field(default=None, min_length=1, max_length=20)

    @model_validator(mode="after")
    def _one(self) -> "ExpireSilenceArgs":
        if (self.id is None) == (self.matchers is None):
            raise ValueError("give either id or matchers")
        return self


ALERTMANAGER_SPEC = ToolSpec(
    name="alertmanager",
    actions={
        "alerts": ActionSpec(
            name="alerts",
            args_model=AlertsArgs,
            risk=Risk.LOW,
            read_only=True,
            idempotent=True,
            description="list the alerts Alertmanager holds",
        ),
        "silence": ActionSpec(
            name="silence",
            args_model=SilenceArgs,
            risk=Risk.MEDIUM,
            read_only=False,
            idempotent=True,
            compensation="expire_silence",
            description="silence alerts matching allow-listed matchers for a while",
        ),
        "expire_silence": ActionSpec(
            name="expire_silence",
            args_model=ExpireSilenceArgs,
            risk=Risk.MEDIUM,
            read_only=False,
            idempotent=True,
            description="expire a silence (by id, or the ones opsgate made with these matchers)",
        ),
    },
)


def matcher_refusal(
    matcher: Matcher, config: AlertmanagerConfig, *, value_known: bool = True
) -> str | None:
    """Why ``matcher`` may not be part of a silence under ``config`` (None: it may).

    ``value_known=False`` (a runbook's ``{param}``, filled only when the plan is made): the
    label and the kind of matcher are checked, the value is left to the call."""
    patterns = config.allow_matchers.get(matcher.name)
    allowed = ", ".join(sorted(config.allow_matchers)) or "none"
    if patterns is None:
        return f"label {matcher.name!r} is not in adapters.alertmanager.allow_matchers ({allowed})"
    if matcher.is_regex and not config.allow_regex:
        return f"{matcher.text()} is a regex matcher; adapters.alertmanager.allow_regex is false"
    if not matcher.is_equal and not config.allow_negative:
        return (
            f"{matcher.text()} is a negative matcher; adapters.alertmanager.allow_negative is false"
        )
    if not value_known:
        return None
    if matcher.is_regex:
        # A regex is allowed only as a literal entry of the list: globs cannot bound a regex.
        ok = matcher.value in patterns
    else:
        ok = any(fnmatch.fnmatchcase(matcher.value, pattern) for pattern in patterns)
    if not ok:
        return (
            f"{matcher.text()}: value not allowed for label {matcher.name!r} "
            f"(allowed: {', '.join(patterns) or 'none'})"
        )
    return None


def silence_refusals(
    matchers: Sequence[Matcher],
    config: AlertmanagerConfig,
    *,
    values_known: Sequence[bool] | None = None,
) -> list[tuple[int | None, str]]:
    """Why a silence of ``matchers`` would be refused: (matcher index or None, reason) pairs.

    ``opsgate check`` calls it on a runbook's silence steps (``values_known`` says which
    values are literal), the adapter on every call."""
    problems: list[tuple[int | None, str]] = []
    for index, matcher in enumerate(matchers):
        known = values_known[index] if values_known is not None else True
        reason = matcher_refusal(matcher, config, value_known=known)
        if reason is not None:
            problems.append((index, reason))
    if not any(m.is_equal and not m.is_regex for m in matchers):
        problems.append((None, 'a silence needs at least one name="value" matcher'))
    return problems


def check_silence(matchers: Sequence[Matcher], config: AlertmanagerConfig) -> None:
    """Raise :class:`MatcherNotAllowed` unless every matcher of a silence is allowed."""
    problems = [reason for _index, reason in silence_refusals(matchers, config)]
    if problems:
        raise MatcherNotAllowed("silence refused before it was sent: " + "; ".join(problems))


def _marker(idempotency_key: str) -> str:
    return f"[opsgate:{idempotency_key}]" if idempotency_key else ""


def _same_matchers(silence: Mapping[str, Any], matchers: Sequence[Matcher]) -> bool:
    def key(m: Mapping[str, Any]) -> tuple[str, str, bool, bool]:
        return (
            str(m.get("name")),
            str(m.get("value")),
            bool(m.get("isRegex")),
            bool(m.get("isEqual", True)),
        )

    theirs = sorted(key(m) for m in silence.get("matchers") or [] if isinstance(m, Mapping))
    return theirs == sorted(key(m.api()) for m in matchers)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AlertmanagerTool:
    """Talks to one Alertmanager; silences only what the allow-list names."""

    def __init__(
        self,
        *,
        config: AlertmanagerConfig,
        secrets: SecretSource | None = None,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        """Talk to the Alertmanager at ``config.base_url``."""
        self._config = config
        self._api = JsonApi(
            service="alertmanager", config=config, secrets=secrets, session_factory=session_factory
        )
        self._now = now or (lambda: datetime.now(UTC))
        self._spec = dataclasses.replace(
            ALERTMANAGER_SPEC, cost_per_call_usd=config.cost_per_call_usd
        )

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], **kwargs: Any) -> "AlertmanagerTool":
        """Build the tool from the ``adapters.alertmanager`` section; bad config -> ValueError."""
        try:
            config = AlertmanagerConfig.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(
                f"adapters.alertmanager config is invalid: {summarise_validation_error(exc)}"
            ) from None
        return cls(config=config, **kwargs)

    @property
    def spec(self) -> ToolSpec:
        """The ``alertmanager`` tool's actions."""
        return self._spec

    @property
    def config(self) -> AlertmanagerConfig:
        """The adapter's settings (allow-list included)."""
        return self._config

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run the call; grants are checked by the guards, the allow-list here, first."""
        action = self._spec.action(call.action)
        args = parse_args(action, call.args)
        if isinstance(args, SilenceArgs):
            check_silence(args.matchers, self._config)
            return await self._silence(args, call)
        if isinstance(args, ExpireSilenceArgs):
            return await self._expire(args, call)
        assert isinstance(args, AlertsArgs)
        return await self._alerts(args, call)

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._api.aclose()

    async def _alerts(self, args: AlertsArgs, call: ToolCall) -> ToolResult:
        params: dict[str, str | list[str]] = {
            "silenced": str(args.silenced).lower(),
            "inhibited": str(args.inhibited).lower(),
        }
        if args.matchers:
            params["filter"] = [m.text() for m in args.matchers]
        answer = await self._api.request("GET", "/api/v2/alerts", params=params)
        alerts = self._document(answer, call, list)
        return self._result(answer, {"alerts": alerts}, _summarise_alerts(alerts))

    async def _live_silences(self, matchers: Sequence[Matcher], call: ToolCall) -> list[Any]:
        params = {"filter": [m.text() for m in matchers]}
        answer = await self._api.request("GET", "/api/v2/silences", params=params)
        silences = self._document(answer, call, list)
        return [
            s
            for s in silences
            if isinstance(s, Mapping)
            and (s.get("status") or {}).get("state") in LIVE
            and _same_matchers(s, matchers)
        ]

    async def _silence(self, args: SilenceArgs, call: ToolCall) -> ToolResult:
        marker = _marker(call.idempotency_key)
        if marker:
            for silence in await self._live_silences(args.matchers, call):
                if marker in str(silence.get("comment", "")):
                    sid = str(silence.get("id"))
                    return self._silenced(sid, silence.get("endsAt"), args, status=200, again=True)
        now = self._now()
        body = {
            "matchers": [m.api() for m in args.matchers],
            "startsAt": _stamp(now),
            "endsAt": _stamp(now + timedelta(seconds=duration_s(args.duration))),
            "createdBy": self._config.created_by,
            "comment": f"{args.comment} {marker}".strip(),
        }
        answer = await self._api.request("POST", "/api/v2/silences", body=body)
        doc = self._document(answer, call, dict)
        sid = doc.get("silenceID")
        if not isinstance(sid, str) or not sid:
            raise ToolFailed(f"{call.tool_action}: the answer names no silenceID", retryable=False)
        return self._silenced(sid, body["endsAt"], args, status=answer.status, again=False)

    def _silenced(
        self, sid: str, ends: Any, args: SilenceArgs, *, status: int, again: bool
    ) -> ToolResult:
        what = ", ".join(m.text() for m in args.matchers)
        verb = "already silenced by" if again else "silenced as"
        return ToolResult(
            ok=True,
            status=status,
            output={
                "status": status,
                "json": {"silenceID": sid, "endsAt": ends, "existing": again},
                "silence_id": sid,
            },
            summary=f"{what} {verb} {sid} until {ends}",
            duration_ms=0.0,
            cost_usd=self._spec.cost_per_call_usd,
        )

    async def _expire(self, args: ExpireSilenceArgs, call: ToolCall) -> ToolResult:
        if args.id is not None:
            answer = await self._api.request("GET", f"/api/v2/silence/{args.id}")
            if answer.status == 404:
                raise RequestRefused(f"{call.tool_action}: Alertmanager has no silence {args.id}")
            silence = self._document(answer, call, dict)
            targets = [silence] if (silence.get("status") or {}).get("state") in LIVE else []
        else:
            assert args.matchers is not None
            targets = [
                s
                for s in await self._live_silences(args.matchers, call)
                if s.get("createdBy") == self._config.created_by
            ]
        expired = []
        for silence in targets:
            sid = str(silence.get("id"))
            answer = await self._api.request("DELETE", f"/api/v2/silence/{sid}")
            if answer.status == 404 or (answer.status >= 500 and "not found" in answer.text):
                continue  # gone between the lookup and the delete: nothing left to expire
            if answer.status != 200:
                self._refuse(answer, call)
            expired.append(sid)
        what = args.id or ", ".join(m.text() for m in args.matchers or [])
        summary = (
            f"expired silence {', '.join(expired)} ({what})"
            if expired
            else f"no live silence to expire ({what})"
        )
        return ToolResult(
            ok=True,
            status=200,
            output={"status": 200, "json": {"expired": expired}},
            summary=summary,
            duration_ms=0.0,
            cost_usd=self._spec.cost_per_call_usd,
        )

    def _document(self, answer: ApiAnswer, call: ToolCall, shape: type) -> Any:
        if answer.status != 200:
            self._refuse(answer, call)
        if not isinstance(answer.document, shape):
            raise ToolFailed(
                f"{call.tool_action}: not an Alertmanager API answer: {answer.text[:200]!r}",
                retryable=False,
            )
        return answer.document

    def _refuse(self, answer: ApiAnswer, call: ToolCall) -> None:
        # Alertmanager's errors are a JSON string ("Failed to create silence: ...") or text.
        said = answer.document if isinstance(answer.document, str) else answer.text[:300]
        message = f"Alertmanager refused {call.tool_action} (HTTP {answer.status}): {said}"
        if answer.status >= 500:
            raise ToolFailed(message)
        raise RequestRefused(message)

    def _result(self, answer: ApiAnswer, data: dict[str, Any], summary: str) -> ToolResult:
        return ToolResult(
            ok=True,
            status=answer.status,
            output={"status": answer.status, "json": data, "url": answer.url},
            summary=summary,
            duration_ms=answer.duration_ms,
            cost_usd=self._spec.cost_per_call_usd,
        )


def _summarise_alerts(alerts: Sequence[Any]) -> str:
    if not alerts:
        return "Alertmanager holds no alerts"
    states: dict[str, int] = {}
    rows = []
    for alert in alerts:
        state = str((alert.get("status") or {}).get("state", "?"))
        states[state] = states.get(state, 0) + 1
    for alert in alerts[:TABLE_ROWS]:
        labels = alert.get("labels") or {}
        state = str((alert.get("status") or {}).get("state", "?"))
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "alertname")
        rows.append(f"{state:>11}  {labels.get('alertname', '?')}{{{inner}}}")
    head = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    more = [f"... and {len(alerts) - len(rows)} more"] if len(alerts) > len(rows) else []
    return "\n".join([f"alerts: {head}", *rows, *more])
