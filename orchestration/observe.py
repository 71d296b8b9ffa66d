"""A probe's observation: did the service look healthy, and does that end the plan?

A runbook step may carry ``healthy`` (what a healthy answer looks like, with the keys of
``expect``) and ``end_if`` (``healthy`` or ``unhealthy``). Unlike ``expect``, ``healthy`` never
fails the step: the call worked whatever it answered, and the answer is *observed* as healthy
or unhealthy. When the observation is the one ``end_if`` names, the plan ends there, succeeded
with nothing left to do, instead of going on to (say) restart a healthy service.

The planner writes the step's ``observe`` record (``{"healthy": ..., "end_if": ...}``); these
pure functions judge the answer into it: the step flow calls :func:`judge` when a step
finished and :func:`plan_ending` to learn whether the plan stops.
"""

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

from orchestration.auditor import check_expect
from orchestration.executor import Outcome
from orchestration.models import Step
from orchestration.rows import StepRow

NOTHING_TO_DO: Final = "nothing_to_do"  # the plan_finished code of a plan a probe ended


class Seen(StrEnum):
    """What a probe's answer says about the service."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


def judge(step: Step | StepRow, outcome: Outcome) -> Seen | None:
    """Record on ``step`` what its answer says (``seen``, ``why``, and the answer's status or
    exit code); None when the step observes nothing or did not get an answer."""
    observe = step.observe
    if not observe or not outcome.succeeded or outcome.result is None:
        return None
    result = outcome.result.model_dump(mode="json")
    check = check_expect(observe.get("healthy"), result)
    seen = Seen.HEALTHY if check.ok else Seen.UNHEALTHY
    output = result.get("output") or {}
    step.observe = {
        **observe,
        "seen": seen.value,
        "why": check.reason,
        "status": result.get("status"),
        "exit_code": output.get("exit_code") if isinstance(output, Mapping) else None,
    }
    return seen


def plan_ending(step: Step | StepRow) -> str | None:
    """Why the plan ends after ``step`` (plain words), or None when it goes on."""
    observe = step.observe or {}
    seen = observe.get("seen")
    if seen is None or observe.get("end_if") != seen:
        return None
    answer = _answer(observe)
    if seen == Seen.HEALTHY:
        return (
            f"The service is healthy ('{step.title}' {answer}), so there is nothing to do; "
            "the remaining steps were not run."
        )
    return (
        f"'{step.title}' {answer}: unhealthy, which this runbook ends on; the remaining steps "
        "were not run."
    )


def _answer(observe: Mapping[str, Any]) -> str:
    code = observe.get("exit_code")
    if isinstance(code, int):
        return f"exited {code}"
    status = observe.get("status")
    return f"answered {status}" if status is not None else "answered"
