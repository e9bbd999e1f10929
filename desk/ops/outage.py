"""Database outages told apart from bad work: the workers of a process wait one out together
(probing with backoff), it is logged once and shown in /readyz and /metrics, and the work in
hand is then done again without being counted as a failure of its own."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from channels.base import wait_or_stop
from desk.ops.metrics import Metrics
from models import db

log = logging.getLogger(__name__)

T = TypeVar("T")

PROBE_FIRST_S = 0.2
PROBE_MAX_S = 5.0
PROBE_TIMEOUT_S = 5.0
# A lost connection while the database answers at once (a server that restarted in between, a
# killed backend): the work is tried again this many times before it counts as failed.
BLIPS = 2
ERROR_MAX_LEN = 200


class OutageWatch:
    """One per process: whether its workers are waiting for the database, and since when."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics or Metrics()
        self._down_since: datetime | None = None
        self._down_at = 0.0  # monotonic, for the outage's length
        self._never = asyncio.Event()

    @property
    def down_since(self) -> datetime | None:
        """When the workers found the database away; None while it answers."""
        return self._down_since

    async def retry(self, action: Callable[[], Awaitable[T]], stop: asyncio.Event | None) -> T:
        """``action()``; while it fails because the database is out, wait until it answers and
        run it again. Other failures are raised, and an outage's once ``stop`` is set or when
        the database answered at once ``BLIPS`` times in a row."""
        stop = stop or self._never
        blips = 0
        while True:
            try:
                return await action()
            except Exception as exc:
                if stop.is_set() or not db.is_outage(exc):
                    raise
                if not await self.wait(exc, stop):
                    blips += 1
                    if blips > BLIPS:
                        raise
                if stop.is_set():
                    raise

    async def wait(self, error: BaseException, stop: asyncio.Event) -> bool:
        """After ``error`` (an outage's, see ``db.is_outage``), wait until the database answers
        or ``stop`` is set. True when it was away (what failed was not at fault), False when it
        answered at once."""
        was_down = self._down_since is not None
        delay = PROBE_FIRST_S
        while not stop.is_set():
            if await _answers():
                await self._back()
                return was_down
            was_down = True
            self._down(error)
            await wait_or_stop(stop, delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, PROBE_MAX_S)
        return was_down

    def _down(self, error: BaseException) -> None:
        if self._down_since is not None:
            return  # another worker of this process found it first and said so
        self._down_since = datetime.now(UTC)
        self._down_at = time.monotonic()
        self._metrics.database_up.set(0)
        self._metrics.database_outages.inc()
        log.warning(
            "database unavailable, workers wait for it",
            extra={"error": f"{type(error).__name__}: {error}"[:ERROR_MAX_LEN]},
        )

    async def _back(self) -> None:
        if self._down_since is None:
            return
        self._down_since = None
        self._metrics.database_up.set(1)
        log.warning(
            "database answers again, workers go on",
            extra={"down_s": round(time.monotonic() - self._down_at, 1)},
        )
        # Connections opened before the outage may be dead without the pool knowing yet.
        await db.renew_connections()


async def _answers() -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await db.ping()
    except Exception:  # whatever keeps SELECT 1 from working: still away
        return False
    return True
