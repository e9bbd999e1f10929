"""Running ``appeal-desk`` as a separate process, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    stdin: str = "",
    python_flags: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the command to completion (it must exit by itself within a minute); ``stdin`` is
    what the user types, ``python_flags`` go to the interpreter (``-X importtime``)."""
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "desk.runtime.cli", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
