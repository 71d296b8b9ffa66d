"""Build the requests Slack sends to an app, signed the way Slack signs them.

Bodies follow Slack's documented shapes: slash commands are form-encoded fields, interactivity
is a form-encoded `payload=` JSON, Events API deliveries are JSON. `sign()` adds the v0
signature headers (HMAC-SHA256 of `v0:{timestamp}:{body}` keyed by the signing secret).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from bot.sandbox.workspace import APP_ID, BOT_ID, BOT_USER_ID, TEAM_ID, Message

VERIFICATION_TOKEN = "sandbox-verification-token"  # noqa: S105 - deprecated field Slack still sends
TEAM_DOMAIN = "sandbox"
_serial = itertools.count(1)


def new_trigger_id() -> str:
    """Return a fresh trigger id in Slack's `digits.digits.hex` shape."""
    n = next(_serial)
    digest = hashlib.sha256(f"trigger-{n}-{time.time_ns()}".encode()).hexdigest()[:32]
    return f"{1_000_000_000_000 + n}.{TEAM_ID[1:]}{n}.{digest}"


def _response_url(kind: str) -> str:
    return f"https://hooks.slack.com/{kind}/{TEAM_ID}/{next(_serial)}/sandbox"


def _user(user_id: str, user_name: str | None, team_id: str) -> dict[str, str]:
    name = user_name or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def sign(body: str, *, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Return the headers Slack sends with `body`: signature, timestamp and Content-Type."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    is_json = body.lstrip().startswith("{")
    return {
        "Content-Type": "application/json" if is_json else "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": f"v0={digest}",
    }


def retry_headers(retry_num: int, reason: str = "http_timeout") -> dict[str, str]:
    """Return the headers Slack adds when it redelivers an event."""
    return {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": reason}


def slash_command_body(
    *,
    command: str,
    text: str,
    user_id: str,
    channel_id: str,
    team_id: str = TEAM_ID,
    trigger_id: str | None = None,
    response_url: str | None = None,
    user_name: str | None = None,
    channel_name: str = "incidents",
) -> str:
    """Return a slash command request body, fields in the order Slack sends them."""
    fields = [
        ("token", VERIFICATION_TOKEN),
        ("team_id", team_id),
        ("team_domain", TEAM_DOMAIN),
        ("channel_id", channel_id),
        ("channel_name", channel_name),
        ("user_id", user_id),
        ("user_name", user_name or user_id.lower()),
        ("command", command),
        ("text", text),
        ("api_app_id", APP_ID),
        ("is_enterprise_install", "false"),
        ("response_url", response_url or _response_url("commands")),
        ("trigger_id", trigger_id or new_trigger_id()),
    ]
    return urlencode(fields)


def block_actions_body(
    *,
    user_id: str,
    channel_id: str,
    action_id: str,
    value: str,
    message_ts: str,
    block_id: str = "actions",
    trigger_id: str | None = None,
    message: dict[str, Any] | None = None,
    button_text: str = "Button",
    is_ephemeral: bool = False,
    team_id: str = TEAM_ID,
    user_name: str | None = None,
    channel_name: str = "incidents",
    response_url: str | None = None,
) -> str:
    """Return the `payload=` body Slack sends when a user clicks a message button."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "state": {"values": {}},
        "response_url": response_url or _response_url("actions"),
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": button_text, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    if not is_ephemeral:
        # Slack omits the message for ephemeral containers.
        payload["message"] = message or {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "ts": message_ts,
            "text": "",
            "team": team_id,
        }
    return urlencode({"payload": json.dumps(payload)})


def button_click_body(
    *, message: dict[str, Any], channel_id: str, action_id: str, user_id: str, **options: Any
) -> str:
    """Return the click on the button `action_id` of a stored `message` (Message.to_api())."""
    for block in message.get("blocks") or []:
        elements = list(block.get("elements") or [])
        if block.get("accessory"):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("type") == "button" and element.get("action_id") == action_id:
                return block_actions_body(
                    user_id=user_id,
                    channel_id=channel_id,
                    action_id=action_id,
                    value=element.get("value", ""),
                    message_ts=message["ts"],
                    block_id=block["block_id"],
                    message=message,
                    button_text=element["text"]["text"],
                    **options,
                )
    msg = f"no button {action_id!r} in message {message.get('ts')}"
    raise LookupError(msg)


def view_submission_body(
    *,
    user_id: str,
    view: dict[str, Any],
    values: dict[str, dict[str, dict[str, Any]]],
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
    user_name: str | None = None,
) -> str:
    """Return the `payload=` body Slack sends when a user submits a modal.

    Args:
        user_id: Who submitted.
        view: The view as `views.open` returned it (id, hash, callback_id, blocks, ...).
        values: `state.values`: block_id -> action_id -> element state
            (e.g. `{"type": "plain_text_input", "value": "..."}`).
        trigger_id: Defaults to a fresh one.
        team_id: The workspace.
        user_name: Defaults to the lowercased user id.
    """
    payload: dict[str, Any] = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": _user(user_id, user_name, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": {**view, "state": {"values": values}},
        "response_urls": [],
        "enterprise": None,
        "is_enterprise_install": False,
    }
    return urlencode({"payload": json.dumps(payload)})


def event_body(
    *, event: dict[str, Any], event_id: str, team_id: str = TEAM_ID, event_time: int | None = None
) -> str:
    """Return an Events API `event_callback` delivery as JSON."""
    body = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
    return json.dumps(body)


def url_verification_body(challenge: str) -> str:
    """Return the Events API URL verification handshake as JSON."""
    return json.dumps(
        {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
    )


def escape(text: str) -> str:
    """Escape `& < >` as Slack does in the text users type."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Undo `escape`: the text as the user typed it."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def message_event(message: Message) -> dict[str, Any]:
    """The Events API `message` event for a user's message, with its rich_text block."""
    elements: list[dict[str, Any]] = []
    for i, part in enumerate(re.split(r"<@([A-Z0-9]+)>", message.text)):
        if i % 2:
            elements.append({"type": "user", "user_id": part})
        elif part:
            elements.append({"type": "text", "text": unescape(part)})
    block = {
        "type": "rich_text",
        "block_id": secrets.token_hex(3),
        "elements": [{"type": "rich_text_section", "elements": elements}],
    }
    return {
        "user": message.user,
        "type": "message",
        "ts": message.ts,
        "client_msg_id": str(uuid.uuid4()),
        "text": message.text,
        "team": TEAM_ID,
        "blocks": [block],
        "channel": message.channel,
        "event_ts": message.ts,
    }
