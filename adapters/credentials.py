"""Which credential a call presents, which roles hold it, and a record of every one used.

A tool declares, through :attr:`adapters.base.ToolSpec.credential_of`, the credential a call
presents to its target (an http host's token, a Kubernetes service account, a database role):
a :class:`CredentialSpec` naming it, saying whether it can only read, and which roles hold it
without asking. The rules of :func:`holds` apply to every tool: the Planner holds none, the
Researcher only read-only ones, the Executor the one its step's action presents when the tool
lists it among the holders. A credential no role holds (``holders: []``, a break-glass one) is
given to one plan at a time, after humans approve; the grant then names it
(:attr:`adapters.base.Grant.credentials`), and :class:`adapters.guards.GrantGuard` refuses a
call whose credential its grant does not name with ``credential_missing`` before anything is
sent.

Every secret resolved for a call (by the :class:`adapters.guards.SecretGuard`, or a tool
filling its own settings) is recorded as a :class:`CredentialUse` in the list that
:func:`recording` opens for the caller (the Executor), so the control plane can audit which
credential was used, from where, until when: never the value.

A credential a tool mints for one call (a Kubernetes service-account token) is reported twice:
as a fact on the call's result (``ToolResult.credentials``), and the moment it is minted through
:func:`report_issued`, so the caller can record it while the call still runs (``/incident
status`` then shows the service account and expiry a running step holds). A fact the caller
recorded that way is marked ``audited`` and is not recorded again when the call ends.
"""

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from common import Role

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialSpec:
    """A credential a tool presents for some calls, and the roles that hold it by default."""

    name: str
    read_only: bool
    holders: frozenset[Role] = frozenset({Role.EXECUTOR})
    description: str = ""

    def __post_init__(self) -> None:
        """Refuse holders that break the role rules (see :func:`holds`)."""
        if not self.name:
            raise ValueError("a credential needs a name")
        if Role.PLANNER in self.holders:
            raise ValueError(f"credential {self.name!r}: the Planner never holds a credential")
        if Role.RESEARCHER in self.holders and not self.read_only:
            raise ValueError(
                f"credential {self.name!r} can change state; the Researcher holds only "
                "read-only credentials"
            )
        allowed = {Role.RESEARCHER, Role.EXECUTOR}
        if not self.holders <= allowed:
            extra = ", ".join(sorted(str(r) for r in self.holders - allowed))
            raise ValueError(f"credential {self.name!r}: {extra} cannot hold credentials")


def holds(role: Role, credential: CredentialSpec) -> bool:
    """True when ``role`` holds ``credential`` without asking (the same rules for every tool)."""
    if role is Role.PLANNER:
        return False
    if role is Role.RESEARCHER and not credential.read_only:
        return False
    return role in credential.holders


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialUse:
    """One secret resolved for a call: which, from where, until when (never its value).

    ``source`` is ``env``, ``file``, ``vault-kv`` or ``vault-lease``; a lease carries its id,
    its expiry and, once the call ended, whether it was revoked.
    """

    secret: str
    source: str
    lease_id: str | None = None
    expires_at: datetime | None = None
    revoked: bool | None = None


_USES: ContextVar[list[CredentialUse] | None] = ContextVar("credential_uses", default=None)


@contextlib.contextmanager
def recording() -> Iterator[list[CredentialUse]]:
    """Collect the credentials used by calls made inside the block (same task)."""
    uses: list[CredentialUse] = []
    token = _USES.set(uses)
    try:
        yield uses
    finally:
        _USES.reset(token)


def record_use(use: CredentialUse) -> None:
    """Add ``use`` to the list of the innermost :func:`recording` block, if any."""
    uses = _USES.get()
    if uses is not None:
        uses.append(use)


IssuedHook = Callable[[dict[str, Any]], Awaitable[None]]
_ISSUED: ContextVar[IssuedHook | None] = ContextVar("credential_issued", default=None)


@contextlib.contextmanager
def issuing(hook: IssuedHook) -> Iterator[None]:
    """Calls made inside the block report each credential they mint to ``hook`` (same task)."""
    token = _ISSUED.set(hook)
    try:
        yield
    finally:
        _ISSUED.reset(token)


async def report_issued(fact: dict[str, Any]) -> None:
    """Hand a freshly minted credential's fact (never its value) to the :func:`issuing` hook.

    On success the fact is marked ``audited``. A hook that fails is logged and the call goes
    on: the fact still travels with the call's result and is recorded when the call ends.
    """
    hook = _ISSUED.get()
    if hook is None:
        return
    try:
        await hook(fact)
    except Exception as exc:  # recording early is best effort; the end of the call records it
        log.warning("credential_report_failed", error=type(exc).__name__)
        return
    fact["audited"] = True
