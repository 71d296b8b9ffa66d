"""What every listener needs: the control plane, background tasks and the outbox relay."""

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from bot.quiet import QuietGate
from bot.tasks import TaskTracker
from orchestration.config import OpsgateConfig
from orchestration.control import ControlPlane
from orchestration.outbox import OutboxRelay


@dataclass
class Surface:
    """Collaborators of the Slack listeners."""

    control: ControlPlane
    config: OpsgateConfig
    tasks: TaskTracker
    relay: OutboxRelay
    quiet: QuietGate = field(default_factory=QuietGate)

    def run(self, work: Awaitable[Any], *, name: str) -> None:
        """Run ``work`` after the ack; then wake the outbox relay so Slack hears at once."""

        async def job() -> None:
            try:
                await self.quiet.wait()  # acks of a burst go out before its background work
                await work
            finally:
                self.relay.wakeup.set()

        self.tasks.spawn(job(), name=name)
