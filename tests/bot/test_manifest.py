"""manifest.yml and the listeners agree: everything declared is handled, everything handled is
declared."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import strings
from bot.ids import ActionId, CallbackId
from bot.listeners import LISTENED
from bot.sandbox import signing
from tests.bot.scenario import APPROVER_A, CHANNEL, REQUESTER, Stack

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"
EVENT_OF = {"message.channels": "message", "app_mention": "app_mention"}


def manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text())
    assert isinstance(data, dict)
    return data


def test_manifest_declares_exactly_the_commands_and_events_we_listen_to() -> None:
    data = manifest()
    commands = tuple(c["command"] for c in data["features"]["slash_commands"])
    assert commands == LISTENED["commands"]
    events = {EVENT_OF[e] for e in data["settings"]["event_subscriptions"]["bot_events"]}
    assert events == set(LISTENED["events"])
    assert data["settings"]["interactivity"]["is_enabled"] is True
    assert set(LISTENED["actions"]) == {
        ActionId.APPROVE.value,
        ActionId.REJECT.value,
        ActionId.IN_DOUBT_RAN.value,
        ActionId.IN_DOUBT_RERUN.value,
        ActionId.IN_DOUBT_STOP.value,
        ActionId.APPROVE_PROMOTION.value,
        ActionId.REJECT_PROMOTION.value,
        ActionId.BASELINE_OPEN.value,
    }
    assert LISTENED["views"] == (CallbackId.REJECT_REASON.value, CallbackId.BASELINE.value)


def test_the_usage_hint_names_every_subcommand_of_the_help() -> None:
    """Slack shows the hint as the command is typed: each subcommand ``help`` lists is in it."""
    (incident,) = manifest()["features"]["slash_commands"]
    hinted = {part.strip() for part in incident["usage_hint"].split("|")}
    listed = {p.strip() for p in strings.HELP.split(":", 1)[1].split(",")} - {"&lt;text&gt;"}
    assert listed <= hinted, listed - hinted
    assert len(incident["usage_hint"]) <= 1000  # Slack's limit for a usage hint


def test_manifest_is_http_mode_with_least_privilege_scopes() -> None:
    data = manifest()
    urls = {c["url"] for c in data["features"]["slash_commands"]}
    urls |= {
        data["settings"]["event_subscriptions"]["request_url"],
        data["settings"]["interactivity"]["request_url"],
    }
    assert all(u.endswith("/slack/events") for u in urls)
    scopes = set(data["oauth_config"]["scopes"]["bot"])
    assert scopes == {
        "commands",
        "chat:write",
        "app_mentions:read",
        "channels:history",
        "files:write",  # the digest's chart
    }
    assert data["settings"]["socket_mode_enabled"] is False
    assert data["display_information"]["name"]
    assert data["features"]["bot_user"]["display_name"]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(db_url=f"sqlite:///{tmp_path / 'm.db'}", tmp_path=tmp_path) as running:
        yield running


async def test_every_declared_surface_reaches_a_listener(stack: Stack) -> None:
    """Bolt answers 404 to requests no listener handles; every manifest entry gets 200."""
    for command in LISTENED["commands"]:
        body = signing.slash_command_body(
            command=command, text="help", user_id=REQUESTER, channel_id=CHANNEL
        )
        assert (await stack.post(body))[0] == 200, command
    for index, event_type in enumerate(EVENT_OF.values()):
        event = {
            "type": event_type,
            "user": REQUESTER,
            "channel": "COTHER",
            "text": "hello",
            "ts": f"1700000000.00010{index}",
        }
        body = signing.event_body(event=event, event_id=f"EvM{index}")
        assert (await stack.post(body))[0] == 200, event_type
    for action_id in LISTENED["actions"]:
        body = signing.block_actions_body(
            user_id=APPROVER_A,
            channel_id=CHANNEL,
            action_id=action_id,
            value="no-such-nonce",
            message_ts="1700000000.000100",
        )
        assert (await stack.post(body))[0] == 200, action_id
    for callback_id in LISTENED["views"]:
        view = {
            "id": "V1",
            "callback_id": callback_id,
            "private_metadata": "x",
            "blocks": [],
            "type": "modal",
            "hash": "h",
            "state": {"values": {}},
        }
        body = signing.view_submission_body(user_id=APPROVER_A, view=view, values={})
        assert (await stack.post(body))[0] == 200, callback_id
    unknown = signing.block_actions_body(
        user_id=APPROVER_A,
        channel_id=CHANNEL,
        action_id="not_ours",
        value="x",
        message_ts="1700000000.000100",
    )
    assert (await stack.post(unknown))[0] == 404
    await stack.settle()
