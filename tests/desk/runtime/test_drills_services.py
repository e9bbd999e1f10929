"""The fault drills of bench/drills/ that need PostgreSQL and Redis, short forms: SIGKILL of a
worker, and both servers restarted mid-run; each ends with the audit (every accepted message
stored once, every answer delivered once and in order). They run in the PostgreSQL pass; the
backend-agnostic drills are in test_drills.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.drills.kill import kill_drill
from bench.drills.processes import PostgresServer, RedisServer
from bench.drills.restart import restart_drill
from tests.conftest import PG_URL, REDIS_URL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (PG_URL and REDIS_URL), reason="needs DESK_TEST_DATABASE_URL and DESK_TEST_REDIS_URL"
    ),
]


async def test_sigkill_of_a_worker_loses_and_doubles_nothing(
    tmp_path: Path, db_url: str, redis_url: str
) -> None:
    report = await kill_drill(
        tmp_path,
        backend="pg",
        messages=150,
        kills=2,
        customers=15,
        pg_url=db_url,
        redis_url=redis_url,
    )
    assert report.ok, report.summary()
    assert report.inbound_stored == 150


async def test_redis_and_postgres_restarts_lose_and_double_nothing(tmp_path: Path) -> None:
    if not (RedisServer.available() and PostgresServer.available()):
        pytest.skip("redis-server or the PostgreSQL server binaries are missing")
    report = await restart_drill(tmp_path, messages=150, customers=15, down_s=2.0)
    assert report.ok, report.summary()
