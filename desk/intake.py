"""The intake worker: appeal stream entries into the lifecycle, acked only after the commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.stream import AppealStream, StreamItem
from desk.errors import InvalidInput
from desk.lifecycle import IngestResult, Lifecycle

log = logging.getLogger(__name__)

BATCH = 100
ERROR_PAUSE_S = 1.0


class IntakeWorker:
    """Reads the appeal stream and stores every entry exactly once (idempotent by external id)."""

    def __init__(self, stream: AppealStream, lifecycle: Lifecycle, *, block_ms: int = 1000) -> None:
        self._stream = stream
        self._lifecycle = lifecycle
        self._block_ms = block_ms

    async def run(self, stop: asyncio.Event) -> None:
        """Process entries until ``stop`` is set; the batch in hand is finished first."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                try:
                    items = await self._read_unless_stopped(stopping)
                    await self.process(items)
                except Exception:  # a task root: the entries stay pending and come back
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

    async def process(self, items: list[StreamItem]) -> list[IngestResult]:
        """Store each entry, ack what is stored, dead-letter what can never be stored.

        An entry that fails for another reason (database down, a bug) stays pending and comes
        back after its claim times out; the entries after it are still processed.
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
                    result = await self._lifecycle.ingest(item.message)
                except InvalidInput as exc:
                    log.warning(
                        "inbound rejected", extra={"entry": item.entry_id, "reason": str(exc)}
                    )
                    await self._stream.dead_letter(item, str(exc))
                    continue
                except Exception:  # kept pending: retried later, dead-lettered if it persists
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
                await self._stream.ack(done)
        if failed:
            await asyncio.sleep(ERROR_PAUSE_S)
        return results
