"""Interactive work first: background jobs wait for a lull in Slack requests before starting.

Slack needs every ack within 3 s and people notice tens of milliseconds; an incident's plan does
not. So a burst of slash commands is acked first, and the work they started (planning, tool
calls, delivery) begins once no request is being answered and none arrived for ``quiet_s``, or
after ``max_wait_s`` at most.
"""

import asyncio
import contextlib
import time
from collections.abc import Iterator


class QuietGate:
    """Remembers when the last Slack request arrived; ``wait()`` until a short lull."""

    def __init__(self, *, quiet_s: float = 0.02, max_wait_s: float = 0.25) -> None:
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self._last = 0.0
        self._answering = 0  # requests between arrival and their response

    def touch(self) -> None:
        """A request just arrived."""
        self._last = time.monotonic()

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Around one request's handling: no lull while it is being answered."""
        self._answering += 1
        self.touch()
        try:
            yield
        finally:
            self._answering -= 1
            self.touch()

    async def wait(self) -> None:
        """Return once no request is being answered and none arrived for ``quiet_s`` (or
        after ``max_wait_s``)."""
        deadline = time.monotonic() + self.max_wait_s
        while True:
            now = time.monotonic()
            idle = now - self._last
            if (idle >= self.quiet_s and not self._answering) or now >= deadline:
                return
            await asyncio.sleep(max(0.001, min(self.quiet_s - idle, deadline - now)))
