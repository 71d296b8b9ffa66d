"""The policy vocabulary: context, decision invariants and errors."""

import pydantic
import pytest

from common import Risk
from policies import Code, Decision, PackError, PolicyError, Verdict
from tests.policies.factories import context


def test_tool_action_joins_tool_and_action() -> None:
    """Rules match globs against ``tool.action``."""
    assert context(tool="sql", action="query").tool_action == "sql.query"


def test_context_is_frozen_and_rejects_unknown_fields() -> None:
    """A context cannot be changed after the fact, nor carry fields policies do not know."""
    ctx = context()
    with pytest.raises(pydantic.ValidationError):
        ctx.risk = Risk.HIGH  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        context(grant="secret")


def test_context_rejects_negative_denials() -> None:
    """``denials_in_plan`` counts refusals; it is never negative."""
    with pytest.raises(pydantic.ValidationError):
        context(denials_in_plan=-1)


def _decision(**overrides: object) -> Decision:
    fields: dict[str, object] = {
        "verdict": Verdict.ALLOW,
        "code": "low_risk_auto",
        "reason": "ok",
        "risk": Risk.LOW,
        "quorum": 0,
        "exclude_requester": False,
        "rule_id": "approval:low",
    }
    fields.update(overrides)
    return Decision.model_validate(fields)


def test_decision_needs_a_quorum_exactly_when_approval_is_required() -> None:
    """An allow/deny carries no quorum; require_approval always carries one."""
    assert _decision().quorum == 0
    with pytest.raises(pydantic.ValidationError):
        _decision(quorum=1)
    with pytest.raises(pydantic.ValidationError):
        _decision(verdict=Verdict.REQUIRE_APPROVAL, quorum=0)
    with pytest.raises(pydantic.ValidationError):
        _decision(exclude_requester=True)


def test_decision_code_is_snake_case() -> None:
    """Codes are stable identifiers, not sentences."""
    with pytest.raises(pydantic.ValidationError):
        _decision(code="Low Risk")


def test_verdict_and_code_values_are_stable() -> None:
    """Other packages and audit records store these strings."""
    assert [v.value for v in Verdict] == ["allow", "require_approval", "deny"]
    assert Code.SHADOW_MODE.value == "shadow_mode"
    assert Code.CRITICAL_NEVER_RUNS.value == "critical_never_runs"


def test_pack_error_names_file_line_and_location() -> None:
    """``str(error)`` reads like a compiler error: file:line: key: what to change."""
    error = PackError("invalid regex - fix the pattern", path="p.yaml", line=14, location="deny[2]")
    assert isinstance(error, PolicyError)
    assert error.code == "invalid_pack"
    assert (error.path, error.line) == ("p.yaml", 14)
    assert str(error) == "p.yaml:14: deny[2]: invalid regex - fix the pattern"
    assert error.message == "deny[2]: invalid regex - fix the pattern"


def test_pack_error_without_a_line() -> None:
    """When the line is unknown the error still names the file."""
    assert str(PackError("cannot read", path="p.yaml")) == "p.yaml: cannot read"
