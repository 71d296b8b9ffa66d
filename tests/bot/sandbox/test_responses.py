"""Slash-command acks and `response_url`s as Slack shows them, through the browser sandbox."""

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.sandbox.responses import LIFETIME_S, MAX_USES, ResponseUrls
from bot.sandbox.webapi import FakeSlack
from tests.bot.sandbox.test_ui import CARD, RILEY, SAM, Rig, make_rig


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async for made in make_rig():
        yield made


async def respond(rig: Rig, url: str, body: Any) -> tuple[int, str]:
    payload = {"data": body} if isinstance(body, str) else {"json": body}
    async with rig.http.post(url, **payload) as response:
        return response.status, await response.text()


def texts(rig: Rig, user: str) -> list[str]:
    return [e.text for e in rig.fake.ephemerals(user)]


async def command_url(rig: Rig, text: str = "checkout-api is down") -> str:
    await rig.post("/sandbox/command", user=RILEY, text=f"/incident {text}")
    return str(rig.bot.of("slash_command")[-1]["response_url"])


async def test_an_empty_ack_shows_nothing(rig: Rig) -> None:
    _, result = await rig.post("/sandbox/command", user=RILEY, text="/incident quiet")
    assert result["ok"] is True
    assert texts(rig, RILEY) == []


async def test_an_in_channel_ack_shows_the_command_then_the_answer(rig: Rig) -> None:
    await rig.post("/sandbox/command", user=RILEY, text="/incident public")
    posted = rig.fake.messages(rig.channel)
    assert [(m.user, m.text) for m in posted][-2:] == [
        (RILEY, "/incident public"),
        ("U0BOT0001", "Everyone sees this"),
    ]
    assert texts(rig, RILEY) == []


async def test_a_command_url_posts_new_ephemerals_and_never_replaces_the_ack(rig: Rig) -> None:
    url = await command_url(rig)
    assert url.startswith(rig.sandbox.url)  # never Slack's own hooks.slack.com
    assert await respond(rig, url, {"text": "Status: all green"}) == (200, "ok")
    assert await respond(rig, url, {"text": "Done", "replace_original": True}) == (200, "ok")
    assert texts(rig, RILEY) == [
        "Opening an incident: checkout-api is down",  # the ack stays: Slack cannot replace it
        "Status: all green",
        "Done",
    ]
    assert texts(rig, SAM) == []
    assert await respond(rig, url, {"text": "Resolved", "response_type": "in_channel"}) == (
        200,
        "ok",
    )
    assert rig.fake.messages(rig.channel)[-1].text == "Resolved"


async def test_a_url_works_five_times(rig: Rig) -> None:
    url = await command_url(rig)
    for n in range(MAX_USES):
        assert await respond(rig, url, {"text": f"answer {n}"}) == (200, "ok")
    assert await respond(rig, url, {"text": "one too many"}) == (404, "used_url")
    assert "one too many" not in texts(rig, RILEY)


async def test_bad_message_responses_are_refused_and_not_counted(rig: Rig) -> None:
    url = await command_url(rig)
    assert await respond(rig, url, "not json") == (400, "invalid_payload")
    assert await respond(rig, url, ["a list"]) == (400, "invalid_payload")
    assert await respond(rig, url, {"response_type": "ephemeral"}) == (400, "no_text")
    bad_blocks = {"text": "x", "blocks": [{"type": "section"}]}
    status, error = await respond(rig, url, bad_blocks)
    assert (status, error) == (400, "invalid_blocks")
    assert await respond(rig, url + "x", {"text": "forged"}) == (404, "expired_url")
    for n in range(MAX_USES):  # the refusals used none of the five
        assert (await respond(rig, url, {"text": f"ok {n}"}))[0] == 200


async def test_a_url_expires_after_thirty_minutes() -> None:
    now = [1000.0]
    fake = FakeSlack()
    urls = ResponseUrls(fake, post_ephemeral=lambda *a, **k: None, clock=lambda: now[0])
    await fake.start()
    try:
        url = urls.issue("commands", channel="C1", user=RILEY)
        now[0] += LIFETIME_S
        async with aiohttp.ClientSession() as http, http.post(url, json={"text": "late"}) as resp:
            assert (resp.status, await resp.text()) == (404, "expired_url")
    finally:
        await fake.stop()


async def test_a_click_url_replaces_or_deletes_the_clicked_message(rig: Rig) -> None:
    card = await rig.bot.client.chat_postMessage(
        channel=rig.channel, text="Approval needed", blocks=CARD
    )
    await rig.post("/sandbox/click", user=SAM, ts=card["ts"], action_id="approve_step")
    url = str(rig.bot.of("block_actions")[-1]["response_url"])
    assert "/hooks/actions/" in url
    assert await respond(rig, url, {"text": "Approved by Sam", "replace_original": True}) == (
        200,
        "ok",
    )
    message = rig.fake.workspace.message(rig.channel, card["ts"])
    assert message.text == "Approved by Sam"
    assert message.blocks == []
    assert await respond(rig, url, {"text": "noted"}) == (200, "ok")  # a new one, for Sam
    assert texts(rig, SAM) == ["noted"]
    assert await respond(rig, url, {"delete_original": "true"}) == (200, "ok")
    assert all(m.ts != card["ts"] for m in rig.fake.messages(rig.channel))


async def test_a_click_on_an_ephemeral_replaces_it_for_its_user_only(rig: Rig) -> None:
    sent = await rig.bot.client.chat_postEphemeral(
        channel=rig.channel, user=SAM, text="Pick one", blocks=CARD
    )
    await rig.post("/sandbox/click", user=SAM, ts=sent["message_ts"], action_id="approve_step")
    url = str(rig.bot.of("block_actions")[-1]["response_url"])
    await respond(rig, url, {"text": "Picked", "replace_original": True})
    assert texts(rig, SAM) == ["Picked"]
    await respond(rig, url, {"delete_original": True})
    assert texts(rig, SAM) == []
