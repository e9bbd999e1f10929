"""Rate limits of the anonymous endpoints, through a running desk: a flood from one address or
from many gets 429 with Retry-After and stores nothing; X-Forwarded-For is believed only from a
trusted proxy; the web form's robot trap; customers on Telegram are never limited. The token
buckets themselves as plain functions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bench.fakes.telegram import FakeTelegram
from desk.api.rate_limit import APPEALS, PAGES, RateLimiter, TokenBuckets
from desk.config.settings import HttpSettings
from models import Appeal, Message
from tests.conftest import Desk, free_port
from tests.desk.api.test_api import APPEAL
from tests.telegram_world import eventually, telegram_settings

pytestmark = pytest.mark.backend_agnostic

SECRET = "Hq4sWc9vLp2NxR7tKd3M"


def http_settings(port: int | None = None, **limits: Any) -> dict[str, Any]:
    """The test desk's http section with these rate limits (and others left as default)."""
    return {
        "host": "127.0.0.1",
        "port": port or free_port(),
        "rate_limits": limits,
    }


def appeal(i: int) -> dict[str, str]:
    return {**APPEAL, "email": f"c{i}@example.com", "text": f"Вопрос {i}"}


async def test_a_flood_of_api_appeals_from_one_address_gets_429_and_stores_nothing_more(
    start_desk: Callable[..., Any],
) -> None:
    desk: Desk = await start_desk(
        http=http_settings(appeals={"per_address_burst": 3, "per_address_per_minute": 1})
    )
    answers = [await desk.post("/api/v1/appeals", appeal(i), auth=False) for i in range(3)]
    assert [status for status, _ in answers] == [201, 201, 201]
    async with desk.http.post(desk.base + "/api/v1/appeals", json=appeal(3)) as resp:
        assert resp.status == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        error = (await resp.json())["error"]
    assert error["code"] == "too_many_requests"
    assert error["message"].startswith("too many requests from your address; try again in ")
    assert await Appeal.all().count() == 3
    assert not await Message.filter(text="Вопрос 3").exists()
    status, spec = await desk.get("/api/v1/openapi.json", auth=False)
    refused = spec["paths"]["/api/v1/appeals"]["post"]["responses"]["429"]
    assert refused["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    # Staff with a token are not the anonymous public: their API is not limited.
    status, _ = await desk.post("/api/v1/appeals/A-000001/notes", {"text": "флуд"})
    assert status == 201


async def test_the_web_form_over_its_budget_comes_back_as_typed_with_the_wait(
    start_desk: Callable[..., Any],
) -> None:
    desk: Desk = await start_desk(
        http=http_settings(appeals={"per_address_burst": 1, "per_address_per_minute": 1})
    )
    form = {"name": "Олег", "phone": "+7 999 000-11-22", "text": "Есть ли <b>в наличии</b>?"}
    async with desk.http.post(desk.base + "/appeal", data=form, allow_redirects=False) as resp:
        assert resp.status == 303
    async with desk.http.post(desk.base + "/appeal", data=form, allow_redirects=False) as resp:
        assert resp.status == 429
        seconds = resp.headers["Retry-After"]
        html = await resp.text()
    assert f"Подождите {seconds} с и отправьте форму ещё раз" in html
    assert "Есть ли &lt;b&gt;в наличии&lt;/b&gt;?</textarea>" in html and "+7 999 000-11-22" in html
    assert await Appeal.all().count() == 1


async def test_pages_over_their_budget_get_a_429_page(start_desk: Callable[..., Any]) -> None:
    desk: Desk = await start_desk(
        http=http_settings(pages={"per_address_burst": 2, "per_address_per_minute": 1})
    )
    for path in ("/c/forged.token", "/feedback/forged.token"):
        async with desk.http.get(desk.base + path) as resp:
            assert resp.status == 403  # a forged link, counted all the same
    async with desk.http.post(desk.base + "/s/forged.token/reply", data={"text": "да"}) as resp:
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        assert resp.content_type == "text/html"
        assert "Слишком много запросов" in await resp.text()
    async with desk.http.get(desk.base + "/") as resp:  # the form itself is not limited
        assert resp.status == 200


async def test_x_forwarded_for_is_believed_from_a_trusted_proxy_only(
    start_desk: Callable[..., Any],
) -> None:
    limits = {"per_address_burst": 1, "per_address_per_minute": 1, "overall_burst": 3}
    desk: Desk = await start_desk(http=http_settings(appeals=limits))
    # Not a trusted proxy: the header is the client's word, and the client is the peer.
    async with desk.http.post(
        desk.base + "/api/v1/appeals", json=appeal(0), headers={"X-Forwarded-For": "203.0.113.1"}
    ) as resp:
        assert resp.status == 201
    async with desk.http.post(
        desk.base + "/api/v1/appeals", json=appeal(1), headers={"X-Forwarded-For": "203.0.113.2"}
    ) as resp:
        assert resp.status == 429

    port = free_port()
    proxied = http_settings(port, appeals=limits) | {"trusted_proxies": ["127.0.0.1"]}
    desk = await start_desk(http=proxied)

    async def send(i: int, forwarded: str) -> int:
        headers = {"X-Forwarded-For": forwarded}
        async with desk.http.post(
            desk.base + "/api/v1/appeals", json=appeal(i), headers=headers
        ) as resp:
            return resp.status

    # Each client its own budget; a forged hop before the real one changes nothing.
    assert await send(10, "203.0.113.1") == 201
    assert await send(11, "198.51.100.7, 203.0.113.1") == 429
    assert await send(12, "203.0.113.2") == 201
    # Three appeals overall (the one refused took nothing): the next client waits as well.
    assert await send(13, "203.0.113.3") == 201
    assert await send(14, "203.0.113.4") == 429


async def test_the_robot_trap_sends_nothing_and_gives_a_person_the_form_back(
    desk: Desk,
) -> None:
    async with desk.http.get(desk.base + "/") as resp:
        html = await resp.text()
    assert 'name="homepage" value="" tabindex="-1" autocomplete="off"' in html
    form = {
        "name": "Бот",
        "email": "bot@example.com",
        "text": "Купите наши услуги",
        "homepage": "http://spam.example",
    }
    async with desk.http.post(desk.base + "/appeal", data=form, allow_redirects=False) as resp:
        assert resp.status == 422
        html = await resp.text()
    assert "Форма не отправлена: похоже, её заполнила программа" in html
    assert "Купите наши услуги</textarea>" in html and "spam.example" not in html
    assert await Appeal.all().count() == 0
    assert await desk.service.ctx.stream.pending_count() == 0  # type: ignore[union-attr]


async def test_customers_writing_in_telegram_are_never_limited(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    port = free_port()
    tiny = {"per_address_burst": 1, "overall_burst": 1}
    desk: Desk = await start_desk(
        **telegram_settings(fake, telegram={"mode": "webhook", "webhook_secret": SECRET}),
        http=http_settings(port, appeals=tiny, pages=tiny),
        public_url=f"http://127.0.0.1:{port}",
    )
    async with aiohttp.ClientSession() as http:  # the anonymous budget, spent
        for i in range(2):
            async with http.post(desk.base + "/api/v1/appeals", json=appeal(i)) as resp:
                assert resp.status == (201 if i == 0 else 429)
    fake.add_private_chat(720, "Вика")
    for i in range(12):  # from the same address as the flood above
        fake.user_message(720, f"Сообщение {i}")
    texts = {f"Сообщение {i}" for i in range(12)}

    async def all_stored() -> bool:
        return await Message.filter(text__in=texts).count() == len(texts)

    await eventually(all_stored, timeout=20)


async def test_telegram_s_webhook_connections_are_all_taken_at_the_default_cap(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    # Telegram posts a webhook's updates over up to 100 connections (setWebhook's
    # max_connections; 40 unless set) from one of its servers: none may meet the cap's 503.
    port = free_port()
    await start_desk(
        **telegram_settings(fake, telegram={"mode": "webhook", "webhook_secret": SECRET}),
        http={"host": "127.0.0.1", "port": port},
        public_url=f"http://127.0.0.1:{port}",
    )
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(100)]
    for i, (_, writer) in enumerate(connections):
        update = {
            "update_id": 900_000 + i,
            "message": {
                "message_id": 1,
                "date": 1_800_000_000,
                "chat": {"id": 77_000 + i, "type": "private", "first_name": "Клиент"},
                "from": {"id": 77_000 + i, "is_bot": False, "first_name": "Клиент"},
                "text": f"Вопрос через вебхук {i}",
            },
        }
        body = json.dumps(update).encode()
        writer.write(
            b"POST /telegram/webhook HTTP/1.1\r\nHost: desk\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nX-Telegram-Bot-Api-Secret-Token: "
            + SECRET.encode()
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
    answers = [await asyncio.wait_for(reader.read(), timeout=30) for reader, _ in connections]
    for _, writer in connections:
        writer.close()
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 100

    async def all_stored() -> bool:  # the 200 came once each was in the stream
        return await Message.filter(text__startswith="Вопрос через вебхук").count() == 100

    await eventually(all_stored, timeout=30)


# -- the buckets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_minute", "burst", "times", "expected"),
    [
        (60, 2, [0, 0, 0], [0.0, 0.0, 1.0]),  # two at once, then one a second
        (60, 2, [0, 0, 0.5], [0.0, 0.0, 0.5]),
        (60, 2, [0, 0, 1], [0.0, 0.0, 0.0]),  # refilled
        (6, 1, [0, 5], [0.0, 5.0]),  # one every 10 s
        (60, 3, [0, 100, 100, 100, 100], [0.0, 0.0, 0.0, 0.0, 1.0]),  # never above the burst
    ],
)
def test_a_bucket_lets_its_burst_through_then_its_rate(
    per_minute: float, burst: int, times: list[float], expected: list[float]
) -> None:
    bucket = TokenBuckets(per_minute, burst, size=10)
    waits = []
    for now in times:
        wait = bucket.wait("a", now)
        waits.append(round(wait, 6))
        if wait == 0:
            bucket.take("a", now)
    assert waits == expected


def test_buckets_forget_the_least_recently_seen_address_beyond_their_size() -> None:
    bucket = TokenBuckets(1, 1, size=2)
    for key in ("a", "b", "a", "c"):  # "b" is the oldest when "c" comes
        bucket.take(key, 0)
    assert bucket.wait("a", 0) > 0 and bucket.wait("c", 0) > 0
    assert bucket.wait("b", 0) == 0  # forgotten: a full bucket again
    assert len(bucket._buckets) == 2


def test_the_limiter_counts_a_refused_request_against_nothing() -> None:
    now = [0.0]
    settings = HttpSettings(
        rate_limits={
            "appeals": {"per_address_burst": 1, "overall_burst": 2, "overall_per_minute": 1}
        }
    )
    limiter = RateLimiter(settings, clock=lambda: now[0])
    assert limiter.admit(APPEALS, "a") == 0
    assert limiter.admit(APPEALS, "a") == 12  # 5 a minute per address
    assert limiter.admit(APPEALS, "b") == 0
    assert limiter.admit(APPEALS, "c") == 60  # the overall bucket is empty
    assert limiter.admit(PAGES, "c") == 0  # another group, other budgets
    assert limiter.refusals_to_log(APPEALS) == 2  # one log line for a flood, once a minute
    assert limiter.admit(APPEALS, "d") > 0 and limiter.refusals_to_log(APPEALS) == 0
    now[0] = 60
    assert limiter.admit(APPEALS, "c") == 0
    off = RateLimiter(HttpSettings(rate_limits={"enabled": False}))
    assert all(off.admit(APPEALS, "a") == 0 for _ in range(100))
