"""Named fault points for crash tests: ``OPSGATE_FAULT_KILL_AT`` kills the process at one.

``OPSGATE_FAULT_KILL_AT=after_grant`` sends SIGKILL to this process the first time execution
reaches ``point("after_grant")``; ``after_vote:2`` waits for the second time. Unset (always, in
production) a point costs one dictionary lookup.
"""

import os
import signal

_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Die here (SIGKILL, no clean-up) when the environment names this fault point."""
    target = os.environ.get("OPSGATE_FAULT_KILL_AT")
    if not target:
        return
    wanted, _, nth = target.partition(":")
    if wanted != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
