"""Jobs that run once a day at a set local time, by exactly one process of however many run:
the first to claim the day's row runs it, a failed run gives the claim back, and a process
that starts after the hour (a restart, a deploy) still runs the day's job.

A claim is a lease: the running process renews it every HEARTBEAT_S, and a claim not renewed
for LEASE (its process was killed, or the machine went down mid-run) is taken over by the next
process that looks, so the day's job still runs.
"""

from __future__ import annotations

import asyncio
import logging
import time as timer
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError

from desk.ops.metrics import Metrics
from models import KeyValue

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]
LEASE = timedelta(minutes=10)
HEARTBEAT_S = 60.0
STARTED = "started "


@dataclass(slots=True)
class Daily:
    """One daily job: its name (part of the claim key), local time and zone."""

    name: str
    at: time
    zone: ZoneInfo
    job: Job
    _owed: str | None = field(default=None, init=False)  # a claim to give back (database out)

    def _key(self, now: datetime) -> str | None:
        """The claim key of the day whose run is due at ``now``, None before the hour."""
        local = now.astimezone(self.zone)
        if local.time() < self.at:
            return None
        return f"job:{self.name}:{local.date().isoformat()}"

    async def run_if_due(self, now: datetime, metrics: Metrics | None = None) -> bool:
        """Run the job if today's run is due and nobody has claimed it; True if it ran here.
        Runs and failures here are counted in ``metrics``."""
        if self._owed is not None:  # raises while the database is still out: the next tick
            await KeyValue.filter(key=self._owed).delete()
            self._owed = None
        key = self._key(now)
        if key is None or not await self._claim(key, now):
            return False
        if metrics is not None:
            metrics.job_runs.labels(self.name).inc()
        heartbeat = asyncio.create_task(self._renew(key, now))
        try:
            result = await self.job()
        except BaseException:
            if metrics is not None:
                metrics.job_failures.labels(self.name).inc()
            await _stop(heartbeat)
            await self._give_back(key)
            raise
        await _stop(heartbeat)
        await KeyValue.filter(key=key).update(value=f"done {now.isoformat()}: {result}")
        log.info("daily job done", extra={"job": self.name, "result": str(result)})
        return True

    async def _claim(self, key: str, now: datetime) -> bool:
        """Claim the day's run: a new claim, or one whose process stopped renewing it."""
        claim = f"{STARTED}{now.isoformat()}"
        row = await KeyValue.get_or_none(key=key)
        if row is None:
            try:
                await KeyValue.create(key=key, value=claim)
            except IntegrityError:
                return False  # another process won the day
            return True
        renewed = _renewed_at(row.value)
        if renewed is None or renewed + LEASE > now:
            return False  # done, or running elsewhere
        # Only if nobody took it over (or renewed it) since we read it.
        if not await KeyValue.filter(key=key, value=row.value).update(value=claim):
            return False
        log.warning(
            "daily job claim taken over: its process stopped renewing it",
            extra={"job": self.name, "claim": row.value},
        )
        return True

    async def _renew(self, key: str, now: datetime) -> None:
        """Renew the claim every HEARTBEAT_S while the job runs (times in ``now``'s frame)."""
        started = timer.monotonic()
        value = f"{STARTED}{now.isoformat()}"
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            at = now + timedelta(seconds=timer.monotonic() - started)
            renewed = f"{STARTED}{at.isoformat()}"
            try:  # only our own claim: one taken over is somebody else's now
                if await KeyValue.filter(key=key, value=value).update(value=renewed):
                    value = renewed
            except Exception:  # the database out: the next beat tries again
                log.warning("daily job claim not renewed", extra={"job": self.name})

    async def _give_back(self, key: str) -> None:
        """Delete the day's claim so that the next tick runs the job again; when the database
        is out (what made the job fail, often), the claim is deleted at a later tick."""
        try:
            await KeyValue.filter(key=key).delete()
        except Exception:  # the job's own error is the one raised on
            self._owed = key
            log.warning("daily job claim kept until the database answers", extra={"job": self.name})


def _renewed_at(value: str) -> datetime | None:
    """When a running claim was last renewed; None for a finished run (or a value not ours)."""
    if not value.startswith(STARTED):
        return None
    try:
        return datetime.fromisoformat(value.removeprefix(STARTED))
    except ValueError:
        return None


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task])  # a cancellation of our own still reaches us
