"""A desk running in the drill's own process (for drills that hurt Telegram, not the desk)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

from bench.drills.processes import free_port
from bench.drills.traffic import API_TOKEN, SECRET_KEY, WEBHOOK_SECRET
from bench.fakes.telegram import DEFAULT_TOKEN, FakeTelegram
from desk.config.settings import Settings
from desk.runtime.service import Service


@contextlib.asynccontextmanager
async def running_desk(
    fake: FakeTelegram,
    workdir: Path,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
) -> AsyncIterator[Service]:
    """``serve`` in this process, taking updates from ``fake`` by webhook; the ORM stays
    connected for the audit until the block ends."""
    port = free_port()
    settings = Settings(
        database_url=database_url or f"sqlite://{workdir}/desk.db",
        redis_url=redis_url,
        secret_key=SECRET_KEY,
        public_url=f"http://127.0.0.1:{port}",
        http={"host": "127.0.0.1", "port": port},
        api={"tokens": [{"name": "drill", "token": API_TOKEN}]},
        telegram={
            "token": DEFAULT_TOKEN,
            "api_url": fake.url,
            "mode": "webhook",
            "webhook_secret": WEBHOOK_SECRET,
            "timeout_s": 2,
        },
        workers={"poll_s": 0.05, "claim_idle_s": 2},
        sla={"calendar": {"hours": None}},
    )
    service = Service(settings, "serve", io.StringIO())
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
