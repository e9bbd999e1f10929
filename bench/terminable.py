"""Running a benchmark or a drill so that SIGTERM stops it as cleanly as Ctrl-C.

``asyncio.run`` turns Ctrl-C into a cancellation of the main task, so its ``finally`` blocks stop
the service processes and servers it started. SIGTERM (``kill``, a CI job's timeout) would end
the process at once and leave those running; here it cancels the main task in the same way."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

TERMINATED = 128 + signal.SIGTERM  # the exit code a shell gives a process ended by SIGTERM


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``; a SIGTERM cancels ``main``, lets its clean-up run, then exits with
    code 143."""
    try:
        return asyncio.run(_cancelled_by_sigterm(main))
    except asyncio.CancelledError:
        print("stopped by SIGTERM; what it started is stopped", file=sys.stderr)
        raise SystemExit(TERMINATED) from None


async def _cancelled_by_sigterm(main: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await main
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
