"""Test doubles shipped with the code: a scriptable FakeTool, an instant NoopTool, a breaker
store in memory (also what one process uses when no shared store is wired in), and a fake
sleep that moves a FakeClock.

Stand-ins for external services live in modules of their own beside this one:
:mod:`adapters.testing.pagerduty` (PagerDuty REST API v2 and signed Webhooks V3) and
:mod:`adapters.testing.tickets` (GitHub Issues and Jira Cloud).
"""

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from adapters.base import ActionSpec, Grant, ToolCall, ToolResult, ToolSpec
from adapters.errors import ToolFailed
from adapters.guards import (
    Admission,
    BreakerPolicy,
    BreakerRecord,
    BreakerState,
    admit_call,
    after_call,
    log_breaker_change,
)
from common import Clock, FakeClock, Risk

Response = ToolResult | BaseException
Responder = Callable[[ToolCall], ToolResult]


class AnyArgs(BaseModel):
    """Accepts any arguments."""

    model_config = ConfigDict(extra="allow")


def default_actions() -> dict[str, ActionSpec]:
    """read (low), ``write`` (medium; ``undo`` reverts it), ``undo`` (medium), ``nuke`` (high)."""

    def spec(name: str, risk: Risk, **traits: Any) -> ActionSpec:
        return ActionSpec(
            name=name, args_model=AnyArgs, risk=risk, description=f"fake {name}", **traits
        )

    return {
        "read": spec("read", Risk.LOW, read_only=True, idempotent=True),
        "write": spec("write", Risk.MEDIUM, read_only=False, idempotent=False, compensation="undo"),
        "undo": spec("undo", Risk.MEDIUM, read_only=False, idempotent=False),
        "nuke": spec("nuke", Risk.HIGH, read_only=False, idempotent=False),
    }


def ok_result(call: ToolCall) -> ToolResult:
    """The result a fake returns when nothing else is scripted."""
    return ToolResult(
        ok=True,
        status=None,
        output={"tool_action": call.tool_action, "args": call.args},
        summary=f"{call.tool_action} ok",
        duration_ms=0.0,
        cost_usd=0.0,
    )


class FakeTool:
    """A Tool that records its calls and replies with scripted results or exceptions.

    ``responses`` is either a sequence played in order (results are returned, exceptions raised;
    once it runs out every call succeeds) or a callable that receives the call and returns a
    result or raises.
    """

    def __init__(
        self,
        name: str = "fake",
        *,
        actions: Mapping[str, ActionSpec] | None = None,
        responses: Iterable[Response] | Responder | None = None,
        target: Callable[[ToolCall], str] | None = None,
    ) -> None:
        """Build the fake; ``actions`` defaults to :func:`default_actions`.

        ``target`` names the breaker target of a call (default: the whole tool).
        """
        self._spec = ToolSpec(
            name=name, actions=dict(actions or default_actions()), target_of=target
        )
        self.calls: list[ToolCall] = []
        self._responder: Responder | None = None
        self._queue: deque[Response] = deque()
        if callable(responses):
            self._responder = responses
        elif responses is not None:
            self._queue.extend(responses)

    @property
    def spec(self) -> ToolSpec:
        """The fake's name and actions."""
        return self._spec

    def fail_times(self, n: int, exc: BaseException | None = None) -> "FakeTool":
        """Make the next ``n`` calls raise ``exc`` (a retryable ToolFailed by default)."""
        for _ in range(n):
            self._queue.append(exc or ToolFailed("fake tool failure"))
        return self

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Record the call, then play the next scripted response."""
        self.calls.append(call)
        if self._queue:
            response = self._queue.popleft()
            if isinstance(response, BaseException):
                raise response
            return response
        if self._responder is not None:
            return self._responder(call)
        return ok_result(call)


class NoopTool:
    """A Tool that succeeds instantly with one shared result; for benchmarks."""

    def __init__(
        self, name: str = "noop", *, actions: Mapping[str, ActionSpec] | None = None
    ) -> None:
        """Build the tool; ``actions`` defaults to :func:`default_actions`."""
        self._spec = ToolSpec(name=name, actions=dict(actions or default_actions()))
        self._result = ToolResult(
            ok=True, status=None, output={}, summary=f"{name} ok", duration_ms=0.0, cost_usd=0.0
        )

    @property
    def spec(self) -> ToolSpec:
        """The tool's name and actions."""
        return self._spec

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Return the shared ok result."""
        return self._result


class InMemoryBreakerStore:
    """Breakers in this process only; the same transitions as the database store."""

    def __init__(self, clock: Clock) -> None:
        """Time cool-downs and probe leases on ``clock``."""
        self._clock = clock
        self.records: dict[str, BreakerRecord] = {}

    def get(self, key: str) -> BreakerRecord:
        """The breaker of ``key`` (closed when never seen)."""
        return self.records.get(key) or BreakerRecord(key=key)

    def state(self, key: str) -> BreakerState:
        """Where the breaker of ``key`` stands."""
        return self.get(key).state

    async def admit(self, key: str, *, policy: BreakerPolicy) -> Admission:
        """Decide on a call to ``key``, claiming the probe slot when one is due."""
        before = self.get(key)
        admission, claimed = admit_call(before, now=self._clock.now(), policy=policy)
        if claimed is not None:
            self._write(before, claimed)
        return admission

    async def record(self, admission: Admission, *, ok: bool | None, policy: BreakerPolicy) -> None:
        """Apply a call's outcome."""
        before = self.get(admission.key)
        after = after_call(before, admission, ok=ok, now=self._clock.now(), policy=policy)
        if after is not None:
            self._write(before, after)

    def _write(self, before: BreakerRecord, after: BreakerRecord) -> None:
        self.records[after.key] = after
        log_breaker_change(before, after)


class FakeSleep:
    """An ``asyncio.sleep`` stand-in that moves a FakeClock instead of waiting.

    Each sleeper lets the others run once, then moves the clock to its own wake-up time unless
    another sleeper already moved it further; so no sleeper wakes before its time.
    """

    def __init__(self, clock: FakeClock) -> None:
        """Move ``clock``."""
        self._clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        """Record the wait and move the clock past it."""
        self.waits.append(seconds)
        wake_at = self._clock.monotonic() + seconds
        await asyncio.sleep(0)
        behind = wake_at - self._clock.monotonic()
        if behind > 0:
            self._clock.advance(behind)
