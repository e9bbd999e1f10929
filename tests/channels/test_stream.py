"""The appeal stream on both backends: local (SQLite through the ORM) and Redis Streams."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

import channels.stream as stream_module
from channels.base import Attachment, ChannelKind, ContactHint, InboundMessage
from channels.stream import (
    MAX_DELIVERIES_DEFAULT,
    AppealStream,
    LocalStream,
    RedisStream,
    StreamItem,
    local_entries,
    open_stream,
)
from models import db, sql
from models.infra import StreamEntry
from tests import ROOT

REDIS_URL = os.environ.get("DESK_TEST_REDIS_URL") or None
GENEROUS_S = 10.0  # an upper bound for "returns", never a speed claim

needs_redis = [
    pytest.mark.redis,
    pytest.mark.skipif(REDIS_URL is None, reason="DESK_TEST_REDIS_URL is not set"),
]


def inbound(i: int = 0) -> InboundMessage:
    """A plain Telegram message numbered ``i``."""
    return InboundMessage(
        channel=ChannelKind.TELEGRAM,
        external_id=f"tg-{i}",
        address="100500",
        text=f"Обращение {i}",
        sent_at=datetime(2025, 2, 3, 10, i % 60, tzinfo=UTC),
    )


def full_inbound() -> InboundMessage:
    """A message with every field set to something other than its default."""
    return InboundMessage(
        channel=ChannelKind.EMAIL,
        external_id="<a1b2@mail.example.com>",
        address="anna@example.com",
        text='Здравствуйте!\nГде мой заказ №42? <b>срочно</b> & "быстро"',
        sender_name="Анна Петрова",
        language="ru",
        sent_at=datetime(2025, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=3))),
        subject="Заказ 42",
        attachments=(
            Attachment("photo", "file-id-1", "чек.jpg", "image/jpeg", 2048),
            Attachment("document", "/files/2.pdf"),
        ),
        contacts=(ContactHint("phone", "+70000000000"), ContactHint("telegram", "100500")),
        appeal_number="A-000123",
        new_appeal=True,
    )


class Backend:
    """One stream under test: opens consumers on it, injects junk, lists its dead letters."""

    def __init__(self, name: str, key: str) -> None:
        self.name = name
        self.key = key
        self._opened: list[AppealStream] = []

    def open(
        self,
        consumer: str = "w1",
        *,
        claim_idle_s: float = 30.0,
        max_deliveries: int = MAX_DELIVERIES_DEFAULT,
    ) -> AppealStream:
        """A consumer of this backend's stream (closed at the end of the test)."""
        opened: AppealStream
        if self.name.startswith("local"):
            opened = LocalStream(
                consumer=consumer, claim_idle_s=claim_idle_s, max_deliveries=max_deliveries
            )
        else:
            assert REDIS_URL is not None
            opened = RedisStream(
                REDIS_URL,
                consumer=consumer,
                claim_idle_s=claim_idle_s,
                max_deliveries=max_deliveries,
                key=self.key,
            )
        self._opened.append(opened)
        return opened

    async def started(self, consumer: str = "w1", **options: Any) -> AppealStream:
        """A consumer, started."""
        opened = self.open(consumer, **options)
        await opened.start()
        return opened

    async def inject_junk(self) -> str:
        """Store an entry whose payload is not an InboundMessage; returns its id."""
        if self.name.startswith("local"):
            row = await StreamEntry.create(payload={"junk": 1}, using_db=sql.connection(sql.STREAM))
            return str(row.id)
        async with self._client() as client:
            entry_id: str = await client.xadd(self.key, {"junk": "1"})
            return entry_id

    async def dead_letters(self) -> dict[str, str]:
        """Dead-lettered entries: entry id → reason."""
        if self.name.startswith("local"):
            return {str(row.id): row.error for row in await local_entries().filter(dead=True)}
        async with self._client() as client:
            entries = await client.xrange(self.key + ":dead")
        return {fields["entry_id"]: fields["reason"] for _, fields in entries}

    async def cleanup(self) -> None:
        """Close every consumer and, for Redis, delete the test's keys."""
        for opened in self._opened:
            await opened.close()
        if self.name == "redis":
            async with self._client() as client:
                await client.delete(self.key, self.key + ":dead")

    def _client(self) -> aioredis.Redis:
        assert REDIS_URL is not None
        return aioredis.from_url(REDIS_URL, decode_responses=True)


@pytest.fixture
async def local_db(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated SQLite file (a copy of the session's template), connected through the ORM
    for the test."""
    path = tmp_path / "stream.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite://{path}"
    await db.connect(url)
    yield url
    await db.disconnect()


PG_URL = os.environ.get("DESK_TEST_DATABASE_URL") or None


@pytest.fixture
async def local_pg_db(db_url: str) -> AsyncIterator[str]:
    """The test PostgreSQL database, emptied and connected through the ORM for the test."""
    await db.connect(db_url)
    yield db_url
    await db.disconnect()


@pytest.fixture(
    params=[
        "local",
        pytest.param(
            "local-pg",
            marks=pytest.mark.skipif(PG_URL is None, reason="DESK_TEST_DATABASE_URL is not set"),
        ),
        pytest.param("redis", marks=needs_redis),
    ]
)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The backend a parametrized test runs on."""
    name: str = request.param
    return name


@pytest.fixture
def backend_db(backend_name: str, request: pytest.FixtureRequest) -> str | None:
    """The database of the local backend (SQLite, or PostgreSQL); nothing for Redis."""
    if backend_name == "redis":
        return None
    url: str = request.getfixturevalue("local_pg_db" if backend_name == "local-pg" else "local_db")
    return url


@pytest.fixture
async def backend(backend_name: str, backend_db: str | None) -> AsyncIterator[Backend]:
    """A fresh stream (its own Redis key) on the parametrized backend."""
    under_test = Backend(backend_name, f"desk:test:{uuid.uuid4().hex}")
    yield under_test
    await under_test.cleanup()


async def read_until(stream: AppealStream, count: int, *, block_ms: int = 200) -> list[StreamItem]:
    """Read until ``count`` items came back (or a generous time passed)."""
    items: list[StreamItem] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GENEROUS_S
    while len(items) < count and loop.time() < deadline:
        items += await stream.read(count=count - len(items), block_ms=block_ms)
    return items


async def test_published_message_reads_back_with_every_field(backend: Backend) -> None:
    stream = await backend.started()
    message = full_inbound()
    entry_id = await stream.publish(message)
    items = await stream.read(block_ms=1000)
    assert items == [StreamItem(entry_id=entry_id, message=message, deliveries=1)]
    assert items[0].message is not None
    assert items[0].message.attachments == message.attachments
    assert items[0].message.contacts == message.contacts
    assert items[0].message.sent_at == message.sent_at


async def test_unacked_entry_goes_to_another_consumer_only_after_the_claim_expires(
    backend: Backend,
) -> None:
    first = await backend.started("a", claim_idle_s=0.5)
    second = await backend.started("b", claim_idle_s=0.5)
    entry_id = await first.publish(inbound(1))
    assert [i.entry_id for i in await first.read(block_ms=1000)] == [entry_id]
    assert await second.read(block_ms=0) == []  # the claim is fresh

    taken = await read_until(second, 1)

    assert taken == [StreamItem(entry_id=entry_id, message=inbound(1), deliveries=2)]
    assert await first.read(block_ms=0) == []  # now the second consumer's claim is fresh


async def test_acked_entries_are_never_read_again(backend: Backend) -> None:
    stream = await backend.started("a", claim_idle_s=0.2)
    other = await backend.started("b", claim_idle_s=0.2)
    for i in range(3):
        await stream.publish(inbound(i))
    assert await stream.pending_count() == 3
    items = await read_until(stream, 3)
    assert await stream.pending_count() == 3  # handed out is not done

    await stream.ack([item.entry_id for item in items])

    assert await stream.pending_count() == 0
    await asyncio.sleep(0.4)  # longer than claim_idle_s: nothing may come back
    assert await stream.read(block_ms=100) == []
    assert await other.read(block_ms=100) == []


async def test_restarted_consumer_gets_its_unacked_entries_on_the_first_read(
    backend: Backend,
) -> None:
    before = await backend.started("w1")
    ids = [await before.publish(inbound(i)) for i in range(2)]
    assert [i.entry_id for i in await read_until(before, 2)] == ids
    await before.close()  # a crash: nothing acked
    stranger = await backend.started("w2")
    assert await stranger.read(block_ms=0) == []  # the claims are fresh for anyone else

    after = await backend.started("w1")
    items = await after.read(block_ms=0)

    assert [(i.entry_id, i.message, i.deliveries) for i in items] == [
        (ids[0], inbound(0), 2),
        (ids[1], inbound(1), 2),
    ]


async def test_restarted_consumer_pages_through_more_own_entries_than_one_read_holds(
    backend: Backend,
) -> None:
    before = await backend.started("w1")
    ids = [await before.publish(inbound(i)) for i in range(5)]
    assert len(await read_until(before, 5)) == 5
    await before.close()

    after = await backend.started("w1")
    pages = [await after.read(count=2, block_ms=0) for _ in range(4)]

    assert [[i.entry_id for i in page] for page in pages] == [ids[0:2], ids[2:4], ids[4:], []]
    assert {i.deliveries for page in pages for i in page} == {2}


PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from channels.base import ChannelKind, InboundMessage
    from channels.stream import open_stream
    from models import db

    async def main() -> None:
        await db.connect(sys.argv[1])
        stream = open_stream(None, consumer="publisher")
        await stream.start()
        for i in range(int(sys.argv[2])):
            await stream.publish(
                InboundMessage(ChannelKind.WEB, f"web-{i}", f"r-{i}", f"Обращение {i}")
            )
        print("published", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_local_entries_published_before_sigkill_are_read_once_after_restart(
    local_db: str,
) -> None:
    count = 50
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PUBLISHER,
        local_db,
        str(count),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line.strip() == b"published"
    finally:
        proc.kill()  # SIGKILL: no clean shutdown of anything
        await proc.wait()
    assert proc.returncode == -9

    stream = LocalStream(consumer="after-restart")
    await stream.start()
    items = await read_until(stream, count)
    await stream.ack([item.entry_id for item in items])

    texts = [item.message.text for item in items if item.message is not None]
    assert sorted(texts) == sorted(f"Обращение {i}" for i in range(count))
    assert len({item.entry_id for item in items}) == count
    assert await stream.pending_count() == 0
    assert await stream.read(block_ms=100) == []


async def test_two_consumers_reading_concurrently_never_get_the_same_entry(
    backend: Backend,
) -> None:
    publisher = await backend.started("publisher")
    published = {await publisher.publish(inbound(i)) for i in range(200)}
    first = await backend.started("c1")
    second = await backend.started("c2")

    async def drain(stream: AppealStream) -> list[str]:
        got: list[str] = []
        while items := await stream.read(count=7, block_ms=200):
            ids = [item.entry_id for item in items]
            got += ids
            await stream.ack(ids)
        return got

    got_first, got_second = await asyncio.gather(drain(first), drain(second))

    assert got_first
    assert got_second
    assert not set(got_first) & set(got_second)
    assert len(got_first) + len(got_second) == 200
    assert set(got_first) | set(got_second) == published
    assert await publisher.pending_count() == 0


async def test_unparseable_payload_comes_back_with_an_error_and_the_rest_still_flows(
    backend: Backend,
) -> None:
    stream = await backend.started()
    before = await stream.publish(inbound(1))
    junk = await backend.inject_junk()
    after = await stream.publish(inbound(2))

    items = await read_until(stream, 3)

    assert [item.entry_id for item in items] == [before, junk, after]
    assert [item.message for item in items] == [inbound(1), None, inbound(2)]
    assert items[1].error
    assert items[1].deliveries == 1
    assert not items[0].error
    await stream.dead_letter(items[1], items[1].error)
    await stream.ack([before, after])
    assert await stream.pending_count() == 0
    assert await backend.dead_letters() == {junk: items[1].error}
    assert await stream.read(block_ms=100) == []


async def test_entry_handed_out_more_than_max_deliveries_is_dead_lettered(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    poison = await (await backend.started("w1")).publish(inbound(1))
    for expected in (1, 2):  # each restart of the consumer hands its pending entry out again
        stream = await backend.started("w1", max_deliveries=2)
        items = await stream.read(block_ms=1000)
        assert [(i.entry_id, i.deliveries) for i in items] == [(poison, expected)]
        await stream.close()

    stream = await backend.started("w1", max_deliveries=2, claim_idle_s=0.2)
    with caplog.at_level(logging.WARNING, logger="channels.stream"):
        assert await stream.read(block_ms=100) == []

    assert await stream.pending_count() == 0
    assert list(await backend.dead_letters()) == [poison]
    warnings = [r for r in caplog.records if getattr(r, "entry", None) == poison]
    assert warnings
    assert all("Обращение" not in r.getMessage() for r in caplog.records)
    fresh = await stream.publish(inbound(2))
    assert [(i.entry_id, i.message) for i in await stream.read(block_ms=1000)] == [
        (fresh, inbound(2))
    ]
    other = await backend.started("w2", claim_idle_s=0.2, max_deliveries=2)
    await asyncio.sleep(0.3)
    assert [i.entry_id for i in await other.read(block_ms=100)] == [fresh]  # not the poison


async def test_read_with_nothing_available_waits_and_returns_empty(backend: Backend) -> None:
    stream = await backend.started()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await stream.read(block_ms=300) == []
    assert loop.time() - started < GENEROUS_S


async def test_publish_wakes_a_blocked_read(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without polling only the in-process wake-up (or Redis's own BLOCK) can end the read early.
    monkeypatch.setattr(stream_module, "POLL_S", 60.0)
    stream = await backend.started()  # the service shares one stream object for both sides
    blocked = asyncio.create_task(stream.read(block_ms=60_000))
    await asyncio.sleep(0.2)
    assert not blocked.done()

    entry_id = await stream.publish(inbound(1))
    items = await asyncio.wait_for(blocked, timeout=GENEROUS_S)

    assert [(i.entry_id, i.message) for i in items] == [(entry_id, inbound(1))]


async def test_only_one_of_two_racing_local_consumers_claims_a_row(local_db: str) -> None:
    first = LocalStream(consumer="a")
    second = LocalStream(consumer="b")
    await first.publish(inbound(1))
    # Both saw the row free; only one conditional update may win it.
    results = await asyncio.gather(first.read(block_ms=0), second.read(block_ms=0))
    assert sorted(len(items) for items in results) == [0, 1]
    row = await local_entries().get()
    assert row.deliveries == 1


async def test_a_burst_of_local_publishes_is_stored_once_each_in_publish_order(
    local_db: str,
) -> None:
    stream = LocalStream(consumer="a")
    count = 250
    ids = await asyncio.gather(*(stream.publish(inbound(i)) for i in range(count)))
    assert len(set(ids)) == count
    assert await local_entries().count() == count
    items = await read_until(stream, count)
    assert [item.entry_id for item in items] == ids
    assert [item.message.external_id for item in items if item.message] == [
        f"tg-{i}" for i in range(count)
    ]


async def test_every_publisher_gets_the_error_when_the_database_is_gone(local_db: str) -> None:
    stream = LocalStream(consumer="a")
    await stream.publish(inbound(0))
    await db.disconnect()  # the database is gone: the write fails
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(stream.publish(inbound(i)) for i in range(1, 6)), return_exceptions=True
            ),
            timeout=GENEROUS_S,
        )
    finally:
        await db.connect(local_db)
    assert all(isinstance(r, Exception) for r in results), results
    assert await local_entries().count() == 1  # none of them is half-stored
    assert await stream.publish(inbound(7))  # and the stream writes again afterwards


async def test_dead_letter_keeps_the_entry_for_inspection(backend: Backend) -> None:
    stream = await backend.started()
    entry_id = await stream.publish(inbound(1))
    [item] = await stream.read(block_ms=1000)

    await stream.dead_letter(item, "customer not found")

    assert await backend.dead_letters() == {entry_id: "customer not found"}
    assert await stream.pending_count() == 0
    later = await backend.started("w2", claim_idle_s=0.2)
    await asyncio.sleep(0.3)
    assert await later.read(block_ms=100) == []


async def test_open_stream_uses_redis_only_when_a_url_is_set() -> None:
    local = open_stream(None, consumer="x")
    remote = open_stream("redis://127.0.0.1:1/0", consumer="x", claim_idle_s=5, max_deliveries=3)
    assert isinstance(local, LocalStream)
    assert isinstance(remote, RedisStream)
    assert (local.name, remote.name) == ("local", "redis")
    assert (remote.claim_idle_s, remote.max_deliveries) == (5, 3)
    assert remote.key == "desk:appeals"
    await remote.close()


async def test_redis_read_survives_an_unreachable_server_but_publish_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = RedisStream("redis://127.0.0.1:1/0", consumer="x", key=f"desk:test:{uuid.uuid4()}")
    try:
        with caplog.at_level(logging.WARNING, logger="channels.stream"):
            assert await stream.read(block_ms=100) == []
        assert any("retrying" in r.getMessage() for r in caplog.records)
        with pytest.raises(RedisConnectionError):
            await stream.publish(inbound(1))
    finally:
        await stream.close()


def test_local_stream_refuses_a_consumer_name_that_does_not_fit() -> None:
    with pytest.raises(ValueError, match="consumer"):
        LocalStream(consumer="x" * 101)
    with pytest.raises(ValueError, match="consumer"):
        LocalStream(consumer="")


@pytest.mark.redis
@pytest.mark.skipif(REDIS_URL is None, reason="DESK_TEST_REDIS_URL is not set")
async def test_redis_read_recreates_a_consumer_group_the_server_lost() -> None:
    key = f"desk:test:{uuid.uuid4().hex}"
    assert REDIS_URL is not None
    stream = RedisStream(REDIS_URL, consumer="w1", key=key)
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        await stream.start()
        await client.delete(key)  # as after a restart of a server without persistence
        entry_id = await stream.publish(inbound(1))

        items = await stream.read(block_ms=1000)

        assert [(i.entry_id, i.message) for i in items] == [(entry_id, inbound(1))]
    finally:
        await stream.close()
        await client.delete(key)
        await client.aclose()


def count_writes(stream: AppealStream) -> list[int]:
    """The size of every write the stream's group commit makes from now on."""
    appender = stream._appender  # type: ignore[attr-defined]
    real = appender._write
    sizes: list[int] = []

    async def counted(messages: list[InboundMessage]) -> list[str]:
        sizes.append(len(messages))
        ids: list[str] = await real(messages)
        return ids

    appender._write = counted
    return sizes


async def test_publishes_arriving_together_are_stored_in_one_write_in_their_order(
    backend: Backend,
) -> None:
    stream = await backend.started()
    writes = count_writes(stream)

    ids = await asyncio.gather(*(stream.publish(inbound(i)) for i in range(60)))

    assert sum(writes) == 60
    assert len(writes) <= 2  # the first goes at once, the rest wait for it and go together
    items = await read_until(stream, 60)
    assert [item.entry_id for item in items] == ids
    assert [item.message for item in items] == [inbound(i) for i in range(60)]


async def test_local_publishes_trickling_in_share_a_write_and_a_lone_one_goes_at_once(
    local_db: str,
) -> None:
    # Each local write syncs to disk in the event loop's thread: the next starts no sooner
    # than ``append_spacing_s`` after the one before, carrying what came meanwhile. (Spaced
    # wider here than the 3 ms of the service, so that a loaded machine still shows it.)
    class Spaced(LocalStream):
        append_spacing_s = 0.5

    stream = Spaced(consumer="c1")
    await stream.start()
    writes = count_writes(stream)
    await stream.publish(inbound(0))  # written: the next write may not start for a while…
    later = [asyncio.create_task(stream.publish(inbound(1)))]
    await asyncio.sleep(0)
    later += [asyncio.create_task(stream.publish(inbound(i))) for i in range(2, 6)]
    await asyncio.gather(*later)
    assert writes == [1, 5]  # …so the one that came first waited for the others

    await asyncio.sleep(stream.append_spacing_s * 2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await stream.publish(inbound(9))
    assert writes == [1, 5, 1]
    assert loop.time() - started < stream.append_spacing_s  # not held back
    items = await read_until(stream, 7)
    assert [item.message for item in items] == [inbound(i) for i in (0, 1, 2, 3, 4, 5, 9)]


async def test_publish_many_returns_the_ids_of_one_write(backend: Backend) -> None:
    stream = await backend.started()
    writes = count_writes(stream)

    ids = await stream.publish_many([inbound(i) for i in range(5)])

    assert writes == [5]
    items = await read_until(stream, 5)
    assert [item.entry_id for item in items] == ids


async def test_a_failed_write_fails_every_publish_it_carried_and_the_next_write_goes(
    backend: Backend,
) -> None:
    stream = await backend.started()
    appender = stream._appender  # type: ignore[attr-defined]
    real = appender._write
    calls = 0

    async def broken_once(messages: list[InboundMessage]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.05)  # the others queue up meanwhile
            raise ConnectionError("the store went away")
        ids: list[str] = await real(messages)
        return ids

    appender._write = broken_once
    first = [asyncio.create_task(stream.publish(inbound(i))) for i in range(3)]
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(stream.publish(inbound(i))) for i in range(3, 6)]

    results = await asyncio.gather(*first, *later, return_exceptions=True)

    assert all(isinstance(r, ConnectionError) for r in results[:3])  # not acknowledged
    stored = [r for r in results[3:] if isinstance(r, str)]
    assert len(stored) == 3
    items = await read_until(stream, 3)
    assert [item.message for item in items] == [inbound(i) for i in range(3, 6)]


async def test_a_publisher_that_gives_up_does_not_stop_the_write_of_the_others(
    backend: Backend,
) -> None:
    stream = await backend.started()
    appender = stream._appender  # type: ignore[attr-defined]
    real = appender._write

    async def slow(messages: list[InboundMessage]) -> list[str]:
        await asyncio.sleep(0.1)
        ids: list[str] = await real(messages)
        return ids

    appender._write = slow
    quitter = asyncio.create_task(stream.publish(inbound(1)))
    stayer = asyncio.create_task(stream.publish(inbound(2)))
    await asyncio.sleep(0.02)
    quitter.cancel()

    entry_id = await stayer
    items = await read_until(stream, 2)
    # The quitter's message was written too (a channel that retries it is deduplicated by its
    # external id in intake); the other publisher got its id.
    assert entry_id in [item.entry_id for item in items]
    assert [item.message for item in items] == [inbound(1), inbound(2)]


async def test_on_sqlite_the_local_stream_is_a_file_of_its_own_and_takes_over_older_entries(
    local_db: str,
) -> None:
    # Entries an older version left in the database's own table (two waiting, one dead).
    database = sql.connection()
    for i in (1, 2):
        await StreamEntry.create(payload=inbound(i).to_json(), using_db=database)
    await StreamEntry.create(payload={"junk": 1}, dead=True, error="bad", using_db=database)
    stream = LocalStream(consumer="a")
    await stream.start()
    await stream.start()  # a second start (a crash between copy and delete) copies nothing twice

    assert sql.connection(sql.STREAM) is not database
    assert await StreamEntry.all().using_db(database).count() == 0
    assert (await stream.stats()).dead == 1
    new = await stream.publish(inbound(3))
    items = await read_until(stream, 3)
    assert [item.message.external_id for item in items if item.message] == ["tg-1", "tg-2", "tg-3"]
    assert items[-1].entry_id == new
    assert db.stream_url(local_db) == local_db.replace("/stream.db", "/stream.stream.db")
    assert (await sql.connection(sql.STREAM).execute_query_dict("PRAGMA database_list"))[0][
        "file"
    ].endswith("stream.stream.db")
