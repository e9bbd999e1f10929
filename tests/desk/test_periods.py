"""Report periods as people type them: words in two languages, dates, ranges, whole local days
(a DST day is 23 or 25 hours long), and clear errors for everything else."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from desk.config.errors import InvalidInput
from desk.reports.periods import (
    MAX_DAYS,
    BadPeriod,
    describe,
    parse_date,
    parse_period,
    period_of_days,
)

pytestmark = pytest.mark.backend_agnostic

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=UTC)  # 12:00 in Moscow, a Sunday


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "first", "last", "label"),
    [
        ("", date(2026, 11, 9), date(2026, 11, 15), "week"),
        ("week", date(2026, 11, 9), date(2026, 11, 15), "week"),
        ("  Неделя ", date(2026, 11, 9), date(2026, 11, 15), "week"),
        ("неделю", date(2026, 11, 9), date(2026, 11, 15), "week"),
        ("today", date(2026, 11, 15), date(2026, 11, 15), "today"),
        ("Сегодня", date(2026, 11, 15), date(2026, 11, 15), "today"),
        ("yesterday", date(2026, 11, 14), date(2026, 11, 14), "yesterday"),
        ("вчера", date(2026, 11, 14), date(2026, 11, 14), "yesterday"),
        ("month", date(2026, 10, 17), date(2026, 11, 15), "month"),
        ("МЕСЯЦ", date(2026, 10, 17), date(2026, 11, 15), "month"),
        ("2026-11-05", date(2026, 11, 5), date(2026, 11, 5), "2026-11-05"),
        ("05.11.2026", date(2026, 11, 5), date(2026, 11, 5), "2026-11-05"),
        ("5.11.2026", date(2026, 11, 5), date(2026, 11, 5), "2026-11-05"),
        ("2026-11-01..2026-11-15", date(2026, 11, 1), date(2026, 11, 15), "2026-11-01..2026-11-15"),
        ("01.11.2026-15.11.2026", date(2026, 11, 1), date(2026, 11, 15), "2026-11-01..2026-11-15"),
        (
            "01.11.2026 - 15.11.2026",
            date(2026, 11, 1),
            date(2026, 11, 15),
            "2026-11-01..2026-11-15",
        ),
        (
            "01.11.2026 – 15.11.2026",
            date(2026, 11, 1),
            date(2026, 11, 15),
            "2026-11-01..2026-11-15",
        ),
        ("2026-11-05..2026-11-05", date(2026, 11, 5), date(2026, 11, 5), "2026-11-05"),
    ],
)
def test_period_words_dates_and_ranges(text: str, first: date, last: date, label: str) -> None:
    period = parse_period(text, NOW, MOSCOW)
    assert (period.first_day, period.last_day, period.label) == (first, last, label)
    assert period.start == datetime.combine(first, datetime.min.time(), MOSCOW).astimezone(UTC)
    assert period.end - period.start == timedelta(days=period.day_count)  # Moscow has no DST
    days = list(period.days())
    assert (days[0], days[-1], len(days)) == (first, last, period.day_count)
    assert parse_period(period.label, NOW, MOSCOW) == period  # a label reads back


def test_week_is_seven_local_days_ending_today_as_utc_half_open_range() -> None:
    week = parse_period("week", NOW, MOSCOW)
    assert week.start == utc(2026, 11, 8, 21, 0) and week.end == utc(2026, 11, 15, 21, 0)
    assert week.day_count == 7
    assert week.contains(utc(2026, 11, 8, 21, 0)) and not week.contains(utc(2026, 11, 15, 21, 0))
    assert week.start.tzinfo is UTC and week.end.tzinfo is UTC


def test_today_follows_the_company_zone_not_utc() -> None:
    late = utc(2026, 11, 15, 22, 30)  # already 01:30 on the 16th in Moscow
    assert parse_period("today", late, MOSCOW).first_day == date(2026, 11, 16)
    assert parse_period("today", late, ZoneInfo("America/New_York")).first_day == date(2026, 11, 15)
    naive = datetime(2026, 11, 15, 22, 30)  # taken as UTC
    assert parse_period("today", naive, MOSCOW).first_day == date(2026, 11, 16)


def test_berlin_autumn_dst_day_has_25_hours_and_the_week_one_more() -> None:
    now = utc(2026, 10, 28, 12, 0)
    day = parse_period("2026-10-25", now, BERLIN)  # clocks go back 03:00 → 02:00
    assert day.start == utc(2026, 10, 24, 22, 0)  # midnight CEST (+2)
    assert day.end == utc(2026, 10, 25, 23, 0)  # midnight CET (+1)
    assert day.end - day.start == timedelta(hours=25)
    week = parse_period("week", now, BERLIN)
    assert (week.first_day, week.last_day) == (date(2026, 10, 22), date(2026, 10, 28))
    assert week.start == utc(2026, 10, 21, 22, 0) and week.end == utc(2026, 10, 28, 23, 0)
    assert week.end - week.start == timedelta(days=7, hours=1)


def test_berlin_spring_dst_day_has_23_hours() -> None:
    day = parse_period("29.03.2026", NOW, BERLIN)
    assert day.start == utc(2026, 3, 28, 23, 0) and day.end == utc(2026, 3, 29, 22, 0)
    assert day.end - day.start == timedelta(hours=23)


def test_range_may_be_a_year_long_but_not_more() -> None:
    leap = parse_period("2024-01-01..2024-12-31", NOW, MOSCOW)
    assert leap.day_count == MAX_DAYS == 366
    with pytest.raises(BadPeriod) as caught:
        parse_period("2024-01-01..2025-01-01", NOW, MOSCOW)
    assert caught.value.reason == "length" and "366 days" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "reason", "words"),
    [
        ("fortnight", "form", ["today", "week", "2026-11-05", "01.11.2026-15.11.2026"]),
        ("позавчера", "form", ["yesterday", "month"]),
        ("2026/11/05", "form", ["2026-11-01..2026-11-15"]),
        ("11.2026", "form", ["05.11.2026"]),
        ("2026-11-01..", "form", ["a range"]),
        ("2026-02-30", "date", ["2026-02-30"]),
        ("31.04.2026-05.05.2026", "date", ["31.04.2026"]),
        ("15.11.2026-01.11.2026", "order", ["ends before it starts"]),
        ("2026-11-15..2026-11-14", "order", ["earlier date first"]),
    ],
)
def test_bad_periods_say_what_is_accepted(text: str, reason: str, words: list[str]) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_period(text, NOW, MOSCOW)
    assert isinstance(caught.value, BadPeriod) and caught.value.reason == reason
    for word in words:
        assert word in str(caught.value)


def test_long_garbage_is_quoted_short() -> None:
    with pytest.raises(BadPeriod) as caught:
        parse_period("x" * 5000, NOW, MOSCOW)
    assert len(caught.value.text) <= 40 and len(str(caught.value)) < 400


def test_dates_and_days_for_other_callers() -> None:
    assert parse_date(" 05.11.2026 ") == date(2026, 11, 5) == parse_date("2026-11-05")
    with pytest.raises(BadPeriod):
        parse_date("yesterday")
    period = period_of_days(date(2026, 11, 1), date(2026, 11, 15), MOSCOW)
    assert period.label == "2026-11-01..2026-11-15"
    assert describe(period) == "01.11.2026 – 15.11.2026"
    assert describe(period, "%Y-%m-%d") == "2026-11-01 – 2026-11-15"
    assert describe(parse_period("today", NOW, MOSCOW)) == "15.11.2026"
