"""Errors raised by adapters, all rooted at :class:`AdapterError`.

Every error carries a stable snake_case ``code`` (callers branch on it, audit records store it),
a ``message`` in plain words for the on-call engineer, and ``retryable`` saying whether running
the same call again later could succeed.

Codes:

- ``grant_missing``: no grant was presented (:class:`GrantError`).
- ``grant_scope_mismatch``: the grant names another tool or action (:class:`GrantError`).
- ``grant_expired``: the grant's expiry has passed (:class:`GrantError`).
- ``grant_args_changed``: the arguments differ from the ones the grant was issued for
  (:class:`GrantError`).
- ``grant_forged``: the grant's signature does not verify (:class:`GrantError`).
- ``args_invalid``: the arguments do not match the action's schema (:class:`ArgsInvalid`).
- ``unknown_action``: no such tool or action is registered (:class:`UnknownAction`).
- ``host_not_allowed``: the URL's host is not on the adapter's allow-list (:class:`HostNotAllowed`).
- ``namespace_not_allowed``: the Kubernetes namespace is not on the adapter's allow-list
  (:class:`NamespaceNotAllowed`); no request was made.
- ``tool_timeout``: the call did not finish in time and was cancelled (:class:`ToolTimeout`;
  retryable).
- ``circuit_open``: the tool failed repeatedly and calls are paused (:class:`CircuitOpen`).
- ``rate_limited``: the tool's call budget per second is spent (:class:`RateLimited`).
- ``secret_missing``: an argument names a ``${secret:NAME}`` that is not set
  (:class:`SecretMissing`).
- ``statement_refused``: a SQL statement is not one read-only query; it was refused before it
  reached a server (:class:`StatementRefused`).
- ``read_only_violation``: the server's read-only transaction refused a write
  (:class:`StatementRefused` with that code).
- ``request_refused``: the service answered and refused the request (a query it cannot parse,
  a silence it rejects); running it again will not help (:class:`RequestRefused`).
- ``matcher_not_allowed``: a silence names a label or value outside the adapter's allow-list;
  refused before any request (:class:`MatcherNotAllowed`).
- ``secret_unavailable``: the secret store (Vault) could not be reached or refused opsgate's
  own login (:class:`SecretUnavailable`; retryable).
- ``credential_missing``: the call needs a credential its role does not hold for this plan
  (:class:`CredentialMissing`); the Auditor can ask humans to extend the scope.
- ``tool_failed``: a transport or process error (:class:`ToolFailed`; retryable unless the
  adapter says otherwise).

Guard refusals (``circuit_open``, ``rate_limited``) are not retryable: they are back-pressure
from opsgate itself, and retrying at once would only add to the load they exist to limit. They
also do not count as tool failures for the circuit breaker.

Adapters map vendor exceptions at their boundary: ``raise ToolFailed(...) from exc``.
"""

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    """The stable codes an :class:`AdapterError` can carry."""

    GRANT_MISSING = "grant_missing"
    GRANT_SCOPE_MISMATCH = "grant_scope_mismatch"
    GRANT_EXPIRED = "grant_expired"
    GRANT_ARGS_CHANGED = "grant_args_changed"
    GRANT_FORGED = "grant_forged"
    ARGS_INVALID = "args_invalid"
    UNKNOWN_ACTION = "unknown_action"
    HOST_NOT_ALLOWED = "host_not_allowed"
    NAMESPACE_NOT_ALLOWED = "namespace_not_allowed"
    TOOL_TIMEOUT = "tool_timeout"
    CIRCUIT_OPEN = "circuit_open"
    RATE_LIMITED = "rate_limited"
    TOOL_FAILED = "tool_failed"
    SECRET_MISSING = "secret_missing"  # noqa: S105 - an error code, not a password
    STATEMENT_REFUSED = "statement_refused"
    READ_ONLY_VIOLATION = "read_only_violation"
    REQUEST_REFUSED = "request_refused"
    MATCHER_NOT_ALLOWED = "matcher_not_allowed"
    SECRET_UNAVAILABLE = "secret_unavailable"  # noqa: S105 - an error code, not a password
    CREDENTIAL_MISSING = "credential_missing"


GRANT_CODES = frozenset(
    {
        ErrorCode.GRANT_MISSING,
        ErrorCode.GRANT_SCOPE_MISMATCH,
        ErrorCode.GRANT_EXPIRED,
        ErrorCode.GRANT_ARGS_CHANGED,
        ErrorCode.GRANT_FORGED,
    }
)


class AdapterError(Exception):
    """Root of every error an adapter or guard raises."""

    default_code: ClassVar[ErrorCode] = ErrorCode.TOOL_FAILED
    default_retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        """Create the error with a plain-words ``message``; ``retryable`` overrides the default."""
        super().__init__(message)
        self.code: str = self.default_code
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable
        # Credentials issued before the call failed (see ``ToolResult.credentials``).
        self.credentials: list[dict[str, Any]] = []

    def __str__(self) -> str:
        """``code: message``, so logs and tracebacks show both."""
        return f"{self.code}: {self.message}"


class GrantError(AdapterError):
    """The call is not covered by a valid grant; it was refused before anything ran."""

    def __init__(self, message: str, *, code: ErrorCode) -> None:
        """Create the error; ``code`` must be one of the ``grant_*`` codes."""
        if code not in GRANT_CODES:
            raise ValueError(f"{code!r} is not a grant error code")
        super().__init__(message)
        self.code = code


class ArgsInvalid(AdapterError):
    """The arguments do not match the action's schema."""

    default_code = ErrorCode.ARGS_INVALID


class UnknownAction(AdapterError):
    """No such tool or action."""

    default_code = ErrorCode.UNKNOWN_ACTION


class HostNotAllowed(AdapterError):
    """The target host is not on the allow-list; no connection was made."""

    default_code = ErrorCode.HOST_NOT_ALLOWED


class NamespaceNotAllowed(AdapterError):
    """The Kubernetes namespace is not on the allow-list; no request was made."""

    default_code = ErrorCode.NAMESPACE_NOT_ALLOWED


class ToolTimeout(AdapterError):
    """The call ran out of time and was cancelled."""

    default_code = ErrorCode.TOOL_TIMEOUT
    default_retryable = True


class CircuitOpen(AdapterError):
    """The tool failed too often recently; calls are refused until it cools down."""

    default_code = ErrorCode.CIRCUIT_OPEN


class RateLimited(AdapterError):
    """The tool's rate limit left no slot within the allowed wait."""

    default_code = ErrorCode.RATE_LIMITED


class ToolFailed(AdapterError):
    """A transport or process error: the tool could not produce a result."""

    default_code = ErrorCode.TOOL_FAILED
    default_retryable = True


class SecretMissing(AdapterError):
    """A ``${secret:NAME}`` reference names a secret that is not set."""

    default_code = ErrorCode.SECRET_MISSING


class StatementRefused(AdapterError):
    """A SQL statement that could write: refused by the parser, or by the read-only server."""

    default_code = ErrorCode.STATEMENT_REFUSED

    def __init__(self, message: str, *, code: str = ErrorCode.STATEMENT_REFUSED) -> None:
        """Create the error; ``code`` is ``statement_refused`` or ``read_only_violation``."""
        super().__init__(message)
        self.code = ErrorCode(code)


class RequestRefused(AdapterError):
    """The service answered and refused the request; the same request will be refused again."""

    default_code = ErrorCode.REQUEST_REFUSED


class MatcherNotAllowed(AdapterError):
    """A silence matcher is outside the allow-list; no request was sent."""

    default_code = ErrorCode.MATCHER_NOT_ALLOWED


class SecretUnavailable(AdapterError):
    """The secret store could not answer (unreachable, or it refused opsgate's own login)."""

    default_code = ErrorCode.SECRET_UNAVAILABLE
    default_retryable = True


class CredentialMissing(AdapterError):
    """The call needs a credential that its role does not hold; nothing was sent."""

    default_code = ErrorCode.CREDENTIAL_MISSING
