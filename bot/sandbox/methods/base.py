"""The handler registry (`METHODS`, `@method`), `ApiError`, `Context` and argument helpers.

Each handler takes the call's arguments (already merged from query, form or JSON body) and
returns the response body without `"ok"`, or raises `ApiError` carrying Slack's error code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.workspace import NotFound, Workspace


class ApiError(Exception):
    """A refusal as Slack words it: `error`, optional `errors` details, HTTP status and headers."""

    def __init__(
        self,
        error: str,
        *,
        errors: list[str] | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.errors = errors or []
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Render the JSON body Slack returns for this refusal."""
        body: dict[str, Any] = {"ok": False, "error": self.error}
        if self.errors:
            if self.error == "invalid_blocks":
                body["errors"] = list(self.errors)
            body["response_metadata"] = {"messages": [f"[ERROR] {e}" for e in self.errors]}
        return body


@dataclass
class Context:
    """What a handler may touch besides its arguments."""

    workspace: Workspace
    root_url: str
    publish: Callable[[dict[str, Any]], None]
    warnings: list[str] = field(default_factory=list)
    tickets: set[str] = field(default_factory=set)  # Socket Mode tickets not yet redeemed


Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]

METHODS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    """Register a handler under a Web API method name."""

    def register(handler: Handler) -> Handler:
        METHODS[name] = handler
        return handler

    return register


def require(args: dict[str, Any], *names: str) -> None:
    """Refuse the call unless every one of ``names`` is given and non-empty."""
    missing = [n for n in names if args.get(n) in (None, "")]
    if missing:
        raise ApiError(
            "invalid_arguments", errors=[f"missing required field: {n}" for n in missing]
        )


def json_arg(args: dict[str, Any], name: str, *, error: str) -> Any:
    """An argument that may arrive JSON-encoded (form bodies), decoded; ``error`` if invalid."""
    value = args.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ApiError(error) from exc
    return value


def int_arg(args: dict[str, Any], name: str, default: int) -> int:
    """An integer argument, or ``default`` when absent."""
    try:
        return int(args.get(name) or default)
    except (TypeError, ValueError) as exc:
        raise ApiError("invalid_arguments", errors=[f"must be an integer: {name}"]) from exc


def lookup(call: Callable[[], Any]) -> Any:
    """Run a workspace lookup, turning `NotFound` into the `ApiError` it names."""
    try:
        return call()
    except NotFound as exc:
        raise ApiError(str(exc.args[0])) from exc


def paged(items: list[Any], args: dict[str, Any], default: int) -> tuple[list[Any], str]:
    """One page of ``items`` by `cursor` and `limit`, and the next cursor ("" on the last)."""
    start = int_arg(args, "cursor", 0)
    limit = int_arg(args, "limit", default) or default
    page = items[start : start + limit]
    return page, str(start + limit) if start + limit < len(items) else ""
