"""The small base every adapter builds on: specs, calls, results, grants and the Tool protocol."""

import dataclasses
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.credentials import CredentialSpec
from adapters.errors import ArgsInvalid, ErrorCode, GrantError, UnknownAction
from common import Risk, args_hash
from common.redaction import redact, redact_text


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionSpec:
    """What one action of a tool does, which arguments it takes and how risky it is."""

    name: str
    args_model: type[BaseModel]
    risk: Risk
    read_only: bool
    idempotent: bool
    compensation: str | None = None
    description: str = ""
    # ``compensation``'s args from the step's args and its recorded result (``ToolResult`` as a
    # dict), e.g. scale back to the count read before; None when there is nothing to undo.
    compensate_from: (
        Callable[[Mapping[str, Any], Mapping[str, Any] | None], dict[str, Any] | None] | None
    ) = None
    # The tool's ``preview(call, grant)`` says what a call would do without doing it (a dry run).
    previews: bool = False


WHOLE_TOOL = "*"
PREVIEW = "preview"  # grants for a dry run name ``<action>:preview``: they never cover the call


def _not_ok(result: "ToolResult") -> bool:
    return not result.ok


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    """A tool's name, its actions, what one call costs, and how the circuit breaker sees a call.

    ``target_of`` names what a call talks to (an HTTP host, a command), so that one failing
    target does not pause calls to healthy ones; without it the whole tool is one target.
    ``failure_of`` says whether a result is the target failing (default: ``ok`` is false).
    ``credential_of`` names the credential a call presents to its target, and who holds it
    (:mod:`adapters.credentials`); without it, or when it answers None, a call presents none.
    """

    name: str
    actions: Mapping[str, ActionSpec]
    cost_per_call_usd: float = 0.0
    target_of: Callable[["ToolCall"], str] | None = None
    failure_of: Callable[["ToolResult"], bool] = _not_ok
    credential_of: Callable[["ToolCall"], CredentialSpec | None] | None = None

    def __post_init__(self) -> None:
        """Refuse dotted names, mismatched keys and compensations naming no action."""
        if not self.name or "." in self.name:
            raise ValueError(f"tool name {self.name!r} must be non-empty and contain no '.'")
        for key, action in self.actions.items():
            if key != action.name or "." in key:
                raise ValueError(f"tool {self.name}: action key {key!r} must equal its name")
            if action.compensation is not None and action.compensation not in self.actions:
                raise ValueError(
                    f"tool {self.name}: action {key!r} is compensated by "
                    f"{action.compensation!r}, which is not one of its actions"
                )

    def target(self, call: "ToolCall") -> str:
        """What ``call`` talks to, e.g. ``checkout.internal``; ``*`` for the whole tool."""
        return self.target_of(call) if self.target_of is not None else WHOLE_TOOL

    def credential(self, call: "ToolCall") -> CredentialSpec | None:
        """The credential ``call`` presents to its target, if any."""
        return self.credential_of(call) if self.credential_of is not None else None

    def failed(self, result: "ToolResult") -> bool:
        """True when ``result`` means the target is failing (it counts for the breaker)."""
        return self.failure_of(result)

    def action(self, name: str) -> ActionSpec:
        """The spec of action ``name``; raises :class:`UnknownAction` listing the known ones."""
        try:
            return self.actions[name]
        except KeyError:
            known = ", ".join(f"{self.name}.{a}" for a in sorted(self.actions)) or "none"
            raise UnknownAction(
                f"tool {self.name!r} has no action {name!r}; known actions: {known}"
            ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """One request to run ``tool.action`` with ``args``."""

    tool: str
    action: str
    args: dict[str, Any]
    idempotency_key: str
    correlation_id: str = ""
    # Incident data for the ``${incident:NAME}`` references in ``args`` (common.incident_refs),
    # put in by IncidentGuard after the grant check; the grant binds the references.
    context: Mapping[str, str] = field(default_factory=dict)

    @property
    def tool_action(self) -> str:
        """The dotted name, e.g. ``http.get``."""
        return f"{self.tool}.{self.action}"

    def as_preview(self) -> "ToolCall":
        """The call a preview grant covers: ``<action>:preview``, so it never covers this one."""
        return dataclasses.replace(self, action=preview_action(self.action))


def preview_action(action: str) -> str:
    """The action name a preview (dry-run) grant of ``action`` is issued for."""
    return f"{action}:{PREVIEW}"


class ToolResult(BaseModel):
    """What a call produced; recorded whatever its outcome, and JSON-serialisable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    status: int | None
    output: dict[str, Any]
    summary: str
    duration_ms: float
    cost_usd: float
    tokens: int = 0
    error_code: str | None = None
    # Credentials issued for this call (minted tokens, leases): what, for whom, until when -
    # never the value. The control plane records each one as an audit event; not dumped, so
    # it never reaches a stored result or the cache.
    credentials: tuple[dict[str, Any], ...] = Field(default=(), exclude=True)

    def redacted(self) -> "ToolResult":
        """A copy with credentials removed from ``output`` and ``summary`` (counts are kept)."""
        return self.model_copy(
            update={"output": redact(self.output), "summary": redact_text(self.summary)}
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """Permission to run one tool action with one exact set of arguments until ``expires_at``.

    ``credentials`` names the credentials the call may present (see
    :mod:`adapters.credentials`); they are signed with the rest.
    """

    grant_id: str
    tool: str
    action: str
    args_hash: str
    expires_at: datetime
    signature: str = field(repr=False)
    credentials: tuple[str, ...] = ()


class Tool(Protocol):
    """Anything that can run calls for the actions its spec declares."""

    @property
    def spec(self) -> ToolSpec:
        """The tool's name and actions."""
        ...

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run ``call`` under ``grant`` and report the result."""
        ...


class GrantSigner:
    """Issues grants signed with HMAC-SHA256 and verifies them against calls."""

    def __init__(self, key: bytes) -> None:
        """Sign with ``key``; it must hold at least 16 bytes."""
        if len(key) < 16:
            raise ValueError("grant signing key must hold at least 16 bytes")
        self._key = key

    def issue(
        self,
        *,
        grant_id: str,
        tool: str,
        action: str,
        args_hash: str,
        expires_at: datetime,
        credentials: tuple[str, ...] = (),
    ) -> Grant:
        """A grant for ``tool.action`` with the arguments hashing to ``args_hash``."""
        if expires_at.tzinfo is None:
            raise ValueError("grant expiry must be timezone-aware")
        unsigned = Grant(
            grant_id=grant_id,
            tool=tool,
            action=action,
            args_hash=args_hash,
            expires_at=expires_at.astimezone(UTC),
            signature="",
            credentials=tuple(sorted(set(credentials))),
        )
        return dataclasses.replace(unsigned, signature=self._sign(unsigned))

    def verify(self, grant: Grant | None, call: ToolCall, *, now: datetime) -> None:
        """Return if ``grant`` covers ``call`` at ``now``; else raise :class:`GrantError`."""
        if grant is None:
            raise GrantError(
                f"{call.tool_action} needs a grant and none was given",
                code=ErrorCode.GRANT_MISSING,
            )
        if not hmac.compare_digest(self._sign(grant), grant.signature):
            raise GrantError(
                f"grant {grant.grant_id} has an invalid signature; it was not issued by opsgate "
                "or was altered",
                code=ErrorCode.GRANT_FORGED,
            )
        if (grant.tool, grant.action) != (call.tool, call.action):
            raise GrantError(
                f"grant {grant.grant_id} allows {grant.tool}.{grant.action}, "
                f"not {call.tool_action}",
                code=ErrorCode.GRANT_SCOPE_MISMATCH,
            )
        if not hmac.compare_digest(args_hash(call.tool_action, call.args), grant.args_hash):
            raise GrantError(
                f"the arguments of {call.tool_action} differ from the ones grant "
                f"{grant.grant_id} was approved for",
                code=ErrorCode.GRANT_ARGS_CHANGED,
            )
        if now >= grant.expires_at:
            raise GrantError(
                f"grant {grant.grant_id} expired at {grant.expires_at.isoformat()}",
                code=ErrorCode.GRANT_EXPIRED,
            )

    def _sign(self, grant: Grant) -> str:
        # Unit separators keep field boundaries unambiguous ("a.b" + "c" != "a" + "b.c").
        expires = grant.expires_at.astimezone(UTC).isoformat() if grant.expires_at.tzinfo else ""
        fields = [grant.grant_id, grant.tool, grant.action, grant.args_hash, expires]
        if grant.credentials:  # grants without credentials keep the signatures they had
            fields.append("\x1e".join(grant.credentials))
        message = "\x1f".join(fields)
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()


def summarise_validation_error(exc: ValidationError) -> str:
    """One line per problem, ``field: what is wrong``, without echoing the input values."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def parse_args(spec: ActionSpec, args: Any) -> BaseModel:
    """Parse ``args`` into the action's args model; raises :class:`ArgsInvalid` in plain words."""
    if not isinstance(args, Mapping):
        raise ArgsInvalid(f"arguments of {spec.name} must be a mapping, not {type(args).__name__}")
    try:
        return spec.args_model.model_validate(dict(args))
    except ValidationError as exc:
        raise ArgsInvalid(
            f"invalid arguments for {spec.name}: {summarise_validation_error(exc)}"
        ) from exc


def validate_args(spec: ActionSpec, args: Any) -> dict[str, Any]:
    """Check ``args`` against the action's schema and return them normalised (JSON-ready)."""
    return parse_args(spec, args).model_dump(mode="json", by_alias=True)
