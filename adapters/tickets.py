"""The ``ticket`` tool: create, comment on and close tickets in GitHub Issues or Jira Cloud.

One action set, two backends (``adapters.ticket.backend``):

- ``github``: REST API (``Authorization: Bearer <token>``, ``X-GitHub-Api-Version``):
  ``POST /repos/{owner}/{repo}/issues``, ``POST .../issues/{n}/comments``,
  ``PATCH .../issues/{n}`` with ``state: closed``. A ticket is the issue number.
- ``jira``: Cloud REST API v3 (basic auth ``email:api token``): ``POST /rest/api/3/issue``,
  ``POST /rest/api/3/issue/{key}/comment`` (bodies in Atlassian Document Format), and for
  ``close`` the issue's transitions: ``GET`` them, ``POST`` the one to a done status. A ticket
  is the issue key (``OPS-12``).

``create`` and ``comment`` are not idempotent (each call adds one); ``close`` is (closing a
closed ticket changes nothing and says so). Tokens are ``${secret:NAME}`` references in the
config, resolved at each call. A refusal names the service's own message: GitHub's
``{"message", "errors": [{"resource", "field", "code"}]}`` (422 on validation), Jira's
``{"errorMessages": [...], "errors": {field: message}}``.
"""

import base64
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
from adapters.settings.tickets import GitHubBackend, JiraBackend, TicketConfig
from common import Risk

GITHUB_ACCEPT = "application/vnd.github+json"
GITHUB_API_VERSION = "2022-11-28"
_GITHUB_TICKET = re.compile(r"[1-9][0-9]{0,9}")
_JIRA_TICKET = re.compile(r"[A-Z][A-Z0-9_]{0,20}-[1-9][0-9]{0,9}")
MAX_BODY_CHARS = 60_000  # GitHub's issue body limit is 65536 characters


class CreateArgs(BaseModel):
    """Arguments of ``ticket.create``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    title: str = Field(min_length=1, max_length=250)
    body: str = Field(default="", max_length=MAX_BODY_CHARS)
    labels: list[str] = Field(default_factory=list, max_length=20)


class TicketArgs(BaseModel):
    """Arguments naming one ticket: a GitHub issue number or a Jira issue key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ticket: str = Field(min_length=1, max_length=40)

    @field_validator("ticket", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("ticket")
    @classmethod
    def _shape(cls, value: str) -> str:
        if not (_GITHUB_TICKET.fullmatch(value) or _JIRA_TICKET.fullmatch(value)):
            raise ValueError("give a GitHub issue number (42) or a Jira issue key (OPS-12)")
        return value


class CommentArgs(TicketArgs):
    """Arguments of ``ticket.comment``."""

    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS)


class CloseArgs(TicketArgs):
    """Arguments of ``ticket.close``: an optional comment added first."""

    comment: str = Field(default="", max_length=MAX_BODY_CHARS)


def _write(name: str, model: type[BaseModel], *, idempotent: bool, description: str) -> ActionSpec:
    return ActionSpec(
        name=name,
        args_model=model,
        risk=Risk.MEDIUM,
        read_only=False,
        idempotent=idempotent,
        description=description,
    )


TICKET_SPEC = ToolSpec(
    name="ticket",
    actions={
        "create": _write("create", CreateArgs, idempotent=False, description="file a ticket"),
        "comment": _write(
            "comment", CommentArgs, idempotent=False, description="comment on a ticket"
        ),
        "close": _write("close", CloseArgs, idempotent=True, description="close a ticket"),
    },
)


def adf(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document Format document: blank lines part paragraphs,
    other line breaks are hard breaks."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()) if text.strip() else []:
        content: list[dict[str, Any]] = []
        for index, line in enumerate(block.split("\n")):
            if index:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs}


def github_detail(response: ApiResponse) -> str:
    """GitHub's ``message`` and each validation error ``field code``."""
    body = response.body if isinstance(response.body, dict) else {}
    detail = str(body.get("message", response.text[:200]))
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        parts = [
            " ".join(str(e.get(k)) for k in ("field", "code") if e.get(k))
            if isinstance(e, dict)
            else str(e)
            for e in errors[:5]
        ]
        detail += ": " + "; ".join(parts)
    return detail


def jira_detail(response: ApiResponse) -> str:
    """Jira's ``errorMessages`` and ``errors`` (field: message)."""
    body = response.body if isinstance(response.body, dict) else {}
    parts = [str(m) for m in body.get("errorMessages") or []]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts += [f"{field}: {message}" for field, message in errors.items()]
    return "; ".join(parts) or response.text[:200]


@dataclasses.dataclass(frozen=True, slots=True)
class _Done:
    output: dict[str, Any]
    summary: str
    status: int


class TicketTool:
    """Files tickets in the configured backend."""

    def __init__(
        self,
        config: TicketConfig,
        *,
        secrets: SecretSource | None = None,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        """Use ``config``'s backend."""
        self._config = config
        self._secrets = secrets or SecretSource()
        backend = config.github if config.backend == "github" else config.jira
        assert backend is not None
        base = backend.api_url if isinstance(backend, GitHubBackend) else backend.base_url
        self._api = JsonApi(
            base_url=base, timeout_s=config.timeout_s, session_factory=session_factory
        )
        self._spec = dataclasses.replace(TICKET_SPEC, cost_per_call_usd=config.cost_per_call_usd)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> "TicketTool":
        """Build the tool from ``adapters.ticket``; bad config -> ValueError."""
        try:
            config = TicketConfig.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(
                f"adapters.ticket config is invalid: {summarise_validation_error(exc)}"
            ) from None
        return cls(config)

    @property
    def spec(self) -> ToolSpec:
        """create, comment, close."""
        return self._spec

    @property
    def backend(self) -> str:
        """``github`` or ``jira``."""
        return self._config.backend

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run the action on the backend; grants are checked by the guards."""
        args = parse_args(self._spec.action(call.action), call.args)
        if isinstance(args, TicketArgs):
            self._check_ticket(args.ticket)
        started = time.perf_counter()
        if self._config.github is not None and self.backend == "github":
            done = await self._github(self._config.github, call.action, args)
        else:
            assert self._config.jira is not None
            done = await self._jira(self._config.jira, call.action, args)
        duration_ms = (time.perf_counter() - started) * 1000
        return ToolResult(
            ok=True,
            status=done.status,
            output={"backend": self.backend, **done.output},
            summary=done.summary,
            duration_ms=duration_ms,
            cost_usd=self._spec.cost_per_call_usd,
        )

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._api.aclose()

    def _check_ticket(self, ticket: str) -> None:
        pattern = _GITHUB_TICKET if self.backend == "github" else _JIRA_TICKET
        if not pattern.fullmatch(ticket):
            shape = "an issue number like 42" if self.backend == "github" else "a key like OPS-12"
            raise ArgsInvalid(f"ticket {ticket!r} is not {shape} for the {self.backend} backend")

    # --- GitHub -------------------------------------------------------------------------

    async def _gh(self, cfg: GitHubBackend, method: str, path: str, body: Any) -> ApiResponse:
        headers = {
            "Authorization": f"Bearer {await resolve_setting(cfg.token, self._secrets)}",
            "Accept": GITHUB_ACCEPT,
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
        }
        full = f"/repos/{cfg.repo}{path}"
        response = await self._api.request(method, full, headers=headers, json_body=body)
        if not response.ok:
            raise refused("GitHub", f"{method} {full}", response, github_detail(response))
        return response

    async def _github(self, cfg: GitHubBackend, action: str, args: BaseModel) -> _Done:
        if isinstance(args, CreateArgs):
            labels = sorted({*self._config.labels, *args.labels})
            body = {"title": args.title, "body": args.body, "labels": labels}
            made = (await self._gh(cfg, "POST", "/issues", body)).body
            return _Done(
                {"ticket": str(made["number"]), "url": made.get("html_url"), "state": "open"},
                f"GitHub issue #{made['number']} created in {cfg.repo}",
                201,
            )
        assert isinstance(args, TicketArgs)
        path = f"/issues/{args.ticket}"
        if isinstance(args, CommentArgs):
            made = (await self._gh(cfg, "POST", path + "/comments", {"body": args.body})).body
            return _Done(
                {
                    "ticket": args.ticket,
                    "comment_id": str(made.get("id")),
                    "url": made.get("html_url"),
                },
                f"commented on GitHub issue #{args.ticket}",
                201,
            )
        assert isinstance(args, CloseArgs)
        if args.comment:
            await self._gh(cfg, "POST", path + "/comments", {"body": args.comment})
        closed = await self._gh(
            cfg, "PATCH", path, {"state": "closed", "state_reason": "completed"}
        )
        return _Done(
            {
                "ticket": args.ticket,
                "state": closed.body.get("state"),
                "url": closed.body.get("html_url"),
            },
            f"GitHub issue #{args.ticket} closed",
            closed.status,
        )

    # --- Jira ---------------------------------------------------------------------------

    async def _jr(self, cfg: JiraBackend, method: str, path: str, body: Any = None) -> ApiResponse:
        pair = f"{cfg.email}:{await resolve_setting(cfg.token, self._secrets)}".encode()
        headers = {
            "Accept": "application/json",
            "Authorization": "Basic " + base64.b64encode(pair).decode(),
        }
        full = f"/rest/api/3{path}"
        response = await self._api.request(method, full, headers=headers, json_body=body)
        if not response.ok:
            raise refused("Jira", f"{method} {full}", response, jira_detail(response))
        return response

    async def _jira(self, cfg: JiraBackend, action: str, args: BaseModel) -> _Done:
        site = self._api.base_url
        if isinstance(args, CreateArgs):
            fields = {
                "project": {"key": cfg.project},
                "summary": args.title,
                "issuetype": {"name": cfg.issue_type},
                "description": adf(args.body),
                "labels": sorted({*self._config.labels, *args.labels}),
            }
            made = (await self._jr(cfg, "POST", "/issue", {"fields": fields})).body
            key = made["key"]
            return _Done(
                {"ticket": key, "url": f"{site}/browse/{key}", "state": "open"},
                f"Jira issue {key} created in {cfg.project}",
                201,
            )
        assert isinstance(args, TicketArgs)
        path = f"/issue/{args.ticket}"
        if isinstance(args, CommentArgs):
            made = (await self._jr(cfg, "POST", path + "/comment", {"body": adf(args.body)})).body
            return _Done(
                {
                    "ticket": args.ticket,
                    "comment_id": str(made.get("id")),
                    "url": f"{site}/browse/{args.ticket}",
                },
                f"commented on Jira issue {args.ticket}",
                201,
            )
        assert isinstance(args, CloseArgs)
        return await self._jira_close(cfg, args, site)

    async def _jira_close(self, cfg: JiraBackend, args: CloseArgs, site: str) -> _Done:
        path = f"/issue/{args.ticket}"
        output = {"ticket": args.ticket, "url": f"{site}/browse/{args.ticket}", "state": "closed"}
        issue = (await self._jr(cfg, "GET", path + "?fields=status")).body
        status = (
            ((issue.get("fields") or {}).get("status") or {}) if isinstance(issue, dict) else {}
        )
        if (status.get("statusCategory") or {}).get("key") == "done":
            return _Done(output, f"Jira issue {args.ticket} was already {status.get('name')}", 200)
        if args.comment:
            await self._jr(cfg, "POST", path + "/comment", {"body": adf(args.comment)})
        offered = (await self._jr(cfg, "GET", path + "/transitions")).body
        transitions = offered.get("transitions", []) if isinstance(offered, dict) else []
        wanted = cfg.done_status.lower()
        chosen = next(
            (t for t in transitions if str((t.get("to") or {}).get("name", "")).lower() == wanted),
            None,
        ) or next(
            (
                t
                for t in transitions
                if ((t.get("to") or {}).get("statusCategory") or {}).get("key") == "done"
            ),
            None,
        )
        if chosen is None:
            names = ", ".join(str((t.get("to") or {}).get("name")) for t in transitions) or "none"
            raise ArgsInvalid(
                f"Jira issue {args.ticket} offers no transition to {cfg.done_status!r} "
                f"(offered: {names}); set adapters.ticket.jira.done_status"
            )
        response = await self._jr(
            cfg, "POST", path + "/transitions", {"transition": {"id": str(chosen["id"])}}
        )
        return _Done(
            output, f"Jira issue {args.ticket} moved to {chosen['to']['name']}", response.status
        )
