"""Telemetry: secrets are redacted at any depth, long text is cut, logs are JSON without secrets."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from sqlmodel import Session
from structlog.testing import capture_logs

from common import Role
from orchestration.records import Ctx, audit
from orchestration.telemetry import (
    MAX_TEXT,
    REDACTED,
    bind_context,
    configure_logging,
    get_logger,
    redact_text,
    sanitise,
)

SLACK_BOT = "xoxb-1234567890-abcdefGHIJ"
GITHUB = "ghp_" + "A1b2C3d4E5" * 4
AWS = "AKIAIOSFODNN7EXAMPLE"
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig"


@pytest.fixture
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "slack_bot_token",
        "password",
        "DB_PASSWD",
        "authorization",
        "Authorization",
        "api_key",
        "x-api-key",
        "apikey",
        "client_secret",
        "cookie",
        "credentials",
        "signature",
    ],
)
def test_secret_keys_are_redacted(key: str) -> None:
    assert sanitise({key: "hunter2", "service": "api"}) == {key: REDACTED, "service": "api"}


@pytest.mark.parametrize(
    "secret", [SLACK_BOT, "xapp-1-A0123-abcdef", GITHUB, AWS, BEARER, "sk-" + "x" * 24]
)
def test_token_shaped_values_are_redacted_inside_text(secret: str) -> None:
    assert sanitise({"note": f"used {secret} today"}) == {"note": f"used {REDACTED} today"}
    assert secret not in redact_text(f"header={secret}")


def test_redaction_reaches_any_depth_through_lists_and_tuples() -> None:
    value = {
        "request": {
            "headers": [{"Authorization": BEARER}, ("x", f"token {SLACK_BOT}")],
            "body": {"deep": {"password": "p", "list": [GITHUB]}},
        }
    }
    assert sanitise(value) == {
        "request": {
            "headers": [{"Authorization": REDACTED}, ["x", f"token {REDACTED}"]],
            "body": {"deep": {"password": REDACTED, "list": [REDACTED]}},
        }
    }


def test_whole_subtree_under_a_secret_key_is_redacted() -> None:
    assert sanitise({"credentials": {"user": "u", "pass": "p"}}) == {"credentials": REDACTED}


def test_counts_under_secret_looking_keys_are_kept() -> None:
    # budget fields such as spent_tokens must stay readable in the audit trail
    assert sanitise({"spent_tokens": 120, "budget_tokens": 2000, "token": None}) == {
        "spent_tokens": 120,
        "budget_tokens": 2000,
        "token": None,
    }


def test_ordinary_values_pass_through_json_safe() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    value = {"n": 3, "ok": True, "f": 1.5, "none": None, "set": {"a"}, "when": when, 7: "int key"}
    assert sanitise(value) == {
        "n": 3,
        "ok": True,
        "f": 1.5,
        "none": None,
        "set": ["a"],
        "when": str(when),
        "7": "int key",
    }


def test_long_strings_are_truncated_with_a_marker() -> None:
    out = sanitise({"body": "y" * (MAX_TEXT + 10)})["body"]
    assert out == "y" * MAX_TEXT + "…[truncated]"
    assert sanitise("y" * MAX_TEXT) == "y" * MAX_TEXT
    assert sanitise("abcdef", max_text=3) == "abc…[truncated]"


def test_very_deep_values_are_cut_off() -> None:
    value: Any = "leaf"
    for _ in range(20):
        value = {"d": value}
    flat = json.dumps(sanitise(value))
    assert "[too deep]" in flat
    assert "leaf" not in flat


@pytest.mark.usefixtures("_reset_structlog")
def test_json_logs_carry_context_and_never_the_secret(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True)
    bind_context(correlation_id="corr-1", plan_id="plan-1", step_id=None)
    get_logger("test").info(
        "tool_called",
        api_key="sk-" + "z" * 30,
        headers={"Authorization": BEARER},
        note=f"posted with {SLACK_BOT}",
    )
    err = capsys.readouterr().err
    for secret in ("sk-" + "z" * 30, BEARER, SLACK_BOT, "eyJhbGciOiJIUzI1NiJ9"):
        assert secret not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["event"] == "tool_called"
    assert line["level"] == "info"
    assert line["correlation_id"] == "corr-1"
    assert line["plan_id"] == "plan-1"
    assert "step_id" not in line
    assert line["api_key"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED}
    assert line["note"] == f"posted with {REDACTED}"


@pytest.mark.usefixtures("_reset_structlog")
def test_console_logs_also_redact(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=False)
    get_logger("test").warning("approval_granted", token=SLACK_BOT, actor="U1")
    err = capsys.readouterr().err
    assert "approval_granted" in err
    assert SLACK_BOT not in err
    assert REDACTED in err


def test_audit_event_logs_one_line_with_its_detail_sanitised() -> None:
    ctx = Ctx(
        correlation_id="corr-9",
        now=datetime(2026, 1, 1, tzinfo=UTC),
        actor="U1",
        role=Role.HUMAN,
        plan_id="p1",
    )
    with Session() as session, capture_logs() as logs:
        audit(
            session,
            ctx,
            "approval_granted",
            step_id="s1",
            detail={"token": SLACK_BOT, "reason": f"ok {GITHUB}", "votes": 2},
        )
    assert len(logs) == 1
    entry = logs[0]
    assert entry["event"] == "approval_granted"
    assert entry["log_level"] == "info"
    assert (entry["actor"], entry["role"], entry["plan_id"], entry["step_id"]) == (
        "U1",
        "human",
        "p1",
        "s1",
    )
    assert entry["token"] == REDACTED
    assert entry["reason"] == f"ok {REDACTED}"
    assert entry["votes"] == 2
