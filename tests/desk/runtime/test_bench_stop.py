"""A benchmark or drill stopped with SIGTERM stops what it started (bench/terminable.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests import ROOT

pytestmark = pytest.mark.backend_agnostic


# A run that starts a child process and stops it in its clean-up, as bench.load stops the
# service's processes and the drills their servers.
RUN = """
import asyncio, subprocess, sys
from bench import terminable

async def main():
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    print(child.pid, flush=True)
    try:
        await asyncio.sleep(600)
    finally:
        child.terminate()
        child.wait()
        print("child stopped", flush=True)

terminable.run(main())
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_runs_the_clean_up_and_leaves_no_child_behind() -> None:
    run = subprocess.Popen(
        [sys.executable, "-c", RUN],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    child = int(run.stdout.readline())
    try:
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=30)
        assert run.returncode == 128 + signal.SIGTERM, err
        assert "child stopped" in out
        assert "stopped by SIGTERM" in err and "Traceback" not in err
        assert not alive(child)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
