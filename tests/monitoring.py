"""Real Prometheus and Alertmanager for tests: skip locally when absent, fail in CI.

:class:`LoopThread` runs the servers and the scraped demo service on an event loop of their
own, so that module-scoped fixtures can share them across tests with function-scoped loops.
"""

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from bot.demo import monitoring

T = TypeVar("T")


def require_monitoring() -> None:
    """Skip (locally) or fail (``CI=true``) when Prometheus or Alertmanager is not installed."""
    missing = [name for name, path in monitoring.binaries().items() if path is None]
    if not missing:
        return
    reason = (
        f"{', '.join(missing)} not installed (apt-get install prometheus prometheus-alertmanager)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"the real-server tests need them in CI: {reason}")
    pytest.skip(reason)


class LoopThread:
    """An event loop on a daemon thread; :meth:`run` waits for a coroutine run there."""

    def __init__(self) -> None:
        """Start the loop."""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run ``coro`` on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
