"""Small factories shared by the policies tests."""

from typing import Any

from common import Mode, Risk, Role
from policies import PolicyContext

REQUESTER = "U_REQ"
APPROVERS = frozenset({REQUESTER, "U_A", "U_B"})


def context(**overrides: Any) -> PolicyContext:
    """An executor's read-only low-risk ``http.get`` in supervised mode, with ``overrides``."""
    fields: dict[str, Any] = {
        "role": Role.EXECUTOR,
        "tool": "http",
        "action": "get",
        "args": {"url": "http://127.0.0.1:9000/svc/web/health"},
        "risk": Risk.LOW,
        "read_only": True,
        "mode": Mode.SUPERVISED,
        "requester": REQUESTER,
        "approvers": APPROVERS,
    }
    fields.update(overrides)
    return PolicyContext(**fields)


def change(**overrides: Any) -> PolicyContext:
    """A state-changing ``http.post`` (restart) at medium risk, with ``overrides``."""
    fields: dict[str, Any] = {
        "action": "post",
        "args": {"url": "http://127.0.0.1:9000/svc/web/restart"},
        "risk": Risk.MEDIUM,
        "read_only": False,
    }
    fields.update(overrides)
    return context(**fields)
