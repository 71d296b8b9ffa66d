"""The Executor: runs one approved step with the grant it was handed, and nothing else.

It never chooses what to run. It applies the retry policy (exponential backoff with jitter,
idempotent actions only, stopping when the grant expires), sends every attempt of a step with
the step's one idempotency key (``opsgate-<step id>``, the same on retries and re-runs, so the
target can deduplicate), and asks the Auditor's ``check`` whether a result meets the step's
expectation. Timeouts, rate limits and circuit breakers are guards stacked around each tool
(see ``adapters.guards``); a read-only idempotent step refused by a rate limit is retried too.

This is where adapters' answers enter orchestration, so it is where they are redacted: the
Auditor judges the tool's own answer, and everything kept after that (the outcome's result,
error and check reason, each attempt's summary; hence ``steps.result``, the cache, spans, cards
and logs) is the redacted copy (:mod:`common.redaction`).
"""

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from adapters import (
    ActionSpec,
    AdapterError,
    ErrorCode,
    Grant,
    ToolCall,
    ToolRegistry,
    ToolResult,
    UnknownAction,
)
from adapters.credentials import CredentialUse, recording
from common import Clock
from common.redaction import redact_text
from orchestration.auditor import Check, check_expect

CANCELLED = "cancelled"


@dataclass(frozen=True)
class Ticket:
    """Everything the Executor may know about the one step it runs."""

    step_id: str
    tool_action: str
    args: Mapping[str, Any]
    idempotent: bool
    expect: Mapping[str, Any] | None
    grant: Grant
    correlation_id: str
    first_attempt: int = 1
    cached: ToolResult | None = None  # a fresh cached result of the same read: the first attempt
    plan_id: str = ""
    context: Mapping[str, str] = field(default_factory=dict)  # incident data the args refer to
    preview: bool = False  # run the tool's dry run (``preview``) once instead of the call


@dataclass(frozen=True)
class Attempt:
    """One call to the tool, for the trace."""

    number: int
    idempotency_key: str
    started_at: datetime
    ended_at: datetime
    ok: bool
    summary: str
    error_code: str | None = None
    cost_usd: float = 0.0
    tokens: int = 0
    cached: bool = False
    # What the tool answered (the redacted result) or raised (code, message, retryable):
    # recorded in the call's span so that a replay can answer the same call the same way.
    response: Mapping[str, Any] | None = None


@dataclass
class Outcome:
    """The result of running a step: the last result or error, and every attempt."""

    result: ToolResult | None = None
    error_code: str | None = None
    error: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    check: Check = field(default_factory=lambda: Check(ok=False, reason="not run"))
    credentials: list[CredentialUse] = field(default_factory=list)  # every secret resolved
    # Credentials a tool was issued for this step's calls (tokens it minted; never their
    # values): audited one event each.
    issued: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cancelled(self) -> bool:
        """True when the call was stopped mid-flight (cancel or resolve of the incident)."""
        return self.error_code == CANCELLED

    @property
    def succeeded(self) -> bool:
        """True when the tool answered and the answer met ``expect``."""
        return self.result is not None and self.error_code is None and self.check.ok

    @property
    def cost_usd(self) -> float:
        """What the last attempt cost (each attempt's cost is recorded separately too)."""
        return self.result.cost_usd if self.result else 0.0


class _Retry(Exception):
    """An attempt failed in a way worth another try."""


def idempotency_key(step_id: str) -> str:
    """The one idempotency key of a step, whatever the attempt."""
    return f"opsgate-{step_id}"


def _worth_retrying(exc: AdapterError, spec: ActionSpec) -> bool:
    # Our own rate limit refuses a call before it is sent: asking again later repeats nothing,
    # whatever the action (an approved restart must not fail for opsgate's back-pressure).
    if exc.code == ErrorCode.RATE_LIMITED:
        return True
    return spec.idempotent and exc.retryable


class Executor:
    """Runs tickets through the tool registry."""

    def __init__(
        self,
        *,
        tools: ToolRegistry,
        clock: Clock,
        max_attempts: int,
        backoff_initial_s: float,
        backoff_max_s: float,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._tools = tools
        self._clock = clock
        self._max_attempts = max_attempts
        self._initial = backoff_initial_s
        self._max = backoff_max_s
        self._sleep = sleep

    async def run(self, ticket: Ticket) -> Outcome:
        """Run ``ticket``; never raises for tool failures, which are reported in the outcome."""
        outcome = Outcome()
        tool, spec = self._tools.action(ticket.tool_action)
        tool_name, _, action = ticket.tool_action.partition(".")
        if ticket.preview:
            await self._preview(tool, ticket, outcome)
            return outcome
        attempts = self._max_attempts
        number = ticket.first_attempt - 1

        async def attempt() -> None:
            nonlocal number
            number += 1
            call = ToolCall(
                tool=tool_name,
                action=action,
                args=dict(ticket.args),
                idempotency_key=idempotency_key(ticket.step_id),
                correlation_id=ticket.correlation_id,
                context=ticket.context,
            )
            started = self._clock.now()
            if number == ticket.first_attempt and ticket.cached is not None:
                self._record(
                    outcome,
                    ticket,
                    call=call,
                    started=started,
                    result=ticket.cached,
                    error=None,
                    number=number,
                    cached=True,
                )
                if not outcome.check.ok:
                    raise _Retry  # a stale cached answer: ask the tool itself
                return
            try:
                with recording() as uses:
                    try:
                        result = await tool.invoke(call, ticket.grant)
                    finally:
                        outcome.credentials.extend(uses)
            except AdapterError as exc:
                self._record(
                    outcome,
                    ticket,
                    call=call,
                    started=started,
                    result=None,
                    error=exc,
                    number=number,
                )
                if _worth_retrying(exc, spec):
                    raise _Retry from exc
                return
            self._record(
                outcome,
                ticket,
                call=call,
                started=started,
                result=result,
                error=None,
                number=number,
            )
            if not outcome.check.ok and ticket.idempotent:
                raise _Retry  # a non-idempotent call that was answered is never sent again

        try:
            await attempt()  # the common case: one attempt, no retry machinery built
            return outcome
        except _Retry:
            if attempts < 2:
                return outcome
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(multiplier=self._initial, max=self._max),
            retry=retry_if_exception_type(_Retry),
            sleep=self._sleep,
            reraise=False,
        )
        # On RetryError the outcome already holds the last attempt's failure.
        with contextlib.suppress(RetryError):
            async for retry in retrying:
                with retry:
                    if retry.retry_state.attempt_number == 1:
                        raise _Retry  # the first attempt, made above: tenacity waits from it
                    await attempt()
        return outcome

    async def _preview(self, tool: Any, ticket: Ticket, outcome: Outcome) -> None:
        """One dry run, never retried: its answer (or why it failed) goes on the approval card."""
        tool_name, _, action = ticket.tool_action.partition(".")
        call = ToolCall(
            tool=tool_name,
            action=action,
            args=dict(ticket.args),
            idempotency_key=idempotency_key(ticket.step_id),
            correlation_id=ticket.correlation_id,
            context=ticket.context,
        )
        started = self._clock.now()
        preview = getattr(tool, "preview", None)
        try:
            if preview is None:
                raise UnknownAction(f"{ticket.tool_action} offers no dry run")
            result = await preview(call, ticket.grant)
        except AdapterError as exc:
            self._record(
                outcome, ticket, call=call, started=started, result=None, error=exc, number=1
            )
            return
        ticket = replace(ticket, expect=None)  # a dry run is not judged by the step's expect
        self._record(
            outcome, ticket, call=call, started=started, result=result, error=None, number=1
        )

    def _record(
        self,
        outcome: Outcome,
        ticket: Ticket,
        *,
        number: int,
        call: ToolCall,
        started: datetime,
        result: ToolResult | None,
        error: AdapterError | None,
        cached: bool = False,
    ) -> None:
        ended = self._clock.now()
        if not cached:
            outcome.issued.extend(result.credentials if result is not None else ())
            outcome.issued.extend(error.credentials if error is not None else ())
        response: dict[str, Any]
        if result is not None:
            check = check_expect(ticket.expect, result.model_dump(mode="json"))
            result = result if cached else result.redacted()  # cached: redacted before
            outcome.result = result
            outcome.error_code = None
            outcome.error = None
            outcome.check = Check(ok=check.ok, reason=redact_text(check.reason))
            response = {"result": result.model_dump(mode="json")}
        else:
            assert error is not None
            message = redact_text(error.message)
            outcome.error_code = error.code
            outcome.error = message
            outcome.check = Check(ok=False, reason=message)
            response = {
                "error": {"code": error.code, "message": message, "retryable": error.retryable}
            }
        outcome.attempts.append(
            Attempt(
                number=number,
                idempotency_key=call.idempotency_key,
                started_at=started,
                ended_at=ended,
                ok=result is not None and outcome.check.ok,
                summary=(("cache hit: " if cached else "") + result.summary)
                if result is not None
                else outcome.error or "",
                error_code=error.code if error else None,
                cost_usd=result.cost_usd if result is not None and not cached else 0.0,
                tokens=result.tokens if result is not None and not cached else 0,
                cached=cached,
                response=response,
            )
        )
