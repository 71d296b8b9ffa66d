"""The last exits to Slack are redacted, and the composition root registers every secret."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.main import build_control
from bot.redaction import RedactingAck, RedactingWebClient
from bot.sandbox.webapi import DEFAULT_TOKEN, FakeSlack
from common.redaction import REDACTED, forget_secrets, redact_text
from orchestration.config import OpsgateConfig

GITHUB = "ghp_" + "Z9y8X7w6V5" * 4


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


async def test_the_web_client_redacts_every_call_and_still_authenticates() -> None:
    slack = FakeSlack()
    url = await slack.start()
    channel = slack.add_channel("ops")
    client = RedactingWebClient(token=DEFAULT_TOKEN, base_url=url)
    try:
        response = await client.chat_postMessage(
            channel=channel,
            text=f"deploy used {GITHUB}",
            blocks=[
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": "password=hunter22 in the log"},
                    "accessory": {
                        "type": "button",
                        "action_id": "approve_step",
                        "value": "nonce-AbC_123-xyz",
                        "text": {"type": "plain_text", "text": "Approve"},
                    },
                }
            ],
        )
    finally:
        await slack.stop()
        if client.session is not None:
            await client.session.close()
    assert response["ok"]  # the token that authenticates the call was left alone
    (sent,) = slack.calls_to("chat.postMessage")
    flat = json.dumps(sent)
    assert GITHUB not in flat
    assert "hunter22" not in flat
    assert "nonce-AbC_123-xyz" in flat  # button values (nonces) are not credentials
    assert REDACTED in flat


async def test_acks_are_redacted() -> None:
    ack = RedactingAck()  # type: ignore[no-untyped-call]
    response = await ack(
        text=f"Opened: checkout is down {GITHUB}",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "token=abcdef12"}}],
    )
    assert GITHUB not in response.body
    assert "abcdef12" not in response.body
    assert "Opened: checkout is down" in response.body


def test_the_composition_root_registers_the_environment_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-9-rootregistered")
    monkeypatch.setenv("OPSGATE_ALERT_TOKEN", "alert-token-77")
    monkeypatch.setenv("OPSGATE_SECRET_API", "api-secret-88")
    config = OpsgateConfig.model_validate({"runbooks": str(tmp_path)})
    # Built, not started: nothing connects to this database.
    build_control(config, database_url="postgresql://ops:db-pass-99@127.0.0.1:1/opsgate")
    for value in ("xoxb-9-rootregistered", "alert-token-77", "api-secret-88", "db-pass-99"):
        assert redact_text(f"x {value} y") == f"x {REDACTED} y"
