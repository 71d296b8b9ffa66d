"""The demo's second scenario through the sandbox: a policy refuses a destructive step, and an
approver rejects a step with a reason."""

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest

from bot.demo.runner import DemoHandles, run_demo
from bot.ids import ActionId, BlockId
from bot.sandbox.workspace import Message

RILEY, SAM = "U0RILEY01", "U0SAM0002"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def demo() -> AsyncIterator[DemoHandles]:
    started: asyncio.Future[DemoHandles] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_demo(
            port=free_port(),
            open_browser=False,
            break_after_s=3600,
            on_started=started.set_result,
            stop=stop,
        )
    )
    yield await asyncio.wait_for(started, 30)
    stop.set()
    await asyncio.wait_for(task, 30)


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


async def test_an_approver_rejects_the_flush_with_a_reason(demo: DemoHandles) -> None:
    await demo.sandbox.slash_command(RILEY, "/incident web serves stale data")

    def card() -> Message | None:
        for message in thread_of(demo, "web serves stale data"):
            if any(b.get("type") == "actions" for b in message.blocks or []):
                return message
        return None

    await eventually(lambda: card() is not None)
    found = card()
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
