"""A test run that has finished must also end: a watchdog for the interpreter's exit.

Python waits at exit for every non-daemon thread (an unclosed aiosqlite connection, a worker
of a default executor stuck in a blocking call) and CI would then see a hung pass although
every test passed. After the session this plugin names the threads still alive and, if the
process has not exited ``EXIT_GRACE_S`` seconds later, prints every thread's stack (so the
leak can be found) and ends the process with the session's own exit status.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time

import pytest

EXIT_GRACE_S = 30.0

_status = 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _status
    _status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    alive = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if alive:
        names = ", ".join(t.name for t in alive)
        sys.__stderr__.write(f"exit watchdog: threads still running after the tests: {names}\n")
    threading.Thread(target=_watch, name="exit-watchdog", daemon=True).start()


def _watch() -> None:
    time.sleep(EXIT_GRACE_S)
    err = sys.__stderr__
    err.write(
        f"exit watchdog: the process did not exit {EXIT_GRACE_S:.0f}s after the tests; "
        "stacks of every thread follow\n"
    )
    faulthandler.dump_traceback(file=err, all_threads=True)
    err.flush()
    sys.stdout.flush()
    os._exit(_status)
