"""A database outage is not poison: the entries in hand wait for the database and are stored once
it answers, none counted as a failed delivery (``max_deliveries=1`` here: one more hand-out
would set an entry aside); the outage is logged once and shown in /readyz and /metrics."""

from __future__ import annotations

import asyncio
import sqlite3
import time as timer
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

from bench.drills.processes import PostgresServer, RedisServer
from bench.drills.proxy import CuttingProxy
from channels.base import ChannelKind, InboundMessage, OutboundMessage
from channels.stream import AppealStream, LocalStream, RedisStream
from desk.appeals.intake import IntakeWorker
from desk.appeals.lifecycle import Lifecycle
from desk.appeals.outbox import Outbox
from desk.config.settings import Settings
from desk.context import utc_now
from desk.ops.metrics import Metrics
from desk.ops.outage import OutageWatch
from desk.ops.scheduler import Daily
from desk.outbound.delivery import DeliveryWorker
from models import Appeal, Customer, Direction, KeyValue, Message, OutboxItem, OutboxStatus, db
from tests.conftest import PG_URL, REDIS_URL
from tests.telegram_world import eventually

GENEROUS_S = 30.0  # an upper bound for "happens", never a speed claim
OUTAGE_LOGGED = "database unavailable, workers wait for it"


def web(i: int) -> InboundMessage:
    """A message from the web form numbered ``i``."""
    return InboundMessage(ChannelKind.WEB, f"web-{i}", f"r-{i}", f"Обращение {i}")


async def stored() -> list[str]:
    """External ids of the customer messages in the database, in order."""
    rows = Message.filter(direction=Direction.IN).order_by("external_id")
    return list(await rows.values_list("external_id", flat=True))


def logged_outages(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.getMessage() == OUTAGE_LOGGED)


@pytest.fixture
async def sqlite_url(db_url: str) -> AsyncIterator[str]:
    """This test's SQLite database, connected, waiting at most 0.1 s for a lock."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's lock: the PostgreSQL pass has a test of its own")
    url = f"{db_url}?busy_timeout=100"
    await db.connect(url)
    yield url
    await db.disconnect()


async def test_entries_wait_while_another_process_holds_the_sqlite_lock(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    lifecycle = Lifecycle(Settings(database_url=sqlite_url), Outbox(utc_now), utc_now)
    stream = LocalStream(consumer="intake-1", claim_idle_s=0.5, max_deliveries=1)
    watch = OutageWatch(metrics)
    worker = IntakeWorker(stream, lifecycle, outage=watch)
    for i in range(3):
        await stream.publish(web(i))
    items = await stream.read(count=10, block_ms=0)
    assert [item.deliveries for item in items] == [1, 1, 1]

    other = other_process(sqlite_url)
    await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")
    try:
        storing = asyncio.create_task(worker.process(items))
        await eventually(
            lambda: watch.down_since is not None, timeout=GENEROUS_S, what="the worker saw the lock"
        )
        assert metrics.registry.get_sample_value("appeal_desk_database_up") == 0
        await asyncio.sleep(1.0)  # past the claim: had it failed, each entry would be spent
        assert not storing.done()
    finally:
        await asyncio.to_thread(other.execute, "ROLLBACK")
        await asyncio.to_thread(other.close)

    results = await asyncio.wait_for(storing, GENEROUS_S)
    assert [r.duplicate for r in results] == [False, False, False]
    assert await stored() == ["web-0", "web-1", "web-2"]
    assert await stream.pending_count() == 0
    assert (await stream.stats()).dead == 0
    assert watch.down_since is None
    assert metrics.registry.get_sample_value("appeal_desk_database_up") == 1
    assert metrics.registry.get_sample_value("appeal_desk_database_outages_total") == 1
    assert logged_outages(caplog) == 1


def other_process(sqlite_url: str) -> sqlite3.Connection:
    """A connection of its own to the test's SQLite file, as another process would have."""
    path = sqlite_url.removeprefix("sqlite://").partition("?")[0]
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


class LockedAsItAnswers:
    """Telegram, sending at once, while another process takes the database's write lock and
    holds it for ``hold_s``: the desk cannot record the send until it is given back."""

    kind = ChannelKind.TELEGRAM

    def __init__(self, other: sqlite3.Connection, hold_s: float) -> None:
        self.other = other
        self.hold_s = hold_s
        self.sent: list[str] = []
        self.released = asyncio.Event()

    async def deliver(self, out: OutboundMessage) -> str:
        self.sent.append(out.text)
        await asyncio.to_thread(self.other.execute, "BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(self.hold_s, self.released.set)
        return f"tg-{out.outbox_id}"

    async def release_when_due(self) -> None:
        await self.released.wait()
        await asyncio.to_thread(self.other.execute, "ROLLBACK")


async def test_a_send_made_as_the_database_locks_is_recorded_once_it_answers(
    sqlite_url: str,
) -> None:
    outbox = Outbox(utc_now)
    appeal = await Appeal.create(customer=await Customer.create(name="Ира"), channel="telegram")
    item = await outbox.enqueue(channel="telegram", address="500", text="Ответ", appeal=appeal)
    other = other_process(sqlite_url)
    telegram = LockedAsItAnswers(other, hold_s=1.0)
    watch = OutageWatch()
    deliverer = DeliveryWorker(outbox, {"telegram": telegram}, utc_now, name="w1", outage=watch)
    releasing = asyncio.create_task(telegram.release_when_due())
    try:
        assert await deliverer.deliver_due() == 1
    finally:
        await releasing
        await asyncio.to_thread(other.close)
    row = await OutboxItem.get(id=item.id)
    assert row.status is OutboxStatus.SENT and row.external_id == f"tg-{item.id}"
    assert row.attempts == 1 and row.locked_until is None
    assert await deliverer.deliver_due() == 0
    assert telegram.sent == ["Ответ"]


async def test_a_daily_job_the_database_failed_runs_again_the_same_day(sqlite_url: str) -> None:
    other = other_process(sqlite_url)
    runs: list[str] = []

    async def export() -> str:
        runs.append("run")
        if len(runs) == 1:  # another process takes the lock as the job writes
            await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")
            raise ConnectionResetError("the job's own server went away")
        return "exported"

    job = Daily("export", time(3, 0), ZoneInfo("Europe/Moscow"), export)
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    with pytest.raises(ConnectionResetError):
        await job.run_if_due(now)  # the claim cannot be given back: the database is locked
    await asyncio.to_thread(other.execute, "ROLLBACK")
    await asyncio.to_thread(other.close)
    assert await job.run_if_due(now) is True
    assert runs == ["run", "run"]
    claim = await KeyValue.get(key="job:export:2026-11-02")
    assert claim.value.startswith("done")


@pytest.fixture
async def own_postgres() -> AsyncIterator[PostgresServer]:
    """A PostgreSQL server of this test's own, free to stop and start (torn down after the
    desk, which is started later)."""
    if not (PG_URL and REDIS_URL):
        pytest.skip("needs DESK_TEST_DATABASE_URL and DESK_TEST_REDIS_URL")
    if not PostgresServer.available():
        pytest.skip("the PostgreSQL server binaries are missing")
    server = PostgresServer()
    await server.start()
    yield server
    await server.stop()
    server.discard()


@pytest.mark.slow
async def test_a_postgres_restart_keeps_entries_and_shows_the_wait(
    own_postgres: PostgresServer,
    start_desk: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    desk = await start_desk(
        database_url=own_postgres.url,
        workers={"claim_idle_s": 1.0, "max_deliveries": 1, "poll_s": 0.05},
    )
    assert desk.service.ctx is not None
    stream = desk.service.ctx.stream
    await own_postgres.stop()
    for i in range(5):
        await stream.publish(web(i))  # Redis takes them: the channels still answer

    async def waiting() -> bool:
        status, body = await desk.get("/readyz", auth=False)
        database = body["components"]["database"]
        return status == 503 and database["status"] == "fail" and "waiting_since" in database

    await eventually(
        waiting, timeout=GENEROUS_S, what="/readyz tells the workers wait for the database"
    )
    async with desk.http.get(desk.base + "/metrics") as resp:
        assert "appeal_desk_database_up 0.0" in await resp.text()
    await asyncio.sleep(2.0)  # past the claim: had it failed, each entry would be spent
    await own_postgres.start()

    await eventually(
        lambda: _counted(stored, 5), timeout=GENEROUS_S, what="all five messages stored"
    )
    assert await stored() == [f"web-{i}" for i in range(5)]
    await eventually(lambda: _stream_settled(stream), timeout=GENEROUS_S, what="the stream empty")
    assert (await stream.stats()).dead == 0
    status, body = await desk.get("/readyz", auth=False)
    assert status == 200, body
    async with desk.http.get(desk.base + "/metrics") as resp:
        text = await resp.text()
    assert "appeal_desk_database_up 1.0" in text
    assert "appeal_desk_database_outages_total 1.0" in text
    assert logged_outages(caplog) == 1


async def _counted(rows: Callable[[], Any], count: int) -> bool:
    return len(await rows()) >= count


async def _stream_settled(stream: AppealStream) -> bool:
    stats = await stream.stats()
    return bool(stats.lag == 0 and stats.pending == 0)


async def test_a_postgresql_connection_gone_silent_fails_as_an_outage_not_a_hang() -> None:
    # A half-open connection (the server's host gone, no FIN, no RST): without a statement
    # timeout the worker waiting on it would hang for good.
    if not PG_URL:
        pytest.skip("needs DESK_TEST_DATABASE_URL")
    assert db.connection_config(PG_URL)["credentials"]["command_timeout"] == 60  # type: ignore[index]
    server = urlsplit(PG_URL)
    proxy = CuttingProxy(server.hostname or "127.0.0.1", server.port or 5432)
    await proxy.start()
    url = server._replace(netloc=f"desk:desk@127.0.0.1:{proxy.port}").geturl()
    await db.connect(f"{url}?command_timeout=1&minsize=1&maxsize=1")
    try:
        await db.ping()
        proxy.freeze()
        started = timer.monotonic()
        with pytest.raises(TimeoutError) as failed:
            await db.ping()
        assert db.is_outage(failed.value)
        assert timer.monotonic() - started < GENEROUS_S
        proxy.thaw()
        await db.renew_connections()  # what the outage watch does once the database answers
        await eventually(_answers, timeout=GENEROUS_S, what="the database answering again")
    finally:
        await db.disconnect()
        await proxy.close()


async def _answers() -> bool:
    try:
        await db.ping()
    except Exception as exc:
        if not db.is_outage(exc):
            raise
        return False
    return True


async def test_a_redis_restart_as_entries_are_acked_hands_none_of_them_out_again(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not RedisServer.available():
        pytest.skip("redis-server is missing")
    redis = RedisServer(tmp_path)
    await redis.start()
    await db.connect(db_url)
    stream = RedisStream(redis.url, consumer="intake-1", claim_idle_s=0.5, max_deliveries=1)
    try:
        await stream.start()
        lifecycle = Lifecycle(Settings(database_url=db_url), Outbox(utc_now), utc_now)
        worker = IntakeWorker(stream, lifecycle)
        for i in range(3):
            await stream.publish(web(i))
        items = await stream.read(count=10, block_ms=0)
        real_ingest = lifecycle.ingest
        restarts: list[asyncio.Task[None]] = []

        async def back_in(seconds: float) -> None:
            await asyncio.sleep(seconds)
            await redis.start()

        async def ingest_then_restart(message: InboundMessage) -> Any:
            result = await real_ingest(message)
            if message.external_id == "web-2":  # stored: Redis goes away before the ack
                await asyncio.to_thread(redis.stop)
                restarts.append(asyncio.create_task(back_in(2.0)))
            return result

        lifecycle.ingest = ingest_then_restart  # type: ignore[method-assign]
        results = await asyncio.wait_for(worker.process(items), GENEROUS_S)
        await asyncio.gather(*restarts)
        assert [r.duplicate for r in results] == [False, False, False]
        assert await stored() == ["web-0", "web-1", "web-2"]
        stats = await stream.stats()
        assert (stats.pending, stats.lag, stats.dead) == (0, 0, 0)  # acked: none comes back
        await asyncio.sleep(1.0)  # past claim_idle_s: an unacked entry would be handed out
        assert await stream.read(count=10, block_ms=0) == []
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
    finally:
        await stream.close()
        await db.disconnect()
        redis.stop()
