"""A ``worker`` process scraped like Prometheus does: its own /metrics (with the metrics token)
and /healthz, counting the messages it took in and delivered for a serve process that does
neither."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from bench.fakes.telegram import FakeTelegram
from desk.config.settings import Settings
from desk.runtime.service import Service
from models import OutboxItem, OutboxStatus, db
from tests.conftest import SECRET_KEY, free_port
from tests.desk.runtime.test_crash import Proc, serve_env, telegram_env
from tests.desk.runtime.test_operations import Samples, by_labels, scrape_url
from tests.telegram_world import AGENT_ID, STAFF_CHAT, eventually, texts_in

pytestmark = pytest.mark.slow

SCRAPE_TOKEN = "scrape-arVzjCKzggrsxOojNPjZn8"
CUSTOMER = 5301


@pytest.fixture
async def serve(
    tmp_path: Path, db_url: str, redis_url: str | None, fake: FakeTelegram
) -> AsyncIterator[Proc]:
    """``serve`` polling the fake Telegram, with no intake or delivery workers of its own."""
    env = serve_env(
        db_url,
        redis_url,
        DESK_SECRET_KEY=SECRET_KEY,
        DESK_WORKERS__CLAIM_IDLE_S="2",
        DESK_MONITORING__TOKEN=SCRAPE_TOKEN,
        **telegram_env(fake.url, AGENT_ID, STAFF_CHAT),
    )
    proc = Proc(env, tmp_path)
    yield proc
    # Stopped with the event loop running: the process's last calls to the fake Bot API (served
    # by this loop) are answered, not waited out to the client's timeout (10 s).
    await asyncio.to_thread(proc.stop)


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    """The process's /metrics, with the scrape token."""
    return await scrape_url(http, url, {"Authorization": f"Bearer {SCRAPE_TOKEN}"})


async def sent_rows(db_url: str) -> dict[str, int]:
    """Outbox rows sent, per channel."""
    await db.connect(db_url)
    try:
        channels = await OutboxItem.filter(status=OutboxStatus.SENT).values_list(
            "channel", flat=True
        )
    finally:
        await db.disconnect()
    sent: dict[str, int] = {}
    for channel in channels:
        sent[str(channel)] = sent.get(str(channel), 0) + 1
    return sent


async def test_a_worker_serves_its_own_metrics_and_healthz(
    serve: Proc, fake: FakeTelegram, tmp_path: Path, db_url: str
) -> None:
    await serve.start(DESK_WORKERS__INTAKE="0", DESK_WORKERS__DELIVERY="0")
    port = free_port()
    log = (tmp_path / "worker.log").open("a")
    worker = subprocess.Popen(
        [sys.executable, "-m", "desk.runtime.cli", "worker"],
        env={
            **serve.env,
            "DESK_WORKERS__NAME": "w-metrics",
            "DESK_WORKERS__METRICS_PORT": str(port),
        },
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await eventually(
            lambda: "Appeal Desk — worker" in (tmp_path / "worker.log").read_text(), timeout=60
        )
        assert f"metrics   http://127.0.0.1:{port}/metrics" in (tmp_path / "worker.log").read_text()
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz") as resp:
                assert resp.status == 200 and await resp.json() == {"status": "ok"}
            async with http.get(base + "/metrics") as resp:
                assert resp.status == 401  # the metrics token is wanted here too

            # A customer writes; the first send meets a 502 and is retried.
            fake.fail_next("sendMessage", 502)
            fake.add_private_chat(CUSTOMER, "Клиент")
            fake.user_message(CUSTOMER, "Где мой заказ?")
            await eventually(lambda: texts_in(fake, CUSTOMER), 30, "the acknowledgement")

            async def settled() -> Samples | None:
                """The worker's figures once they match the outbox rows sent to the customer
                and to the staff group (more may follow: the group's flood limit spaces them)."""
                samples, sent = await scrape(http, base), await sent_rows(db_url)
                out = {
                    dict(labels)["channel"]: int(v)
                    for labels, v in by_labels(samples, "appeal_desk_messages_out_total").items()
                }
                both = {"telegram", "staff"} <= set(sent)
                return samples if both and out == sent else None

            m = await eventually(settled, timeout=30, what="every row sent and counted")
            assert by_labels(m, "appeal_desk_process_info") == {
                frozenset({("role", "worker"), ("name", "w-metrics")}): 1.0
            }
            assert by_labels(m, "appeal_desk_messages_in_total") == {
                frozenset({("channel", "telegram")}): 1.0
            }
            assert by_labels(m, "appeal_desk_intake_seconds_count") == {
                frozenset({("channel", "telegram")}): 1.0
            }
            failures = by_labels(m, "appeal_desk_delivery_failures_total")
            assert list(failures.values()) == [1.0]
            assert ("reason", "server_error") in next(iter(failures))
            assert by_labels(m, "appeal_desk_outbox_backlog") == {}  # serve's, read for everyone

            # serve polled Telegram and did nothing else: these counters are the worker's.
            s = await scrape(http, serve.base)
            assert by_labels(s, "appeal_desk_messages_in_total") == {}
            assert by_labels(s, "appeal_desk_messages_out_total") == {}
            assert ("role", "serve") in next(iter(by_labels(s, "appeal_desk_process_info")))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()


async def test_a_worker_listens_nowhere_unless_given_a_metrics_port(
    make_settings: Callable[..., Settings],
) -> None:
    out = io.StringIO()
    worker = Service(make_settings(workers={"name": "w-quiet"}), "worker", out)
    await worker.start()
    try:
        assert worker.bound_port is None
        assert "Appeal Desk — worker (w-quiet)" in out.getvalue()
        assert "metrics" not in out.getvalue()
    finally:
        await worker.stop()
