"""Daily jobs: one run a day among many processes, even when the one running it is killed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from desk.ops import scheduler
from desk.ops.scheduler import Daily
from models import KeyValue, db

MSK = ZoneInfo("Europe/Moscow")
NOON = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # 12:00 in Moscow
KEY = "job:export:2026-11-02"


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[None]:
    await db.connect(db_url)
    yield
    await db.disconnect()


def daily(runs: list[str], name: str, *, seconds: float = 0.0, at: time = time(3, 0)) -> Daily:
    async def export() -> str:
        runs.append(name)
        await asyncio.sleep(seconds)
        return "exported"

    return Daily("export", at, MSK, export)


async def test_the_claim_of_a_killed_process_is_taken_over_once_its_lease_runs_out(
    database: None,
) -> None:
    # What SIGKILL leaves behind: a claim that says started, renewed by nobody.
    await KeyValue.create(key=KEY, value=f"started {NOON.isoformat()}")
    runs: list[str] = []
    a, b = daily(runs, "a"), daily(runs, "b")
    later = NOON + timedelta(minutes=9)
    assert not await a.run_if_due(later) and not await b.run_if_due(later)  # may still be alive
    later = NOON + scheduler.LEASE + timedelta(seconds=1)
    ran = await asyncio.gather(a.run_if_due(later), b.run_if_due(later))
    assert sorted(ran) == [False, True] and len(runs) == 1  # taken over by exactly one
    claim = await KeyValue.get(key=KEY)
    assert claim.value.startswith("done")
    assert not await a.run_if_due(later + timedelta(hours=1))  # and done for the day


@pytest.mark.parametrize(
    ("heartbeat_s", "runs_seen"),
    [
        (0.1, ["first"]),  # renewed ten times a lease: never run twice
        (60.0, ["first", "other"]),  # the check on it: not renewed, the lease runs out
    ],
)
async def test_a_long_job_renews_its_claim_and_is_never_run_twice(
    database: None, monkeypatch: pytest.MonkeyPatch, heartbeat_s: float, runs_seen: list[str]
) -> None:
    # A lease of 1 s: a loaded CI kept the renewals back past 0.4 s once, and the other took
    # the day over.
    monkeypatch.setattr(scheduler, "LEASE", timedelta(seconds=1.0))
    monkeypatch.setattr(scheduler, "HEARTBEAT_S", heartbeat_s)
    runs: list[str] = []
    first = asyncio.create_task(
        daily(runs, "first", seconds=2.5, at=time(0, 0)).run_if_due(datetime.now(UTC))
    )
    other = daily(runs, "other", at=time(0, 0))
    while not runs:  # the first process has claimed the day and is running
        await asyncio.sleep(0.01)
    taken = False
    while not first.done():  # another process looking all along
        taken = await other.run_if_due(datetime.now(UTC)) or taken
        await asyncio.sleep(0.05)
    assert await first
    assert taken is (len(runs_seen) == 2) and runs == runs_seen
