"""Grants, specs, calls, results and argument validation."""

import dataclasses
from datetime import datetime, timedelta

import pytest
from pydantic import BaseModel, ConfigDict

from adapters import (
    ActionSpec,
    AdapterError,
    ArgsInvalid,
    CircuitOpen,
    ErrorCode,
    GrantError,
    GrantSigner,
    HostNotAllowed,
    RateLimited,
    ToolFailed,
    ToolResult,
    ToolSpec,
    ToolTimeout,
    UnknownAction,
    validate_args,
)
from common import FakeClock, Risk
from tests.adapters.conftest import grant_for, make_call


class RestartArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: str
    force: bool = False


RESTART = ActionSpec(
    name="restart", args_model=RestartArgs, risk=Risk.HIGH, read_only=False, idempotent=False
)


def verify_code(signer: GrantSigner, *args: object, now: datetime) -> str:
    with pytest.raises(GrantError) as info:
        signer.verify(*args, now=now)  # type: ignore[arg-type]
    return info.value.code


def test_valid_grant_verifies(signer: GrantSigner, clock: FakeClock) -> None:
    call = make_call("fake.write", target="db")
    signer.verify(grant_for(call, signer, clock), call, now=clock.now())


def test_missing_grant_is_grant_missing(signer: GrantSigner, clock: FakeClock) -> None:
    assert verify_code(signer, None, make_call(), now=clock.now()) == "grant_missing"


def test_altered_grant_field_is_grant_forged(signer: GrantSigner, clock: FakeClock) -> None:
    call = make_call("fake.write")
    grant = grant_for(call, signer, clock)
    widened = dataclasses.replace(grant, expires_at=grant.expires_at + timedelta(days=1))
    assert verify_code(signer, widened, call, now=clock.now()) == "grant_forged"


def test_grant_signed_with_another_key_is_grant_forged(clock: FakeClock) -> None:
    call = make_call()
    foreign = grant_for(call, GrantSigner(b"another-key-0123456789"), clock)
    assert verify_code(
        GrantSigner(b"test-key-0123456789abcdef"), foreign, call, now=clock.now()
    ) == ("grant_forged")


def test_grant_retargeted_to_another_action_is_forged(
    signer: GrantSigner, clock: FakeClock
) -> None:
    call = make_call("fake.read")
    grant = dataclasses.replace(grant_for(call, signer, clock), action="nuke")
    assert verify_code(signer, grant, make_call("fake.nuke"), now=clock.now()) == "grant_forged"


def test_grant_for_another_action_is_scope_mismatch(signer: GrantSigner, clock: FakeClock) -> None:
    grant = grant_for(make_call("fake.read"), signer, clock)
    assert verify_code(signer, grant, make_call("fake.nuke"), now=clock.now()) == (
        "grant_scope_mismatch"
    )


def test_grant_for_another_tool_is_scope_mismatch(signer: GrantSigner, clock: FakeClock) -> None:
    grant = grant_for(make_call("fake.read"), signer, clock)
    assert verify_code(signer, grant, make_call("other.read"), now=clock.now()) == (
        "grant_scope_mismatch"
    )


def test_changed_args_are_grant_args_changed(signer: GrantSigner, clock: FakeClock) -> None:
    grant = grant_for(make_call("fake.write", target="staging"), signer, clock)
    changed = make_call("fake.write", target="production")
    assert verify_code(signer, grant, changed, now=clock.now()) == "grant_args_changed"


def test_arg_key_order_does_not_change_the_hash(signer: GrantSigner, clock: FakeClock) -> None:
    grant = grant_for(make_call("fake.write", a=1, b=2), signer, clock)
    signer.verify(grant, make_call("fake.write", b=2, a=1), now=clock.now())


def test_grant_expires_exactly_at_expiry(signer: GrantSigner, clock: FakeClock) -> None:
    call = make_call()
    grant = grant_for(call, signer, clock, ttl_s=30)
    clock.advance(29.999)
    signer.verify(grant, call, now=clock.now())
    clock.advance(0.001)
    assert verify_code(signer, grant, call, now=clock.now()) == "grant_expired"


def test_signer_refuses_naive_expiry_and_short_keys(signer: GrantSigner) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        signer.issue(
            grant_id="g", tool="t", action="a", args_hash="h", expires_at=datetime(2026, 1, 1)
        )
    with pytest.raises(ValueError, match="16 bytes"):
        GrantSigner(b"short")


def test_grant_repr_hides_signature(signer: GrantSigner, clock: FakeClock) -> None:
    grant = grant_for(make_call(), signer, clock)
    assert grant.signature not in repr(grant)


def test_grant_error_refuses_non_grant_codes() -> None:
    with pytest.raises(ValueError, match="not a grant error code"):
        GrantError("x", code=ErrorCode.TOOL_FAILED)


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (ArgsInvalid("x"), "args_invalid", False),
        (UnknownAction("x"), "unknown_action", False),
        (HostNotAllowed("x"), "host_not_allowed", False),
        (ToolTimeout("x"), "tool_timeout", True),
        (CircuitOpen("x"), "circuit_open", False),
        (RateLimited("x"), "rate_limited", False),
        (ToolFailed("x"), "tool_failed", True),
        (ToolFailed("x", retryable=False), "tool_failed", False),
        (GrantError("x", code=ErrorCode.GRANT_EXPIRED), "grant_expired", False),
    ],
)
def test_errors_carry_code_message_and_retryable(
    error: AdapterError, code: str, retryable: bool
) -> None:
    assert isinstance(error, AdapterError)
    assert (error.code, error.message, error.retryable) == (code, "x", retryable)
    assert str(error) == f"{code}: x"


def test_validate_args_returns_normalised_args() -> None:
    assert validate_args(RESTART, {"unit": "nginx"}) == {"unit": "nginx", "force": False}


def test_validate_args_explains_problems_in_plain_words_without_values() -> None:
    with pytest.raises(ArgsInvalid) as info:
        validate_args(RESTART, {"force": "maybe", "token": "s3cret"})
    message = info.value.message
    assert "unit: Field required" in message
    assert "force:" in message
    assert "token: Extra inputs are not permitted" in message
    assert "s3cret" not in message
    assert "maybe" not in message


def test_validate_args_refuses_non_mappings() -> None:
    with pytest.raises(ArgsInvalid, match="must be a mapping"):
        validate_args(RESTART, ["nginx"])


def test_tool_spec_refuses_compensation_naming_no_action() -> None:
    bad = dataclasses.replace(RESTART, compensation="unrestart")
    with pytest.raises(ValueError, match="unrestart"):
        ToolSpec(name="svc", actions={"restart": bad})


def test_tool_spec_refuses_dotted_names_and_mismatched_keys() -> None:
    with pytest.raises(ValueError, match=r"no '\.'"):
        ToolSpec(name="a.b", actions={})
    with pytest.raises(ValueError, match="must equal its name"):
        ToolSpec(name="svc", actions={"reboot": RESTART})


def test_tool_spec_action_lists_known_actions_when_unknown() -> None:
    spec = ToolSpec(name="svc", actions={"restart": RESTART})
    with pytest.raises(UnknownAction, match=r"svc\.restart"):
        spec.action("stop")


def test_tool_call_names_its_tool_action() -> None:
    assert make_call("http.get").tool_action == "http.get"


def test_tool_result_round_trips_through_json() -> None:
    result = ToolResult(
        ok=True,
        status=200,
        output={"status": 200, "json": {"a": [1, 2]}},
        summary="GET / -> 200",
        duration_ms=1.5,
        cost_usd=0.001,
    )
    assert ToolResult.model_validate_json(result.model_dump_json()) == result
