"""Tracked background tasks: work started after ``ack()`` and drained on shutdown."""

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from orchestration.telemetry import get_logger

log = get_logger("opsgate.tasks")
T = TypeVar("T")


class TaskTracker:
    """Keeps a reference to every task it starts and waits for them on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Start ``coro`` in the background; failures are logged, never lost silently."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_failed", task=task.get_name(), error=repr(task.exception()))

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait for running tasks (up to ``timeout_s``), then cancel what is left."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def stoppable(job: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T | None]]:
    """``job`` for a scheduler: cancelled mid-run (the scheduler stopping with the app), it ends
    with one log line instead of the scheduler's ``raised an exception`` traceback."""

    @functools.wraps(job)
    async def run() -> T | None:
        try:
            return await job()
        except asyncio.CancelledError:
            log.info("job_stopped", job=getattr(job, "__name__", repr(job)))
            return None

    return run
