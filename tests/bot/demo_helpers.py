"""Start ``opsgate demo`` in-process for a test, and stop it cleanly afterwards."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from bot.demo.runner import DemoHandles, run_demo


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def running_demo(
    *, break_after_s: float, real_monitoring: bool = False, scripted_llm: bool = False
) -> AsyncIterator[DemoHandles]:
    """The demo, started on a free port without a browser; stopped on exit.

    The built-in alert watcher unless ``real_monitoring`` (Prometheus and Alertmanager);
    ``scripted_llm``: the stand-in model plays a recorded Researcher and Planner run."""
    started: asyncio.Future[DemoHandles] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_demo(
            port=free_port(),
            open_browser=False,
            break_after_s=break_after_s,
            on_started=started.set_result,
            stop=stop,
            real_monitoring=real_monitoring,
            scripted_llm=scripted_llm,
        )
    )
    try:
        yield await asyncio.wait_for(started, 90)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
