"""Group commit: what callers hand in while a write is under way goes together in the next one.

One write (a multi-row INSERT, a pipeline of XADDs, one UPDATE of many rows) and one commit
serve every item waiting, however many: under load each write carries what arrived during the
one before; alone, an item is written at once. A caller returns only after its own items are
written (or raises when the write failed), so whatever it answers (a webhook's 200, a polling
offset, a send marked done) comes after the commit. Order is kept: items are written in the
order ``publish`` was called.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Batches ``publish`` calls into writes of ``write(items) -> one result per item``; a
    write starts at least ``spacing_s`` after the one before (unless ``max_batch`` items wait),
    so that writes whose cost is mostly their own (a sync to disk) carry more items each."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch: int,
        spacing_s: float = 0.0,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._spacing_s = spacing_s
        self._last_write = 0.0
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def publish(self, items: Sequence[T]) -> list[R]:
        """Queue ``items`` for the next write and wait until they are written."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            self._waiting.append((item, future))
            futures.append(future)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="group-commit")
        # A caller that gives up (its request cut) does not stop the write of the others.
        return list(await asyncio.shield(asyncio.gather(*futures)))

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            wait = self._last_write + self._spacing_s - loop.time()
            if wait > 0 and len(self._waiting) < self._max_batch:
                await asyncio.sleep(wait)
            self._last_write = loop.time()
            batch, self._waiting = (
                self._waiting[: self._max_batch],
                self._waiting[self._max_batch :],
            )
            try:
                results = await self._write([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"the write answered {len(results)} of {len(batch)} items")
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise  # cancelled: what still waits is failed by close()
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        """Finish the write under way; what still waits fails (it was never written)."""
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await self._writer
        for _, future in self._waiting:
            if not future.done():
                future.set_exception(ConnectionError("closed before it was written"))
        self._waiting = []
