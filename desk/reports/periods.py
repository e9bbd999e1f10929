"""Report periods: whole days in the company's time zone, from what a person types («week»,
«вчера», «05.11.2026», «01.11.2026-15.11.2026») to a half-open UTC range for queries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from desk.config.errors import InvalidInput

MAX_DAYS = 366
WEEK_DAYS = 7
MONTH_DAYS = 30
QUOTE_LIMIT = 40
FORMS = (
    "today, yesterday, week (7 days), month (30 days), a date (2026-11-05 or 05.11.2026) "
    "or a range (2026-11-01..2026-11-15 or 01.11.2026-15.11.2026)"
)
# The words people type, in both languages, and the period kind each one means.
WORDS = {
    "today": "today",
    "сегодня": "today",
    "yesterday": "yesterday",
    "вчера": "yesterday",
    "week": "week",
    "неделя": "week",
    "неделю": "week",
    "month": "month",
    "месяц": "month",
}
_DATE = r"(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}\.\d{1,2}\.\d{4})"
_DATE_RE = re.compile(rf"^{_DATE}$")
_RANGE_RE = re.compile(rf"^{_DATE}\s*(?:\.\.|-|–|—)\s*{_DATE}$")


class BadPeriod(InvalidInput):
    """A period that cannot be used; ``reason`` is one of ``form``, ``date``, ``order``,
    ``length``, so the edges can explain it in the reader's language; ``text`` is what was
    typed, shortened for quoting."""

    def __init__(self, reason: str, text: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.text = text


@dataclass(frozen=True, slots=True)
class Period:
    """Whole days ``first_day``..``last_day`` in a time zone, and the same span as the UTC
    instants ``[start, end)``; ``label`` is a short name that parses back to it."""

    start: datetime
    end: datetime
    first_day: date
    last_day: date
    label: str

    @property
    def day_count(self) -> int:
        """How many days the period covers."""
        return (self.last_day - self.first_day).days + 1

    def days(self) -> Iterator[date]:
        """Every day of the period, in order."""
        for offset in range(self.day_count):
            yield self.first_day + timedelta(days=offset)

    def contains(self, moment: datetime) -> bool:
        """Whether an aware instant falls inside ``[start, end)``."""
        return self.start <= moment < self.end

    def to_json(self) -> dict[str, str]:
        """The period as every report shows it: its label, days and instants."""
        return {
            "label": self.label,
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant a day starts in ``zone``; where a DST jump skips midnight, the moment
    the day's clock actually starts."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def period_of_days(first: date, last: date, zone: ZoneInfo, label: str = "") -> Period:
    """The period of whole days ``first``..``last`` in ``zone``; reversed or over
    ``MAX_DAYS`` days is a BadPeriod."""
    text = label or _range_label(first, last)
    if last < first:
        raise BadPeriod(
            "order", text, f"period '{text}' ends before it starts: put the earlier date first"
        )
    if (last - first).days + 1 > MAX_DAYS:
        raise BadPeriod(
            "length", text, f"period '{text}' is longer than {MAX_DAYS} days: ask for less"
        )
    try:  # the first and last days of the calendar have no UTC instant in every zone
        start, end = local_midnight(first, zone), local_midnight(last + timedelta(days=1), zone)
    except OverflowError:
        raise BadPeriod("date", text, f"period '{text}' is outside the calendar") from None
    return Period(
        start=start,
        end=end,
        first_day=first,
        last_day=last,
        label=text,
    )


def today_in(now: datetime, zone: ZoneInfo) -> date:
    """The date it is at ``now`` in ``zone`` (a naive ``now`` is taken as UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(zone).date()


def parse_date(text: str) -> date:
    """``2026-11-05`` or ``05.11.2026`` as a date; anything else is a BadPeriod."""
    cleaned = text.strip()
    if not _DATE_RE.match(cleaned):
        shown = quoted(text)
        raise BadPeriod("form", shown, f"'{shown}' is not a date: write 2026-11-05 or 05.11.2026")
    return _date(cleaned)


def parse_period(text: str, now: datetime, zone: ZoneInfo) -> Period:
    """The period a person asked for, relative to ``now`` in the company's ``zone``:
    "" (a week), today, yesterday, week, month (ru or en), a date or a range of dates."""
    cleaned = " ".join(text.split()).lower()
    today = today_in(now, zone)
    kind = WORDS.get(cleaned or "week")
    if kind == "today":
        return period_of_days(today, today, zone, "today")
    if kind == "yesterday":
        yesterday = today - timedelta(days=1)
        return period_of_days(yesterday, yesterday, zone, "yesterday")
    if kind == "week":
        return period_of_days(today - timedelta(days=WEEK_DAYS - 1), today, zone, "week")
    if kind == "month":
        return period_of_days(today - timedelta(days=MONTH_DAYS - 1), today, zone, "month")
    if _DATE_RE.match(cleaned):
        day = _date(cleaned)
        return period_of_days(day, day, zone, day.isoformat())
    found = _RANGE_RE.match(cleaned)
    if found:
        return period_of_days(_date(found[1]), _date(found[2]), zone)
    shown = quoted(text)
    raise BadPeriod("form", shown, f"unknown period '{shown}': use {FORMS}")


def describe(period: Period, date_format: str = "%d.%m.%Y") -> str:
    """The period's days for people: «05.11.2026» or «01.11.2026 – 15.11.2026»."""
    first = period.first_day.strftime(date_format)
    if period.first_day == period.last_day:
        return first
    return f"{first} – {period.last_day.strftime(date_format)}"


def quoted(text: str, limit: int = QUOTE_LIMIT) -> str:
    """What someone typed, on one line and cut to ``limit`` characters, for an error."""
    cleaned = " ".join(text.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _date(text: str) -> date:
    if "." in text:
        day, month, year = (int(part) for part in text.split("."))
    else:
        year, month, day = (int(part) for part in text.split("-"))
    try:
        return date(year, month, day)
    except ValueError:
        raise BadPeriod("date", text, f"there is no date '{text}'") from None


def _range_label(first: date, last: date) -> str:
    if first == last:
        return first.isoformat()
    return f"{first.isoformat()}..{last.isoformat()}"
