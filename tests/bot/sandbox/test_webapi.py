"""FakeSlack driven by the real slack_sdk AsyncWebClient."""

import asyncio
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.webapi import FakeSlack

BUTTONS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "Restart *checkout-api*?"}},
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "approve_step",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": "nonce-1",
                "style": "primary",
            }
        ],
    },
]
MODAL = {
    "type": "modal",
    "callback_id": "reject_reason",
    "title": {"type": "plain_text", "text": "Reject step"},
    "submit": {"type": "plain_text", "text": "Reject"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Why?"},
            "element": {"type": "plain_text_input", "action_id": "text"},
        }
    ],
}
TRIGGER = "1000000000001.0001.abcdef"


async def refusal(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


async def test_auth_test_identifies_the_bot(client: AsyncWebClient) -> None:
    response = await client.auth_test()
    assert response["ok"] is True
    assert response["user_id"].startswith("U")


async def test_post_message_thread_and_history(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="#incidents", text="Incident", blocks=BUTTONS)
    channel, ts = posted["channel"], posted["ts"]
    assert channel.startswith("C")
    assert posted["message"]["blocks"][1]["block_id"]  # Slack fills block_ids in
    reply = await client.chat_postMessage(channel=channel, text="probe ok", thread_ts=ts)
    assert float(reply["ts"]) > float(ts)
    assert [m.text for m in fake.messages("incidents")] == ["Incident"]
    assert [m.text for m in fake.thread(channel, ts)] == ["Incident", "probe ok"]
    history = await client.conversations_history(channel=channel)
    assert history["messages"][0]["reply_count"] == 1
    replies = await client.conversations_replies(channel=channel, ts=ts)
    assert [m["text"] for m in replies["messages"]] == ["Incident", "probe ok"]
    assert fake.calls_to("chat.postMessage")[1]["thread_ts"] == ts


async def test_update_edits_in_place(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C0INCIDENT", text="pending")
    updated = await client.chat_update(channel=posted["channel"], ts=posted["ts"], text="approved")
    assert updated["ts"] == posted["ts"]
    assert fake.messages("C0INCIDENT")[0].text == "approved"
    error = await refusal(client.chat_update(channel=posted["channel"], ts="1.000001", text="x"))
    assert error.response["error"] == "message_not_found"


async def test_ephemeral_is_kept_per_user(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_user("U0ALICE", name="alice")
    response = await client.chat_postEphemeral(
        channel="#incidents", user="U0ALICE", text="only you"
    )
    assert response["message_ts"]
    assert [e.text for e in fake.ephemerals("U0ALICE")] == ["only you"]
    assert fake.messages("incidents") == []


async def test_permalink(client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="#incidents", text="hi")
    link = await client.chat_getPermalink(channel=posted["channel"], message_ts=posted["ts"])
    assert posted["channel"] in link["permalink"]


async def test_views_open_push_update(fake: FakeSlack, client: AsyncWebClient) -> None:
    opened = await client.views_open(trigger_id=TRIGGER, view=MODAL)
    view = opened["view"]
    assert view["callback_id"] == "reject_reason"
    pushed = await client.views_push(trigger_id=TRIGGER, view=MODAL)
    assert pushed["view"]["root_view_id"] == view["id"]
    updated = await client.views_update(view_id=view["id"], hash=view["hash"], view=MODAL)
    assert updated["view"]["id"] == view["id"]
    stale = await refusal(client.views_update(view_id=view["id"], hash=view["hash"], view=MODAL))
    assert stale.response["error"] == "hash_conflict"
    missing = await refusal(client.views_open(trigger_id="", view=MODAL))
    assert missing.response["error"] == "invalid_arguments"
    bad = {**MODAL, "title": {"type": "plain_text", "text": "t" * 25}}
    too_long = await refusal(client.views_open(trigger_id=TRIGGER, view=bad))
    assert too_long.response["error"] == "invalid_arguments"
    assert (
        "[json-pointer:/view/title/text]" in too_long.response["response_metadata"]["messages"][0]
    )


async def test_users_usergroups_conversations(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_user("U0ALICE", name="alice")
    fake.add_usergroup("S0ONCALL", ["U0ALICE"])
    channel = fake.add_channel("ops", members=["U0ALICE"])
    assert (await client.users_info(user="U0ALICE"))["user"]["name"] == "alice"
    unknown = await refusal(client.users_info(user="U0NOBODY"))
    assert unknown.response["error"] == "user_not_found"
    users = await client.usergroups_users_list(usergroup="S0ONCALL")
    assert users["users"] == ["U0ALICE"]
    assert (await client.conversations_info(channel=channel))["channel"]["name"] == "ops"
    assert (await client.conversations_members(channel=channel))["members"] == ["U0ALICE"]
    listed = await client.conversations_list()
    assert [c["id"] for c in listed["channels"]] == [channel]
    gone = await refusal(client.conversations_info(channel="C0MISSING"))
    assert gone.response["error"] == "channel_not_found"


async def test_files_upload_v2_shares_to_thread(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="#incidents", text="Incident")
    response = await client.files_upload_v2(
        channel=posted["channel"],
        thread_ts=posted["ts"],
        content=b"\x89PNG fake",
        filename="x.png",
        initial_comment="trace",
    )
    assert response["file"]["name"] == "x.png"
    reply = fake.thread(posted["channel"], posted["ts"])[-1]
    assert reply.text == "trace"
    assert reply.files[0]["id"] == response["file"]["id"]
    assert fake.workspace.files[reply.files[0]["id"]].data == b"\x89PNG fake"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"text": "x", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        (
            {
                "text": "x",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}],
            },
            "invalid_blocks",
        ),
        (
            {
                "text": "x",
                "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            },
            "invalid_blocks",
        ),
        ({"text": "x", "blocks": [{"type": "nope"}]}, "invalid_blocks"),
        ({"text": "x", "blocks": "not json"}, "invalid_blocks_format"),
    ],
)
async def test_refused_messages(client: AsyncWebClient, kwargs: dict[str, Any], error: str) -> None:
    response = (await refusal(client.chat_postMessage(channel="#incidents", **kwargs))).response
    assert response["error"] == error
    if error == "invalid_blocks":
        assert response["errors"]
        assert response["response_metadata"]["messages"][0].startswith("[ERROR] ")


async def test_message_without_text_or_blocks_is_refused(client: AsyncWebClient) -> None:
    call = client.api_call("chat.postMessage", json={"channel": "#incidents", "text": ""})
    assert (await refusal(call)).response["error"] == "no_text"


async def test_form_encoded_blocks_are_checked_too(client: AsyncWebClient) -> None:
    blocks = '[{"type": "header", "text": {"type": "plain_text", "text": "%s"}}]' % ("h" * 151)
    call = client.api_call("chat.postMessage", params={"channel": "#c", "blocks": blocks})
    assert (await refusal(call)).response["error"] == "invalid_blocks"


async def test_long_text_is_truncated_with_warning(fake: FakeSlack, client: AsyncWebClient) -> None:
    response = await client.chat_postMessage(channel="#incidents", text="x" * 40_010)
    assert response["response_metadata"]["warnings"] == ["message_truncated"]
    assert len(fake.messages("incidents")[0].text) == 40_000
    assert fake.warnings  # over Slack's advised 4000 characters


async def test_missing_channel_and_unknown_method(client: AsyncWebClient) -> None:
    assert (await refusal(client.chat_postMessage(channel="", text="x"))).response["error"] == (
        "channel_not_found"
    )
    assert (await refusal(client.api_call("chat.teleport"))).response["error"] == "unknown_method"


async def test_bad_or_missing_token_is_refused(fake: FakeSlack) -> None:
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=fake.base_url)
    assert (await refusal(wrong.auth_test())).response["error"] == "invalid_auth"
    anonymous = AsyncWebClient(base_url=fake.base_url)
    assert (await refusal(anonymous.auth_test())).response["error"] == "not_authed"


async def test_fail_next_returns_429_with_retry_after(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.fail_next("chat.postMessage", 2, retry_after=7)
    for _ in range(2):
        error = await refusal(client.chat_postMessage(channel="#incidents", text="x"))
        assert error.response.status_code == 429
        assert error.response.headers["Retry-After"] == "7"
        assert error.response["error"] == "ratelimited"
    await client.chat_postMessage(channel="#incidents", text="x")
    assert len(fake.calls_to("chat.postMessage")) == 3


async def test_outage_gives_503(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.outage(True)
    assert (await refusal(client.auth_test())).response.status_code == 503
    fake.outage(False)
    assert (await client.auth_test())["ok"]


async def test_per_channel_rate_limit(client: AsyncWebClient) -> None:
    now = [100.0]
    fake = FakeSlack(clock=lambda: now[0])
    fake.rate_limit_per_channel(per_second=1.0)
    await fake.start()
    try:
        limited = AsyncWebClient(token=client.token, base_url=fake.base_url)
        await limited.chat_postMessage(channel="#a", text="1")
        error = await refusal(limited.chat_postMessage(channel="#a", text="2"))
        assert error.response.status_code == 429
        await limited.chat_postMessage(channel="#b", text="other channel is fine")
        now[0] += 1.0
        await limited.chat_postMessage(channel="#a", text="3")
    finally:
        await fake.stop()


async def test_subscribers_see_posts_updates_and_ephemerals(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    queue = fake.subscribe()
    fake.add_user("U0ALICE", name="alice")
    posted = await client.chat_postMessage(channel="#incidents", text="a")
    await client.chat_update(channel=posted["channel"], ts=posted["ts"], text="b")
    await client.chat_postEphemeral(channel="#incidents", user="U0ALICE", text="c")
    events = [await asyncio.wait_for(queue.get(), 1) for _ in range(3)]
    assert [e["type"] for e in events] == ["message_posted", "message_updated", "ephemeral_posted"]
    fake.unsubscribe(queue)
