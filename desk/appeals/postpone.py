"""Until when an appeal is postponed, as staff write it: «2h», «3д», «15:00», «05.11 10:00».

The staff group's ``/postpone`` and the API's ``duration`` read the same words here, so an
appeal postponed either way waits the same time.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from desk.config.errors import InvalidInput

MAX_POSTPONE = timedelta(days=366)
DAY_START = time(9, 0)  # a date without a time: the morning of that day
_UNITS = {
    "m": timedelta(minutes=1),
    "min": timedelta(minutes=1),
    "мин": timedelta(minutes=1),
    "м": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "ч": timedelta(hours=1),
    "d": timedelta(days=1),
    "д": timedelta(days=1),
    "w": timedelta(weeks=1),
    "н": timedelta(weeks=1),
}
_UNIT_WORDS = "|".join(sorted(_UNITS, key=len, reverse=True))  # "min" before "m"
DURATION_PATTERN = rf"^[0-9]{{1,4}}(?:{_UNIT_WORDS})$"  # the API's schema of a span
_DURATION = re.compile(rf"([0-9]{{1,4}})({_UNIT_WORDS})", re.IGNORECASE)
_CLOCK = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
_DATE = re.compile(r"([0-3]?[0-9])\.([01]?[0-9])(?:\.([0-9]{4}))?")


def duration_of(text: str) -> timedelta | None:
    """``2h``, ``90m``, ``3d``, ``1w`` (or ``2ч``, ``3д``, ``1н``) as a time span; None for
    anything else."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        return None
    return int(found.group(1)) * _UNITS[found.group(2).lower()]


def postponed_until(args: str, now: datetime, zone: ZoneInfo) -> tuple[datetime | None, str]:
    """(until when, the reason) from what follows ``/postpone``: a leading span (``2h``), a
    time of day (``15:00``: today, or tomorrow once it has passed) or a date with an optional
    time (``05.11``, ``05.11.2027 14:30``), then the reason; without one of these, no time
    (None) and everything is the reason. A moment past or over a year away is InvalidInput."""
    words = args.split()
    until: datetime | None = None
    used = 0
    local = now.astimezone(zone)
    if words and (span := duration_of(words[0])) is not None:
        until, used = now + span, 1
    elif words and (day := _date(words[0], local.date())) is not None:
        at, used = DAY_START, 1
        if len(words) > 1 and (clock := _CLOCK.fullmatch(words[1])) is not None:
            at, used = time(int(clock.group(1)), int(clock.group(2))), 2
        until = datetime.combine(day, at, tzinfo=zone)
    elif words and (clock := _CLOCK.fullmatch(words[0])) is not None:
        at = time(int(clock.group(1)), int(clock.group(2)))
        until = datetime.combine(local.date(), at, tzinfo=zone)
        if until <= now:
            until += timedelta(days=1)
        used = 1
    reason = " ".join(words[used:])
    if until is not None:
        checked(until, now)
    return until, reason


def checked(until: datetime, now: datetime) -> datetime:
    """``until`` if it is ahead and within a year; InvalidInput otherwise."""
    if until <= now:
        raise InvalidInput("the time to postpone until has passed already")
    if until - now > MAX_POSTPONE:
        raise InvalidInput("an appeal is postponed for a year at most")
    return until


def _date(word: str, today: date) -> date | None:
    """``05.11`` (this year, or the next once it has passed) or ``05.11.2027``."""
    found = _DATE.fullmatch(word)
    if found is None:
        return None
    day, month = int(found.group(1)), int(found.group(2))
    year = int(found.group(3)) if found.group(3) else today.year
    try:
        when = date(year, month, day)
    except ValueError:
        raise InvalidInput(f"there is no date {word}") from None
    if found.group(3) is None and when < today:
        when = date(year + 1, month, day)
    return when
