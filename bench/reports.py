"""Reports at scale: a year of 1,000,000 appeals and 5,000,000 messages in PostgreSQL; the
finished days counted as the nightly jobs do (figures, phrases), then each report timed for the
usual periods up to a year.

Run by hand (not a test), on a PostgreSQL you may fill (its tables are emptied first):
    DESK_DATABASE_URL=postgres://desk:desk@127.0.0.1:55832/desk_test \\
        .venv/bin/python -m bench.reports [--appeals 1000000] [--repeat 3]
The rows go in with COPY through asyncpg, 50,000 appeals at a time; the report columns are
computed by the same function the service uses (desk.reports.report_facts.spans).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from bench import terminable
from desk.reports.appeal_report import appeal_report
from desk.reports.periods import parse_period, today_in
from desk.reports.phrases import roll_up_missing
from desk.reports.report_days import catch_up
from desk.reports.report_facts import spans
from desk.reports.sla_report import sla_report
from desk.reports.top_report import top_report
from models import db
from router.sla import Calendar

ZONE = ZoneInfo("Europe/Moscow")
CALENDAR = Calendar()
CHUNK = 50_000
MESSAGES_PER_APPEAL = 5  # three from the customer, two answers
CHANNELS = ["telegram", "telegram", "telegram", "email", "email", "vk", "web"]
TEAMS = ["support", "sales", "accounting", "logistics"]
# category, team, weight, what customers write in it
CATEGORIES: list[tuple[str | None, str | None, int, list[str]]] = [
    ("order_status", "logistics", 30, ["Где мой заказ? Заказ не пришел", "Когда доставка?"]),
    ("returns", "support", 20, ["Хочу вернуть деньги за куртку", "Как оформить возврат товара"]),
    ("availability", "sales", 12, ["Есть ли в наличии синие кроссовки", "Когда будет в наличии"]),
    ("documents", "accounting", 8, ["Пришлите счет и акт для бухгалтерии", "Нужен счет"]),
    ("complaint", "support", 6, ["Курьер нагрубил, ужасное обслуживание", "Жалоба на курьера"]),
    ("consultation", "sales", 10, ["Подскажите размер кроссовок", "Какой размер выбрать"]),
    ("wholesale", "sales", 3, ["Нужно 40 офисных кресел для компании", "Оптовая закупка"]),
    ("feedback", "support", 5, ["Спасибо, все отлично, быстрая доставка", "Хороший магазин"]),
    (None, None, 6, ["Добрый день, вопрос", "Помогите пожалуйста"]),
]
FOLLOW_UPS = ["Есть новости по заказу?", "Жду ответа", "Спасибо за ответ, вопрос решен"]
YEAR_DAYS = 365
# what a manager asks for: a word, or a number of days up to today
PERIODS = [
    ("today", 0),
    ("yesterday", 0),
    ("week", 0),
    ("month", 0),
    ("90 days", 90),
    ("year", YEAR_DAYS),
]


async def reset(conn: asyncpg.Connection) -> None:
    """Empty every table the benchmark fills."""
    await conn.execute(
        "TRUNCATE appeal, message, event, rating, rating_request, phrase_day, customer, agent, "
        "key_value, outbox, report_day, report_stale RESTART IDENTITY CASCADE"
    )


def appeal_rows(
    first_id: int, count: int, total: int, rng: random.Random, start: datetime, now: datetime
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Appeals with their messages and SLA breach events, ``count`` from ``first_id``."""
    weights = [c[2] for c in CATEGORIES]
    appeals, messages, events = [], [], []
    for appeal_id in range(first_id, first_id + count):
        # Spread over the year in order of id, as a real desk numbers them.
        created = start + (now - start) * ((appeal_id - 1) / total)
        created += timedelta(seconds=rng.randrange(60))
        category, team, _, texts = rng.choices(CATEGORIES, weights)[0]
        channel = rng.choice(CHANNELS)
        agent = rng.randrange(1, 41) if rng.random() < 0.95 else None
        answer_min = min(int(rng.lognormvariate(3.5, 1.3)), 7 * 1440)
        first_at: datetime | None = created + timedelta(minutes=answer_min)
        done_min = answer_min + min(int(rng.lognormvariate(5.5, 1.4)), 20 * 1440)
        done_at: datetime | None = created + timedelta(minutes=done_min)
        reopens = 1 if rng.random() < 0.05 else 0
        assert first_at is not None and done_at is not None
        if first_at > now:
            first_at = None
        if done_at > now:
            done_at = None
        status = "closed" if done_at is not None else ("open" if first_at else "new")
        fr_due = created + timedelta(hours=2 if rng.random() < 0.8 else 6)
        res_due = created + timedelta(hours=24 if rng.random() < 0.8 else 48)
        fr = spans(created, first_at, CALENDAR) if first_at else (None, None)
        res = spans(created, done_at, CALENDAR) if done_at else (None, None)
        number = f"A-{appeal_id:06d}"
        appeals.append(
            (
                appeal_id,
                number,
                1 + appeal_id % min(200_000, total),
                channel,
                texts[0][:300],
                category,
                "normal",
                "[]",
                status,
                agent,
                team,
                fr_due,
                first_at,
                res_due,
                done_at,
                done_at,
                "{}",
                "{}",
                "none",
                created,
                fr[0],
                fr[1],
                done_at,
                res[0],
                res[1],
                reopens,
                created,
                done_at or first_at or created,
            )
        )
        ins = [rng.choice(texts), rng.choice(texts), rng.choice(FOLLOW_UPS)]
        base = (appeal_id - 1) * MESSAGES_PER_APPEAL
        for k in range(MESSAGES_PER_APPEAL):
            incoming = k % 2 == 0
            text = ins[k // 2] if incoming else "Здравствуйте! Проверяем и скоро ответим."
            at = created + timedelta(minutes=k * (answer_min + 1))
            messages.append(
                (
                    base + k + 1,
                    appeal_id,
                    "in" if incoming else "out",
                    "customer" if incoming else "agent",
                    None if incoming else agent,
                    channel,
                    "",
                    f"b{appeal_id}:{k}" if incoming else None,
                    text,
                    "[]",
                    "received" if incoming else "sent",
                    "",
                    at,
                )
            )
        if first_at and first_at > fr_due:
            events.append(
                (appeal_id, "sla.breached", "sla", json.dumps({"target": "first_response"}), fr_due)
            )
        if done_at and done_at > res_due:
            events.append(
                (appeal_id, "sla.breached", "sla", json.dumps({"target": "resolution"}), res_due)
            )
    return appeals, messages, events


APPEAL_COLUMNS = [
    "id",
    "number",
    "customer_id",
    "channel",
    "subject",
    "category",
    "priority",
    "tags",
    "status",
    "assignee_id",
    "team",
    "first_response_due",
    "first_response_at",
    "resolution_due",
    "resolved_at",
    "closed_at",
    "staff_state",
    "sla_state",
    "rating_state",
    "last_message_at",
    "first_response_s",
    "first_response_work_s",
    "done_at",
    "resolution_s",
    "resolution_work_s",
    "reopens",
    "created_at",
    "updated_at",
]
MESSAGE_COLUMNS = [
    "id",
    "appeal_id",
    "direction",
    "author",
    "agent_id",
    "channel",
    "address",
    "external_id",
    "text",
    "attachments",
    "delivery_state",
    "delivery_error",
    "created_at",
]


async def fill(conn: asyncpg.Connection, total: int, now: datetime) -> None:
    """Customers, agents, a year of appeals with messages, breaches and ratings."""
    rng = random.Random(10)
    days = 365
    start = now - timedelta(days=days)
    await conn.copy_records_to_table(
        "agent",
        records=[(i, f"Агент {i}", "agent", "[]", True, 10, True, start) for i in range(1, 41)],
        columns=["id", "name", "role", "teams", "on_duty", "capacity", "active", "created_at"],
    )
    customers = min(200_000, total)
    await conn.copy_records_to_table(
        "customer",
        records=[
            (i, f"Клиент {i}", "ru", "", "prospect", "warm", False, False, start, start)
            for i in range(1, customers + 1)
        ],
        columns=[
            "id",
            "name",
            "language",
            "timezone",
            "lifecycle",
            "warmth",
            "vip",
            "do_not_contact",
            "created_at",
            "updated_at",
        ],
    )
    for first in range(1, total + 1, CHUNK):
        count = min(CHUNK, total - first + 1)
        appeals, messages, events = appeal_rows(first, count, total, rng, start, now)
        await conn.copy_records_to_table("appeal", records=appeals, columns=APPEAL_COLUMNS)
        await conn.copy_records_to_table("message", records=messages, columns=MESSAGE_COLUMNS)
        await conn.copy_records_to_table(
            "event",
            records=events,
            columns=["appeal_id", "kind", "actor", "data", "created_at"],
        )
        requests, ratings = rating_rows(appeals, rng)
        await conn.copy_records_to_table(
            "rating_request",
            records=requests,
            columns=[
                "id",
                "appeal_id",
                "customer_id",
                "channel",
                "expires_at",
                "answered_at",
                "created_at",
            ],
        )
        await conn.copy_records_to_table(
            "rating",
            records=ratings,
            columns=[
                "request_id",
                "appeal_id",
                "customer_id",
                "score",
                "comment",
                "day",
                "via",
                "channel",
                "agent_id",
                "category",
                "team",
                "created_at",
                "updated_at",
            ],
        )
        print(f"  {first + count - 1:>9} appeals", flush=True)
    for table in ("appeal", "message", "event", "rating", "rating_request", "customer", "agent"):
        query = "SELECT setval(pg_get_serial_sequence($1, 'id'), (SELECT coalesce(max(id), 1) FROM "
        await conn.execute(query + table + "))", table)


def rating_rows(
    appeals: list[tuple[Any, ...]], rng: random.Random
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """A rating request for half the appeals done, a rating for 60% of those."""
    requests, ratings = [], []
    for row in appeals:
        appeal_id, customer, channel, done = row[0], row[2], row[3], row[22]
        if done is None or rng.random() < 0.5:
            continue
        answered = done + timedelta(hours=2) if rng.random() < 0.6 else None
        requests.append(
            (appeal_id, appeal_id, customer, channel, done + timedelta(days=7), answered, done)
        )
        if answered is not None:
            score = rng.choices([1, 2, 3, 4, 5], [5, 5, 10, 30, 50])[0]
            ratings.append(
                (
                    appeal_id,
                    appeal_id,
                    customer,
                    score,
                    "",
                    answered.astimezone(ZONE).date(),
                    "telegram",
                    channel,
                    row[9],
                    row[5],
                    row[10],
                    answered,
                    answered,
                )
            )
    return requests, ratings


async def timed(label: str, repeat: int, run: Callable[[], Awaitable[object]]) -> float:
    """The best of ``repeat`` runs, in seconds, printed."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        await run()
        best = min(best, time.perf_counter() - started)
    print(f"  {label:<34} {best * 1000:8.0f} ms", flush=True)
    return best


async def run(url: str, total: int, repeat: int, keep: bool) -> None:
    """Fill (unless ``keep``), count the phrases of finished days, time every report."""
    await db.migrate(url)
    pg_url = url.replace("postgres://", "postgresql://", 1)
    now = datetime.now(UTC)
    if not keep:
        conn = await asyncpg.connect(pg_url)
        try:
            await reset(conn)
            started = time.perf_counter()
            print(f"filling {total:,} appeals and {total * MESSAGES_PER_APPEAL:,} messages …")
            await fill(conn, total, now)
            filled = time.perf_counter() - started
            print(f"  filled in {filled:.0f} s; VACUUM ANALYZE …", flush=True)
            await conn.execute("VACUUM ANALYZE")
            print(f"  ready after {time.perf_counter() - started:.0f} s")
        finally:
            await conn.close()
    await db.connect(url)
    try:
        today = today_in(now, ZONE)
        started = time.perf_counter()
        counted = await catch_up(today, ZONE)
        spent = time.perf_counter() - started
        if counted:
            print(
                f"figures of {counted} finished days counted in {spent:.0f} s "
                f"({spent / counted * 1000:.0f} ms a day, by the nightly job)"
            )
        started = time.perf_counter()
        year = [today - timedelta(days=n) for n in range(YEAR_DAYS, 0, -1)]
        counted = await roll_up_missing(year, ZONE)
        spent = time.perf_counter() - started
        if counted:
            print(
                f"phrases of {counted} finished days counted in {spent:.0f} s "
                f"({spent / counted:.1f} s a day, by the nightly job)"
            )
        print(f"reports (best of {repeat}):")
        for label, days in PERIODS:
            text = label
            if days:
                text = f"{(today - timedelta(days=days - 1)).isoformat()}..{today.isoformat()}"
            period = parse_period(text, now, ZONE)
            await timed(f"/stats {label}", repeat, lambda p=period: appeal_report(p, now, ZONE))
            await timed(f"/sla {label}", repeat, lambda p=period: sla_report(p, ZONE, today))
            await timed(f"/top {label}", repeat, lambda p=period: top_report(p, ZONE, today))
    finally:
        await db.disconnect()


def main() -> None:
    """Parse the arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appeals", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="time the data already there")
    args = parser.parse_args()
    url = os.environ.get("DESK_DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("set DESK_DATABASE_URL to a PostgreSQL database the benchmark may empty")
    terminable.run(run(url, args.appeals, args.repeat, args.keep))


if __name__ == "__main__":
    main()
