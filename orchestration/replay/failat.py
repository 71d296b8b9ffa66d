"""``--fail-at STEP[:error|timeout|status=CODE]``: which step's calls a replay fails, and how."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from orchestration.errors import OrchestrationError

_STATUS = re.compile(r"status=(\d{3})")


class FailKind(StrEnum):
    """How a forced failure looks to the Executor."""

    ERROR = "error"  # the tool raises a transport failure (retryable)
    TIMEOUT = "timeout"  # the tool gives no answer in time (retryable)
    STATUS = "status"  # the tool answers with this status code


@dataclass(frozen=True)
class FailAt:
    """Every call of step ``step`` fails as ``kind`` says (all its attempts: an outage)."""

    step: str
    kind: FailKind = FailKind.ERROR
    status: int | None = None

    @classmethod
    def parse(cls, text: str) -> "FailAt":
        """Parse ``STEP[:error|timeout|status=CODE]``; a clear OrchestrationError otherwise."""
        step, _, how = text.strip().partition(":")
        step = step.strip()
        how = how.strip().lower()
        if not step:
            raise _bad(text, "name a step, e.g. verify:status=503")
        if how in ("", FailKind.ERROR.value):
            return cls(step=step)
        if how == FailKind.TIMEOUT.value:
            return cls(step=step, kind=FailKind.TIMEOUT)
        match = _STATUS.fullmatch(how)
        if match is None:
            raise _bad(text, "the failure is error, timeout or status=CODE (a 3-digit code)")
        code = int(match.group(1))
        if not 100 <= code <= 599:
            raise _bad(text, "a status code is between 100 and 599")
        return cls(step=step, kind=FailKind.STATUS, status=code)

    def check(self, keys: Iterable[str]) -> None:
        """Refuse a step the plan does not have (its compensations ``undo-KEY`` included)."""
        known = list(keys)
        allowed = set(known) | {f"undo-{k}" for k in known}
        if self.step not in allowed:
            raise OrchestrationError(
                f"--fail-at {self.step}: the plan has no step {self.step!r}; its steps are "
                f"{', '.join(known) or 'none'} (and undo-STEP for their compensations)",
                code="bad_request",
            )

    def __str__(self) -> str:
        """The option as it would be typed."""
        if self.kind is FailKind.STATUS:
            return f"{self.step}:status={self.status}"
        return f"{self.step}:{self.kind.value}"


def _bad(text: str, why: str) -> OrchestrationError:
    return OrchestrationError(f"--fail-at {text!r}: {why}", code="bad_request")
