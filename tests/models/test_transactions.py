"""Transactions that are interrupted (a stopping service cancels a reader mid-claim, a server goes
away) give the connection back: the rest of the process goes on using the database."""

from __future__ import annotations

import asyncio

import pytest
from tortoise import Tortoise
from tortoise.transactions import in_transaction

from models import db
from models.infra import StreamEntry

GENEROUS_S = 10.0  # an upper bound for "returns", never a speed claim


@pytest.fixture
async def connected(db_url: str) -> str:
    await db.connect(db_url)
    yield db_url
    await db.disconnect()


async def _claim_in_a_transaction(started: asyncio.Event) -> None:
    async with in_transaction():
        started.set()
        await StreamEntry.filter(dead=False).update(claimed_by="x")


@pytest.mark.parametrize("ticks", range(0, 12))
async def test_a_transaction_cancelled_at_any_moment_gives_the_connection_back(
    connected: str, ticks: int
) -> None:
    await StreamEntry.create(payload={"n": 1})
    started = asyncio.Event()
    task = asyncio.create_task(_claim_in_a_transaction(started))
    for _ in range(ticks):  # cancel after a different number of loop turns each time
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # Whatever moment the cancel hit, the next statements and transactions go through.
    assert await asyncio.wait_for(StreamEntry.all().count(), GENEROUS_S) == 1
    async with asyncio.timeout(GENEROUS_S):
        async with in_transaction():
            await StreamEntry.filter(dead=False).update(claimed_by="y")
    assert (await StreamEntry.get()).claimed_by == "y"


@pytest.mark.parametrize("ticks", range(0, 12))
async def test_a_statement_cancelled_while_it_reconnects_gives_the_connection_back(
    connected: str, ticks: int
) -> None:
    # Another part of the process closed the connection (a second desk in one process stopping,
    # a tool): the next statement opens it again, and a stopping service may cancel it then.
    await StreamEntry.create(payload={"n": 1})
    await Tortoise.get_connection("default").close()
    task = asyncio.create_task(_count())
    for _ in range(ticks):
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await asyncio.wait_for(StreamEntry.all().count(), GENEROUS_S) == 1


async def _count() -> int:
    return await StreamEntry.all().count()
