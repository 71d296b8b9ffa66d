"""The Auditor's pure checks: results against ``expect``, spend against budgets.

The Auditor reads everything and decides nothing irreversible by itself: it reports whether
a result meets its expectation and whether a plan may spend more; the control plane acts.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Check:
    """Outcome of one check, with a plain-words reason when it fails."""

    ok: bool
    reason: str = ""


def _subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and _subset(value, actual[key]) for key, value in expected.items()
        )
    return bool(expected == actual)


def _status(wanted: Any, result: Mapping[str, Any], output: Mapping[str, Any]) -> str | None:
    allowed = wanted if isinstance(wanted, list) else [wanted]
    status = result.get("status", output.get("status"))
    return None if status in allowed else f"expected status {_fmt(allowed)}, got {status}"


def _ok(wanted: Any, result: Mapping[str, Any], _output: Mapping[str, Any]) -> str | None:
    ok = bool(result.get("ok"))
    return None if ok == bool(wanted) else f"expected ok={bool(wanted)}, got ok={ok}"


def _exit_code(wanted: Any, _result: Mapping[str, Any], output: Mapping[str, Any]) -> str | None:
    code = output.get("exit_code")
    return None if code == wanted else f"expected exit code {wanted}, got {code}"


def _body(wanted: Any, _result: Mapping[str, Any], output: Mapping[str, Any]) -> str | None:
    body = str(output.get("body") or output.get("stdout") or "")
    return None if str(wanted) in body else f"expected the body to contain {wanted!r}"


def _json(wanted: Any, _result: Mapping[str, Any], output: Mapping[str, Any]) -> str | None:
    ok = _subset(wanted, output.get("json"))
    return None if ok else f"expected the JSON body to contain {wanted!r}"


_CHECKS = {
    "status": _status,
    "ok": _ok,
    "exit_code": _exit_code,
    "body_contains": _body,
    "json": _json,
}
EXPECT_KEYS = frozenset(_CHECKS)


def check_expect(expect: Mapping[str, Any] | None, result: Mapping[str, Any]) -> Check:
    """Compare a tool result (``ToolResult`` as a dict) with a step's ``expect``.

    Keys: ``status`` (int or list of ints), ``ok`` (bool), ``exit_code`` (int),
    ``body_contains`` (text), ``json`` (a subset the JSON body must contain).
    """
    output = result.get("output") or {}
    for key, wanted in (expect or {}).items():
        failure = _CHECKS[key](wanted, result, output)
        if failure is not None:
            return Check(ok=False, reason=failure)
    return Check(ok=True)


def _fmt(values: list[Any]) -> str:
    return str(values[0]) if len(values) == 1 else " or ".join(str(v) for v in values)


# Money adds up in floats (3 x 0.0001 is 0.00030000000000000003): compare with a tolerance far
# below any price opsgate records.
EPSILON_USD = 1e-9


class BudgetVerdict(StrEnum):
    """What the budget allows next."""

    OK = "ok"
    SOFT = "soft"  # past the soft threshold: ask humans to continue
    HARD = "hard"  # the next step would break the hard limit: stop


@dataclass(frozen=True)
class BudgetCheck:
    """A budget verdict with the figures behind it."""

    verdict: BudgetVerdict
    reason: str = ""


def check_budget(
    *,
    spent_usd: float,
    spent_tokens: int,
    next_usd: float,
    budget_usd: float,
    budget_tokens: int,
    soft_ratio: float,
    soft_acknowledged: bool,
) -> BudgetCheck:
    """Whether a plan that spent ``spent_*`` may run a step forecast at ``next_usd``."""
    if budget_usd > 0 and spent_usd + next_usd > budget_usd + EPSILON_USD:
        return BudgetCheck(
            BudgetVerdict.HARD,
            f"hard budget reached: spent ${spent_usd:.4f} + next step ${next_usd:.4f} "
            f"> budget ${budget_usd:.4f}",
        )
    if budget_tokens > 0 and spent_tokens >= budget_tokens:
        return BudgetCheck(
            BudgetVerdict.HARD, f"token budget reached: {spent_tokens}/{budget_tokens} tokens"
        )
    if soft_acknowledged:
        return BudgetCheck(BudgetVerdict.OK)
    usd_ratio = spent_usd / budget_usd if budget_usd > 0 else 0.0
    token_ratio = spent_tokens / budget_tokens if budget_tokens > 0 else 0.0
    if max(usd_ratio, token_ratio) >= soft_ratio - 1e-9:  # 0.04/0.05 is 0.7999999999999999
        return BudgetCheck(
            BudgetVerdict.SOFT,
            f"{max(usd_ratio, token_ratio):.0%} of the plan budget is spent "
            f"(${spent_usd:.4f} of ${budget_usd:.4f}, {spent_tokens}/{budget_tokens} tokens); "
            "approve to continue",
        )
    return BudgetCheck(BudgetVerdict.OK)
