"""Reports of issue #10: a hand-timed week and a generated month of traffic through the real
lifecycle under a movable clock, checked against hand-counted figures and against a brute-force
replay of the history rows; phrases; the API (JSON, CSV); /stats, /sla, /top in the managers'
chat; the daily digest posted once with two service instances."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bench.fakes.telegram import FakeTelegram
from channels.base import ChannelKind, InboundMessage
from desk.api.reports import named
from desk.reports.appeal_report import Spread, appeal_report
from desk.reports.durations import EXACT_BELOW, RELATIVE_ERROR, bucket_of, value_of
from desk.reports.periods import parse_period, period_of_days
from desk.reports.phrases import phrases
from desk.reports.sla_report import sla_report
from desk.reports.top_report import previous_of, top_report
from models import (
    OPEN_STATUSES,
    Appeal,
    AppealStatus,
    Customer,
    Direction,
    Event,
    KeyValue,
    Message,
    OutboxItem,
    PhraseDay,
    Priority,
    Rating,
    ReportDay,
    db,
)
from tests.conftest import Desk
from tests.telegram_world import (
    AGENT_ID,
    MANAGERS_CHAT,
    MovableClock,
    eventually,
    telegram_settings,
)

MOSCOW = ZoneInfo("Europe/Moscow")
MONDAY = date(2026, 11, 9)
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=UTC)  # Sunday 12:00 in Moscow: the week is 9-15 Nov
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUIET = {"workers": {"claim_idle_s": 2.0, "poll_s": 0.05, "sla_scan_s": 3600}}


def msk(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), MOSCOW).astimezone(UTC)


def nearest_rank(values: list[int], q: float) -> int | None:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1] if ordered else None


def near(shown: int | None, exact: int | None) -> bool:
    """A median or 90th percentile a report shows against the exact one: the value of the exact
    one's bucket, so the same below EXACT_BELOW seconds and within RELATIVE_ERROR above."""
    if shown is None or exact is None:
        return shown is exact
    bound = RELATIVE_ERROR * exact if exact >= EXACT_BELOW else 0
    return shown == value_of(bucket_of(exact)) and abs(shown - exact) <= bound


def spread_near(times: Spread, wall: list[int], work: list[int]) -> bool:
    """The report's medians and 90th percentiles against the exact ones of these durations."""
    return (
        times.count == len(wall) == len(work)
        and near(times.median_s, nearest_rank(wall, 0.5))
        and near(times.p90_s, nearest_rank(wall, 0.9))
        and near(times.work_median_s, nearest_rank(work, 0.5))
        and near(times.work_p90_s, nearest_rank(work, 0.9))
    )


def business_seconds(start: datetime, end: datetime) -> int:
    """Brute force: every minute of [start, end) that falls on Mon-Fri 9:00-18:00 in Moscow."""
    total = 0
    moment = start
    while moment < end:
        local = moment.astimezone(MOSCOW)
        if local.weekday() < 5 and 9 <= local.hour < 18:
            total += 60
        moment += timedelta(minutes=1)
    return total


# -- phrases -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wanted", "unwanted"),
    [
        ("Хочу вернуть деньги за заказ", {"вернуть деньги", "хочу вернуть деньги"}, set()),
        ("Где мой заказ? Заказ не пришёл", {"заказ не пришел"}, {"где заказ заказ"}),
        (
            "Пишите на ivan.petrov@mail.ru или +7 (912) 345-67-89, заказ 123456 не пришел",
            {"заказ", "не пришел"} - {"заказ", "не пришел"},
            {"ivan", "petrov", "mail", "912", "123456", "заказ не пришел"},
        ),
        ("Please refund my order, the parcel never arrived", {"refund order"}, {"my order"}),
        ("Здравствуйте, пожалуйста, помогите", set(), {"здравствуйте пожалуйста"}),
    ],
)
def test_phrases_drop_stop_words_numbers_and_personal_data(
    text: str, wanted: set[str], unwanted: set[str]
) -> None:
    shown = {p.shown for p in phrases(text)}
    keys = " | ".join(p.key for p in phrases(text))
    assert wanted <= shown, shown
    for part in unwanted:
        assert part not in keys and not any(part in s for s in shown), (part, shown)


def test_phrases_are_lemmas_with_the_customers_wording() -> None:
    one = {p.key: p.shown for p in phrases("Верните деньги")}
    two = {p.key: p.shown for p in phrases("вернуть деньги")}
    assert one.keys() == two.keys() == {"вернуть деньга"}
    assert one["вернуть деньга"] == "верните деньги"


# -- a hand-timed week through the lifecycle ------------------------------------------------------


class Traffic:
    """Customers write, agents answer and resolve, through the desk's own lifecycle."""

    def __init__(self, desk: Desk, clock: MovableClock) -> None:
        self.desk = desk
        self.clock = clock
        self.sent = 0

    @property
    def ctx(self) -> Any:
        return self.desk.service.ctx

    async def write(
        self, who: str, text: str, at: datetime, channel: ChannelKind = ChannelKind.EMAIL
    ) -> str:
        self.clock.now = at
        self.sent += 1
        result = await self.ctx.lifecycle.ingest(
            InboundMessage(
                channel=channel,
                external_id=f"{who}:{self.sent}",
                address=who,
                text=text,
                sender_name=who,
                sent_at=at,
            )
        )
        return str(result.number)

    async def answer(self, number: str, at: datetime) -> None:
        self.clock.now = at
        await self.ctx.lifecycle.reply(number, "Отвечаем", actor="Ирина")

    async def move(self, number: str, status: AppealStatus, at: datetime) -> None:
        self.clock.now = at
        await self.ctx.lifecycle.transition(number, status, actor="Ирина")

    async def scan(self, at: datetime) -> None:
        self.clock.now = at
        await self.ctx.sla.scan()


async def hand_week(t: Traffic) -> dict[str, str]:
    """Six appeals of the week 9-15 Nov 2026 with hand-picked times (Moscow; 9-18 Mon-Fri)."""
    mon, tue, wed, thu, fri, sat = (MONDAY + timedelta(days=n) for n in range(6))
    n: dict[str, str] = {}
    n["a1"] = await t.write("c1@example.com", "Вопрос по доставке заказа", msk(mon, 10))
    await t.answer(n["a1"], msk(mon, 10, 30))
    await t.move(n["a1"], AppealStatus.RESOLVED, msk(mon, 12))
    n["a2"] = await t.write("c2@example.com", "Вопрос по доставке заказа", msk(mon, 17))
    await t.answer(n["a2"], msk(tue, 9, 59))
    await t.move(n["a2"], AppealStatus.RESOLVED, msk(wed, 11))
    n["a4"] = await t.write("c4@example.com", "Вопрос по доставке заказа", msk(wed, 9))
    await t.scan(msk(wed, 11, 30))  # 2.5 working hours without an answer: breached
    await t.answer(n["a4"], msk(wed, 12, 5))
    await t.move(n["a4"], AppealStatus.RESOLVED, msk(wed, 13))
    assert (
        await t.write("c4@example.com", "Всё ещё не работает", msk(wed, 14)) == n["a4"]
    )  # reopened
    await t.move(n["a4"], AppealStatus.RESOLVED, msk(thu, 10))
    n["a5"] = await t.write("c5@example.com", "Вопрос по доставке заказа", msk(thu, 15))
    n["a3"] = await t.write("c3@example.com", "Вопрос по доставке заказа", msk(fri, 20))
    await t.answer(n["a3"], msk(sat, 11))
    await t.move(n["a3"], AppealStatus.RESOLVED, msk(sat, 12))
    n["a6"] = await t.write("c6@example.com", "Вопрос по доставке заказа", msk(sat, 10))
    await t.move(n["a6"], AppealStatus.CLOSED, msk(sat, 10, 30))
    # Written last, so no SLA scan of the week sees it: waiting since the Friday before.
    n["old"] = await t.write(
        "c7@example.com", "Вопрос по доставке заказа", msk(MONDAY - timedelta(days=3), 10)
    )
    t.clock.now = NOW
    return n


# First answers (wall, business seconds): a1 30 min; a2 Mon 17:00 → Tue 9:59 (16 h 59 min on the
# wall, 1 h + 59 min of working time); a4 Wed 9:00 → 12:05; a3 Fri 20:00 → Sat 11:00 (none).
FIRST_WALL = [1800, 61140, 11100, 54000]
FIRST_WORK = [1800, 7140, 11100, 0]
# Done in the week: a1 2 h; a2 Mon 17 → Wed 11 (42 h; 1 + 9 + 2 working hours); a4 Wed 9 → Thu 10
# after its reopening (25 h; 9 + 1); a3 16 h (none working); a6 closed after 30 min on Saturday.
DONE_WALL = [7200, 151200, 90000, 57600, 1800]
DONE_WORK = [7200, 43200, 36000, 0, 0]


async def test_a_hand_timed_week(start_desk: Callable[..., Any]) -> None:
    clock = MovableClock(msk(MONDAY - timedelta(days=3), 9))
    desk: Desk = await start_desk(clock=clock, **QUIET)
    n = await hand_week(Traffic(desk, clock))
    priorities = {a.number: a.priority for a in await Appeal.all()}
    assert priorities.pop(n["a4"]) is Priority.HIGH  # raised by its breach
    assert set(priorities.values()) == {Priority.NORMAL}  # the 2 h policy

    report = await appeal_report(parse_period("week", NOW, MOSCOW), NOW, MOSCOW)
    assert report.created == 6
    first, done = report.first_response, report.resolution
    assert spread_near(first.times, FIRST_WALL, FIRST_WORK), first.times
    assert sorted(FIRST_WALL)[1] == 11100 and sorted(FIRST_WORK)[1] == 1800  # nearest rank
    assert (first.times.median_s, first.times.p90_s) == (11214, 60747)  # 11100, 61140 ± 1.2 %
    assert (first.with_due, first.met, first.met_share, first.breaches) == (4, 3, 0.75, 1)
    assert spread_near(done.times, DONE_WALL, DONE_WORK), done.times
    assert (done.with_due, done.met, done.met_share) == (5, 5, 1.0)
    assert (report.reopened, report.reopen_rate) == (1, 0.2)
    backlog = report.backlog
    assert (backlog.total, backlog.by_status) == (2, {"new": 0, "open": 2, "pending": 0})
    # a5 since Thursday 15:00, the one from Friday before the week since 10:00 (9 days 2 h)
    assert backlog.oldest_s == 9 * 86_400 + 2 * 3600
    assert backlog.median_age_s == 2 * 86_400 + 21 * 3600
    assert backlog.ages == {"under_1d": 0, "1_3d": 1, "3_7d": 0, "over_7d": 1}
    assert [(b.label, b.created, b.done) for b in report.buckets] == [
        ("2026-11-09", 2, 1),
        ("2026-11-10", 0, 0),
        ("2026-11-11", 1, 1),
        ("2026-11-12", 1, 1),
        ("2026-11-13", 1, 0),
        ("2026-11-14", 1, 2),
        ("2026-11-15", 0, 0),
    ]
    a4 = await Appeal.get(number=n["a4"])
    assert a4.reopens == 1 and a4.sla_state["first_response"]["met"] is False

    sla = await sla_report(parse_period("week", NOW, MOSCOW), MOSCOW, NOW.date())
    assert sla.breaches == 1 and [b.number for b in sla.latest_breaches] == [n["a4"]]
    assert [(t.key, t.answered, t.answered_met, t.done, t.done_met) for t in sla.by_team] == [
        (sla.by_team[0].key, 4, 3, 5, 5)
    ]


# -- a month of generated traffic -----------------------------------------------------------------

TOPICS = [
    ["Хочу вернуть деньги за куртку", "Верните деньги, товар не подошел", "Как оформить возврат?"],
    ["Где мой заказ? Заказ не пришел", "Заказ не пришел, где посылка", "Когда доставка заказа"],
    [
        "Пришлите счет и акт для бухгалтерии",
        "Нужен счет на оплату",
        "Пришлите закрывающие документы",
    ],
    ["Ужасное обслуживание, курьер нагрубил", "Курьер опоздал на три часа, жалоба"],
    ["Есть ли в наличии синие кроссовки?", "Когда будут в наличии кроссовки 42 размера"],
]
CHANNELS = [ChannelKind.WEB, ChannelKind.TELEGRAM, ChannelKind.VK, ChannelKind.EMAIL]
MONTH_START = date(2026, 10, 17)  # 30 days before the month report's last day, and a few more
MONTH_NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def month_plan(seed: int = 10) -> list[tuple[datetime, str, tuple[Any, ...]]]:
    """(when, action, arguments) of 110 appeals over 35 days up to ``MONTH_NOW``, in order."""
    rng = random.Random(seed)
    plan: list[tuple[datetime, str, tuple[Any, ...]]] = []
    for i in range(110):
        day = MONTH_START + timedelta(days=rng.randrange(35))
        opened = msk(day, rng.randrange(7, 23), rng.randrange(60))
        topic = rng.choices(range(len(TOPICS)), weights=[5, 4, 2, 1, 2])[0]
        channel = CHANNELS[i % len(CHANNELS)]
        who = f"{channel.value}-{i}" if channel is not ChannelKind.EMAIL else f"c{i}@example.com"
        if channel is ChannelKind.TELEGRAM or channel is ChannelKind.VK:
            who = str(500_000 + i)
        plan.append((opened, "write", (i, who, rng.choice(TOPICS[topic]), channel)))
        if rng.random() < 0.1:
            continue  # never answered
        answered = opened + timedelta(minutes=rng.choice([5, 30, 90, 240, 900, 2000]))
        plan.append((answered, "answer", (i,)))
        if rng.random() < 0.15:
            continue  # answered, still open
        done = answered + timedelta(minutes=rng.choice([10, 120, 600, 3000]))
        plan.append((done, "resolve", (i,)))
        if rng.random() < 0.15:
            again = done + timedelta(minutes=rng.choice([30, 600]))
            plan.append((again, "write", (i, who, "Вопрос остался, деньги не вернули", channel)))
            plan.append((again + timedelta(hours=3), "resolve", (i,)))
    return sorted((p for p in plan if p[0] < MONTH_NOW), key=lambda p: p[0])


async def run_month(t: Traffic) -> None:
    numbers: dict[int, str] = {}
    next_scan = msk(MONTH_START, 0)
    for at, action, args in month_plan():
        while next_scan <= at:
            await t.scan(next_scan)
            next_scan += timedelta(hours=3)
        if action == "write":
            i, who, text, channel = args
            numbers[i] = await t.write(who, text, at, channel)
        elif args[0] in numbers:
            appeal = await Appeal.get(number=numbers[args[0]])
            if action == "answer":
                await t.answer(numbers[args[0]], at)
            elif appeal.status is not AppealStatus.RESOLVED:
                await t.move(numbers[args[0]], AppealStatus.RESOLVED, at)
    t.clock.now = MONTH_NOW


async def replay() -> dict[int, dict[str, Any]]:
    """Each appeal as its history tells it: created, first answer, done, reopenings."""
    facts: dict[int, dict[str, Any]] = {}
    for e in await Event.filter(appeal_id__isnull=False).order_by("id"):
        f = facts.setdefault(
            int(e.appeal_id or 0), {"created": None, "first": None, "done": None, "reopens": 0}
        )
        if e.kind == "appeal.created":
            f["created"] = e.created_at
        elif e.kind == "message.sent" and f["first"] is None:
            f["first"] = e.created_at
        elif e.kind == "appeal.status_changed" and e.data["after"] in ("resolved", "closed"):
            f["done"] = f["done"] or e.created_at
        elif e.kind == "appeal.reopened":
            f["done"] = None
            f["reopens"] += 1
    return facts


def inside(moment: datetime | None, start: datetime, end: datetime) -> bool:
    return moment is not None and start <= moment < end


async def check_against_replay(label: str, now: datetime = MONTH_NOW) -> None:
    """The report of the period against the history replayed and the appeals' rows now."""
    period = parse_period(label, now, MOSCOW)
    report = await appeal_report(period, now, MOSCOW)
    facts = await replay()
    rows = {a.id: a for a in await Appeal.all()}
    s, e = period.start, period.end

    opened = [rows[i] for i, f in facts.items() if inside(f["created"], s, e)]
    assert report.created == len(opened) > 0
    assert {x.key: x.count for x in report.by_channel} == Counter(a.channel for a in opened)
    assert {x.key: x.count for x in report.by_category} == Counter(
        a.category or "none" for a in opened
    )
    assert {x.key: x.count for x in report.by_agent} == Counter(
        str(a.assignee_id) if a.assignee_id else "unassigned" for a in opened
    )
    assert {x.key: x.count for x in report.by_team} == Counter(a.team or "none" for a in opened)

    answered = {i: f for i, f in facts.items() if inside(f["first"], s, e)}
    wall = [int((f["first"] - f["created"]).total_seconds()) for f in answered.values()]
    work = [business_seconds(f["created"], f["first"]) for f in answered.values()]
    assert spread_near(report.first_response.times, wall, work), label
    met = [rows[i].sla_state["first_response"]["met"] for i in answered]
    assert report.first_response.met == sum(met) and report.first_response.with_due == len(met)

    done = {i: f for i, f in facts.items() if inside(f["done"], s, e)}
    wall = [int((f["done"] - f["created"]).total_seconds()) for f in done.values()]
    work = [business_seconds(f["created"], f["done"]) for f in done.values()]
    assert spread_near(report.resolution.times, wall, work), label
    met = [rows[i].sla_state["resolution"]["met"] for i in done]
    assert report.resolution.met == sum(met)
    reopened = sum(1 for f in done.values() if f["reopens"])
    assert report.reopened == reopened
    assert reopened > 0 or label != "month"
    assert [(b.created, b.done) for b in report.buckets if b.label == period.first_day.isoformat()]
    assert sum(b.created for b in report.buckets) == report.created
    assert sum(b.done for b in report.buckets) == len(done)

    breaches = [ev for ev in await Event.filter(kind="sla.breached") if inside(ev.created_at, s, e)]
    assert report.first_response.breaches == sum(
        ev.data["target"] == "first_response" for ev in breaches
    )
    assert report.resolution.breaches == sum(ev.data["target"] == "resolution" for ev in breaches)

    waiting = [a for a in rows.values() if a.status in OPEN_STATUSES]
    ages = [int((now - facts[a.id]["created"]).total_seconds()) for a in waiting]
    assert report.backlog.total == len(waiting) > 0
    assert report.backlog.oldest_s == max(ages)
    assert report.backlog.median_age_s == nearest_rank(ages, 0.5)
    overdue = [a for a in waiting if a.resolution_due and a.resolution_due < now]
    assert report.backlog.overdue == len(overdue)


def brute_phrases(rows: list[tuple[int, str, str]], appeals: set[int]) -> dict[str, Counter[str]]:
    """Appeals per category and phrase key, read from every customer message again."""
    seen: dict[int, tuple[str, set[str]]] = {}
    for appeal_id, category, text in rows:
        if appeal_id in appeals:
            keys = seen.setdefault(appeal_id, (category, set()))[1]
            keys.update(p.key for p in phrases(text))
    out: dict[str, Counter[str]] = {}
    for category, keys in seen.values():
        out.setdefault(category, Counter()).update(keys)
    return out


async def check_top_against_replay(label: str) -> None:
    period = parse_period(label, MONTH_NOW, MOSCOW)
    before = previous_of(period, MOSCOW)
    today = MONTH_NOW.astimezone(MOSCOW).date()
    report = await top_report(period, MOSCOW, today)
    appeals = await Appeal.all()
    now_ids = {a.id for a in appeals if period.contains(a.created_at)}
    old_ids = {a.id for a in appeals if before.contains(a.created_at)}
    counts = Counter(a.category or "none" for a in appeals if a.id in now_ids)
    previous = Counter(a.category or "none" for a in appeals if a.id in old_ids)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert [(c.category.key, c.category.count) for c in report.categories] == top
    assert [c.category.previous for c in report.categories] == [previous[k] for k, _ in top]
    texts = [
        (int(m["appeal_id"]), str(m["appeal__category"] or ""), str(m["text"]))
        for m in await Message.filter(direction=Direction.IN).values(
            "appeal_id", "appeal__category", "text"
        )
    ]
    now_phrases = brute_phrases(texts, now_ids)
    old_phrases = brute_phrases(texts, old_ids)
    shown = 0
    for item in report.categories:
        key = "" if item.category.key == "none" else item.category.key
        brute = now_phrases.get(key, Counter())
        best = max((n for n in brute.values()), default=0)
        if best >= 2:
            assert item.phrases and item.phrases[0].count == best
        for p in item.phrases:
            assert p.count == brute[p.key] >= 2, (item.category.key, p)
            assert p.previous == old_phrases.get(key, Counter())[p.key]
            shown += 1
    assert shown >= 5 or label != "month"


async def test_a_month_of_traffic_matches_a_replay_of_the_history(
    start_desk: Callable[..., Any],
) -> None:
    clock = MovableClock(msk(MONTH_START, 0))
    desk: Desk = await start_desk(clock=clock, company={"timezone": "Europe/Moscow"}, **QUIET)
    await run_month(Traffic(desk, clock))
    year = "2025-11-20..2026-11-20"  # 366 days, counted by weeks
    for label in ("month", "week", "yesterday", "today", "2026-10-20..2026-11-02", year):
        await check_against_replay(label)
    for label in ("month", "week", "today", year):
        await check_top_against_replay(label)
    # Finished days were counted once and kept; today never is.
    marks = await KeyValue.filter(key__startswith="phrases:").values_list("key", flat=True)
    assert "phrases:2026-11-19" in marks and "phrases:2026-11-20" not in marks
    assert await PhraseDay.filter(day=date(2026, 11, 20)).count() == 0
    counted = sorted(await ReportDay.filter(kind="all").values_list("day", flat=True))
    first = min(a.created_at for a in await Appeal.all()).astimezone(MOSCOW).date()
    assert counted == [
        first + timedelta(days=n) for n in range((date(2026, 11, 19) - first).days + 1)
    ]

    # -- the API: JSON and CSV of the same figures
    status, body = await desk.get("/api/v1/reports/appeals?period=month")
    assert status == 200, body
    same = await appeal_report(parse_period("month", MONTH_NOW, MOSCOW), MONTH_NOW, MOSCOW)
    assert desk.service.ctx is not None
    assert body == named(same.to_json(), desk.service.ctx.settings)  # titles beside the ids
    assert {c["key"]: c["name"] for c in body["by_category"]}["returns"] == "Возврат и обмен"
    assert body["period"]["from"] == "2026-10-22" and body["period"]["to"] == "2026-11-20"
    raw = await fetch_csv(desk, "/api/v1/reports/appeals?period=month&format=csv")
    table = {(r["section"], r["key"]): r["value"] for r in raw}
    assert table[("appeals", "created")] == str(same.created)
    assert table[("first_response", "median_s")] == str(same.first_response.times.median_s)
    assert table[("first_response", "business_p90_s")] == str(same.first_response.times.work_p90_s)
    assert table[("backlog", "total")] == str(same.backlog.total)
    assert table[("channel", "telegram")] == str(
        next(x.count for x in same.by_channel if x.key == "telegram")
    )

    status, body = await desk.get("/api/v1/reports/sla?from=2026-10-22&to=2026-11-20")
    assert status == 200
    month = period_of_days(date(2026, 10, 22), date(2026, 11, 20), MOSCOW)
    sla = await sla_report(month, MOSCOW, date(2026, 11, 20))
    assert body == named(sla.to_json(), desk.service.ctx.settings)
    raw = await fetch_csv(desk, "/api/v1/reports/sla?period=month&format=csv")
    assert raw[0]["team"] == "all"
    assert int(raw[0]["first_response_met"]) == sla.first_response.met
    assert sum(int(r["first_response_with_due"]) for r in raw[1:]) == sla.first_response.with_due

    status, body = await desk.get("/api/v1/reports/top?period=month")
    assert status == 200
    top = await top_report(parse_period("month", MONTH_NOW, MOSCOW), MOSCOW, date(2026, 11, 20))
    assert body == named(top.to_json(), desk.service.ctx.settings)
    raw = await fetch_csv(desk, "/api/v1/reports/top?period=month&format=csv")
    first = top.categories[0]
    assert raw[0]["category"] == first.category.key and raw[0]["phrase"] == ""
    assert raw[1]["phrase"] == first.phrases[0].key
    assert int(raw[1]["phrase_appeals"]) == first.phrases[0].count


async def fetch_csv(desk: Desk, path: str) -> list[dict[str, str]]:
    async with desk.http.get(desk.base + path, headers=desk.auth) as resp:
        assert resp.status == 200 and resp.content_type == "text/csv"
        assert "attachment" in resp.headers["Content-Disposition"]
        return list(csv.DictReader(io.StringIO(await resp.text())))


async def test_api_reports_explain_bad_input_and_are_documented(
    start_desk: Callable[..., Any],
) -> None:
    desk: Desk = await start_desk(clock=MovableClock(NOW))
    for path in ("appeals", "sla", "top"):
        status, body = await desk.get(f"/api/v1/reports/{path}?period=fortnight")
        assert status == 400 and "fortnight" in body["error"]["message"]
        status, body = await desk.get(f"/api/v1/reports/{path}?format=xls")
        assert status == 400 and "csv" in body["error"]["message"]
        status, body = await desk.get(f"/api/v1/reports/{path}", auth=False)
        assert status == 401
        status, body = await desk.get(f"/api/v1/reports/{path}?period=today")
        assert status == 200 and body["period"]["label"] == "today"
    _, spec = await desk.get("/api/v1/openapi.json", auth=False)
    for path, schema in (
        ("appeals", "AppealReportOut"),
        ("sla", "SlaReportOut"),
        ("top", "TopReportOut"),
    ):
        operation = spec["paths"][f"/api/v1/reports/{path}"]["get"]
        assert {p["name"] for p in operation["parameters"]} == {"period", "from", "to", "format"}
        assert schema in spec["components"]["schemas"]


# -- the top report by hand -----------------------------------------------------------------------


async def write_appeal(customer: Customer, category: str, day: date, *texts: str) -> None:
    appeal = await Appeal.create(
        customer=customer, channel="web", category=category, created_at=msk(day, 12)
    )
    for text in texts:
        await Message.create(appeal=appeal, direction=Direction.IN, channel="web", text=text)
    await Message.create(
        appeal=appeal, direction=Direction.OUT, channel="web", text="вернуть деньги"
    )


@pytest.fixture
async def orm(db_url: str) -> AsyncIterator[None]:
    await db.connect(db_url)
    yield
    await db.disconnect()


async def test_top_categories_and_phrases_by_hand(orm: None) -> None:
    c = await Customer.create(name="Марина")
    week = [MONDAY + timedelta(days=n) for n in range(7)]
    before = [MONDAY - timedelta(days=n) for n in range(1, 8)]
    for day in week[:3]:  # three returns asking for their money, one twice in one appeal
        await write_appeal(c, "returns", day, "Верните деньги!", "Когда вернёте деньги?")
    await write_appeal(c, "returns", week[6], "Хочу вернуть деньги за заказ 12345")
    await write_appeal(c, "returns", before[0], "Верните деньги")
    for day in week[:2]:
        await write_appeal(c, "order_status", day, "Заказ не пришёл")
    await write_appeal(c, "documents", week[4], "Пришлите счёт")  # a phrase of one appeal
    for day in before[:4]:
        await write_appeal(c, "order_status", day, "Заказ не пришёл")

    report = await top_report(parse_period("week", NOW, MOSCOW), MOSCOW, week[6])
    got = [
        (c.category.key, c.category.count, c.category.previous, c.category.change)
        for c in report.categories
    ]
    assert got == [("returns", 4, 1, 3.0), ("order_status", 2, 4, -0.5), ("documents", 1, 0, None)]
    returns, orders, documents = report.categories
    # «вернуть деньги» in 4 appeals (the staff answer does not count), twice in one appeal once
    assert [(p.key, p.shown, p.count, p.previous) for p in returns.phrases] == [
        ("вернуть деньга", "верните деньги", 4, 1),
        ("когда вернуть деньга", "когда вернете деньги", 3, 0),
    ]
    assert [(p.key, p.count, p.previous) for p in orders.phrases] == [("заказ не прийти", 2, 4)]
    assert documents.phrases == []  # a single appeal's phrase is not shown
    assert await PhraseDay.filter(day=week[6]).count() == 0  # today is counted live


# -- /stats, /sla, /top in the managers' chat; the digest ---------------------------------------


def shown_in(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [
        str(s.message.get("text") or s.message.get("caption") or "")
        for s in fake.sent_to(chat_id)
        if s.method != "editMessageText"
    ]


def photos_in(fake: FakeTelegram, chat_id: int) -> list[bytes]:
    return [
        content
        for call in fake.calls("sendPhoto")
        if int(call.params.get("chat_id", 0)) == chat_id
        for content in call.files.values()
    ]


async def test_stats_sla_and_top_in_the_managers_chat(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock = MovableClock(msk(MONDAY - timedelta(days=3), 9))
    settings = telegram_settings(fake, telegram={"managers_chat_id": MANAGERS_CHAT})
    settings.pop("sla")  # the shipped 9-18 calendar: the hand-timed week counts on it
    desk: Desk = await start_desk(clock=clock, **settings)
    n = await hand_week(Traffic(desk, clock))

    fake.group_message(MANAGERS_CHAT, AGENT_ID, "/stats week")
    text = await answer_with(fake, "Обращения: 09.11.2026 – 15.11.2026")
    # The durations of the hand-timed week as their buckets show them (within 1.2 %):
    # 3 h 5 min → 3 h 6 min 54 s, 16 h 59 min → 16 h 52 min 27 s, 30 min → 30 min 18 s,
    # 16 h → 16 h 9 min 32 s, 42 h → 41 h 54 min 40 s.
    for expected in [
        "Новых обращений: 6",
        "Первый ответ (4): медиана 3 ч 6 мин, 90% — быстрее 16 ч 52 мин",
        "в рабочие часы: медиана 30 мин 18 с, 90% — 3 ч 6 мин",
        "в срок: 75% (3 из 4)",
        "Решено (5): медиана 16 ч 9 мин, 90% — быстрее 1 д 17 ч",
        "Переоткрыты: 1 из 5 (20%)",
        "Очередь сейчас: 2 (новые 0, в работе 2, отложены 0), просрочено: 1",
        "самое старое ждёт 9 д 2 ч",
        "эл. почта — 6",
    ]:
        assert expected in text, (expected, text)
    await eventually(lambda: photos_in(fake, MANAGERS_CHAT), what="the stats chart")
    assert photos_in(fake, MANAGERS_CHAT)[0].startswith(PNG_MAGIC)

    fake.group_message(MANAGERS_CHAT, AGENT_ID, "/sla неделя")
    text = await answer_with(fake, "SLA: 09.11.2026 – 15.11.2026")
    assert "Первый ответ: в срок 75% (3 из 4), нарушений: 1" in text, text
    assert f"{n['a4']} — первый ответ" in text

    fake.group_message(MANAGERS_CHAT, AGENT_ID, "/top week")
    text = await answer_with(fake, "С чем приходят клиенты: 09.11.2026 – 15.11.2026")
    assert "— 6 (1, +500%)" in text and "«вопрос доставке заказа» — 6 (1, +500%)" in text, text

    fake.group_message(MANAGERS_CHAT, AGENT_ID, "/stats позавчера")
    await answer_with(fake, "Не понял период «позавчера»")


async def answer_with(fake: FakeTelegram, marker: str) -> str:
    """The bot's message in the managers' chat that contains ``marker``, once it is there."""
    found = await eventually(
        lambda: [t for t in shown_in(fake, MANAGERS_CHAT) if marker in t], what=marker
    )
    return str(found[-1])


async def test_digest_is_posted_once_at_its_time_by_two_instances(
    fake: FakeTelegram, start_desk: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = MovableClock(msk(MONDAY - timedelta(days=3), 9))
    settings = telegram_settings(
        fake,
        telegram={"managers_chat_id": MANAGERS_CHAT},
        reports={"digest_at": "12:30", "digest_days": 7},
        workers={"claim_idle_s": 2.0, "poll_s": 0.05, "sla_scan_s": 0.1},
    )
    settings.pop("sla")
    first: Desk = await start_desk(clock=clock, **settings)
    # The days the week is written through had their digests already: only Sunday's is watched.
    for day in range(-7, 0):
        await KeyValue.create(
            key=f"job:digest:{date(2026, 11, 15) + timedelta(days=day)}", value=""
        )
    t = Traffic(first, clock)
    n = await hand_week(t)
    await Rating.create(
        appeal=await Appeal.get(number=n["a3"]),
        customer_id=(await Appeal.get(number=n["a3"])).customer_id,
        score=1,
        comment="Долго <ждал>",
        day=date(2026, 11, 14),
        channel="web",
    )
    # Sunday, before the digest's time (time never runs back: rows made at NOW stay due)
    clock.now = msk(date(2026, 11, 15), 12, 10)
    import desk.runtime.service
    from desk.runtime.service import Service

    async def already_open(*_: Any) -> None:
        """The first desk opened the ORM on this database and migrated it."""

    # One database, two desks, in one process: the ORM is the process's, and the first desk's
    # workers keep using it. The second desk shares it as it is: its own start (checking the
    # migrations, connecting) and stop would close the connections under a statement of the
    # first desk's, which then opens its connection again for no one to close (a thread left
    # running at exit).
    monkeypatch.setattr(desk.runtime.service, "prepare_database", already_open)
    monkeypatch.setattr(db, "connect", already_open)
    monkeypatch.setattr(db, "disconnect", already_open)
    second = Service(first.service._settings, "worker", io.StringIO(), clock=clock)
    await second.start()
    try:
        await asyncio.sleep(0.5)
        assert not photos_in(fake, MANAGERS_CHAT)  # not yet
        clock.now = msk(date(2026, 11, 15), 12, 31)

        def chart_arrived() -> list[bytes]:
            # The desk's time goes on: a row held back by the chat's flood limit comes due.
            clock.now += timedelta(seconds=2)
            return photos_in(fake, MANAGERS_CHAT)

        await eventually(chart_arrived, what="the digest's chart")
        await asyncio.sleep(1.0)  # the other instance had its chances
        digests = [t for t in shown_in(fake, MANAGERS_CHAT) if "Сводка" in t]
        assert len(digests) == 1 and len(photos_in(fake, MANAGERS_CHAT)) == 1
        for expected in [
            "Сводка за 14.11.2026",
            "Новых обращений: 1 (эл. почта 1), решено: 2",
            "Низкие оценки: 1",
            f"{n['a3']} — 1★: «Долго <ждал>»",
            "Очередь сейчас: 2",
        ]:
            assert expected in digests[0], (expected, digests[0])
        assert await KeyValue.filter(key="job:digest:2026-11-15").count() == 1
        rows = await OutboxItem.filter(queue_key="staff:managers").values_list("payload", flat=True)
        assert sum("Сводка" in str(p["text"]) for p in rows) == 1  # type: ignore[index]
        assert sum(bool(p["attachments"]) for p in rows) == 1  # type: ignore[index]
    finally:
        await second.stop()
        monkeypatch.undo()  # the first desk closes the ORM when it stops
    from matplotlib.image import imread

    png = photos_in(fake, MANAGERS_CHAT)[0]
    assert png.startswith(PNG_MAGIC)
    height, width, _ = imread(io.BytesIO(png), format="png").shape
    assert (width, height) == (1100, 660)
