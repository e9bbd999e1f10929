"""The fault drills of bench/drills/, short forms: each ends with the audit (every accepted
message stored once, every answer delivered once and in order). The full forms are run by hand
(docs/benchmarks.md, "Fault drills"). Those on PostgreSQL + Redis are in test_drills_services.py:
this file runs in the SQLite pass only."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.drills.duplicates import duplicates_drill
from bench.drills.flaky import flaky_drill
from bench.drills.kill import kill_drill
from tests.conftest import PG_URL

pytestmark = [pytest.mark.slow, pytest.mark.backend_agnostic]


@pytest.mark.skipif(
    bool(PG_URL),
    reason="uses no PostgreSQL or Redis: the SQLite pass runs it",
)
async def test_sigkill_of_the_embedded_process_loses_and_doubles_nothing(tmp_path: Path) -> None:
    report = await kill_drill(tmp_path, backend="sqlite", messages=150, kills=2, customers=15)
    assert report.ok, report.summary()
    assert report.inbound_stored == 150 and report.outbound_rows > 15


async def test_flaky_telegram_gets_every_answer_once_or_in_doubt(
    tmp_path: Path, db_url: str, redis_url: str | None
) -> None:
    report = await flaky_drill(
        tmp_path,
        messages=60,
        customers=10,
        timeouts=2,
        flood=10,
        database_url=db_url,
        redis_url=redis_url,
    )
    assert report.ok, report.summary()
    assert len(report.outbound_forgiven) <= 2


async def test_every_webhook_update_twice_is_stored_and_answered_once(
    tmp_path: Path, db_url: str, redis_url: str | None
) -> None:
    report = await duplicates_drill(
        tmp_path, messages=60, customers=10, delay_s=0.5, database_url=db_url, redis_url=redis_url
    )
    assert report.ok, report.summary()
    assert report.inbound_stored == 60
