"""Cancel and resolve stop a shell step in flight: its whole process group dies with it."""

import asyncio
import uuid

from adapters.shell import ShellTool
from tests.adapters.test_shell import command, run, running_cmdlines


async def test_cancelling_a_call_kills_the_whole_process_group() -> None:
    marker = f"60.{uuid.uuid4().int % 10**9}"
    tool = ShellTool(
        commands={"hang": command("/bin/sh", "-c", "sleep {secs} & sleep {secs}; wait")},
        timeout_s=30,
    )
    call = asyncio.create_task(run(tool, "hang", secs=marker))
    for _ in range(100):
        if len(running_cmdlines(f"sleep {marker}")) == 3:
            break
        await asyncio.sleep(0.02)
    assert len(running_cmdlines(f"sleep {marker}")) == 3  # the shell and its two sleeps
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    assert call.cancelled()
    for _ in range(50):
        if not running_cmdlines(f"sleep {marker}"):
            break
        await asyncio.sleep(0.02)
    assert running_cmdlines(f"sleep {marker}") == []
