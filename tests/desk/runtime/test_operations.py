"""The operators' signals: /metrics scraped and parsed like Prometheus does, /healthz and /readyz
with the fake Telegram up, hanging and down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tortoise import Tortoise

from bench.fakes.telegram import FakeTelegram
from channels.base import DeliveryFailed, RateLimited, Rejected, Unreachable
from channels.stream import RedisStream
from desk.api.health import run_check
from desk.ops.metrics import Metrics, failure_reason
from desk.ops.scheduler import Daily
from models import Appeal, KeyValue, OutboxItem, OutboxStatus
from tests.conftest import Desk, free_port
from tests.fakes.mailserver import MailAccount, SmtpCapture, email_settings
from tests.fakes.vk import FakeVk
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    MovableClock,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
MSK = ZoneInfo("Europe/Moscow")


async def scrape(desk: Desk, headers: dict[str, str] | None = None) -> Samples:
    """GET the desk's /metrics and parse it with Prometheus' own parser."""
    return await scrape_url(desk.http, desk.base, headers)


async def scrape_url(
    http: aiohttp.ClientSession, base: str, headers: dict[str, str] | None = None
) -> Samples:
    """GET ``base``/metrics and parse it with Prometheus' own parser."""
    async with http.get(base + "/metrics", headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def by_labels(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


async def outbox_idle() -> bool:
    waiting = [OutboxStatus.PENDING, OutboxStatus.SENDING]
    return not await OutboxItem.filter(status__in=waiting).exists()


async def test_metrics_count_messages_in_and_out_and_failed_deliveries_by_reason(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    desk: Desk = await start_desk(**telegram_settings(fake))
    appeal = await open_appeal(fake, 801, "Где мой заказ?")
    thread = int(appeal.staff_thread)
    await eventually(outbox_idle, what="the acknowledgement and the topic posts out")

    m = await scrape(desk)
    assert value(m, "appeal_desk_messages_in_total", channel="telegram") == 1
    assert value(m, "appeal_desk_intake_seconds_count", channel="telegram") == 1
    for channel in ("telegram", "staff"):
        sent = await OutboxItem.filter(channel=channel, status=OutboxStatus.SENT).count()
        assert sent >= 1
        assert value(m, "appeal_desk_messages_out_total", channel=channel) == sent
    assert by_labels(m, "appeal_desk_delivery_failures_total") == {}

    # The answer meets a 502 once, then goes through on the retry.
    fake.fail_next("sendMessage", 502)
    fake.group_message(STAFF_CHAT, AGENT_ID, "Заказ уже в пути", thread)
    await eventually(lambda: any("Заказ уже в пути" in t for t in texts_in(fake, 801)), 15)
    # The customer blocks the bot: the next answer fails for good.
    fake.block_user(801)
    fake.group_message(STAFF_CHAT, AGENT_ID, "Трек-номер пришлём завтра", thread)
    await eventually(
        lambda: OutboxItem.filter(channel="telegram", status=OutboxStatus.FAILED).exists()
    )

    m = await scrape(desk)
    assert by_labels(m, "appeal_desk_delivery_failures_total") == {
        frozenset({("channel", "telegram"), ("reason", "server_error")}): 1.0,
        frozenset({("channel", "telegram"), ("reason", "unreachable")}): 1.0,
    }
    assert value(m, "appeal_desk_messages_failed_total", channel="telegram") == 1
    sent = await OutboxItem.filter(channel="telegram", status=OutboxStatus.SENT).count()
    assert value(m, "appeal_desk_messages_out_total", channel="telegram") == sent
    # Every attempt is timed: the deliveries, the retried 502 and the blocked one.
    assert value(m, "appeal_desk_delivery_seconds_count", channel="telegram") == sent + 2
    assert value(m, "appeal_desk_messages_in_total", channel="telegram") == 1


async def test_metrics_show_the_outbox_backlog_and_the_age_of_its_oldest_row(
    start_desk: Callable[..., Any],
) -> None:
    desk: Desk = await start_desk()
    ctx = desk.service.ctx
    assert ctx is not None
    # VK is not enabled here: its rows wait (and are retried now and then) until it is.
    for text in ("первое", "второе"):
        await ctx.outbox.enqueue(channel="vk", address="2000000001", text=text)
    first = await OutboxItem.filter(channel="vk").order_by("id").first()
    assert first is not None
    await OutboxItem.filter(id=first.id).update(
        created_at=datetime.now(UTC) - timedelta(minutes=10)
    )
    ctx.outbox.wake()
    await eventually(
        lambda: OutboxItem.filter(channel="vk", last_error__contains="not enabled").exists()
    )

    m = await scrape(desk)
    assert value(m, "appeal_desk_outbox_backlog", channel="vk") == 2
    age = value(m, "appeal_desk_outbox_oldest_seconds", channel="vk")
    assert age is not None and 600 <= age < 900
    assert value(m, "appeal_desk_outbox_backlog", channel="web") == 0
    assert value(m, "appeal_desk_delivery_failures_total", channel="vk", reason="no_adapter") == 1

    await OutboxItem.filter(channel="vk").update(status=OutboxStatus.SENT)
    m = await scrape(desk)
    assert value(m, "appeal_desk_outbox_backlog", channel="vk") is None
    assert value(m, "appeal_desk_outbox_backlog", channel="web") == 0


async def test_metrics_show_the_intake_stream_lag_and_pending_entries(
    start_desk: Callable[..., Any],
) -> None:
    # No intake worker: what the web form publishes waits in the stream.
    desk: Desk = await start_desk(workers={"intake": 0, "claim_idle_s": 30.0})
    ctx = desk.service.ctx
    assert ctx is not None
    backend = ctx.stream.name
    for n in range(3):
        async with desk.http.post(
            desk.base + "/appeal",
            data={"name": "Олег", "phone": f"8 (999) 000-11-2{n}", "text": f"Вопрос {n}"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303

    m = await scrape(desk)
    assert value(m, "appeal_desk_stream_lag", backend=backend) == 3
    assert value(m, "appeal_desk_stream_pending", backend=backend) == 0
    assert value(m, "appeal_desk_stream_dead", backend=backend) == 0

    taken = await ctx.stream.read(count=1, block_ms=1000)  # a worker holds one, unacked
    assert len(taken) == 1
    m = await scrape(desk)
    assert value(m, "appeal_desk_stream_lag", backend=backend) == 2
    assert value(m, "appeal_desk_stream_pending", backend=backend) == 1

    await ctx.stream.dead_letter(taken[0], "set aside by the test")
    await ctx.stream.ack([item.entry_id for item in await ctx.stream.read(count=5)])
    m = await scrape(desk)
    assert value(m, "appeal_desk_stream_lag", backend=backend) == 0
    assert value(m, "appeal_desk_stream_pending", backend=backend) == 0
    assert value(m, "appeal_desk_stream_dead", backend=backend) == 1
    assert await Appeal.all().count() == 0


async def test_metrics_count_sla_warnings_and_breaches(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock = MovableClock(datetime(2026, 11, 30, 7, 0, tzinfo=UTC))
    settings = telegram_settings(fake)
    settings["workers"] = {**settings["workers"], "sla_scan_s": 0.1}
    desk: Desk = await start_desk(clock=clock, **settings)
    appeal = await open_appeal(fake, 811, "Хочу вернуть куртку, не подошёл размер")
    assert appeal.first_response_due is not None
    m = await scrape(desk)
    assert by_labels(m, "appeal_desk_sla_warnings_total") == {}

    async def marked(flag: str) -> bool:
        fresh = await Appeal.get(id=appeal.id)
        return bool((fresh.sla_state or {}).get("first_response", {}).get(flag))

    left = appeal.first_response_due - clock.now
    clock.now = appeal.first_response_due - left / 10  # 90% of the time gone
    await eventually(lambda: marked("warned"))
    m = await scrape(desk)
    assert value(m, "appeal_desk_sla_warnings_total", target="first_response") == 1
    assert by_labels(m, "appeal_desk_sla_breaches_total") == {}

    clock.now = appeal.first_response_due + timedelta(minutes=1)
    await eventually(lambda: marked("breached"))
    m = await scrape(desk)
    assert value(m, "appeal_desk_sla_breaches_total", target="first_response") == 1
    assert value(m, "appeal_desk_sla_warnings_total", target="first_response") == 1


async def test_metrics_count_the_daily_job_run_by_this_process(
    start_desk: Callable[..., Any],
) -> None:
    clock = MovableClock(datetime(2026, 3, 2, 7, 0, tzinfo=MSK).astimezone(UTC))
    desk: Desk = await start_desk(clock=clock, workers={"sla_scan_s": 0.1})
    m = await scrape(desk)
    assert value(m, "appeal_desk_job_runs_total", job="winback") is None

    clock.now = datetime(2026, 3, 2, 8, 1, tzinfo=MSK).astimezone(UTC)
    await eventually(lambda: KeyValue.filter(key="job:winback:2026-03-02").exists())
    await eventually(
        lambda: KeyValue.filter(key="job:winback:2026-03-02", value__startswith="done").exists()
    )
    await asyncio.sleep(0.3)  # later ticks of the same day run nothing more
    m = await scrape(desk)
    assert value(m, "appeal_desk_job_runs_total", job="winback") == 1
    assert by_labels(m, "appeal_desk_job_failures_total") == {}


async def test_a_failing_daily_job_is_counted_and_gives_the_day_back(db_url: str) -> None:
    from models import db

    await db.connect(db_url)
    try:
        metrics = Metrics()

        async def broken() -> None:
            raise RuntimeError("the scan broke")

        job = Daily("export", time(3, 0), MSK, broken)
        now = datetime(2026, 3, 2, 4, 0, tzinfo=MSK)
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await job.run_if_due(now, metrics)
        assert metrics.registry.get_sample_value("appeal_desk_job_runs_total", {"job": "export"})
        assert (
            metrics.registry.get_sample_value("appeal_desk_job_failures_total", {"job": "export"})
            == 2
        )
        assert not await KeyValue.filter(key="job:export:2026-03-02").exists()
    finally:
        await Tortoise.close_connections()


async def test_metrics_can_be_switched_off_or_want_a_token(
    start_desk: Callable[..., Any],
) -> None:
    off: Desk = await start_desk(monitoring={"metrics": False})
    async with off.http.get(off.base + "/metrics") as resp:
        assert resp.status == 404
    async with off.http.get(off.base + "/healthz") as resp:
        assert resp.status == 200

    scrape_token = "scrape-vKaEsWyorf-DWVeZVnQt8"
    guarded: Desk = await start_desk(monitoring={"token": scrape_token})
    async with guarded.http.get(guarded.base + "/metrics") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
    wrong = {"Authorization": "Bearer scrape-me-9999"}
    async with guarded.http.get(guarded.base + "/metrics", headers=wrong) as resp:
        assert resp.status == 401
    m = await scrape(guarded, {"Authorization": f"Bearer {scrape_token}"})
    assert value(m, "appeal_desk_outbox_backlog", channel="web") == 0


async def test_readyz_reports_each_component_and_a_hanging_or_dead_telegram(
    start_desk: Callable[..., Any],
) -> None:
    fake = FakeTelegram()
    await fake.start()
    fake.add_group(STAFF_CHAT, "Поддержка", members=[AGENT_ID])
    try:
        desk: Desk = await start_desk(
            **telegram_settings(fake), monitoring={"check_timeout_s": 0.5}
        )
        async with desk.http.get(desk.base + "/healthz") as resp:
            assert resp.status == 200 and await resp.json() == {"status": "ok"}

        status, body = await desk.get("/readyz", auth=False)
        assert status == 200 and body["status"] == "ok"
        redis = {"redis"} if desk.service.ctx and desk.service.ctx.settings.redis_url else set()
        assert set(body["components"]) == {"database", "telegram", *redis}
        for part in body["components"].values():
            assert part["status"] == "ok" and part["ms"] >= 0
        before = len(fake.calls("getMe"))

        fake.timeout_next("getMe", 5.0)  # Telegram takes the call and does not answer in time
        status, body = await desk.get("/readyz", auth=False)
        assert status == 503 and body["status"] == "fail"
        assert body["components"]["database"]["status"] == "ok"
        telegram = body["components"]["telegram"]
        assert telegram["status"] == "fail" and telegram["error"] == "timeout"
        assert telegram["ms"] < 5000
        assert len(fake.calls("getMe")) == before + 1
    finally:
        await fake.close()

    status, body = await desk.get("/readyz", auth=False)
    assert status == 503
    telegram = body["components"]["telegram"]
    assert telegram["status"] == "fail" and telegram["error"] not in ("", "timeout")
    assert "123456" not in telegram["error"]  # no token in the detail
    assert body["components"]["database"]["status"] == "ok"


async def test_readyz_asks_vk_for_the_community_and_tells_its_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start_desk: Callable[..., Any]
) -> None:
    monkeypatch.chdir(tmp_path)  # vkbottle's long poll keeps a file in the working directory
    async with FakeVk() as vk:
        desk: Desk = await start_desk(
            vk={"token": "vk1.a.community-token", "group_id": vk.group_id, "api_url": vk.url}
        )
        status, body = await desk.get("/readyz", auth=False)
        assert status == 200 and body["components"]["vk"]["status"] == "ok"
        assert vk.calls("groups.getById")

        vk.fail_next("groups.getById", 5)  # "User authorization failed": a revoked token
        status, body = await desk.get("/readyz", auth=False)
        assert status == 503
        part = body["components"]["vk"]
        assert part["status"] == "fail" and part["error"].startswith("DeliveryFailed: vk: 5 ")
        assert "community-token" not in part["error"]


async def test_readyz_logs_in_to_the_mailbox_and_greets_the_smtp_server(
    mailbox: MailAccount, smtp_capture: SmtpCapture, start_desk: Callable[..., Any]
) -> None:
    desk: Desk = await start_desk(email=email_settings(mailbox, smtp_capture))
    status, body = await desk.get("/readyz", auth=False)
    assert status == 200, body
    assert body["components"]["email_smtp"]["status"] == "ok"
    assert body["components"]["email_imap"]["status"] == "ok"
    assert smtp_capture.messages == []  # a greeting, nothing sent


async def test_readyz_tells_a_refused_mailbox_login_and_a_silent_smtp_server(
    mailbox: MailAccount, smtp_capture: SmtpCapture, start_desk: Callable[..., Any]
) -> None:
    release = asyncio.Event()

    async def say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()  # accepts the connection and never greets
        writer.close()

    silent = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = int(silent.sockets[0].getsockname()[1])
    try:
        email = {**email_settings(mailbox, smtp_capture), "smtp_port": port}
        email["imap_password"] = "not-the-password-42"
        # Dovecot answers a wrong password after a pause of its own (2 s).
        desk: Desk = await start_desk(email=email, monitoring={"check_timeout_s": 3.5})
        status, body = await desk.get("/readyz", auth=False)
    finally:
        release.set()
        silent.close()
        await asyncio.sleep(0.05)  # the handler closes its side
    assert status == 503 and body["status"] == "fail"
    assert body["components"]["email_smtp"] == {
        "status": "fail",
        "ms": body["components"]["email_smtp"]["ms"],
        "error": "timeout",
    }
    imap = body["components"]["email_imap"]
    assert imap["status"] == "fail" and "login refused" in imap["error"]
    assert "not-the-password-42" not in imap["error"]
    assert body["components"]["database"]["status"] == "ok"


async def test_a_readiness_check_of_a_redis_nobody_listens_on_fails() -> None:
    stream = RedisStream(f"redis://127.0.0.1:{free_port()}/0", consumer="probe")
    try:
        result = await run_check(stream.ping, 2.0)
    finally:
        await stream.close()
    assert result["status"] == "fail" and result["error"]


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (RateLimited(3), "rate_limited"),
        (Unreachable("telegram", "Forbidden: bot was blocked by the user"), "unreachable"),
        (Rejected("telegram", "Bad Request: message is too long"), "rejected"),
        (DeliveryFailed("telegram", "Internal Server Error"), "server_error"),
        (DeliveryFailed("telegram", "Bad Gateway"), "server_error"),
        (DeliveryFailed("webhook", "HTTP 503"), "server_error"),
        (DeliveryFailed("vk", "10 Internal server error"), "server_error"),
        (DeliveryFailed("telegram", "timed out"), "timeout"),
        (DeliveryFailed("telegram", "Request timeout error"), "timeout"),
        (DeliveryFailed("email", "421 try again later"), "error"),
        (ValueError("adapter bug"), "internal"),
    ],
)
def test_delivery_failures_are_labelled_by_reason(exc: BaseException, reason: str) -> None:
    assert failure_reason(exc) == reason


def test_a_transient_failure_caused_by_a_timeout_or_the_network_is_labelled_so() -> None:
    def raised(cause: BaseException) -> BaseException:
        try:
            try:
                raise cause
            except BaseException as inner:
                raise DeliveryFailed("email", f"{type(inner).__name__}: x") from inner
        except DeliveryFailed as outer:
            return outer

    assert failure_reason(raised(TimeoutError())) == "timeout"
    assert failure_reason(raised(ConnectionRefusedError())) == "network"
