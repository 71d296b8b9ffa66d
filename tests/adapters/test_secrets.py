"""``${secret:NAME}``: looked up in the environment or the secrets folder, resolved only inside
the innermost guard, redacted from what the tool answers or raises."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import ErrorCode, GrantSigner, ToolCall, ToolFailed, ToolResult, guarded
from adapters.errors import SecretMissing
from adapters.guards import SecretGuard
from adapters.secrets import (
    SecretSource,
    env_name,
    environment_secrets,
    register_environment_secrets,
    register_url_password,
)
from adapters.testing import FakeTool, InMemoryBreakerStore
from common import FakeClock
from common.redaction import REDACTED, forget_secrets, redact_text
from tests.adapters.conftest import grant_for, make_call

API = "api-value-7f3Q9zK"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def test_env_name_is_upper_cased_with_underscores() -> None:
    assert env_name("api-token.v2") == "OPSGATE_SECRET_API_TOKEN_V2"


def test_the_environment_wins_over_the_folder_and_a_trailing_newline_is_dropped(
    tmp_path: Path,
) -> None:
    (tmp_path / "API").write_text("from-file-1234\n", encoding="utf-8")
    (tmp_path / "ONLY_FILE").write_text("file-only-5678\n\n", encoding="utf-8")
    env = {"OPSGATE_SECRET_API": "from-env-1234", "OPSGATE_SECRETS_DIR": str(tmp_path)}
    source = SecretSource(env)
    assert source.lookup("API") == "from-env-1234"
    assert source.lookup("ONLY_FILE") == "file-only-5678\n"
    assert source.lookup("MISSING") is None
    assert source.lookup("../API") is None  # a name never walks out of the folder


def test_a_missing_secret_fails_with_where_to_set_it_and_no_value() -> None:
    source = SecretSource({"OPSGATE_SECRET_OTHER": "other-value-123"})
    with pytest.raises(SecretMissing) as info:
        source.resolve({"headers": {"Authorization": "Bearer ${secret:API}"}})
    assert info.value.code == ErrorCode.SECRET_MISSING
    assert "OPSGATE_SECRET_API" in info.value.message
    assert "OPSGATE_SECRETS_DIR" in info.value.message
    assert "other-value-123" not in info.value.message


def echo(call: ToolCall) -> ToolResult:
    """A tool that answers with what it was sent."""
    return ToolResult(
        ok=True,
        status=200,
        output={"sent": call.args, "log": f"auth={call.args['headers']['Authorization']}"},
        summary=f"sent {call.args['url']}",
        duration_ms=1.0,
        cost_usd=0.0,
        tokens=12,
    )


async def test_the_guard_resolves_at_call_time_and_redacts_the_answer(
    signer: GrantSigner, clock: FakeClock
) -> None:
    fake = FakeTool(responses=echo)
    tool = guarded(
        fake,
        signer=signer,
        clock=clock,
        breakers=InMemoryBreakerStore(clock),
        secrets=SecretSource({"OPSGATE_SECRET_API": API}),
    )
    call = make_call(
        "fake.read",
        url="https://x.example/?key=${secret:API}",
        headers={"Authorization": "Bearer ${secret:API}"},
    )
    # The grant binds the reference: the outer guards never see the value.
    result = await tool.invoke(call, grant_for(call, signer, clock))
    (sent,) = fake.calls
    assert sent.args["headers"]["Authorization"] == f"Bearer {API}"
    assert sent.args["url"] == f"https://x.example/?key={API}"
    assert call.args["headers"]["Authorization"] == "Bearer ${secret:API}"  # not mutated
    assert API not in str(result.model_dump())
    assert REDACTED in result.summary
    assert result.tokens == 12
    assert redact_text(f"later: {API}") == f"later: {REDACTED}"  # it joined the redaction set


async def test_an_error_carrying_the_value_is_redacted(clock: FakeClock) -> None:
    def fail(call: ToolCall) -> ToolResult:
        raise ToolFailed(f"GET {call.args['url']} failed: connection reset")

    guard = SecretGuard(FakeTool(responses=fail), source=SecretSource({"OPSGATE_SECRET_API": API}))
    with pytest.raises(ToolFailed) as info:
        await guard.invoke(make_call("fake.read", url="https://x/?k=${secret:API}"), None)
    assert API not in str(info.value)
    assert API not in info.value.message
    assert info.value.retryable


async def test_calls_without_references_pass_untouched() -> None:
    fake = FakeTool()
    guard = SecretGuard(fake, source=SecretSource({}))
    call = make_call("fake.read", note="token=abc")
    result = await guard.invoke(call, None)
    assert fake.calls == [call]
    assert result.ok


def test_environment_secrets_cover_every_secret_opsgate_knows(tmp_path: Path) -> None:
    (tmp_path / "WEBHOOK").write_text("hook-value-123\n", encoding="utf-8")
    (tmp_path / ".hidden").write_text("not-a-secret-1", encoding="utf-8")
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1-abcdef",
        "SLACK_SIGNING_SECRET": "signing-1234",
        "SLACK_APP_TOKEN": "xapp-1-abcdef",
        "OPSGATE_ALERT_TOKEN": "alert-1234",
        "OPSGATE_GRANT_KEY": "00112233445566778899",
        "OPSGATE_LLM_API_KEY": "sk-abcdefgh",
        "OPSGATE_SECRET_SHORT": "s3cr",
        "OPSGATE_DATABASE_URL": "postgresql://ops:db%40pass1@db/ops",
        "GITHUB_TOKEN": "short",  # credential-named, but too short to be one
        "OPSGATE_SECRETS_DIR": str(tmp_path),
        "HOME": "/root",
    }
    values = set(environment_secrets(env))
    assert {
        "xoxb-1-abcdef",
        "signing-1234",
        "xapp-1-abcdef",
        "alert-1234",
        "00112233445566778899",
        "sk-abcdefgh",
        "s3cr",
        "db@pass1",
        "hook-value-123",
    } <= values
    assert "short" not in values
    assert "/root" not in values
    assert "not-a-secret-1" not in values
    assert register_environment_secrets(env) >= 9
    assert redact_text("pw db@pass1, hook hook-value-123") == f"pw {REDACTED}, hook {REDACTED}"


def test_a_database_url_password_is_registered() -> None:
    assert register_url_password("postgresql+psycopg://ops:pg-pass-42@db:5432/ops")
    assert not register_url_password("sqlite:///x.db")
    assert redact_text("pg-pass-42") == REDACTED
