"""The demo's second scenario through the sandbox: a policy refuses a destructive step, the
requester's own approval of a high-risk step is refused, and an approver rejects a step with a
reason."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from bot.demo.runner import DemoHandles
from bot.ids import ActionId, BlockId
from bot.sandbox.workspace import Message
from tests.bot.demo_helpers import running_demo

RILEY, SAM, ALEX = "U0RILEY01", "U0SAM0002", "U0ALEX003"


@pytest.fixture
async def demo() -> AsyncIterator[DemoHandles]:
    async with running_demo(break_after_s=3600) as handles:
        yield handles


def thread_of(demo: DemoHandles, needle: str) -> list[Message]:
    fake = demo.sandbox.fake
    for root in fake.messages(demo.sandbox.channel_id):
        if needle in root.text:
            return fake.thread(demo.sandbox.channel_id, root.ts)
    return []


async def eventually(check: Callable[[], bool], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def text(messages: list[Message]) -> str:
    return "\n".join(m.text + str(m.blocks) for m in messages)


async def test_policy_refuses_the_destructive_purge(demo: DemoHandles) -> None:
    sent = await demo.sandbox.slash_command(RILEY, "/incident orders-db disk full")
    assert sent["status"] == 200
    await eventually(lambda: "recursive_delete" in text(thread_of(demo, "orders-db disk full")))
    thread = text(thread_of(demo, "orders-db disk full"))
    assert "rm -rf" in thread or "Recursive forced deletes" in thread
    await eventually(lambda: "<!here>" in text(thread_of(demo, "orders-db disk full")))


def card(demo: DemoHandles, needle: str) -> Message | None:
    """The approval card (a message with buttons) in the thread of the incident `needle`."""
    for message in thread_of(demo, needle):
        if any(b.get("type") == "actions" for b in message.blocks or []):
            return message
    return None


async def test_the_requester_cannot_approve_the_high_risk_flush(demo: DemoHandles) -> None:
    """Riley (an approver) typed the command, so Riley's own Approve does not count."""
    stale = "web serves stale data"
    await demo.sandbox.slash_command(RILEY, f"/incident {stale}")
    await eventually(lambda: card(demo, stale) is not None)
    found = card(demo, stale)
    assert found is not None
    assert "high" in text([found])
    clicked = await demo.sandbox.click(RILEY, ts=found.ts, action_id=ActionId.APPROVE.value)
    assert clicked["status"] == 200

    def refusals() -> list[str]:
        return [e.text for e in demo.sandbox.fake.ephemerals(RILEY) if "not counted" in e.text]

    await eventually(lambda: bool(refusals()))
    assert "You requested this incident" in refusals()[0]
    for approver in (SAM, ALEX):
        current = card(demo, stale)
        assert current is not None
        await demo.sandbox.click(approver, ts=current.ts, action_id=ActionId.APPROVE.value)
    # the two other approvers make the quorum: the flush runs once and the cache is fresh
    await eventually(lambda: demo.service.state.cache_fresh.get("web") is True)
    assert demo.service.state.cache_fresh == {"web": True}


async def test_an_approver_rejects_the_flush_with_a_reason(demo: DemoHandles) -> None:
    await demo.sandbox.slash_command(RILEY, "/incident web serves stale data")
    await eventually(lambda: card(demo, "web serves stale data") is not None)
    found = card(demo, "web serves stale data")
    assert found is not None
    clicked = await demo.sandbox.click(SAM, ts=found.ts, action_id=ActionId.REJECT.value)
    assert clicked["status"] == 200
    views = demo.sandbox.fake.workspace.views
    await eventually(lambda: bool(views))
    view_id = next(iter(views))
    submitted = await demo.sandbox.submit_view(
        SAM,
        view_id,
        {
            BlockId.REJECT_REASON.value: {
                ActionId.REJECT_REASON_INPUT.value: {
                    "type": "plain_text_input",
                    "value": "cache is warming on its own",
                }
            }
        },
    )
    assert submitted["status"] == 200
    await eventually(
        lambda: "cache is warming on its own" in text(thread_of(demo, "web serves stale data"))
    )
    assert demo.service.state.cache_fresh.get("web") is None  # the flush never ran
