"""The ``pagerduty`` tool: acknowledge, resolve, annotate and escalate PagerDuty incidents.

It speaks PagerDuty's REST API v2: ``Authorization: Token token=<api key>``, ``Accept:
application/vnd.pagerduty+json;version=2`` and a ``From`` header holding the email of a valid
PagerDuty user, which the API requires for every write. The key is a ``${secret:NAME}``
reference in the config, resolved at each call. Actions:

- ``acknowledge`` / ``resolve``: ``PUT /incidents/{id}`` with ``status``; idempotent (setting a
  status twice leaves it as it is).
- ``escalate``: ``PUT /incidents/{id}`` with ``escalation_level``; idempotent.
- ``add_note``: ``POST /incidents/{id}/notes``; not idempotent (each call adds a note).

A non-2xx answer is an error naming PagerDuty's own message, code and errors
(``{"error": {"message", "code", "errors"}}``); 429 and 5xx are retryable.
"""

import dataclasses
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapters.base import (
    ActionSpec,
    Grant,
    ToolCall,
    ToolResult,
    ToolSpec,
    parse_args,
    summarise_validation_error,
)
from adapters.errors import ArgsInvalid
from adapters.rest import ApiResponse, JsonApi, refused
from adapters.secrets import SecretSource, resolve_setting
from adapters.settings.pagerduty import PagerDutyConfig
from common import Risk

ACCEPT = "application/vnd.pagerduty+json;version=2"
INCIDENT_ID = r"^[A-Z0-9]{2,32}$"
PAGERDUTY_ID_REF = "${incident:pagerduty_id}"


class IncidentArgs(BaseModel):
    """Arguments naming one PagerDuty incident: its id, like ``PT4KHLK``, or
    ``${incident:pagerduty_id}`` (the one the opsgate incident mirrors, filled at call time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    incident_id: str

    @field_validator("incident_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if re.fullmatch(INCIDENT_ID, value) or value == PAGERDUTY_ID_REF:
            return value
        raise ValueError(f"give a PagerDuty incident id like PT4KHLK, or {PAGERDUTY_ID_REF}")


class NoteArgs(IncidentArgs):
    """Arguments of ``pagerduty.add_note``."""

    content: str = Field(min_length=1, max_length=25_000)


class EscalateArgs(IncidentArgs):
    """Arguments of ``pagerduty.escalate``: the escalation policy level to move to."""

    escalation_level: int = Field(ge=1, le=20)


def _action(name: str, model: type[BaseModel], *, idempotent: bool, description: str) -> ActionSpec:
    return ActionSpec(
        name=name,
        args_model=model,
        risk=Risk.MEDIUM,
        read_only=False,
        idempotent=idempotent,
        description=description,
    )


PAGERDUTY_SPEC = ToolSpec(
    name="pagerduty",
    actions={
        "acknowledge": _action(
            "acknowledge", IncidentArgs, idempotent=True, description="acknowledge an incident"
        ),
        "resolve": _action(
            "resolve", IncidentArgs, idempotent=True, description="resolve an incident"
        ),
        "add_note": _action(
            "add_note", NoteArgs, idempotent=False, description="add a note to an incident"
        ),
        "escalate": _action(
            "escalate",
            EscalateArgs,
            idempotent=True,
            description="move an incident to an escalation level",
        ),
    },
)


def error_detail(response: ApiResponse) -> str:
    """PagerDuty's ``error.message`` (code N): errors..., or the start of the body."""
    error = response.body.get("error") if isinstance(response.body, dict) else None
    if not isinstance(error, dict):
        return response.text[:200]
    detail = str(error.get("message", ""))
    if error.get("code") is not None:
        detail += f" (code {error['code']})"
    errors = error.get("errors")
    if isinstance(errors, list) and errors:
        detail += ": " + "; ".join(str(e) for e in errors[:5])
    return detail


class PagerDutyTool:
    """Changes PagerDuty incidents through REST API v2."""

    def __init__(
        self,
        *,
        token: str,
        from_email: str,
        api_url: str = "https://api.pagerduty.com",
        timeout_s: float = 10.0,
        cost_per_call_usd: float = 0.0,
        secrets: SecretSource | None = None,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        """Act as ``from_email`` with the API key ``token`` names (a ``${secret:...}``)."""
        self._token = token
        self._from = from_email
        self._secrets = secrets or SecretSource()
        self._api = JsonApi(base_url=api_url, timeout_s=timeout_s, session_factory=session_factory)
        self._spec = dataclasses.replace(PAGERDUTY_SPEC, cost_per_call_usd=cost_per_call_usd)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> "PagerDutyTool":
        """Build the tool from ``adapters.pagerduty``; bad config -> ValueError."""
        try:
            config = PagerDutyConfig.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(
                f"adapters.pagerduty config is invalid: {summarise_validation_error(exc)}"
            ) from None
        return cls(**config.model_dump())

    @property
    def spec(self) -> ToolSpec:
        """acknowledge, resolve, add_note, escalate."""
        return self._spec

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Send the call's request; grants are checked by the guards."""
        args = parse_args(self._spec.action(call.action), call.args)
        assert isinstance(args, IncidentArgs)
        if not re.fullmatch(INCIDENT_ID, args.incident_id):  # a reference never filled in
            raise ArgsInvalid(
                f"pagerduty.{call.action}: {args.incident_id!r} is not a PagerDuty incident id "
                "(this incident mirrors no PagerDuty incident?)"
            )
        path = f"/incidents/{args.incident_id}"
        body: dict[str, Any]
        if isinstance(args, NoteArgs):
            method, path, body = "POST", path + "/notes", {"note": {"content": args.content}}
        elif isinstance(args, EscalateArgs):
            method = "PUT"
            body = {
                "incident": {
                    "type": "incident_reference",
                    "escalation_level": args.escalation_level,
                }
            }
        else:
            status = "acknowledged" if call.action == "acknowledge" else "resolved"
            method, body = "PUT", {"incident": {"type": "incident_reference", "status": status}}
        headers = {
            "Authorization": f"Token token={await resolve_setting(self._token, self._secrets)}",
            "Accept": ACCEPT,
            "Content-Type": "application/json",
            "From": self._from,
        }
        started = time.perf_counter()
        response = await self._api.request(method, path, headers=headers, json_body=body)
        duration_ms = (time.perf_counter() - started) * 1000
        if not response.ok:
            raise refused("PagerDuty", f"{method} {path}", response, error_detail(response))
        output = _output(call.action, response.body)
        return ToolResult(
            ok=True,
            status=response.status,
            output=output,
            summary=f"PagerDuty {call.action} {args.incident_id} -> {response.status}"
            + (f" ({output['incident']['status']})" if "incident" in output else ""),
            duration_ms=duration_ms,
            cost_usd=self._spec.cost_per_call_usd,
        )

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._api.aclose()


def _output(action: str, body: Any) -> dict[str, Any]:
    body = body if isinstance(body, dict) else {}
    if action == "add_note":
        note = body.get("note") or {}
        return {"note": {k: note.get(k) for k in ("id", "content", "created_at")}}
    incident = body.get("incident") or {}
    keys = ("id", "incident_number", "status", "escalation_level", "html_url", "title")
    return {"incident": {k: incident.get(k) for k in keys if k in incident}}
