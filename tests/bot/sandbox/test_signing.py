"""Signed bodies are accepted by slack_sdk's verifier and parse like Slack's."""

import json
import time
from urllib.parse import parse_qs

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.sandbox.signing import (
    block_actions_body,
    button_click_body,
    event_body,
    sign,
    slash_command_body,
    url_verification_body,
    view_submission_body,
)

SECRET = "sandbox-signing-secret"


def form(body: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


BODIES = [
    slash_command_body(
        command="/incident", text="checkout-api is down", user_id="U1", channel_id="C1"
    ),
    block_actions_body(
        user_id="U1", channel_id="C1", action_id="approve_step", value="n1", message_ts="1.000100"
    ),
    view_submission_body(user_id="U1", view={"id": "V1", "callback_id": "cb"}, values={}),
    event_body(event={"type": "app_mention", "text": "hi"}, event_id="Ev1"),
    url_verification_body("challenge-token"),
]


@pytest.mark.parametrize("body", BODIES)
def test_signature_verifies(body: str) -> None:
    headers = sign(body, secret=SECRET)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )
    assert not SignatureVerifier("other").is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )


def test_old_timestamp_is_rejected_by_verifier() -> None:
    body = BODIES[0]
    headers = sign(body, secret=SECRET, timestamp=int(time.time()) - 600)
    assert not SignatureVerifier(SECRET).is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )


def test_content_types() -> None:
    assert sign(BODIES[0], secret=SECRET)["Content-Type"] == "application/x-www-form-urlencoded"
    assert sign(BODIES[3], secret=SECRET)["Content-Type"] == "application/json"


def test_slash_command_fields() -> None:
    fields = form(BODIES[0])
    assert fields["command"] == "/incident"
    assert fields["text"] == "checkout-api is down"
    assert {"team_id", "user_id", "channel_id", "response_url", "trigger_id", "api_app_id"} <= set(
        fields
    )


def test_block_actions_payload_shape() -> None:
    payload = json.loads(form(BODIES[1])["payload"])
    assert payload["type"] == "block_actions"
    assert set(payload["user"]) == {"id", "username", "name", "team_id"}
    assert payload["container"] == {
        "type": "message",
        "message_ts": "1.000100",
        "channel_id": "C1",
        "is_ephemeral": False,
    }
    action = payload["actions"][0]
    assert (action["action_id"], action["value"], action["type"]) == (
        "approve_step",
        "n1",
        "button",
    )
    assert {"block_id", "action_ts"} <= set(action)
    assert payload["channel"]["id"] == "C1"
    assert payload["message"]["ts"] == "1.000100"


def test_button_click_uses_the_stored_message() -> None:
    message = {
        "ts": "1.000200",
        "blocks": [
            {
                "type": "actions",
                "block_id": "b1",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "reject_step",
                        "text": {"type": "plain_text", "text": "Reject"},
                        "value": "n2",
                    }
                ],
            }
        ],
    }
    body = button_click_body(
        message=message, channel_id="C1", action_id="reject_step", user_id="U2"
    )
    action = json.loads(form(body)["payload"])["actions"][0]
    assert (action["block_id"], action["value"]) == ("b1", "n2")
    with pytest.raises(LookupError):
        button_click_body(message=message, channel_id="C1", action_id="nope", user_id="U2")


def test_event_and_url_verification_shapes() -> None:
    event = json.loads(BODIES[3])
    assert (event["type"], event["event_id"], event["team_id"]) == (
        "event_callback",
        "Ev1",
        "T0001",
    )
    assert json.loads(BODIES[4]) == {
        "token": json.loads(BODIES[4])["token"],
        "challenge": "challenge-token",
        "type": "url_verification",
    }
