"""Processes a drill starts, kills and restarts: ``appeal-desk serve``/``worker``, and its own
Redis and PostgreSQL servers on free ports (so restarting them hurts nobody else)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def desk_env(**settings: str) -> dict[str, str]:
    """This environment without any DESK_ variable, plus ``settings`` (DESK_ names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(settings)
    return env


class DeskProcess:
    """One ``appeal-desk serve`` or ``worker`` process, logging into ``<cwd>/<name>.log``."""

    def __init__(self, role: str, env: dict[str, str], cwd: Path, name: str) -> None:
        self.role = role
        self.env = env
        self.cwd = cwd
        self.name = name
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = cwd / f"{name}.log"
        self.base = f"http://127.0.0.1:{env.get('DESK_HTTP__PORT', '')}"
        self.kills = 0

    async def start(self) -> None:
        """Start and wait until it serves (``serve``: /healthz; ``worker``: its banner)."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(  # noqa: ASYNC220, S603 (starts at once, our own command)
                [sys.executable, "-m", "desk.runtime.cli", self.role],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log_tail(offset)}")
                if await self._ready(http, offset):
                    return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.log_tail(offset)}")

    async def _ready(self, http: aiohttp.ClientSession, offset: int) -> bool:
        if self.role == "worker":
            return "Appeal Desk — worker" in self.log_tail(offset)
        try:
            async with http.get(self.base + "/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    def log_tail(self, offset: int = 0) -> str:
        """The log written since ``offset``."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.kills += 1

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 20 s); returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


async def _wait_port(port: int, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"nothing listens on {port}")


class RedisServer:
    """A private redis-server with an append-only file synced on every write (the durability a
    desk's stream needs: an entry acknowledged to a channel must survive a Redis restart)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        """Whether redis-server is installed."""
        return shutil.which("redis-server") is not None

    async def start(self) -> None:
        """Start (again, on the same port and data)."""
        self.proc = subprocess.Popen(  # noqa: ASYNC220, S603
            [  # noqa: S607 (redis-server from PATH, like scripts/test-services)
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
        )
        await _wait_port(self.port)

    def stop(self) -> None:
        """SIGTERM: Redis finishes its append-only file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)


class PostgresServer:
    """A private PostgreSQL cluster (initdb on first start) on a free port; as root it runs as
    the ``postgres`` user, like scripts/test-services."""

    def __init__(self) -> None:
        # A folder of its own in the temp dir: the postgres user must reach it, and test or
        # drill folders are often private to their owner.
        self.dir = Path(tempfile.mkdtemp(prefix="drill-pg-")) / "pg"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self.bin = self._find_bin()

    @staticmethod
    def _find_bin() -> Path | None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if versions:
            return versions[-1].parent
        found = shutil.which("pg_ctl")
        return Path(found).parent if found else None

    @staticmethod
    def available() -> bool:
        """Whether the server binaries are installed."""
        return PostgresServer._find_bin() is not None

    def _run(self, *args: str) -> None:
        assert self.bin is not None
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd="/")  # noqa: S603

    async def start(self) -> None:
        """initdb (first time), then start and wait for connections."""
        if not (self.dir / "PG_VERSION").exists():
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                self.dir.mkdir(exist_ok=True)
                shutil.chown(self.dir, "postgres")
                os.chmod(self.dir.parent, 0o755)  # noqa: S103 (postgres must reach its dir)
            self._run("initdb", "-D", str(self.dir), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.dir), "-l", str(self.dir / "log"), "-w", "-o",
            options, "start",
        )  # fmt: skip

    def discard(self) -> None:
        """Delete the cluster's files (after the last stop)."""
        shutil.rmtree(self.dir.parent, ignore_errors=True)

    async def stop(self) -> None:
        """A fast shutdown: open connections are cut, like a server restart does."""
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "stop"
        )
