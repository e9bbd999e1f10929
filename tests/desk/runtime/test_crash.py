"""Kill -9 between accepting appeals and processing them: after a restart every accepted
appeal is there exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bench.fakes.telegram import DEFAULT_TOKEN
from tests import ROOT
from tests.conftest import API_TOKEN, SECRET_KEY, free_port

pytestmark = pytest.mark.slow


class Proc:
    """``appeal-desk serve`` as a separate process."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.base = f"http://127.0.0.1:{env['DESK_HTTP__PORT']}"

    async def start(self, **extra: str) -> None:
        log = (self.cwd / "serve.log").open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "desk.runtime.cli", "serve"],
            env={**self.env, **extra},
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(self.base + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if self.proc.poll() is not None:
                    raise AssertionError((self.cwd / "serve.log").read_text())
                await asyncio.sleep(0.1)
        raise AssertionError("serve did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def serve_env(db_url: str, redis_url: str | None, **settings: str) -> dict[str, str]:
    """The environment of an ``appeal-desk`` process under test: none of the caller's DESK_
    variables, this test's database (and Redis), a free port, the test API token, and
    ``settings`` (``DESK_…`` names) on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DESK_DATABASE_URL": db_url,
            "DESK_HTTP__PORT": str(free_port()),
            "DESK_API__TOKENS": f'[{{"name": "t", "token": "{API_TOKEN}"}}]',
            **settings,
        }
    )
    if redis_url:
        env["DESK_REDIS_URL"] = redis_url
    return env


def telegram_env(fake_url: str, agent_id: int, staff_chat: int) -> dict[str, str]:
    """Settings that point the process's Telegram side at a fake, with one agent."""
    return {
        "DESK_AGENTS": f'[{{"name": "Ирина", "telegram_id": {agent_id}}}]',
        "DESK_TELEGRAM__TOKEN": DEFAULT_TOKEN,
        "DESK_TELEGRAM__API_URL": fake_url,
        "DESK_TELEGRAM__STAFF_CHAT_ID": str(staff_chat),
        "DESK_TELEGRAM__POLL_TIMEOUT_S": "1",
        # The staff feed's edit comes a second after the news, not 30: a test that waits for
        # every outbox row sent does not wait out the production interval.
        "DESK_TELEGRAM__FEED_INTERVAL_S": "1",
        "DESK_WORKERS__POLL_S": "0.05",
    }


@pytest.fixture
def serve(tmp_path: Path, db_url: str, redis_url: str | None) -> Iterator[Proc]:
    env = serve_env(
        db_url,
        redis_url,
        DESK_SECRET_KEY=SECRET_KEY,
        DESK_WORKERS__CLAIM_IDLE_S="1",
        # The tests send 20-60 appeals at once from one address on purpose: no rate limit.
        DESK_HTTP__RATE_LIMITS__ENABLED="false",
    )
    proc = Proc(env, tmp_path)
    yield proc
    proc.stop()


async def post_appeals(base: str, count: int) -> list[dict[str, object]]:
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> dict[str, object]:
            payload = {
                "name": f"Клиент {i}",
                "email": f"c{i}@example.com",
                "text": f"Обращение {i}",
            }
            async with http.post(base + "/api/v1/appeals", json=payload) as resp:
                assert resp.status in (201, 202)
                return await resp.json()  # type: ignore[no-any-return]

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def all_texts(base: str) -> list[str]:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    texts: list[str] = []
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(base + "/api/v1/appeals?per_page=200") as resp:
            listing = await resp.json()
        for item in listing["items"]:
            async with http.get(f"{base}/api/v1/appeals/{item['number']}") as resp:
                detail = await resp.json()
            texts += [m["text"] for m in detail["messages"] if m["direction"] == "in"]
    return texts


WORKER_START_S = 120.0  # an upper bound for a worker process's start, never a speed claim


async def wait_for_count(base: str, count: int) -> list[str]:
    texts: list[str] = []
    for _ in range(200):
        texts = await all_texts(base)
        if len(texts) >= count:
            return texts
        await asyncio.sleep(0.1)
    return texts


async def test_appeals_accepted_before_sigkill_are_processed_once_after_restart(
    serve: Proc,
) -> None:
    # No intake worker: every appeal is accepted (202) and waits in the stream.
    await serve.start(DESK_WORKERS__INTAKE="0")
    accepted = await post_appeals(serve.base, 20)
    assert all(a["number"] is None for a in accepted)
    serve.kill()
    await serve.start()
    texts = await wait_for_count(serve.base, 20)
    assert sorted(texts) == sorted(f"Обращение {i}" for i in range(20))


async def test_sigkill_while_processing_loses_and_duplicates_nothing(serve: Proc) -> None:
    await serve.start()
    accepted: list[str] = []
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> None:
            payload = {
                "name": f"Клиент {i}",
                "email": f"c{i}@example.com",
                "text": f"Обращение {i}",
            }
            try:
                async with http.post(serve.base + "/api/v1/appeals", json=payload) as resp:
                    if resp.status in (201, 202):
                        accepted.append(f"Обращение {i}")
            except aiohttp.ClientError:
                pass  # killed before answering: not accepted, may or may not be stored

        tasks = [asyncio.create_task(one(i)) for i in range(60)]
        while len(accepted) < 10:
            await asyncio.sleep(0.01)
        serve.kill()
        await asyncio.gather(*tasks)
    await serve.start()
    texts = await wait_for_count(serve.base, len(accepted))
    assert set(accepted) <= set(texts)
    assert len(texts) == len(set(texts)), "a message was stored twice"


async def test_separate_worker_processes_do_the_intake(serve: Proc, tmp_path: Path) -> None:
    await serve.start(DESK_WORKERS__INTAKE="0")
    env = {**serve.env, "DESK_WORKERS__NAME": "w-extra"}
    log = (tmp_path / "worker.log").open("a")
    worker = subprocess.Popen(
        [sys.executable, "-m", "desk.runtime.cli", "worker"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner = "Appeal Desk — worker (w-extra)"
    try:
        # The worker says it is ready once started (on a loaded CI machine, after up to half a
        # minute of imports): what it takes in from then on is the point here, not its start.
        for _ in range(int(WORKER_START_S / 0.1)):
            if banner in (tmp_path / "worker.log").read_text() or worker.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert banner in (tmp_path / "worker.log").read_text(), "the worker did not start"
        accepted = await post_appeals(serve.base, 10)
        texts = await wait_for_count(serve.base, len(accepted))
        assert sorted(texts) == sorted(f"Обращение {i}" for i in range(10))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)
    assert worker.returncode == 0
