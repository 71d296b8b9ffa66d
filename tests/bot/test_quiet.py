"""The quiet gate holds background work back during a burst of requests, but never for long."""

import asyncio
import time

from bot.quiet import QuietGate
from bot.surface import Surface, responding
from bot.tasks import TaskTracker


async def test_wait_returns_at_once_when_no_request_came() -> None:
    gate = QuietGate(quiet_s=0.05, max_wait_s=1.0)
    started = time.monotonic()
    await gate.wait()
    assert time.monotonic() - started < 0.05


async def test_wait_holds_until_requests_pause() -> None:
    gate = QuietGate(quiet_s=0.05, max_wait_s=2.0)

    async def burst() -> None:
        for _ in range(5):
            gate.touch()
            await asyncio.sleep(0.02)

    task = asyncio.create_task(burst())
    await asyncio.sleep(0)
    started = time.monotonic()
    await gate.wait()
    waited = time.monotonic() - started
    await task
    assert waited >= 0.08  # the burst lasted ~0.1 s: work started only after its last request


async def test_wait_holds_while_a_request_is_still_being_answered() -> None:
    """Requests that all arrived at once are still being answered: no lull until they are."""
    gate = QuietGate(quiet_s=0.01, max_wait_s=5.0)
    answered = asyncio.Event()
    order: list[str] = []

    async def slow_answer() -> None:
        with gate.answering():
            await asyncio.sleep(0.2)  # e.g. waiting for the inbox commit
            order.append("answered")
        answered.set()

    task = asyncio.create_task(slow_answer())
    await asyncio.sleep(0.05)  # long past quiet_s since the request arrived
    await gate.wait()
    order.append("work")
    await task
    assert order == ["answered", "work"]


async def test_wait_gives_up_after_max_wait_during_endless_traffic() -> None:
    gate = QuietGate(quiet_s=0.05, max_wait_s=0.15)
    stop = asyncio.Event()

    async def endless() -> None:
        while not stop.is_set():
            gate.touch()
            await asyncio.sleep(0.01)

    task = asyncio.create_task(endless())
    await asyncio.sleep(0.02)  # traffic is flowing
    started = time.monotonic()
    await gate.wait()
    waited = time.monotonic() - started
    stop.set()
    await task
    assert 0.14 <= waited < 1.0


class _Relay:
    def __init__(self) -> None:
        self.wakeup = asyncio.Event()


def _surface() -> Surface:
    return Surface(
        control=None,  # type: ignore[arg-type]
        config=None,  # type: ignore[arg-type]
        tasks=TaskTracker(),
        relay=_Relay(),  # type: ignore[arg-type]
        quiet=QuietGate(quiet_s=0.0, max_wait_s=0.0),
    )


async def test_work_of_a_request_waits_until_its_response_is_written() -> None:
    surface, began = _surface(), asyncio.Event()

    async def work() -> None:
        began.set()

    with responding() as sent:
        surface.run(work(), name="work")
    for _ in range(20):  # the response is still being written: the work must not begin
        await asyncio.sleep(0)
    assert not began.is_set()
    sent.set()  # what Written.write_eof does once the bytes are out
    await asyncio.wait_for(began.wait(), 5)


async def test_work_started_outside_a_request_does_not_wait() -> None:
    surface, began = _surface(), asyncio.Event()

    async def work() -> None:
        began.set()

    surface.run(work(), name="work")  # e.g. the inbox sweeper
    await asyncio.wait_for(began.wait(), 5)
