"""Cross-cutting guards stacked around any Tool: grant check, circuit breaker, rate limit, timeout.

Each guard is itself a Tool with the inner tool's spec, so they compose like wrapper toolsets;
:func:`guarded` stacks them in the one order opsgate uses. The innermost, :class:`SecretGuard`,
resolves ``${secret:NAME}`` references just before the tool runs (see :mod:`adapters.secrets`).

Circuit breakers are kept per tool and target (``"http:checkout.internal"``, see
:meth:`ToolSpec.target`) in a :class:`BreakerStore`, so that replicas sharing a store agree on
which targets are paused. The store applies the pure functions :func:`admit_call` and
:func:`after_call` (transitions as data, :func:`breaker_transition`); the control plane ships a
database store, :mod:`adapters.testing` an in-memory one.
"""

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import structlog

from adapters.base import Grant, GrantSigner, Tool, ToolCall, ToolResult, ToolSpec, validate_args
from adapters.errors import (
    AdapterError,
    ArgsInvalid,
    CircuitOpen,
    CredentialMissing,
    RateLimited,
    ToolFailed,
    ToolTimeout,
    UnknownAction,
)
from adapters.secrets import SecretResolver, SecretSource
from common import Clock
from common.incident_refs import INCIDENT_NAMES, fill_incident, incident_names
from common.redaction import redact_text, secret_names

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

    async def preview(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Pass a preview (dry run) through to the inner tool, which must offer one."""
        preview = getattr(self.inner, "preview", None)
        if preview is None:
            raise UnknownAction(f"{call.tool_action} offers no preview")
        result: ToolResult = await preview(call, grant)
        return result

    async def aclose(self) -> None:
        """Close the inner tool if it holds resources."""
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


class GrantGuard(ToolWrapper):
    """Refuses unknown actions, calls without a valid grant, invalid arguments and calls that
    would present a credential their grant does not name, in that order."""

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
        credential = spec.credential(call)
        held = grant is None or credential is None or credential.name in grant.credentials
        if not held:
            assert credential is not None
            kind = "read-only" if credential.read_only else "state-changing"
            raise CredentialMissing(
                f"{call.tool_action} needs the {kind} credential {credential.name!r}, "
                "and the Executor does not hold it for this plan; nothing was sent. "
                "Humans can add it to this plan's scope."
            )
        return await self.inner.invoke(call, grant)

    async def preview(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run a dry run only under a preview grant (``<action>:preview``) for these args."""
        spec = self.spec
        if call.tool != spec.name:
            raise UnknownAction(f"{call.tool_action} was sent to tool {spec.name!r}")
        action = spec.action(call.action)
        if not action.previews:
            raise UnknownAction(f"{call.tool_action} offers no preview")
        self._signer.verify(grant, call.as_preview(), now=self._clock.now())
        validate_args(action, call.args)
        return await super().preview(call, grant)


class SecretGuard(ToolWrapper):
    """Resolves ``${secret:...}`` in a call's args right before the tool runs (innermost guard
    but IncidentGuard).

    Outer guards (grant, breaker, rate limit, timeout) see only references, so the grant binds
    the reference and the breaker's target never holds a value. Each call gets its own
    :class:`adapters.secrets.SecretScope` (the tool resolves secrets of its own settings
    through it too), whose Vault leases end with the grant and are revoked when the call ends,
    however it ends. What the tool answers or raises is redacted before it leaves the guard.
    """

    def __init__(
        self,
        inner: Tool,
        *,
        source: SecretSource | None = None,
        resolver: SecretResolver | None = None,
    ) -> None:
        """Resolve through ``resolver`` (default: the environment and ``source``'s folder)."""
        super().__init__(inner)
        self._resolver = resolver or SecretResolver(source=source)

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run ``call`` with its references resolved; redact the answer."""
        expires = grant.expires_at if grant is not None else None
        async with self._resolver.scope(expires_at=expires) as scope:
            try:
                if secret_names(call.args):
                    call = dataclasses.replace(call, args=await scope.resolve(call.args))
                result = await self.inner.invoke(call, grant)
            except AdapterError as exc:
                exc.message = redact_text(exc.message)
                exc.args = (exc.message,)
                raise
            return result.redacted() if scope.resolved else result

    async def preview(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Preview ``call`` with its references resolved; redact the answer."""
        expires = grant.expires_at if grant is not None else None
        async with self._resolver.scope(expires_at=expires) as scope:
            try:
                if secret_names(call.args):
                    call = dataclasses.replace(call, args=await scope.resolve(call.args))
                result = await super().preview(call, grant)
            except AdapterError as exc:
                exc.message = redact_text(exc.message)
                exc.args = (exc.message,)
                raise
            return result.redacted() if scope.resolved else result


class IncidentGuard(ToolWrapper):
    """Puts the incident data of ``call.context`` in place of ``${incident:NAME}`` references
    (common.incident_refs), inside the grant check and the secrets (innermost guard)."""

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run ``call`` with its incident references filled."""
        return await self.inner.invoke(self._filled(call), grant)

    async def preview(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Preview ``call`` with its incident references filled."""
        return await super().preview(self._filled(call), grant)

    @staticmethod
    def _filled(call: ToolCall) -> ToolCall:
        names = incident_names(call.args)
        if not names:
            return call
        unknown = sorted(names - INCIDENT_NAMES)
        missing = sorted(n for n in names - set(call.context) if n not in unknown)
        if unknown or missing:
            known = ", ".join(sorted(INCIDENT_NAMES))
            detail = (
                f"unknown incident data {', '.join(unknown)} (known: {known})"
                if unknown
                else f"no incident data for {', '.join(missing)} reached this call"
            )
            raise ArgsInvalid(f"{call.tool_action}: {detail}")
        return dataclasses.replace(call, args=fill_incident(call.args, call.context))


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

    async def preview(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run the preview under the same deadline."""
        try:
            async with asyncio.timeout(self._seconds):
                return await super().preview(call, grant)
        except TimeoutError as exc:
            raise ToolTimeout(
                f"the dry run of {call.tool_action} did not finish within {self._seconds:g} s"
            ) from exc


Sleep = Callable[[float], Awaitable[None]]


class RateLimitGuard(ToolWrapper):
    """Spaces calls to ``per_second`` on average with bursts of ``burst`` (GCRA, on ``clock``).

    Each call reserves the next free slot and waits for it. Read-only idempotent actions wait
    up to ``read_max_wait_s``: waiting costs nothing but time and beats failing the step. Other
    actions wait at most ``max_wait_s`` and are refused at once with :class:`RateLimited` when
    their slot lies further out, so a state-changing call never runs long after it was asked.
    """

    def __init__(
        self,
        inner: Tool,
        *,
        per_second: float,
        burst: int,
        max_wait_s: float,
        read_max_wait_s: float | None = None,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """Allow ``per_second`` calls; ``read_max_wait_s`` defaults to ``max_wait_s``."""
        read_wait = max_wait_s if read_max_wait_s is None else read_max_wait_s
        if per_second <= 0 or burst < 1 or max_wait_s < 0 or read_wait < 0:
            raise ValueError("rate limit needs per_second > 0, burst >= 1 and waits >= 0")
        super().__init__(inner)
        self._per_second = per_second
        self._interval = 1.0 / per_second
        self._tolerance = (burst - 1) * self._interval
        self._max_wait_s = max_wait_s
        self._read_max_wait_s = read_wait
        self._clock = clock
        self._sleep = sleep
        self._next_at: float | None = None  # GCRA's theoretical arrival time of the next call

    @property
    def longest_wait_s(self) -> float:
        """The longest any call may wait for its slot."""
        return max(self._max_wait_s, self._read_max_wait_s)

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Reserve a slot (or refuse), wait for it, then run the call."""
        action = self.spec.actions.get(call.action)
        patient = action is not None and action.read_only and action.idempotent
        bound = self._read_max_wait_s if patient else self._max_wait_s
        wait = self._reserve(bound)
        if wait is None:
            kind = "read" if patient else "state-changing or non-idempotent call"
            raise RateLimited(
                f"{call.tool_action} refused: {self.spec.name} is limited to "
                f"{self._per_second:g} calls per second and no slot frees up within {bound:g} s "
                f"(the longest a {kind} waits); slow the plan down or run the step again"
            )
        if wait > 0:
            await self._sleep(wait)
        return await self.inner.invoke(call, grant)

    def _reserve(self, bound: float) -> float | None:
        # Reserving before sleeping keeps concurrent callers from all taking the same slot.
        now = self._clock.monotonic()
        due = now if self._next_at is None else max(self._next_at, now)
        wait = max(0.0, due - self._tolerance - now)
        if wait > bound:
            return None
        self._next_at = due + self._interval
        return wait


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


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """When a breaker opens, how long it cools down, and how long a probe may hold its slot."""

    failure_threshold: int
    reset_after_s: float
    probe_lease_s: float

    def __post_init__(self) -> None:
        """Refuse settings that would never open or never let a probe finish."""
        if self.failure_threshold < 1 or self.reset_after_s < 0 or self.probe_lease_s <= 0:
            raise ValueError(
                "breaker needs failure_threshold >= 1, reset_after_s >= 0 and probe_lease_s > 0"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerRecord:
    """The shared state of the breaker of one tool and target (key ``"<tool>:<target>"``).

    ``probe_until`` is set while half-open and a probe holds the one slot: it is both the
    probe's claim and its lease (a probe whose process died frees the slot when it passes).
    """

    key: str
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: datetime | None = None
    probe_until: datetime | None = None

    @property
    def settled(self) -> bool:
        """Closed with no failures counted: the state of every target never seen failing."""
        return self.state is BreakerState.CLOSED and self.failures == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """What a call met at the breaker: let through, let through as the probe, or refused."""

    key: str
    allowed: bool
    record: BreakerRecord  # the state the decision was taken on (after the claim, for a probe)
    probe_token: datetime | None = None  # set when this call is the half-open probe
    probe_in_s: float = 0.0  # refused while open: seconds until a probe may go

    @property
    def probing(self) -> bool:
        """True when this call is the one probe of a half-open breaker."""
        return self.probe_token is not None


def admit_call(
    record: BreakerRecord, *, now: datetime, policy: BreakerPolicy
) -> tuple[Admission, BreakerRecord | None]:
    """Decide on one call; the second value is the record to write when the call claims a probe."""
    if record.state is BreakerState.CLOSED:
        return Admission(key=record.key, allowed=True, record=record), None
    if record.state is BreakerState.OPEN:
        due = (record.opened_at or now) + timedelta(seconds=policy.reset_after_s)
        if now < due:
            wait = (due - now).total_seconds()
            return Admission(key=record.key, allowed=False, record=record, probe_in_s=wait), None
        state = breaker_transition(record.state, BreakerEvent.COOLED_DOWN)
        claimed = dataclasses.replace(record, state=state, probe_until=_lease(now, policy))
    elif record.probe_until is not None and now < record.probe_until:
        return Admission(key=record.key, allowed=False, record=record), None
    else:
        # Half-open with a free slot, or one whose holder outlived its lease (crashed, hung).
        claimed = dataclasses.replace(record, probe_until=_lease(now, policy))
    admission = Admission(
        key=record.key, allowed=True, record=claimed, probe_token=claimed.probe_until
    )
    return admission, claimed


def after_call(
    record: BreakerRecord,
    admission: Admission,
    *,
    ok: bool | None,
    now: datetime,
    policy: BreakerPolicy,
) -> BreakerRecord | None:
    """The record after a call's outcome (``None``: unknown), or None when nothing changes."""
    if admission.probing:
        return _after_probe(record, admission, ok=ok, now=now)
    if ok is None or record.state is not BreakerState.CLOSED:
        # Outcomes of calls admitted before the breaker opened are ignored once it has.
        return None
    if ok:
        return dataclasses.replace(record, failures=0) if record.failures else None
    counted = dataclasses.replace(record, failures=record.failures + 1)
    if counted.failures >= policy.failure_threshold:
        return _fire(counted, BreakerEvent.TRIPPED, now=now)
    return counted


def _after_probe(
    record: BreakerRecord, admission: Admission, *, ok: bool | None, now: datetime
) -> BreakerRecord | None:
    holds_slot = record.probe_until == admission.probe_token
    if record.state is not BreakerState.HALF_OPEN or not holds_slot:
        return None  # the probe outlived its lease and another call took the slot over
    if ok is None:
        return dataclasses.replace(record, probe_until=None)  # it told us nothing: free the slot
    event = BreakerEvent.PROBE_SUCCEEDED if ok else BreakerEvent.PROBE_FAILED
    return _fire(record, event, now=now)


def _lease(now: datetime, policy: BreakerPolicy) -> datetime:
    return now + timedelta(seconds=policy.probe_lease_s)


def _fire(record: BreakerRecord, event: BreakerEvent, *, now: datetime) -> BreakerRecord:
    state = breaker_transition(record.state, event)
    if state is BreakerState.OPEN:
        return dataclasses.replace(record, state=state, opened_at=now, probe_until=None)
    if state is BreakerState.CLOSED:
        return dataclasses.replace(
            record, state=state, failures=0, opened_at=None, probe_until=None
        )
    return dataclasses.replace(record, state=state)


def log_breaker_change(before: BreakerRecord, after: BreakerRecord) -> None:
    """Log a change of state (stores call it after a write of theirs took effect)."""
    if before.state is not after.state:
        log.info(
            "circuit_breaker_changed",
            key=after.key,
            before=str(before.state),
            after=str(after.state),
            failures=after.failures,
        )


class BreakerStore(Protocol):
    """Where breakers live; replicas that share a store share their breakers."""

    async def admit(self, key: str, *, policy: BreakerPolicy) -> Admission:
        """Decide whether a call to ``key`` may go (claiming the probe slot when due)."""
        ...

    async def record(self, admission: Admission, *, ok: bool | None, policy: BreakerPolicy) -> None:
        """Record how an admitted call went: ``True``, ``False`` (target failed) or ``None``."""
        ...


# Errors that mean the target failed; every other refusal is opsgate's or the caller's doing.
TARGET_FAILURES: tuple[type[Exception], ...] = (ToolTimeout, ToolFailed)


class CircuitBreakerGuard(ToolWrapper):
    """Stops calling a target after repeated failures; lets one probe through after a cool-down.

    The breaker is the one of the call's tool and target (``spec.target(call)``), so a failing
    host pauses calls to that host only. A failure is a timeout, a transport error
    (:data:`TARGET_FAILURES`) or a result that ``spec.failed`` says is the target failing (for
    http: status 5xx). Refusals that are not the target's fault (grant, arguments, host not
    allowed, rate limited) and answers such as a 404 leave the count alone.
    """

    def __init__(self, inner: Tool, *, store: BreakerStore, policy: BreakerPolicy) -> None:
        """Keep breakers in ``store`` and run them by ``policy``."""
        super().__init__(inner)
        self._store = store
        self._policy = policy

    def key(self, call: ToolCall) -> str:
        """The breaker key of ``call``: ``"<tool>:<target>"``."""
        return f"{self.spec.name}:{self.spec.target(call)}"

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Refuse at once while open; otherwise run the call and record how it went."""
        admission = await self._store.admit(self.key(call), policy=self._policy)
        if not admission.allowed:
            raise CircuitOpen(self._refusal(call, admission))
        ok: bool | None = None
        try:
            try:
                result = await self.inner.invoke(call, grant)
            except TARGET_FAILURES:
                ok = False
                raise
            # A read that answered (a 503 from a health check, a non-zero exit of a status
            # command) reported the target's state: that is what probes are for, and pausing
            # them would blind the incident. Only a state-changing call's failed answer counts.
            read_only = self.spec.action(call.action).read_only
            ok = read_only or not self.spec.failed(result)
            return result
        finally:
            # An unknown outcome matters only to a probe: it frees the slot it held.
            if ok is not None or admission.probing:
                await self._store.record(admission, ok=ok, policy=self._policy)

    def _refusal(self, call: ToolCall, admission: Admission) -> str:
        target = admission.key.partition(":")[2]
        if admission.record.state is BreakerState.OPEN:
            return (
                f"{call.tool_action} refused: {target} kept failing, so calls to it are paused; "
                f"a probe call is let through in {max(admission.probe_in_s, 0):.0f} s"
            )
        return (
            f"{call.tool_action} refused: a probe of {target} is running; calls resume if it "
            "succeeds"
        )


PROBE_LEASE_MARGIN_S = 5.0


def guarded(
    tool: Tool,
    *,
    signer: GrantSigner,
    clock: Clock,
    breakers: BreakerStore,
    timeout_s: float = 10.0,
    rate_per_s: float = 5.0,
    burst: int = 10,
    rate_max_wait_s: float = 1.0,
    rate_read_max_wait_s: float | None = None,
    breaker_threshold: int = 5,
    breaker_reset_s: float = 30.0,
    sleep: Sleep = asyncio.sleep,
    secrets: SecretSource | None = None,
    resolver: SecretResolver | None = None,
) -> GrantGuard:
    """Stack the guards: grant (outermost) -> circuit breaker -> rate limit -> timeout ->
    secrets -> incident data -> tool.

    Read-only idempotent calls wait for a rate-limit slot up to ``rate_read_max_wait_s``
    (default: ``timeout_s``); the others up to ``rate_max_wait_s``.
    """
    # Incident data goes in after the secrets are resolved, so that text from an incident
    # (typed by anyone) is never read as a ${secret:...} reference.
    timed = TimeoutGuard(
        SecretGuard(IncidentGuard(tool), source=secrets, resolver=resolver), seconds=timeout_s
    )
    limited = RateLimitGuard(
        timed,
        per_second=rate_per_s,
        burst=burst,
        max_wait_s=rate_max_wait_s,
        read_max_wait_s=timeout_s if rate_read_max_wait_s is None else rate_read_max_wait_s,
        clock=clock,
        sleep=sleep,
    )
    # A probe holds its slot while it waits for a rate-limit slot and runs.
    policy = BreakerPolicy(
        failure_threshold=breaker_threshold,
        reset_after_s=breaker_reset_s,
        probe_lease_s=limited.longest_wait_s + timeout_s + PROBE_LEASE_MARGIN_S,
    )
    breaker = CircuitBreakerGuard(limited, store=breakers, policy=policy)
    return GrantGuard(breaker, signer=signer, clock=clock)
