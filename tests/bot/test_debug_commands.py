"""``/incident replay`` and ``/incident audit`` in the local Slack sandbox: the ack names the
incident, and the comparison or timeline is posted to the incident's thread."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from bot.demo.runner import DemoHandles
from bot.ids import ActionId
from bot.sandbox.workspace import Message
from tests.bot.demo_helpers import running_demo

RILEY, SAM, ALEX = "U0RILEY01", "U0SAM0002", "U0ALEX003"
MAIN = "checkout-api is down"


@pytest.fixture
async def demo() -> AsyncIterator[DemoHandles]:
    async with running_demo(break_after_s=3600) as handles:
        yield handles


async def eventually(check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def thread_of(demo: DemoHandles, needle: str) -> list[Message]:
    fake = demo.sandbox.fake
    for root in fake.messages(demo.sandbox.channel_id):
        if needle in root.text:
            return fake.thread(demo.sandbox.channel_id, root.ts)
    return []


def text(messages: list[Message]) -> str:
    return "\n".join(m.text + str(m.blocks) for m in messages)


def card(demo: DemoHandles) -> Message | None:
    for message in thread_of(demo, MAIN):
        if any(b.get("type") == "actions" for b in message.blocks or []):
            return message
    return None


async def _main_scenario(demo: DemoHandles) -> str:
    """The service breaks, Riley opens the incident, Sam and Alex approve the restart."""
    demo.service.state.broken.add("checkout-api")
    await demo.sandbox.slash_command(RILEY, f"/incident {MAIN}")
    await eventually(lambda: card(demo) is not None)
    for approver in (SAM, ALEX):
        found = card(demo)
        assert found is not None
        await demo.sandbox.click(approver, ts=found.ts, action_id=ActionId.APPROVE.value)
    incident = await demo.control.open_incident_in(demo.sandbox.channel_id)
    assert incident is not None
    plan = await demo.control.incident_plan(incident.id)

    async def finished() -> bool:
        return (await demo.control.plan_view(plan.id)).status == "succeeded"

    deadline = time.monotonic() + 30
    while not await finished():
        assert time.monotonic() < deadline, "the main scenario did not finish"
        await asyncio.sleep(0.1)
    return incident.id


def acks(demo: DemoHandles, user: str) -> str:
    return "\n".join(e.text for e in demo.sandbox.fake.ephemerals(user))


async def test_incident_replay_posts_the_comparison_in_the_thread(demo: DemoHandles) -> None:
    incident_id = await _main_scenario(demo)
    sent = await demo.sandbox.slash_command(
        RILEY, f"/incident replay {incident_id[:8]} --fail-at verify:status=503"
    )
    assert sent["status"] == 200
    await eventually(lambda: "Replaying plan" in acks(demo, RILEY))
    assert "--fail-at verify:status=503" in acks(demo, RILEY)
    await eventually(lambda: "Replay beside the original run" in text(thread_of(demo, MAIN)))
    posted = text(thread_of(demo, MAIN))
    assert "original succeeded → replay failed" in posted
    assert "3 attempt(s)" in posted
    assert "A human needs to take over" in posted
    assert "nothing live was called or changed" in posted
    # The live plan is as it was: succeeded, verify ran once.
    plan = await demo.control.incident_plan(incident_id)
    assert plan.status == "succeeded"
    assert [s.attempts for s in plan.steps] == [1, 1, 1]


async def test_incident_replay_refuses_a_step_the_plan_does_not_have(demo: DemoHandles) -> None:
    incident_id = await _main_scenario(demo)
    await demo.sandbox.slash_command(RILEY, f"/incident replay {incident_id[:8]} --fail-at nope")
    await eventually(lambda: "could not run" in acks(demo, RILEY))
    assert "the plan has no step" in acks(demo, RILEY)


async def test_incident_audit_posts_the_timeline_in_the_thread(demo: DemoHandles) -> None:
    incident_id = await _main_scenario(demo)
    await demo.sandbox.slash_command(RILEY, f"/incident audit {incident_id[:8]}")
    await eventually(lambda: "audit timeline of incident" in acks(demo, RILEY))
    await eventually(lambda: "Audit timeline" in text(thread_of(demo, MAIN)))
    posted = text(thread_of(demo, MAIN))
    nonce = next(
        e.nonce
        for e in await demo.control.audit_trail((await demo.control.incident_plan(incident_id)).id)
        if e.event == "approval_requested"
    )
    assert nonce is not None
    for needle in (
        "incident_opened",
        f"by {RILEY} (human)",
        f"vote_recorded* by {SAM} (human)",
        f"vote_recorded* by {ALEX} (human)",
        f"nonce `{nonce}`",
        "scope: http.post",
        "tool_called",
        "cost_recorded",
        "plan_finished",
    ):
        assert needle in posted, needle


async def test_incident_audit_without_id_and_no_open_incident_asks_which(
    demo: DemoHandles,
) -> None:
    await demo.sandbox.slash_command(RILEY, "/incident audit")
    await eventually(lambda: "Which incident?" in acks(demo, RILEY))


def root_ts(demo: DemoHandles) -> str:
    for root in demo.sandbox.fake.messages(demo.sandbox.channel_id):
        if MAIN in root.text:
            return root.ts
    raise AssertionError("no incident root message")


async def test_mention_replay_and_audit_in_the_incident_thread(demo: DemoHandles) -> None:
    await _main_scenario(demo)
    ts = root_ts(demo)
    sent = await demo.sandbox.say(SAM, "@opsgate replay --fail-at verify:status=503", thread_ts=ts)
    assert sent["status"] == 200
    await eventually(lambda: "Replay beside the original run" in text(thread_of(demo, MAIN)))
    assert "--fail-at verify:status=503" in acks(demo, SAM)
    await demo.sandbox.say(SAM, "@opsgate audit", thread_ts=ts)
    await eventually(lambda: "Audit timeline" in text(thread_of(demo, MAIN)))
    replays = [m for m in thread_of(demo, MAIN) if "Replay beside" in m.text + str(m.blocks)]
    assert len(replays) == 1  # one mention, one replay
    await demo.sandbox.say(SAM, "@opsgate audit")  # not in a thread
    await eventually(lambda: "in an incident's thread" in acks(demo, SAM))
