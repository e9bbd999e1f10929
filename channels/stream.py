"""The appeal stream: inbound messages stored before the channel's ack, read at least once."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT
from tortoise.queryset import QuerySet

from channels.base import BadInbound, InboundMessage
from channels.group_commit import GroupCommit
from models import sql
from models.infra import StreamEntry

log = logging.getLogger(__name__)

MAX_DELIVERIES_DEFAULT = 5
STREAM_KEY = "desk:appeals"
GROUP = "intake"
DEAD_SUFFIX = ":dead"
FIELD = "m"
CONSUMER_MAX_LEN = 100  # StreamEntry.claimed_by
ERROR_MAX_LEN = 500  # StreamEntry.error
POLL_S = 0.2  # how often a blocked local read looks at the table for other processes' entries
MAX_BLOCK_MS = 10_000  # one XREADGROUP BLOCK; longer reads loop, so the socket never times out
SOCKET_TIMEOUT_S = 20.0  # must exceed MAX_BLOCK_MS
CONNECT_TIMEOUT_S = 5.0
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
PENDING_SLACK = 100  # extra room in the XPENDING batch for older own entries within the id range
APPEND_MAX = 500  # entries one group commit writes at most
_COLUMNS = (
    "id",
    "payload",
    "created_at",
    "claimed_by",
    "claimed_until",
    "deliveries",
    "dead",
    "error",
)


@dataclass(frozen=True, slots=True)
class StreamItem:
    """One entry handed out by the stream; ``message`` is None when its payload is unreadable."""

    entry_id: str  # the backend's id: "17" (local), "1700000000000-0" (redis)
    message: InboundMessage | None
    deliveries: int  # times this entry has been handed out, this one included
    error: str = ""  # why message is None


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Where the intake stands: entries not handed out yet (``lag``), handed out and not acked
    (``pending``), set aside for good (``dead``)."""

    lag: int
    pending: int
    dead: int


class AppealStream(Protocol):
    """The port between channel adapters (publish) and the intake worker (read, ack)."""

    name: str  # "local" or "redis"

    async def start(self) -> None:
        """Prepare the stream (create the group, take back own entries); idempotent."""
        ...

    async def publish(self, message: InboundMessage) -> str:
        """Store one message durably and return its entry id; raises when it is not stored."""
        ...

    async def publish_many(self, messages: Sequence[InboundMessage]) -> list[str]:
        """Store messages durably, in this order, and return their entry ids."""
        ...

    async def read(self, count: int = 100, block_ms: int = 1000) -> list[StreamItem]:
        """New entries, expired claims, own entries after start; waits up to block_ms."""
        ...

    async def ack(self, entry_ids: Sequence[str]) -> None:
        """Mark entries done: they are never handed out again."""
        ...

    async def dead_letter(self, item: StreamItem, reason: str) -> None:
        """Give up on an entry: keep it for inspection, never hand it out again."""
        ...

    async def pending_count(self) -> int:
        """How many entries are published and neither acked nor dead-lettered."""
        ...

    async def stats(self) -> StreamStats:
        """Lag, pending and dead-lettered entries now (cheap: for a metrics scrape)."""
        ...

    async def ping(self) -> None:
        """Raise when the stream's store cannot be reached."""

    async def release(self) -> None:
        """Give back the entries this consumer read and did not ack (a graceful stop), so
        others read them at once; where the stream cannot, they come back after claim_idle_s."""
        ...

    async def close(self) -> None:
        """Release the stream's connections."""
        ...


def local_entries() -> QuerySet[StreamEntry]:
    """The local stream's rows, on the connection that holds them (its own SQLite file, or the
    database)."""
    return StreamEntry.all().using_db(sql.connection(sql.STREAM))


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the stream's server could not be reached or went away (a Redis
    restart, a cut link), as opposed to a command it refused. The local stream's store is the
    database: see ``models.db.is_outage``."""
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError))


def parse_payload(entry_id: str, payload: Any, deliveries: int) -> StreamItem:
    """A StreamItem for a decoded payload; unreadable gives ``message=None`` and the error."""
    if not isinstance(payload, dict):
        return StreamItem(entry_id, None, deliveries, "payload is not a JSON object")
    try:
        message = InboundMessage.from_json(payload)
    except BadInbound as exc:
        return StreamItem(entry_id, None, deliveries, str(exc)[:ERROR_MAX_LEN])
    return StreamItem(entry_id, message, deliveries)


class _StreamBase(abc.ABC):
    """What both backends share: identity, limits, and the poison-message rule."""

    name: str
    append_spacing_s = 0.0  # the least time from one group write's start to the next one's

    def __init__(self, *, consumer: str, claim_idle_s: float, max_deliveries: int) -> None:
        if not 0 < len(consumer) <= CONSUMER_MAX_LEN:
            raise ValueError(f"consumer name must have 1 to {CONSUMER_MAX_LEN} characters")
        if claim_idle_s <= 0:
            raise ValueError("claim_idle_s must be positive")
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self.consumer = consumer
        self.claim_idle_s = claim_idle_s
        self.max_deliveries = max_deliveries
        # Publishes that arrive while a write is under way go together in the next one.
        self._appender: GroupCommit[InboundMessage, str] = GroupCommit(
            self._append, max_batch=APPEND_MAX, spacing_s=self.append_spacing_s
        )

    async def publish(self, message: InboundMessage) -> str:
        """Store one message durably (group-committed with others) and return its entry id."""
        return (await self._appender.publish([message]))[0]

    async def publish_many(self, messages: Sequence[InboundMessage]) -> list[str]:
        """Store messages durably, in this order, and return their entry ids."""
        return await self._appender.publish(messages) if messages else []

    @abc.abstractmethod
    async def _append(self, messages: list[InboundMessage]) -> list[str]:
        """Write ``messages`` in one go (committed when this returns); their entry ids."""

    @abc.abstractmethod
    async def dead_letter(self, item: StreamItem, reason: str) -> None:
        """Give up on an entry: keep it for inspection, never hand it out again."""

    async def drop_poison(self, items: list[StreamItem]) -> list[StreamItem]:
        """Dead-letter the items handed out more than max_deliveries times; return the rest."""
        kept: list[StreamItem] = []
        for item in items:
            if item.deliveries <= self.max_deliveries:
                kept.append(item)
                continue
            log.warning(
                "stream entry dead-lettered after too many deliveries",
                extra={"entry": item.entry_id, "deliveries": item.deliveries, "stream": self.name},
            )
            await self.dead_letter(
                item, f"handed out {item.deliveries} times (max {self.max_deliveries})"
            )
        return kept


class LocalStream(_StreamBase):
    """The stream in the ``StreamEntry`` table: on SQLite in a file of its own beside the
    database (``models/db.py`` ``stream_url``: its own connection, so an append never waits for
    an intake transaction), on PostgreSQL in the database.

    Claims are conditional updates, so several processes on one database never share an entry.
    A publish wakes blocked reads of the same instance at once; other processes' entries are
    seen by polling every ``POLL_S``.
    """

    name: str = "local"
    # On SQLite its statements run in the event loop's thread, the sync of each write too
    # (about 0.5 ms on these machines; models/sqlite_client.py). Written back to back, a write
    # for every two or three webhooks at 1,000 a second held the loop a fifth of its time and
    # intake fell behind. A write at most every 3 ms carries more entries and syncs a few
    # hundred times a second at most; a webhook's answer waits up to 3 ms more.
    append_spacing_s = 0.003

    def __init__(
        self,
        *,
        consumer: str,
        claim_idle_s: float = 30.0,
        max_deliveries: int = MAX_DELIVERIES_DEFAULT,
    ) -> None:
        super().__init__(
            consumer=consumer, claim_idle_s=claim_idle_s, max_deliveries=max_deliveries
        )
        # Replaced on every publish: a reader waits on the event it saw before it looked, so a
        # publish that lands while the reader is querying still wakes it.
        self._published = asyncio.Event()

    async def start(self) -> None:
        """Take over entries an older version left in the database's own table; release the
        claims this consumer name held before a restart, so they are read again."""
        await self._take_over()
        released = (
            await local_entries()
            .filter(claimed_by=self.consumer, dead=False)
            .update(claimed_by=None, claimed_until=None)
        )
        if released:
            log.info(
                "stream entries taken back after restart",
                extra={"consumer": self.consumer, "entries": released},
            )

    async def _take_over(self) -> None:
        """Entries an older version kept in the database's ``stream_entry`` move to the stream's
        own file, ids and all (copied, then deleted: a crash in between copies them again, and
        the copy ignores ids it has)."""
        own, database = sql.connection(sql.STREAM), sql.connection()
        if own is database:
            return
        rows = await StreamEntry.all().using_db(database).values_list(*_COLUMNS)
        if not rows:
            return
        marks = ", ".join("?" for _ in _COLUMNS)
        names = ", ".join(f'"{c}"' for c in _COLUMNS)
        await own.execute_many(
            f'INSERT OR IGNORE INTO "stream_entry" ({names}) VALUES ({marks})',  # noqa: S608
            [[r[0], sql.json_value(r[1]), *r[2:]] for r in rows],
        )
        await StreamEntry.filter(id__in=[r[0] for r in rows]).using_db(database).delete()
        log.info("stream entries moved to the stream's own file", extra={"entries": len(rows)})

    async def _append(self, messages: list[InboundMessage]) -> list[str]:
        """One multi-row INSERT (committed when this returns); returns the rows' ids."""
        now = datetime.now(UTC)
        ids = await sql.insert_many(
            "stream_entry",
            ("payload", "created_at", "deliveries", "dead", "error"),
            [(sql.json_value(m.to_json()), now, 0, False, "") for m in messages],
            using=sql.STREAM,
        )
        woken, self._published = self._published, asyncio.Event()
        woken.set()
        return [str(i) for i in ids]

    async def read(self, count: int = 100, block_ms: int = 1000) -> list[StreamItem]:
        """Claim up to ``count`` free or expired entries in id order; waits up to block_ms."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(block_ms, 0) / 1000
        while True:
            published = self._published
            seen, claimed = await self._claim(count)
            items = await self.drop_poison(claimed)
            if items:
                return items
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            if seen:
                continue  # lost the rows to other consumers or to the dead letters: look again
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(published.wait(), timeout=min(POLL_S, remaining))

    async def _claim(self, count: int) -> tuple[bool, list[StreamItem]]:
        """Claim what is free now in one statement; returns whether any row was claimed, and
        the items in id order.

        On PostgreSQL concurrent claimants skip each other's rows (SKIP LOCKED), and the outer
        condition is checked again on a row another claimant changed meanwhile; SQLite has one
        writer, so the statement is atomic there.
        """
        now = datetime.now(UTC)
        until = now + timedelta(seconds=self.claim_idle_s)
        skip = " FOR UPDATE SKIP LOCKED" if sql.is_postgres(sql.connection(sql.STREAM)) else ""
        text = (
            'UPDATE "stream_entry" SET "claimed_by" = {p1}, "claimed_until" = {p2}, '  # noqa: S608
            '"deliveries" = "deliveries" + 1 WHERE "id" IN (SELECT "id" FROM "stream_entry" '
            'WHERE "dead" = {p3} AND ("claimed_until" IS NULL OR "claimed_until" < {p4}) '
            f'ORDER BY "id" LIMIT {{p5}}{skip}) '
            'AND "dead" = {p6} AND ("claimed_until" IS NULL OR "claimed_until" < {p7}) '
            'RETURNING "id", "deliveries", "payload"'
        )
        params = [self.consumer, until, False, now, max(count, 1), False, now]
        rows = await sql.fetch(text, params, using=sql.STREAM)
        items = [
            parse_payload(str(row["id"]), sql.json_loaded(row["payload"]), int(row["deliveries"]))
            for row in sorted(rows, key=lambda r: int(r["id"]))
        ]
        return bool(items), items

    async def ack(self, entry_ids: Sequence[str]) -> None:
        """Delete the entries' rows."""
        ids = [int(entry_id) for entry_id in entry_ids]
        if ids:
            await local_entries().filter(id__in=ids).delete()

    async def dead_letter(self, item: StreamItem, reason: str) -> None:
        """Mark the row dead with the reason; it stays in the table for inspection."""
        await (
            local_entries()
            .filter(id=int(item.entry_id))
            .update(dead=True, error=reason[:ERROR_MAX_LEN], claimed_until=None)
        )

    async def pending_count(self) -> int:
        """Rows neither acked nor dead."""
        return await local_entries().filter(dead=False).count()

    async def stats(self) -> StreamStats:
        """Counts by claim state; the (dead, id) index serves the live rows."""
        live = local_entries().filter(dead=False)
        claimed = await live.filter(claimed_until__gte=datetime.now(UTC)).count()
        waiting = await live.count() - claimed
        dead = await local_entries().filter(dead=True).count()
        return StreamStats(lag=waiting, pending=claimed, dead=dead)

    async def ping(self) -> None:
        """The local stream lives in the database, checked on its own."""

    async def release(self) -> None:
        """Clear this consumer's claims on entries it did not ack."""
        await (
            local_entries()
            .filter(claimed_by=self.consumer, dead=False)
            .update(claimed_by=None, claimed_until=None)
        )

    async def close(self) -> None:
        """Wake blocked reads; the ORM connection belongs to the caller."""
        self._published.set()


def _id_order(entry_id: str) -> tuple[int, int]:
    """A Redis stream id as numbers, for ordering ("9-0" comes before "10-0")."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RedisStream(_StreamBase):
    """The stream in Redis Streams: a consumer group, XAUTOCLAIM for dead consumers' entries."""

    name: str = "redis"

    def __init__(
        self,
        url: str,
        *,
        consumer: str,
        claim_idle_s: float = 30.0,
        max_deliveries: int = MAX_DELIVERIES_DEFAULT,
        key: str = STREAM_KEY,
        group: str = GROUP,
    ) -> None:
        super().__init__(
            consumer=consumer, claim_idle_s=claim_idle_s, max_deliveries=max_deliveries
        )
        self.key = key
        self.dead_key = key + DEAD_SUFFIX
        self.group = group
        self._redis = aioredis.from_url(
            url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            # Fail a publish within seconds so the channel is not acknowledged; reads retry
            # on their own, with a longer backoff.
            retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.1), retries=2),
        )
        self._history: str | None = "0"  # where re-reading own pending entries goes on
        self._need_group = False
        self._backoff = RETRY_FIRST_S

    async def start(self) -> None:
        """Create the stream and the consumer group if missing; own entries are re-read next."""
        await self._create_group()
        self._history = "0"

    async def _create_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._need_group = False

    async def _append(self, messages: list[InboundMessage]) -> list[str]:
        """One pipeline of XADDs (field ``m``, JSON) in a MULTI, so all are stored or none;
        redis errors propagate: the entries are not stored."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for message in messages:
                pipe.xadd(self.key, {FIELD: json.dumps(message.to_json(), ensure_ascii=False)})
            ids: list[str] = await pipe.execute()
        return ids

    async def read(self, count: int = 100, block_ms: int = 1000) -> list[StreamItem]:
        """Own pending (first read), dead consumers' idle, then new entries; retries lost links."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(block_ms, 0) / 1000
        while True:
            try:
                raw = await self._read_once(max(count, 1), deadline)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning(
                    "redis stream read failed, retrying",
                    extra={"error": type(exc).__name__, "retry_in_s": self._backoff},
                )
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, RETRY_MAX_S)
                if loop.time() >= deadline:
                    return []
                continue
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The server lost the group (restarted without persistence, key deleted).
                log.warning("redis stream group missing, creating it", extra={"key": self.key})
                self._need_group = True
                continue
            self._backoff = RETRY_FIRST_S
            items = await self.drop_poison(raw)
            if items or loop.time() >= deadline:
                return items

    async def _read_once(self, count: int, deadline: float) -> list[StreamItem]:
        """One pass: history, XAUTOCLAIM, then XREADGROUP ">" (blocking only if nothing yet)."""
        if self._need_group:
            await self._create_group()
        old: list[tuple[str, dict[str, str]]] = []
        # Taken before the await, so concurrent reads of one instance never re-read it twice.
        cursor, self._history = self._history, None
        if cursor is not None:
            try:
                reply = await self._redis.xreadgroup(
                    self.group, self.consumer, {self.key: cursor}, count=count
                )
            except BaseException:
                self._history = cursor
                raise
            history = reply[0][1] if reply else []
            if len(history) >= count:  # fewer than asked: the history is exhausted
                self._history = history[-1][0]
            old += history
        if len(old) < count:
            claimed = await self._redis.xautoclaim(
                self.key,
                self.group,
                self.consumer,
                min_idle_time=int(self.claim_idle_s * 1000),
                start_id="0-0",
                count=count - len(old),
            )
            old += claimed[1]
        new: list[tuple[str, dict[str, str]]] = []
        if len(old) < count:
            block = None if old else self._block_ms(deadline)
            reply = await self._redis.xreadgroup(
                self.group, self.consumer, {self.key: ">"}, count=count - len(old), block=block
            )
            new = reply[0][1] if reply else []
        gone = [entry_id for entry_id, fields in old if not fields]
        if gone:
            # Pending but deleted from the stream (trimmed by hand): nothing left to process.
            log.warning("stream entries missing, acked", extra={"entries": gone})
            await self._redis.xack(self.key, self.group, *gone)
        old = [(entry_id, fields) for entry_id, fields in old if fields]
        counts = await self._deliveries([entry_id for entry_id, _ in old])
        items = [self._item(entry_id, fields, counts.get(entry_id, 1)) for entry_id, fields in old]
        items += [self._item(entry_id, fields, 1) for entry_id, fields in new]
        return items

    def _block_ms(self, deadline: float) -> int | None:
        """Milliseconds XREADGROUP may block; None for no blocking (BLOCK 0 would be forever)."""
        left = int((deadline - asyncio.get_running_loop().time()) * 1000)
        return min(left, MAX_BLOCK_MS) if left > 0 else None

    async def _deliveries(self, entry_ids: list[str]) -> dict[str, int]:
        """Delivery counts of own pending entries: one XPENDING over their id range."""
        if not entry_ids:
            return {}
        ordered = sorted(entry_ids, key=_id_order)
        rows = await self._redis.xpending_range(
            self.key,
            self.group,
            min=ordered[0],
            max=ordered[-1],
            count=len(ordered) + PENDING_SLACK,
            consumername=self.consumer,
        )
        counts = {row["message_id"]: int(row["times_delivered"]) for row in rows}
        for entry_id in entry_ids:
            if entry_id not in counts:  # crowded out by many older own entries in the range
                one = await self._redis.xpending_range(
                    self.key, self.group, min=entry_id, max=entry_id, count=1
                )
                if one:
                    counts[entry_id] = int(one[0]["times_delivered"])
        return counts

    @staticmethod
    def _item(entry_id: str, fields: dict[str, str], deliveries: int) -> StreamItem:
        raw = fields.get(FIELD)
        if raw is None:
            return StreamItem(entry_id, None, deliveries, f"entry has no {FIELD!r} field")
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            return StreamItem(entry_id, None, deliveries, f"payload is not JSON: {exc}")
        return parse_payload(entry_id, payload, deliveries)

    async def ack(self, entry_ids: Sequence[str]) -> None:
        """XACK and XDEL the entries in one transaction (acked entries leave the stream)."""
        ids = list(entry_ids)
        if not ids:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.key, self.group, *ids)
            pipe.xdel(self.key, *ids)
            await pipe.execute()

    async def dead_letter(self, item: StreamItem, reason: str) -> None:
        """Copy the entry to the dead stream with the reason, then XACK and XDEL it, atomically."""
        found = await self._redis.xrange(self.key, min=item.entry_id, max=item.entry_id, count=1)
        fields: dict[FieldT, EncodableT] = dict(found[0][1]) if found else {}
        fields.update(
            reason=reason[:ERROR_MAX_LEN],
            entry_id=item.entry_id,
            deliveries=str(item.deliveries),
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_key, fields)
            pipe.xack(self.key, self.group, item.entry_id)
            pipe.xdel(self.key, item.entry_id)
            await pipe.execute()

    async def pending_count(self) -> int:
        """XLEN of the stream: acked and dead-lettered entries are deleted from it."""
        length: int = await self._redis.xlen(self.key)
        return length

    async def stats(self) -> StreamStats:
        """The group's ``lag`` and ``pending`` from XINFO GROUPS, XLEN of the dead stream."""
        lag = pending = 0
        try:
            groups = await self._redis.xinfo_groups(self.key)
        except ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            groups = []  # nothing published yet, or the key was deleted
        for group in groups:
            if group.get("name") == self.group:
                pending = int(group.get("pending") or 0)
                # None when Redis cannot tell (entries deleted mid-stream): every entry left
                # that is not pending is still to be read.
                reported = group.get("lag")
                if reported is None:
                    reported = max(0, await self.pending_count() - pending)
                lag = int(reported)
        dead: int = await self._redis.xlen(self.dead_key)
        return StreamStats(lag=lag, pending=pending, dead=dead)

    async def ping(self) -> None:
        """PING the Redis server."""
        await cast("Awaitable[bool]", self._redis.ping())  # redis-py types it sync-or-async

    async def release(self) -> None:
        """Nothing: Redis cannot give an entry back to the group; this consumer name reads its
        own entries first on its next start, and others claim them after claim_idle_s."""

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def open_stream(
    redis_url: str | None,
    *,
    consumer: str,
    claim_idle_s: float = 30.0,
    max_deliveries: int = MAX_DELIVERIES_DEFAULT,
) -> AppealStream:
    """Redis Streams when redis_url is set, else the local (database) stream."""
    if redis_url:
        return RedisStream(
            redis_url,
            consumer=consumer,
            claim_idle_s=claim_idle_s,
            max_deliveries=max_deliveries,
        )
    return LocalStream(consumer=consumer, claim_idle_s=claim_idle_s, max_deliveries=max_deliveries)
