"""``/incident`` over HTTP is answered by the route itself, as Bolt's listener would answer it.

Signed slash commands through the real app against the fake Slack Web API. Which path answered
is read from ``opsgate_slack_dispatched_total``; the first request of a process goes through
Bolt (its authorization confirms the bot token once), the rest of the commands do not.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlmodel import select

from bot.sandbox import signing
from orchestration.models import AuditEvent, Incident
from tests.bot.scenario import CHANNEL, REQUESTER, SECRET, Stack


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(db_url=db_url, tmp_path=tmp_path) as running:
        yield running


def dispatched(by: str) -> float:
    """Slash commands dispatched so far by ``by`` (``route`` or ``bolt``), this process."""
    value = REGISTRY.get_sample_value(
        "opsgate_slack_dispatched_total", {"kind": "command", "by": by}
    )
    return value or 0.0


async def answer(stack: Stack, body: str, headers: dict[str, str]) -> tuple[int, str, str]:
    """Status, Content-Type and body of the answer to a signed request."""
    assert stack.http is not None
    async with stack.http.post(stack.url, data=body.encode(), headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def command(text: str) -> str:
    return signing.slash_command_body(
        command="/incident", text=text, user_id=REQUESTER, channel_id=CHANNEL
    )


async def audit_events(stack: Stack, name: str) -> list[AuditEvent]:
    return await stack.control.db.run(
        lambda s: list(s.exec(select(AuditEvent).where(AuditEvent.event == name)))
    )


async def test_once_bolt_has_authorized_http_commands_skip_its_dispatch(stack: Stack) -> None:
    route, bolt = dispatched("route"), dispatched("bolt")
    assert (await stack.command("help"))[0] == 200
    assert (dispatched("route") - route, dispatched("bolt") - bolt) == (0, 1)
    for text in ("help", "status", "checkout-api is down"):
        assert (await stack.command(text))[0] == 200
    assert (dispatched("route") - route, dispatched("bolt") - bolt) == (3, 1)
    await stack.settle()
    assert len(stack.roots()) == 1  # the incident the last one asked for


async def test_the_routes_answer_is_byte_for_byte_bolts(stack: Stack) -> None:
    """The same command answered by Bolt (a process's first request) and then by the route:
    the same status, content type and body, with blocks (JSON) and without (plain text)."""
    answered = {}
    for text in ("help", "resolve"):
        await stack.shutdown()
        await stack.boot()  # a new process: its first request goes through Bolt
        route, bolt = dispatched("route"), dispatched("bolt")
        body = command(text)
        by_bolt = await answer(stack, body, signing.sign(body, secret=SECRET))
        body = command(text + " ")  # another request (another signature), the same answer
        by_route = await answer(stack, body, signing.sign(body, secret=SECRET))
        assert (dispatched("route") - route, dispatched("bolt") - bolt) == (1, 1)
        assert by_route == by_bolt
        answered[text] = by_route
    assert answered["help"][1].startswith("application/json")
    assert answered["resolve"][1].startswith("text/plain")


async def test_a_replayed_command_on_the_route_is_answered_alike_and_does_nothing_more(
    stack: Stack,
) -> None:
    await stack.command("help")  # Bolt's first request: every command after it is the route's
    route = dispatched("route")
    body = command("checkout-api is down")
    headers = signing.sign(body, secret=SECRET)
    answers = [await answer(stack, body, headers) for _ in range(3)]
    assert dispatched("route") - route == 3
    assert {status for status, _type, _text in answers} == {200}
    assert len(set(answers)) == 1
    assert "checkout-api is down" in answers[0][2]
    await stack.settle()
    assert len(stack.roots()) == 1
    assert stack.service.health_checks == 1
    rows = await stack.control.db.run(lambda s: list(s.exec(select(Incident))))
    assert len(rows) == 1
    assert len(await audit_events(stack, "incident_opened")) == 1
    assert len(await audit_events(stack, "request_replayed")) == 2


async def test_a_slack_retry_of_a_command_on_the_route_is_recorded_as_a_replay(
    stack: Stack,
) -> None:
    await stack.command("help")
    body = command("checkout-api is down")
    headers = signing.sign(body, secret=SECRET)
    first = await answer(stack, body, headers)
    retried = await answer(stack, body, {**headers, **signing.retry_headers(1)})
    assert retried == first
    await stack.settle()
    assert len(stack.roots()) == 1
    (replayed,) = await audit_events(stack, "request_replayed")
    assert replayed.detail["retry"] == "1"


async def test_a_replayed_metrics_request_on_the_route_posts_once(stack: Stack) -> None:
    """A metrics request first answered by Bolt, then replayed on the route: one post."""
    route = dispatched("route")
    body = command("metrics")
    headers = signing.sign(body, secret=SECRET)
    for _ in range(3):
        assert (await answer(stack, body, headers))[0] == 200
    assert dispatched("route") - route == 2
    await stack.settle()
    assert len(stack.slack.ephemerals(REQUESTER)) == 1
