"""Jobs that run once a day at a set local time, by exactly one process of however many run:
the first to claim the day's row runs it, a failed run gives the claim back, and a process
that starts after the hour (a restart, a deploy) still runs the day's job."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError

from desk.metrics import Metrics
from models import KeyValue

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


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
        if key is None or await KeyValue.filter(key=key).exists():
            return False
        try:
            await KeyValue.create(key=key, value=f"started {now.isoformat()}")
        except IntegrityError:
            return False  # another process won the day
        if metrics is not None:
            metrics.job_runs.labels(self.name).inc()
        try:
            result = await self.job()
        except BaseException:
            if metrics is not None:
                metrics.job_failures.labels(self.name).inc()
            await self._give_back(key)
            raise
        await KeyValue.filter(key=key).update(value=f"done {now.isoformat()}: {result}")
        log.info("daily job done", extra={"job": self.name, "result": str(result)})
        return True

    async def _give_back(self, key: str) -> None:
        """Delete the day's claim so that the next tick runs the job again; when the database
        is out (what made the job fail, often), the claim is deleted at a later tick."""
        try:
            await KeyValue.filter(key=key).delete()
        except Exception:  # the job's own error is the one raised on
            self._owed = key
            log.warning("daily job claim kept until the database answers", extra={"job": self.name})
