"""Adapters: the guarded connectors through which opsgate touches the outside world.

Each adapter is a :class:`Tool` that declares its actions (args schema, risk, read-only,
idempotent, compensation) in a :class:`ToolSpec` and runs a :class:`ToolCall` only under a
:class:`Grant` naming that exact tool action and argument hash. Grant checks, circuit breaking,
rate limiting and timeouts are guards stacked around a tool by :func:`guarded`, not code
repeated in each adapter. Circuit breakers are per tool and target and live in a
:class:`BreakerStore` (the control plane shares one through its database). Adapters import only
``common``; the control plane looks tools up in a :class:`ToolRegistry`.

Every error is an :class:`AdapterError` with a stable ``code``, a plain-words ``message`` and a
``retryable`` flag. Codes: ``grant_missing``, ``grant_scope_mismatch``, ``grant_expired``,
``grant_args_changed``, ``grant_forged`` (GrantError), ``args_invalid``, ``unknown_action``,
``host_not_allowed``, ``tool_timeout``, ``circuit_open``, ``rate_limited``, ``tool_failed``,
``secret_missing``, ``secret_unavailable``, ``credential_missing``; see :mod:`adapters.errors`.

Secrets (``${secret:...}``) are resolved by :mod:`adapters.secrets` (environment, secrets folder,
HashiCorp Vault through :mod:`adapters.vault`) inside the guards at call time; which credential
a call presents and which roles hold it is declared per tool (:mod:`adapters.credentials`).

Test doubles live in :mod:`adapters.testing` and :mod:`adapters.vault_standin`.
"""

from typing import TYPE_CHECKING

from common.lazy import lazy

if TYPE_CHECKING:
    from adapters.base import (
        ActionSpec,
        Grant,
        GrantSigner,
        Tool,
        ToolCall,
        ToolResult,
        ToolSpec,
        parse_args,
        validate_args,
    )
    from adapters.errors import (
        AdapterError,
        ArgsInvalid,
        CircuitOpen,
        ErrorCode,
        GrantError,
        HostNotAllowed,
        RateLimited,
        ToolFailed,
        ToolTimeout,
        UnknownAction,
    )
    from adapters.guards import (
        Admission,
        BreakerPolicy,
        BreakerRecord,
        BreakerState,
        BreakerStore,
        CircuitBreakerGuard,
        GrantGuard,
        RateLimitGuard,
        TimeoutGuard,
        ToolWrapper,
        guarded,
    )
    from adapters.http import HttpTool
    from adapters.registry import ToolRegistry
    from adapters.shell import ShellCommand, ShellTool

# What each name is loaded from when first used: importing the package (for
# ``adapters.settings``, say) loads none of them.
_EXPORTS = {
    "ActionSpec": "adapters.base",
    "Grant": "adapters.base",
    "GrantSigner": "adapters.base",
    "Tool": "adapters.base",
    "ToolCall": "adapters.base",
    "ToolResult": "adapters.base",
    "ToolSpec": "adapters.base",
    "parse_args": "adapters.base",
    "validate_args": "adapters.base",
    "AdapterError": "adapters.errors",
    "ArgsInvalid": "adapters.errors",
    "CircuitOpen": "adapters.errors",
    "ErrorCode": "adapters.errors",
    "GrantError": "adapters.errors",
    "HostNotAllowed": "adapters.errors",
    "RateLimited": "adapters.errors",
    "ToolFailed": "adapters.errors",
    "ToolTimeout": "adapters.errors",
    "UnknownAction": "adapters.errors",
    "Admission": "adapters.guards",
    "BreakerPolicy": "adapters.guards",
    "BreakerRecord": "adapters.guards",
    "BreakerState": "adapters.guards",
    "BreakerStore": "adapters.guards",
    "CircuitBreakerGuard": "adapters.guards",
    "GrantGuard": "adapters.guards",
    "RateLimitGuard": "adapters.guards",
    "TimeoutGuard": "adapters.guards",
    "ToolWrapper": "adapters.guards",
    "guarded": "adapters.guards",
    "HttpTool": "adapters.http",
    "ToolRegistry": "adapters.registry",
    "ShellCommand": "adapters.shell",
    "ShellTool": "adapters.shell",
}
__getattr__ = lazy(__name__, _EXPORTS)

__all__ = [
    "ActionSpec",
    "AdapterError",
    "Admission",
    "ArgsInvalid",
    "BreakerPolicy",
    "BreakerRecord",
    "BreakerState",
    "BreakerStore",
    "CircuitBreakerGuard",
    "CircuitOpen",
    "ErrorCode",
    "Grant",
    "GrantError",
    "GrantGuard",
    "GrantSigner",
    "HostNotAllowed",
    "HttpTool",
    "RateLimitGuard",
    "RateLimited",
    "ShellCommand",
    "ShellTool",
    "TimeoutGuard",
    "Tool",
    "ToolCall",
    "ToolFailed",
    "ToolRegistry",
    "ToolResult",
    "ToolSpec",
    "ToolTimeout",
    "ToolWrapper",
    "UnknownAction",
    "guarded",
    "parse_args",
    "validate_args",
]
