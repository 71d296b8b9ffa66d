"""Shared helpers for adapter tests: a signer, a fake clock and grant factories."""

from datetime import timedelta
from typing import Any

import pytest

from adapters import Grant, GrantSigner, ToolCall
from common import FakeClock, args_hash

KEY = b"test-key-0123456789abcdef"


@pytest.fixture
def signer() -> GrantSigner:
    return GrantSigner(KEY)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_call(tool_action: str = "fake.read", **args: Any) -> ToolCall:
    tool, _, action = tool_action.partition(".")
    return ToolCall(tool=tool, action=action, args=args, idempotency_key="k1", correlation_id="c1")


def grant_for(call: ToolCall, signer: GrantSigner, clock: FakeClock, *, ttl_s: float = 60) -> Grant:
    return signer.issue(
        grant_id="g1",
        tool=call.tool,
        action=call.action,
        args_hash=args_hash(call.tool_action, call.args),
        expires_at=clock.now() + timedelta(seconds=ttl_s),
    )
