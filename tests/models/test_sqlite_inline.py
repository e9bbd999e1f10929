"""SQLite statements of the hot path run in the event loop's thread (``sql.inline()``), and
nothing that may wait does: a transaction's first write waits for another process's lock in
the connection's thread while the loop goes on, COMMIT syncs there, and the loop gets turns
through a long batch. The local stream's own file runs every statement in the loop's thread,
its commits too, unless the file is locked."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from channels.base import ChannelKind, InboundMessage
from channels.stream import LocalStream
from models import KeyValue, db, sql

GENEROUS_S = 10.0  # an upper bound for "returns", never a speed claim


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "inline.db"
    url = f"sqlite://{path}"
    await db.migrate(url)
    await db.connect(url)
    yield path
    await db.disconnect()


@pytest.fixture
async def hops(sqlite_db: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL (first words) of every call that went to the connection's thread, counted from
    when the connection is open."""
    await KeyValue.all().count()
    sent: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(
        self: aiosqlite.Connection, fn: object, *args: object, **kw: object
    ) -> object:
        sent.append(str(args[0])[:30] if args else getattr(fn, "__name__", "?"))
        return await original(self, fn, *args, **kw)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return sent


async def _count_turns(turns: list[int], *, every_s: float) -> None:
    """Note each turn the event loop gives this task (a sleep of ``every_s`` between)."""
    while True:
        turns.append(1)
        await asyncio.sleep(every_s)


@contextlib.asynccontextmanager
async def _locked_by_another_process(path: Path) -> AsyncIterator[threading.Event]:
    """Another process (a second desk on the same file) holds ``path``'s write lock until the
    event given is set, or the block ends."""
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(GENEROUS_S)
        other.execute("COMMIT")
        other.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, GENEROUS_S)
        yield release
    finally:
        release.set()
        await asyncio.to_thread(holder.join, GENEROUS_S)


async def _batch(rows: int, *, read_first: bool = True) -> None:
    async with in_transaction():
        if read_first:
            await KeyValue.filter(key__in=["a", "b"]).values_list("key")
        await sql.insert_many("key_value", ["key", "value"], [("k0", "0")], returning=None)
        for n in range(1, rows):
            await sql.insert_many("key_value", ["key", "value"], [(f"k{n}", "x")], returning=None)
        await KeyValue.filter(key="k0").update(value="changed")


async def test_inside_inline_only_the_first_write_and_the_commit_leave_the_loop(
    hops: list[str],
) -> None:
    with sql.inline():
        await _batch(20)
    assert [h.split()[0].upper() for h in hops] == ["INSERT", "COMMIT"]
    assert await KeyValue.filter(key__startswith="k").count() == 20
    assert (await KeyValue.get(key="k0")).value == "changed"


async def test_a_savepoint_ended_is_no_write_the_first_write_still_waits_in_the_thread(
    hops: list[str],
) -> None:
    with sql.inline():
        async with in_transaction():
            await KeyValue.filter(key="a").count()
            async with in_transaction():  # a savepoint, read and released
                await KeyValue.filter(key="b").count()
            await KeyValue.create(key="k", value="v")
    assert [h.split()[0].upper() for h in hops][-2:] == ["INSERT", "COMMIT"]
    assert await KeyValue.filter(key="k").count() == 1


async def test_outside_inline_every_statement_goes_to_the_thread(
    hops: list[str],
) -> None:
    await _batch(5)
    assert len(hops) >= 8  # BEGIN, the reads, each write, COMMIT


async def test_a_write_waiting_for_another_process_lock_does_not_stop_the_loop(
    sqlite_db: Path,
) -> None:
    turns: list[int] = []
    ticker = asyncio.create_task(_count_turns(turns, every_s=0.01))
    async with _locked_by_another_process(sqlite_db) as release:
        with sql.inline():
            # (A transaction that read first would be refused at once, by SQLite's rule for
            # a reader turning writer; one that writes first waits for the lock.)
            batch = asyncio.create_task(_batch(3, read_first=False))
            await asyncio.sleep(0.3)
            assert not batch.done()  # waiting for the lock…
            assert len(turns) >= 10  # …while the loop went on
            release.set()
            await asyncio.wait_for(batch, GENEROUS_S)
    ticker.cancel()
    assert await KeyValue.filter(key__startswith="k").count() == 3


async def test_a_failing_statement_inline_rolls_the_transaction_back(sqlite_db: Path) -> None:
    await KeyValue.create(key="taken", value="1")

    async def clashing() -> None:
        async with in_transaction():
            await sql.insert_many("key_value", ["key", "value"], [("new", "1")], returning=None)
            await sql.insert_many("key_value", ["key", "value"], [("taken", "2")], returning=None)

    with sql.inline(), pytest.raises(IntegrityError):
        await clashing()
    assert await KeyValue.filter(key="new").count() == 0
    with sql.inline():  # and the connection goes on
        await _batch(2)
    assert await KeyValue.filter(key__startswith="k").count() == 2


async def test_a_long_inline_batch_gives_the_loop_turns(sqlite_db: Path) -> None:
    turns: list[int] = []
    counter = asyncio.create_task(_count_turns(turns, every_s=0))
    await asyncio.sleep(0)
    before = len(turns)
    try:
        with sql.inline():
            await _batch(400)
    finally:
        counter.cancel()
    assert len(turns) - before > 10


async def test_many_rows_written_inline_go_in_short_statements(sqlite_db: Path) -> None:
    # A batch's history in one INSERT kept the loop 50-100 ms (a thousand events): inline, a
    # multi-row INSERT goes in statements of at most INLINE_ROWS rows, a turn after each.
    statements: list[str] = []
    client = sql.connection()
    await KeyValue.all().count()  # the connection is open
    raw = client._connection._connection  # type: ignore[attr-defined]
    raw.set_trace_callback(lambda text: statements.append(text[:20]))
    rows = [(f"k{n}", "x") for n in range(2 * sql.INLINE_ROWS + 1)]
    with sql.inline():
        async with in_transaction():
            await KeyValue.create(key="first", value="takes the write lock")
            await sql.insert_many("key_value", ["key", "value"], rows, returning=None)
    inserts = [s for s in statements if s.startswith('INSERT INTO "key_val')]
    assert len(inserts) == 1 + 3
    assert await KeyValue.filter(key__startswith="k").count() == len(rows)
    statements.clear()
    elsewhere = [(f"e{n}", "x") for n in range(2 * sql.INLINE_ROWS + 1)]
    await sql.insert_many("key_value", ["key", "value"], elsewhere, returning=None)
    raw.set_trace_callback(None)
    assert len([s for s in statements if s.startswith("INSERT")]) == 1  # in the thread: one


def _inbound(i: int) -> InboundMessage:
    return InboundMessage(ChannelKind.WEB, f"web-{i}", f"r-{i}", f"Обращение {i}")


def _committed_entries(sqlite_db: Path) -> list[str]:
    """The stream's entries as another connection sees them: what is committed."""
    other = sqlite3.connect(sqlite_db.with_name("inline.stream.db"))
    try:
        return [row[0] for row in other.execute('SELECT "payload" FROM "stream_entry"')]
    finally:
        other.close()


async def test_the_streams_statements_run_in_the_loop_and_commit_there(
    sqlite_db: Path, hops: list[str]
) -> None:
    stream = LocalStream(consumer="c1")
    await stream.start()
    hops.clear()
    ids = await stream.publish_many([_inbound(1), _inbound(2)])
    assert len(_committed_entries(sqlite_db)) == 2  # durable when the publish returns
    items = await stream.read(count=10, block_ms=0)
    assert [i.message.external_id for i in items] == ["web-1", "web-2"]
    await stream.ack(ids)
    assert _committed_entries(sqlite_db) == []
    assert hops == []  # not one call went to the stream connection's thread


async def test_a_stream_write_finding_the_file_locked_waits_in_the_thread_not_the_loop(
    sqlite_db: Path,
) -> None:
    # An ``appeal-desk worker`` beside serve claims from the same stream file for a while.
    stream = LocalStream(consumer="c1")
    await stream.start()
    turns: list[int] = []
    ticker = asyncio.create_task(_count_turns(turns, every_s=0.01))
    async with _locked_by_another_process(sqlite_db.with_name("inline.stream.db")) as release:
        publish = asyncio.create_task(stream.publish(_inbound(7)))
        await asyncio.sleep(0.3)
        assert not publish.done()  # waiting for the lock (not refused)…
        assert len(turns) >= 10  # …while the loop went on
        release.set()
        await asyncio.wait_for(publish, GENEROUS_S)
    ticker.cancel()
    assert len(_committed_entries(sqlite_db)) == 1
    await stream.publish(_inbound(8))  # and the next goes in the loop again
    assert len(_committed_entries(sqlite_db)) == 2


async def test_the_streams_connection_closes_with_its_thread(sqlite_db: Path) -> None:
    stream = LocalStream(consumer="c1")
    await stream.start()
    await stream.publish(_inbound(1))
    client = sql.connection(sql.STREAM)
    thread = client._connection._thread  # type: ignore[attr-defined]
    await db.disconnect()
    await asyncio.to_thread(thread.join, GENEROUS_S)
    assert not thread.is_alive()
    await db.connect(f"sqlite://{sqlite_db}")  # for the fixture's own disconnect
