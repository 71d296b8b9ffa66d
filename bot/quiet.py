"""Interactive work first: background jobs wait for a lull in Slack requests before starting.

Slack needs every ack within 3 s and people notice tens of milliseconds; an incident's plan does
not. So a burst of slash commands is acked first, and the work they started (planning, tool
calls, delivery) begins once requests pause for ``quiet_s``, or after ``max_wait_s`` at most.
"""

import asyncio
import time


class QuietGate:
    """Remembers when the last Slack request arrived; ``wait()`` until a short lull."""

    def __init__(self, *, quiet_s: float = 0.02, max_wait_s: float = 0.25) -> None:
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self._last = 0.0

    def touch(self) -> None:
        """A request just arrived."""
        self._last = time.monotonic()

    async def wait(self) -> None:
        """Return once no request arrived for ``quiet_s`` (or after ``max_wait_s``)."""
        deadline = time.monotonic() + self.max_wait_s
        while True:
            now = time.monotonic()
            idle = now - self._last
            if idle >= self.quiet_s or now >= deadline:
                return
            await asyncio.sleep(min(self.quiet_s - idle, deadline - now))
