"""The replay adapter: every tool call answered from the recording, or failed as forced.

A call is named by its step's key and attempt number (the sandbox's step ids are the
recorded ones for runbook steps; a compensation gets a new id but keeps its key
``undo-KEY``). The grant is checked as a real adapter checks it. An answer the recording does
not hold is a ``replay_missing`` failure (not retryable), and the call is listed in
:attr:`Answers.missing`.
"""

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from adapters import (
    AdapterError,
    Grant,
    GrantSigner,
    Tool,
    ToolCall,
    ToolFailed,
    ToolResult,
    ToolSpec,
    ToolTimeout,
)
from common import Clock
from orchestration.executor import idempotency_key
from orchestration.replay.failat import FailAt, FailKind
from orchestration.replay.recording import Recording

MISSING = "replay_missing"
KeyOf = Callable[[str], Awaitable[str | None]]  # sandbox step id -> step key


class RecordingMissing(AdapterError):
    """The recording holds no response for this call."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)
        self.code = MISSING


class RecordedError(AdapterError):
    """The error a recorded call raised, raised again."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message, retryable=retryable)
        self.code = code


@dataclass
class Answers:
    """What the replay answers, and what it could not."""

    recording: Recording
    key_of: KeyOf
    fail_at: FailAt | None = None
    live_readonly: bool = False
    missing: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # "key#attempt: recorded|forced|live"
    _attempts: Counter[str] = field(default_factory=Counter)

    async def answer(
        self, call: ToolCall, spec: ToolSpec, live: Tool | None, grant: Grant | None
    ) -> ToolResult:
        """The answer to ``call`` (or the error it raises)."""
        step_id = call.idempotency_key.removeprefix(idempotency_key(""))
        key = await self.key_of(step_id) or step_id
        self._attempts[key] += 1
        attempt = self._attempts[key]
        name = f"{key}#{attempt} ({call.tool_action})"
        if self.fail_at is not None and self.fail_at.step == key:
            self.answered.append(f"{name}: forced {self.fail_at}")
            return self._forced(call, spec, key, attempt)
        action = spec.action(call.action)
        if self.live_readonly and action.read_only and live is not None:
            self.answered.append(f"{name}: live")
            return await live.invoke(call, grant)
        response = self.recording.responses.get((key, attempt))
        if response is None:
            self.missing.append(name)
            self.answered.append(f"{name}: missing")
            raise RecordingMissing(
                f"the recording holds no response for {call.tool_action} of step {key!r}, "
                f"attempt {attempt}"
            )
        self.answered.append(f"{name}: recorded")
        error = response.get("error")
        if isinstance(error, dict):
            raise RecordedError(
                str(error.get("code") or "tool_failed"),
                str(error.get("message") or "recorded failure"),
                retryable=bool(error.get("retryable")),
            )
        return ToolResult.model_validate(response["result"])

    def _forced(self, call: ToolCall, spec: ToolSpec, key: str, attempt: int) -> ToolResult:
        assert self.fail_at is not None
        why = f"forced by replay --fail-at {self.fail_at}"
        if self.fail_at.kind is FailKind.ERROR:
            raise ToolFailed(f"{call.tool_action} failed ({why})")
        if self.fail_at.kind is FailKind.TIMEOUT:
            raise ToolTimeout(f"{call.tool_action} got no answer in time ({why})")
        status = self.fail_at.status
        base = self._any_result(key, attempt)
        if base is None:
            return ToolResult(
                ok=True,
                status=status,
                output={"status": status, "body": "", "forced": True},
                summary=f"{call.tool_action} -> {status} ({why})",
                duration_ms=0.0,
                cost_usd=spec.cost_per_call_usd,
            )
        output = {**base.output, "status": status, "body": "", "json": None, "forced": True}
        return base.model_copy(
            update={
                "status": status,
                "output": output,
                "summary": f"{call.tool_action} -> {status} ({why})",
            }
        )

    def _any_result(self, key: str, attempt: int) -> ToolResult | None:
        """The recorded result of this attempt, else of any attempt of the step."""
        found = self.recording.responses.get((key, attempt))
        if found is None or "result" not in found:
            found = next(
                (r for (k, _), r in self.recording.responses.items() if k == key and "result" in r),
                None,
            )
        return None if found is None else ToolResult.model_validate(found["result"])


class ReplayTool:
    """Stands in for one tool in the sandbox: same spec, answers from :class:`Answers`."""

    def __init__(
        self,
        spec: ToolSpec,
        *,
        answers: Answers,
        signer: GrantSigner,
        clock: Clock,
        live: Tool | None = None,
    ) -> None:
        self._spec = spec
        self._answers = answers
        self._signer = signer
        self._clock = clock
        self._live = live

    @property
    def spec(self) -> ToolSpec:
        """The replaced tool's spec."""
        return self._spec

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Check the grant as the real adapter does, then answer from the recording."""
        self._signer.verify(grant, call, now=self._clock.now())
        return await self._answers.answer(call, self._spec, self._live, grant)

    async def aclose(self) -> None:
        """Nothing to release: the live tool belongs to whoever built it."""

    def __repr__(self) -> str:
        return f"ReplayTool({self._spec.name!r})"
