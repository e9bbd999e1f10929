"""«Средняя оценка за период» (seed 004): a week of ratings counted by hand against the report,
the API (JSON, CSV, PNG), and /rating in the managers' chat through the fake Telegram."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bench.fakes.telegram import FakeTelegram
from desk.reports.charts import rating_chart
from desk.reports.periods import parse_period
from desk.reports.rating_report import rating_report
from models import Agent, Appeal, Customer, Order, Rating, RatingRequest, db
from tests.conftest import Desk
from tests.telegram_world import (
    AGENT_ID,
    MANAGERS_CHAT,
    STAFF_CHAT,
    STRANGER_ID,
    MovableClock,
    eventually,
    telegram_settings,
)

MOSCOW = ZoneInfo("Europe/Moscow")  # the company's zone in the default settings
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=UTC)  # Sunday 12:00 in Moscow: the week is 9-15 Nov
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Given:
    """One rating of the hand-counted week."""

    day: int  # of November 2026
    score: int
    agent: str | None
    category: str | None
    team: str | None
    channel: str
    order: bool = False


WEEK = [
    Given(9, 5, "Анна", "returns", "support", "telegram"),
    Given(9, 4, "Анна", "order_status", "support", "telegram"),
    Given(10, 3, "Борис <Б>", "documents", "accounting", "email"),
    Given(12, 5, "Анна", "returns", "support", "vk"),
    Given(12, 1, None, None, None, "web"),
    Given(12, 4, "Борис <Б>", "order_status", "support", "telegram"),
    Given(13, 2, "Борис <Б>", "documents", "accounting", "email"),
    Given(15, 5, "Анна", "order_status", "support", "telegram"),
    Given(15, 5, None, None, None, "telegram", order=True),
]
OUTSIDE = [  # the days around the week: never counted
    Given(8, 1, "Анна", "returns", "support", "telegram"),
    Given(16, 1, "Борис <Б>", "returns", "support", "telegram"),
]
# Counted by hand from WEEK: 9 ratings, scores summing to 34.
AVERAGE = 3.78
DISTRIBUTION = {"1": 1, "2": 1, "3": 1, "4": 2, "5": 4}
BY_CATEGORY = [
    ("order_status", 3, 4.33),
    ("returns", 2, 5.0),
    ("none", 2, 3.0),
    ("documents", 2, 2.5),
]
BY_TEAM = [("support", 5, 4.6), ("none", 2, 3.0), ("accounting", 2, 2.5)]
BY_CHANNEL = [("telegram", 5, 4.6), ("email", 2, 2.5), ("vk", 1, 5.0), ("web", 1, 1.0)]
DAILY = [
    ("2026-11-09", 2, 4.5),
    ("2026-11-10", 1, 3.0),
    ("2026-11-11", 0, None),
    ("2026-11-12", 3, 3.33),
    ("2026-11-13", 1, 2.0),
    ("2026-11-14", 0, None),
    ("2026-11-15", 2, 5.0),
]
# Requests sent in the week: one per rating (9, answered), 3 unanswered, one unanswered at the
# first instant of the week; one just before and one at the end instant are not in it.
SENT, ANSWERED, RESPONSE_RATE = 13, 9, 0.6923


def local(day: int, hour: int = 10) -> datetime:
    return datetime.combine(date(2026, 11, day), time(hour), MOSCOW).astimezone(UTC)


async def seed_week() -> dict[str, int]:
    """The hand-counted week, written straight into the tables; agent ids by name."""
    customer = await Customer.create(name="Марина")
    agents = {name: (await Agent.create(name=name)).id for name in ("Анна", "Борис <Б>")}
    for n, given in enumerate([*WEEK, *OUTSIDE]):
        counted = given in WEEK
        appeal = order = None
        if given.order:
            order = await Order.create(external_id=f"o-{n}", customer=customer)
        else:
            appeal = await Appeal.create(
                number=f"A-{n + 1:06d}", customer=customer, channel=given.channel
            )
        request = None
        if counted:
            request = await RatingRequest.create(
                appeal=appeal,
                order=order,
                customer=customer,
                channel=given.channel,
                expires_at=local(given.day) + timedelta(days=3),
                answered_at=local(given.day, 11),
                created_at=local(given.day),
            )
        await Rating.create(
            request=request,
            appeal=appeal,
            order=order,
            customer=customer,
            score=given.score,
            day=date(2026, 11, given.day),
            via="telegram",
            channel=given.channel,
            agent_id=agents[given.agent] if given.agent else None,
            category=given.category,
            team=given.team,
        )
    week_start = local(9, 0)
    for created, answered in [
        (local(14, 9), None),
        (local(14, 12), None),
        (local(14, 23), None),
        (week_start, None),
        (week_start - timedelta(seconds=1), week_start),
        (local(16, 0), local(16, 1)),  # the end instant: the next week's
    ]:
        await RatingRequest.create(
            customer=customer,
            channel="telegram",
            expires_at=created + timedelta(days=3),
            answered_at=answered,
            created_at=created,
        )
    return agents


def lines(items: list[dict[str, Any]]) -> list[tuple[str, int, float | None]]:
    return [(i["key"], i["count"], i["average"]) for i in items]


def check_week(body: dict[str, Any], agents: dict[str, int]) -> None:
    """The week's figures, as counted by hand."""
    assert body["count"] == 9 and body["average"] == AVERAGE
    assert body["distribution"] == DISTRIBUTION
    assert body["requests"] == {
        "sent": SENT,
        "answered": ANSWERED,
        "response_rate": RESPONSE_RATE,
    }
    assert [(a["agent_id"], a["name"], a["count"], a["average"]) for a in body["by_agent"]] == [
        (agents["Анна"], "Анна", 4, 4.75),
        (agents["Борис <Б>"], "Борис <Б>", 3, 3.0),
        (None, "unassigned", 2, 3.0),
    ]
    assert lines(body["by_category"]) == BY_CATEGORY
    assert lines(body["by_team"]) == BY_TEAM
    assert lines(body["by_channel"]) == BY_CHANNEL
    assert [(d["day"], d["count"], d["average"]) for d in body["daily"]] == DAILY


@pytest.fixture
async def orm(db_url: str) -> AsyncIterator[None]:
    await db.connect(db_url)
    yield
    await db.disconnect()


async def test_week_report_matches_the_hand_count(orm: None) -> None:
    agents = await seed_week()
    report = await rating_report(parse_period("week", NOW, MOSCOW))
    check_week(report.to_json(), agents)
    assert report.distribution == {1: 1, 2: 1, 3: 1, 4: 2, 5: 4}
    assert report.period.label == "week"


async def test_day_and_empty_periods(orm: None) -> None:
    await seed_week()
    one = await rating_report(parse_period("12.11.2026", NOW, MOSCOW))
    assert (one.count, one.average, one.distribution) == (3, 3.33, {1: 1, 2: 0, 3: 0, 4: 1, 5: 1})
    assert one.requests_sent == 3 and one.response_rate == 1.0
    empty = await rating_report(parse_period("2026-10-01..2026-10-03", NOW, MOSCOW))
    assert (empty.count, empty.average, empty.response_rate) == (0, None, None)
    assert empty.distribution == {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}
    assert [(d.count, d.average) for d in empty.daily] == [(0, None)] * 3
    assert empty.by_agent == empty.by_category == empty.by_team == empty.by_channel == []


async def test_chart_is_a_png_of_phone_size(orm: None) -> None:
    await seed_week()
    from matplotlib.image import imread

    for period in ("week", "2026-10-01..2026-10-03", "2025-11-16..2026-11-15"):
        report = await rating_report(parse_period(period, NOW, MOSCOW))
        for lang in ("ru", "en"):
            png = rating_chart(report, lang, "Оценки клиентов, 09.11.2026 – 15.11.2026")
            assert png.startswith(PNG_MAGIC) and 10_000 < len(png) < 500_000
            height, width, _ = imread(io.BytesIO(png), format="png").shape
            assert (width, height) == (1100, 660)


# -- the HTTP API --------------------------------------------------------------------------------


async def fetch(desk: Desk, path: str) -> tuple[int, str, bytes]:
    async with desk.http.get(desk.base + path, headers=desk.auth) as resp:
        return resp.status, resp.content_type, await resp.read()


async def test_api_reports_the_week_as_json_and_csv(start_desk: Callable[..., Any]) -> None:
    desk: Desk = await start_desk(clock=MovableClock(NOW))
    agents = await seed_week()

    status, body = await desk.get("/api/v1/reports/ratings?period=week")
    assert status == 200, body
    check_week(body, agents)
    assert body["period"] == {
        "label": "week",
        "from": "2026-11-09",
        "to": "2026-11-15",
        "start": "2026-11-08T21:00:00+00:00",
        "end": "2026-11-15T21:00:00+00:00",
    }
    status, same = await desk.get("/api/v1/reports/ratings?from=2026-11-09&to=15.11.2026")
    assert status == 200 and same["period"]["label"] == "2026-11-09..2026-11-15"
    assert {**same, "period": None} == {**body, "period": None}
    assert (await desk.get("/api/v1/reports/ratings"))[1]["count"] == 9  # a week by default

    status, kind, raw = await fetch(desk, "/api/v1/reports/ratings?period=week&format=csv")
    assert status == 200 and kind == "text/csv"
    rows = raw.decode().splitlines()
    assert rows[0] == "day,count,average"
    assert rows[1:] == [f"{d},{n},{'' if a is None else f'{a:.2f}'}" for d, n, a in DAILY]


async def test_api_chart_is_a_png(start_desk: Callable[..., Any]) -> None:
    desk: Desk = await start_desk(clock=MovableClock(NOW))
    await seed_week()
    status, kind, png = await fetch(desk, "/api/v1/reports/ratings/chart.png?period=month&lang=en")
    assert status == 200 and kind == "image/png" and png.startswith(PNG_MAGIC)


async def test_api_bad_period_is_a_clear_400(start_desk: Callable[..., Any]) -> None:
    desk: Desk = await start_desk(clock=MovableClock(NOW))
    status, body = await desk.get("/api/v1/reports/ratings?period=fortnight")
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert "fortnight" in body["error"]["message"] and "2026-11-05" in body["error"]["message"]
    assert body["error"]["fields"][0]["field"] == "period"
    status, body = await desk.get("/api/v1/reports/ratings?from=2026-11-15&to=2026-11-01")
    assert status == 400 and "before it starts" in body["error"]["message"]
    status, body = await desk.get("/api/v1/reports/ratings?from=2026-13-01")
    assert status == 400 and body["error"]["fields"][0]["field"] == "from"
    status, body = await desk.get("/api/v1/reports/ratings?period=week&from=2026-11-01")
    assert status == 400 and "either" in body["error"]["message"]
    status, body = await desk.get("/api/v1/reports/ratings?format=xml")
    assert status == 400 and "csv" in body["error"]["message"]
    status, _ = await desk.get("/api/v1/reports/ratings/chart.png?period=вчера-завтра")
    assert status == 400


async def test_api_reports_need_a_token_and_are_documented(
    start_desk: Callable[..., Any],
) -> None:
    desk: Desk = await start_desk(clock=MovableClock(NOW))
    status, body = await desk.get("/api/v1/reports/ratings", auth=False)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    async with desk.http.get(desk.base + "/api/v1/reports/ratings/chart.png") as resp:
        assert resp.status == 401
    _, spec = await desk.get("/api/v1/openapi.json", auth=False)
    report = spec["paths"]["/api/v1/reports/ratings"]["get"]
    assert {p["name"] for p in report["parameters"]} == {"period", "from", "to", "format"}
    assert report["security"] == [{"bearer": []}]
    assert "RatingReportOut" in spec["components"]["schemas"]
    assert "get" in spec["paths"]["/api/v1/reports/ratings/chart.png"]


# -- /rating in Telegram -------------------------------------------------------------------------


def shown_in(fake: FakeTelegram, chat_id: int) -> list[str]:
    """What a chat shows of the bot's messages (text or caption, after Telegram's HTML)."""
    return [
        str(s.message.get("text") or s.message.get("caption") or "")
        for s in fake.sent_to(chat_id)
        if s.method != "editMessageText"
    ]


def photos_in(fake: FakeTelegram, chat_id: int) -> list[bytes]:
    """The images the bot uploaded to a chat as photos."""
    return [
        content
        for call in fake.calls("sendPhoto")
        if int(call.params.get("chat_id", 0)) == chat_id
        for content in call.files.values()
    ]


async def test_rating_command_in_managers_chat_answers_figures_then_chart(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    await start_desk(
        clock=MovableClock(NOW),
        **telegram_settings(fake, telegram={"managers_chat_id": MANAGERS_CHAT}),
    )
    await seed_week()
    sent = fake.group_message(MANAGERS_CHAT, AGENT_ID, "/rating week")

    await eventually(lambda: photos_in(fake, MANAGERS_CHAT), what="the chart")
    answers = fake.sent_to(MANAGERS_CHAT)
    assert [a.method for a in answers] == ["sendMessage", "sendPhoto"]  # it ends with the chart
    assert answers[0].reply_to_message_id == sent["message"]["message_id"]
    assert "09.11.2026 – 15.11.2026" in (answers[1].body or "")
    text = shown_in(fake, MANAGERS_CHAT)[0]
    for expected in [
        "Средняя оценка: 3.78 (9 оценок)",
        "5 ★ — 4 (44%)",
        "4 ★ — 2 (22%)",
        "1 ★ — 1 (11%)",
        "Ответили на запрос оценки: 69.2% (9 из 13)",
        "Анна — 4.75 (4)",
        "Борис <Б> — 3.0 (3)",
        "без исполнителя — 3.0 (2)",
        "Статус заказа — 4.33 (3)",  # the category's title, not its id
        "не указано — 3.0 (2)",
        "telegram — 4.6 (5)",
    ]:
        assert expected in text, (expected, text)
    png = photos_in(fake, MANAGERS_CHAT)[0]
    assert png.startswith(PNG_MAGIC)
    assert not any("Оценки" in t for t in shown_in(fake, STAFF_CHAT))  # nothing in staff group


async def test_rating_command_refuses_strangers_and_explains_bad_periods(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    await start_desk(
        clock=MovableClock(NOW),
        **telegram_settings(fake, telegram={"managers_chat_id": MANAGERS_CHAT}),
    )
    fake.group_message(MANAGERS_CHAT, STRANGER_ID, "/rating week")
    await eventually(lambda: shown_in(fake, MANAGERS_CHAT), what="the refusal")
    assert "только сотрудникам поддержки" in shown_in(fake, MANAGERS_CHAT)[0]

    fake.group_message(MANAGERS_CHAT, AGENT_ID, "/rating позавчера")
    fake.group_message(MANAGERS_CHAT, AGENT_ID, "/rating 31.02.2026")
    fake.group_message(MANAGERS_CHAT, AGENT_ID, "/rating 15.11.2026-01.11.2026")
    await eventually(lambda: len(shown_in(fake, MANAGERS_CHAT)) >= 4, what="three explanations")
    _, unknown, no_date, reversed_ = shown_in(fake, MANAGERS_CHAT)
    assert "Не понял период «позавчера»" in unknown and "01.11.2026-15.11.2026" in unknown
    assert "Даты «31.02.2026» не бывает" in no_date
    assert "сначала ранняя дата" in reversed_
    assert not photos_in(fake, MANAGERS_CHAT)


async def test_rating_command_works_in_staff_group_without_managers_chat(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    await start_desk(clock=MovableClock(NOW), **telegram_settings(fake))
    await seed_week()
    fake.group_message(STAFF_CHAT, AGENT_ID, "/rating 12.11.2026")

    await eventually(lambda: photos_in(fake, STAFF_CHAT), what="the chart in the staff group")
    texts = shown_in(fake, STAFF_CHAT)
    assert any("Средняя оценка: 3.33 (3 оценки)" in t for t in texts)
    assert not any("Неизвестная команда" in t for t in texts)  # answered once, by reports
    fake.group_message(MANAGERS_CHAT, AGENT_ID, "/rating")  # no managers' chat configured
    fake.group_message(STAFF_CHAT, AGENT_ID, "/help")
    await eventually(lambda: len(shown_in(fake, STAFF_CHAT)) > len(texts), what="/help")
    assert not fake.sent_to(MANAGERS_CHAT)
