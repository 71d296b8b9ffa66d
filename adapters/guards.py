"""Cross-cutting guards stacked around any Tool: grant check, circuit breaker, rate limit, timeout.

Each guard is itself a Tool with the inner tool's spec, so they compose like wrapper toolsets;
:func:`guarded` stacks them in the one order opsgate uses.
"""

import asyncio
from collections.abc import Mapping
from enum import StrEnum

import structlog
from aiolimiter import AsyncLimiter

from adapters.base import Grant, GrantSigner, Tool, ToolCall, ToolResult, ToolSpec, validate_args
from adapters.errors import AdapterError, CircuitOpen, RateLimited, ToolTimeout, UnknownAction
from common import Clock

log = structlog.get_logger(__name__)


class ToolWrapper:
    """A Tool that delegates to ``inner``; the base of every guard."""

    def __init__(self, inner: Tool) -> None:
        """Wrap ``inner``."""
        self.inner = inner

    @property
    def spec(self) -> ToolSpec:
        """The inner tool's spec, unchanged."""
        return self.inner.spec

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Pass the call through."""
        return await self.inner.invoke(call, grant)

    async def aclose(self) -> None:
        """Close the inner tool if it holds resources."""
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


class GrantGuard(ToolWrapper):
    """Refuses unknown actions, calls without a valid grant and invalid arguments, in that order."""

    def __init__(self, inner: Tool, *, signer: GrantSigner, clock: Clock) -> None:
        """Check grants with ``signer`` against ``clock.now()``."""
        super().__init__(inner)
        self._signer = signer
        self._clock = clock

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run the call only if the action exists, the grant covers it and the args are valid."""
        spec = self.spec
        if call.tool != spec.name:
            raise UnknownAction(f"{call.tool_action} was sent to tool {spec.name!r}")
        action = spec.action(call.action)
        self._signer.verify(grant, call, now=self._clock.now())
        validate_args(action, call.args)
        return await self.inner.invoke(call, grant)


class TimeoutGuard(ToolWrapper):
    """Cancels calls that run longer than ``seconds`` and raises :class:`ToolTimeout`."""

    def __init__(self, inner: Tool, *, seconds: float) -> None:
        """Allow each call ``seconds`` to finish."""
        if seconds <= 0:
            raise ValueError("timeout must be positive")
        super().__init__(inner)
        self._seconds = seconds

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run the call under a deadline."""
        try:
            async with asyncio.timeout(self._seconds):
                return await self.inner.invoke(call, grant)
        except TimeoutError as exc:
            raise ToolTimeout(
                f"{call.tool_action} did not finish within {self._seconds:g} s and was cancelled"
            ) from exc


class RateLimitGuard(ToolWrapper):
    """Allows ``per_second`` calls on average, bursts of ``burst``; waits at most ``max_wait_s``."""

    def __init__(self, inner: Tool, *, per_second: float, burst: int, max_wait_s: float) -> None:
        """Build the leaky bucket; it binds to the event loop on first use."""
        if per_second <= 0 or burst < 1 or max_wait_s < 0:
            raise ValueError("rate limit needs per_second > 0, burst >= 1 and max_wait_s >= 0")
        super().__init__(inner)
        self._limiter = AsyncLimiter(burst, time_period=burst / per_second)
        self._per_second = per_second
        self._max_wait_s = max_wait_s

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Take a slot (waiting up to ``max_wait_s``), then run the call."""
        if not self._limiter.has_capacity():
            try:
                async with asyncio.timeout(self._max_wait_s):
                    await self._limiter.acquire()
            except TimeoutError:
                raise RateLimited(
                    f"{self.spec.name} is limited to {self._per_second:g} calls per second and "
                    f"no slot freed up within {self._max_wait_s:g} s; slow the plan down"
                ) from None
        else:
            await self._limiter.acquire()
        return await self.inner.invoke(call, grant)


class BreakerState(StrEnum):
    """Where a circuit breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerEvent(StrEnum):
    """What can happen to a circuit breaker."""

    TRIPPED = "tripped"
    COOLED_DOWN = "cooled_down"
    PROBE_SUCCEEDED = "probe_succeeded"
    PROBE_FAILED = "probe_failed"


class InvalidTransition(Exception):
    """An event that the current state does not accept; a programming error."""


_BREAKER_TRANSITIONS: Mapping[tuple[BreakerState, BreakerEvent], BreakerState] = {
    (BreakerState.CLOSED, BreakerEvent.TRIPPED): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.COOLED_DOWN): BreakerState.HALF_OPEN,
    (BreakerState.HALF_OPEN, BreakerEvent.PROBE_SUCCEEDED): BreakerState.CLOSED,
    (BreakerState.HALF_OPEN, BreakerEvent.PROBE_FAILED): BreakerState.OPEN,
}


def breaker_transition(state: BreakerState, event: BreakerEvent) -> BreakerState:
    """The state after ``event``; raises :class:`InvalidTransition` if ``state`` refuses it."""
    try:
        return _BREAKER_TRANSITIONS[state, event]
    except KeyError:
        raise InvalidTransition(f"circuit breaker cannot go from {state} on {event}") from None


class CircuitBreakerGuard(ToolWrapper):
    """Stops calling a tool after repeated failures; lets one probe through after a cool-down.

    A failure is a retryable :class:`AdapterError` or a result with ``ok`` false. Refusals that
    are not the tool's fault (bad grant, host not allowed, rate limited) leave the count alone.
    """

    def __init__(
        self, inner: Tool, *, failure_threshold: int, reset_after_s: float, clock: Clock
    ) -> None:
        """Open after ``failure_threshold`` consecutive failures; probe after ``reset_after_s``."""
        if failure_threshold < 1 or reset_after_s < 0:
            raise ValueError("breaker needs failure_threshold >= 1 and reset_after_s >= 0")
        super().__init__(inner)
        self._threshold = failure_threshold
        self._reset_after_s = reset_after_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker reads half-open once its cool-down has passed."""
        if (
            self._state is BreakerState.OPEN
            and self._clock.monotonic() - self._opened_at >= self._reset_after_s
        ):
            self._fire(BreakerEvent.COOLED_DOWN)
        return self._state

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Refuse at once while open; otherwise run the call and record how it went."""
        probing = self._admit(call)
        outcome_known = False
        try:
            try:
                result = await self.inner.invoke(call, grant)
            except AdapterError as exc:
                if exc.retryable:
                    outcome_known = True
                    self._record(ok=False, probing=probing)
                raise
            outcome_known = True
            self._record(ok=result.ok, probing=probing)
            return result
        finally:
            if probing and not outcome_known:
                # The probe told us nothing about the tool (refused or cancelled): free the slot.
                self._probe_in_flight = False

    def _admit(self, call: ToolCall) -> bool:
        state = self.state
        if state is BreakerState.OPEN:
            wait = self._reset_after_s - (self._clock.monotonic() - self._opened_at)
            raise CircuitOpen(
                f"{call.tool_action} refused: {self.spec.name} kept failing, so calls are paused; "
                f"a probe call is let through in {max(wait, 0):.0f} s"
            )
        if state is BreakerState.HALF_OPEN:
            if self._probe_in_flight:
                raise CircuitOpen(
                    f"{call.tool_action} refused: a probe of {self.spec.name} is running; "
                    "calls resume if it succeeds"
                )
            self._probe_in_flight = True
            return True
        return False

    def _record(self, *, ok: bool, probing: bool) -> None:
        if probing:
            self._probe_in_flight = False
            self._fire(BreakerEvent.PROBE_SUCCEEDED if ok else BreakerEvent.PROBE_FAILED)
        elif self._state is BreakerState.CLOSED:
            # Outcomes of calls admitted before the breaker opened are ignored once it has.
            self._failures = 0 if ok else self._failures + 1
            if self._failures >= self._threshold:
                self._fire(BreakerEvent.TRIPPED)

    def _fire(self, event: BreakerEvent) -> None:
        before = self._state
        self._state = breaker_transition(before, event)
        if self._state is BreakerState.OPEN:
            self._opened_at = self._clock.monotonic()
        if self._state is BreakerState.CLOSED:
            self._failures = 0
        log.info(
            "circuit_breaker_changed",
            tool=self.spec.name,
            trigger=str(event),
            before=str(before),
            after=str(self._state),
        )


def guarded(
    tool: Tool,
    *,
    signer: GrantSigner,
    clock: Clock,
    timeout_s: float = 10.0,
    rate_per_s: float = 5.0,
    burst: int = 10,
    rate_max_wait_s: float = 1.0,
    breaker_threshold: int = 5,
    breaker_reset_s: float = 30.0,
) -> GrantGuard:
    """Stack the guards: grant (outermost) -> circuit breaker -> rate limit -> timeout -> tool."""
    timed = TimeoutGuard(tool, seconds=timeout_s)
    limited = RateLimitGuard(timed, per_second=rate_per_s, burst=burst, max_wait_s=rate_max_wait_s)
    breaker = CircuitBreakerGuard(
        limited, failure_threshold=breaker_threshold, reset_after_s=breaker_reset_s, clock=clock
    )
    return GrantGuard(breaker, signer=signer, clock=clock)
