"""SIGTERM while customers write and answers are on their way: the process takes no new work,
finishes what it is doing, gives back what it did not start, exits 0; after a restart every
message is stored once and delivered once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bench.fakes.telegram import FakeTelegram, FaultPlan
from channels.stream import local_entries
from models import Message, OutboxItem, OutboxStatus, db
from tests.conftest import SECRET_KEY
from tests.desk.runtime.test_crash import Proc, serve_env, telegram_env
from tests.telegram_world import AGENT_ID, STAFF_CHAT, eventually

pytestmark = [pytest.mark.slow, pytest.mark.second_pass]

GRACE_S = 20
SLOW_SEND_S = 3.0
USERS = [5101, 5102, 5103, 5104]


@pytest.fixture
async def serve(
    tmp_path: Path, db_url: str, redis_url: str | None, fake: FakeTelegram
) -> AsyncIterator[Proc]:
    env = serve_env(
        db_url,
        redis_url,
        DESK_SECRET_KEY=SECRET_KEY,
        DESK_WORKERS__STOP_GRACE_S=str(GRACE_S),
        **telegram_env(fake.url, AGENT_ID, STAFF_CHAT),
    )
    proc = Proc(env, tmp_path)
    yield proc
    # Stopped with the event loop running: the process's last calls to the fake Bot API (served
    # by this loop) are answered, not waited out to the client's timeout (10 s).
    await asyncio.to_thread(proc.stop)


async def exited(proc: subprocess.Popen[str], timeout: float) -> int | None:
    """The exit code, waiting without blocking the fake's loop."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return proc.poll()


async def turned_away(base: str) -> aiohttp.ClientResponse | None:
    """The first answer that is not 200 while the process stops (None: it never came)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(base + "/api/v1/openapi.json") as resp:
                    if resp.status != 200:
                        await resp.read()
                        return resp
            except aiohttp.ClientError:
                return None
            await asyncio.sleep(0.02)
    return None


async def outbox_rows(db_url: str) -> list[OutboxItem]:
    await db.connect(db_url)
    try:
        return await OutboxItem.all().order_by("id")
    finally:
        await db.disconnect()


async def test_sigterm_finishes_sends_in_flight_and_a_restart_delivers_the_rest_once(
    serve: Proc, fake: FakeTelegram, db_url: str
) -> None:
    await serve.start()
    assert serve.proc is not None
    fake.timeout_next("sendMessage", SLOW_SEND_S, count=1000)
    for user in USERS:
        fake.add_private_chat(user, f"Клиент {user}")
        fake.user_message(user, f"Вопрос клиента {user}")
    await eventually(lambda: fake.calls("sendMessage"), timeout=30, what="a send in flight")

    started = time.monotonic()
    serve.proc.send_signal(signal.SIGTERM)
    refused = await turned_away(serve.base)
    code = await exited(serve.proc, GRACE_S + 10)
    took = time.monotonic() - started

    assert code == 0, (serve.cwd / "serve.log").read_text()
    assert took < GRACE_S, f"the sends in flight should have ended the wait ({took:.1f}s)"
    assert refused is not None and refused.status == 503
    assert refused.headers["Retry-After"] == "5"
    rows = await outbox_rows(db_url)
    assert not [r.id for r in rows if r.status is OutboxStatus.SENDING], "rows left claimed"
    # Every send Telegram answered was recorded as sent: nothing was cut off mid-way.
    for user in USERS:
        answered = len(fake.sent_to(user))
        recorded = [r for r in rows if r.address == str(user) and r.status is OutboxStatus.SENT]
        assert answered == len(recorded), user

    fake.faults = FaultPlan()
    restarted = time.monotonic()
    await serve.start()

    def every_question_posted() -> bool:
        posted = [m.body or "" for m in fake.sent_to(STAFF_CHAT) if m.method == "sendMessage"]
        return all(any(f"Вопрос клиента {u}" in b for b in posted) for u in USERS)

    async def all_sent() -> bool:
        # A question the first process never polled arrives only now: wait for its post too.
        if not every_question_posted():
            return False
        rows = await outbox_rows(db_url)
        return bool(rows) and all(r.status is OutboxStatus.SENT for r in rows)

    # Well within the 60 s lease: the rows were given back, not left to expire.
    await eventually(all_sent, timeout=40, what="every question posted and every row sent")
    assert time.monotonic() - restarted < 50
    await db.connect(db_url)
    try:
        for user in USERS:
            assert await Message.filter(text=f"Вопрос клиента {user}").count() == 1
        assert await local_entries().filter(dead=False).count() == 0
    finally:
        await db.disconnect()
    for user in USERS:
        texts = [m.body for m in fake.sent_to(user)]
        assert texts and len(texts) == len(set(texts)), f"sent twice to {user}: {texts}"
    posts = [
        (m.message_thread_id, m.body) for m in fake.sent_to(STAFF_CHAT) if m.method == "sendMessage"
    ]
    assert len(posts) == len(set(posts)), "a post went to the staff group twice"
    for user in USERS:
        assert any(t and f"Вопрос клиента {user}" in (b or "") for t, b in posts), user


async def test_worker_stops_on_sigint_with_exit_code_zero(serve: Proc) -> None:
    await serve.start(DESK_WORKERS__INTAKE="0")
    log = (serve.cwd / "worker.log").open("a")
    worker = subprocess.Popen(
        [sys.executable, "-m", "desk.runtime.cli", "worker"],
        env={**serve.env, "DESK_WORKERS__NAME": "w-stop"},
        cwd=serve.cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        await eventually(
            lambda: "Appeal Desk — worker" in (serve.cwd / "worker.log").read_text(), timeout=60
        )
        worker.send_signal(signal.SIGINT)
        code = await exited(worker, GRACE_S + 10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert code == 0
    assert "stopped" in (serve.cwd / "worker.log").read_text().splitlines()
