"""The intake worker: appeal stream entries into the lifecycle, acked only after the commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial

from channels.base import wait_or_stop
from channels.stream import RETRY_FIRST_S, RETRY_MAX_S, AppealStream, StreamItem, unreachable
from desk.errors import InvalidInput
from desk.lifecycle import IngestResult, Lifecycle
from desk.outage import OutageWatch
from models import db

log = logging.getLogger(__name__)

BATCH = 100
ERROR_PAUSE_S = 1.0


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

    async def run(self, stop: asyncio.Event) -> None:
        """Process entries until ``stop`` is set; the batch in hand is finished first."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                try:
                    items = await self._read_unless_stopped(stopping)
                    await self.process(items, stop)
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
        read = asyncio.create_task(self._stream.read(count=BATCH, block_ms=self._block_ms))
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
        """Store each entry, ack what is stored, dead-letter what can never be stored.

        While the database is out, the entry in hand waits for it and is stored then: an outage
        is nobody's delivery. An entry that fails for another reason (a bug, bad data the
        lifecycle did not reject) stays pending and comes back after its claim times out, each
        time counted towards ``workers.max_deliveries``; the entries after it are still
        processed. Once ``stop`` is set, an outage leaves the rest of the batch pending.
        """
        results: list[IngestResult] = []
        done: list[str] = []
        failed = 0
        try:
            for item in items:
                if item.message is None:
                    await self._stream.dead_letter(item, item.error or "unreadable entry")
                    continue
                try:
                    result = await self._outage.retry(
                        partial(self._lifecycle.ingest, item.message), stop
                    )
                except InvalidInput as exc:
                    log.warning(
                        "inbound rejected", extra={"entry": item.entry_id, "reason": str(exc)}
                    )
                    await self._stream.dead_letter(item, str(exc))
                    continue
                except Exception as exc:  # kept pending: comes back, dead-lettered if it persists
                    if stop is not None and stop.is_set() and db.is_outage(exc):
                        break  # stopping while the database is out: all of it comes back
                    log.exception(
                        "inbound not stored",
                        extra={"entry": item.entry_id, "deliveries": item.deliveries},
                    )
                    failed += 1
                    continue
                results.append(result)
                done.append(item.entry_id)
        finally:
            if done:
                await self._ack(done, stop)
        if failed:
            await asyncio.sleep(ERROR_PAUSE_S)
        return results

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
