"""The intake worker: appeal stream entries into the lifecycle, acked only after the commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial

from channels.base import wait_or_stop
from channels.stream import RETRY_FIRST_S, RETRY_MAX_S, AppealStream, StreamItem, unreachable
from desk.appeals.lifecycle import IngestResult, Lifecycle
from desk.config.errors import InvalidInput
from desk.ops.outage import OutageWatch
from models import db

log = logging.getLogger(__name__)

BATCH_MIN = 10
BATCH_MAX = 500
# A batch is one transaction, and on SQLite (one connection a process) the webhook's appends
# wait for it: each batch takes about as many entries as this much work.
BATCH_TARGET_S = 0.1
ERROR_PAUSE_S = 1.0


class BatchSize:
    """How many entries the next read takes: what the last batches stored in about
    ``target_s`` each (a moving average), within ``low`` and ``high``."""

    def __init__(
        self, target_s: float = BATCH_TARGET_S, low: int = BATCH_MIN, high: int = BATCH_MAX
    ) -> None:
        self.target_s = target_s
        self.low = low
        self.high = high
        self.size = low

    def took(self, entries: int, seconds: float) -> None:
        """A batch of ``entries`` took ``seconds``."""
        if entries <= 0 or seconds <= 0:
            return
        fits = self.target_s * entries / seconds
        self.size = max(self.low, min(self.high, int((self.size + fits) / 2)))


class IntakeWorker:
    """Reads the appeal stream and stores every entry exactly once (idempotent by external id)."""

    def __init__(
        self,
        stream: AppealStream,
        lifecycle: Lifecycle,
        *,
        block_ms: int = 1000,
        outage: OutageWatch | None = None,
    ) -> None:
        self._stream = stream
        self._lifecycle = lifecycle
        self._block_ms = block_ms
        self._outage = outage or OutageWatch(lifecycle.metrics)
        self.batch = BatchSize()

    async def run(self, stop: asyncio.Event) -> None:
        """Process entries until ``stop`` is set; the batch in hand is finished first."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                try:
                    items = await self._read_unless_stopped(stopping)
                    started = asyncio.get_running_loop().time()
                    await self.process(items, stop)
                    self.batch.took(len(items), asyncio.get_running_loop().time() - started)
                except Exception as exc:  # a task root: the entries stay pending and come back
                    if db.is_outage(exc) and await self._outage.wait(exc, stop):
                        continue  # the local stream's database was out: read again
                    if unreachable(exc) and stop.is_set():
                        log.warning("stopped while the stream was unreachable: entries come back")
                        continue
                    log.exception("intake pass failed")
                    await asyncio.sleep(ERROR_PAUSE_S)
        finally:
            stopping.cancel()

    async def _read_unless_stopped(self, stopping: asyncio.Task[bool]) -> list[StreamItem]:
        """A blocking read that gives up at once when the service stops (nothing is lost:
        unacked entries are handed out again)."""
        read = asyncio.create_task(
            self._stream.read(count=self.batch.size, block_ms=self._block_ms)
        )
        await asyncio.wait([read, stopping], return_when=asyncio.FIRST_COMPLETED)
        if read.done():
            return read.result()
        read.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await read
        return []

    async def process(
        self, items: list[StreamItem], stop: asyncio.Event | None = None
    ) -> list[IngestResult]:
        """Store the entries as one batch, ack what is stored, dead-letter what never can be.

        While the database is out, the batch waits for it and is stored then: an outage is
        nobody's delivery. When the batch fails for another reason (a bug, bad data the
        lifecycle did not reject), it is split in halves, each stored on its own, down to
        single entries: the good ones are stored, and an entry that fails alone stays pending
        and comes back after its claim times out, each time counted towards
        ``workers.max_deliveries`` (then it is dead-lettered). Once ``stop`` is set, an outage
        leaves what is not stored yet pending.
        """
        results: list[IngestResult] = []
        done: list[str] = []
        failed = 0
        try:
            storable: list[StreamItem] = []
            for item in items:
                reason = self._unstorable(item)
                if reason is None:
                    storable.append(item)
                else:
                    await self._stream.dead_letter(item, reason)
            failed = await self._store(storable, stop, results, done)
        except Exception as exc:
            if not (stop is not None and stop.is_set() and db.is_outage(exc)):
                raise
            # stopping while the database is out: what is not stored comes back
        finally:
            if done:
                await self._ack(done, stop)
        if failed:
            await asyncio.sleep(ERROR_PAUSE_S)
        return results

    def _unstorable(self, item: StreamItem) -> str | None:
        """Why an entry can never be stored (its payload unreadable, its text over the
        limit), or None."""
        if item.message is None:
            return item.error or "unreadable entry"
        try:
            self._lifecycle.check(item.message)
        except InvalidInput as exc:
            log.warning("inbound rejected", extra={"entry": item.entry_id, "reason": str(exc)})
            return str(exc)
        return None

    async def _store(
        self,
        items: list[StreamItem],
        stop: asyncio.Event | None,
        results: list[IngestResult],
        done: list[str],
    ) -> int:
        """Store ``items`` in one transaction, or split them (in order) when that fails;
        returns how many entries failed on their own."""
        if not items:
            return 0
        messages = [item.message for item in items if item.message is not None]
        try:
            stored = await self._outage.retry(partial(self._lifecycle.ingest_batch, messages), stop)
        except Exception as exc:
            if stop is not None and stop.is_set() and db.is_outage(exc):
                raise
            if len(items) > 1:
                log.warning(
                    "intake batch failed, splitting it",
                    extra={"entries": len(items), "error": type(exc).__name__},
                )
                half = len(items) // 2
                return await self._store(items[:half], stop, results, done) + await self._store(
                    items[half:], stop, results, done
                )
            item = items[0]
            if isinstance(exc, InvalidInput):
                log.warning("inbound rejected", extra={"entry": item.entry_id, "reason": str(exc)})
                await self._stream.dead_letter(item, str(exc))
                return 0
            # kept pending: comes back, dead-lettered if it persists
            log.exception(
                "inbound not stored",
                extra={"entry": item.entry_id, "deliveries": item.deliveries},
            )
            return 1
        results += stored
        done += [item.entry_id for item in items]
        return 0

    async def _ack(self, done: list[str], stop: asyncio.Event | None) -> None:
        """Ack the stored entries; while the stream's server is away (a Redis restart), wait for
        it rather than have them handed out again. Once ``stop`` is set they are left to come
        back (stored already: taken as duplicates)."""
        stop = stop or asyncio.Event()
        delay = RETRY_FIRST_S  # the stream's own backoff for a lost link, as its reads use
        while True:
            try:
                await self._outage.retry(partial(self._stream.ack, done), stop)
                return
            except Exception as exc:
                if not unreachable(exc) or stop.is_set():
                    raise
                if delay == RETRY_FIRST_S:  # once per outage
                    log.warning(
                        "stream unreachable, ack waits for it",
                        extra={"entries": len(done), "error": type(exc).__name__},
                    )
                await wait_or_stop(stop, delay)
                delay = min(delay * 2, RETRY_MAX_S)
