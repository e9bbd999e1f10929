"""SLA clock of appeals: working calendars, policies, deadlines and their state at a moment.

Pure functions: every moment is passed in (aware datetimes), results are aware UTC datetimes.
Working time is real elapsed time inside the calendar's local working windows, so a window
that spans a DST change lasts its true length.

Pauses (the appeal is pending) stop the clock. A pause with ``end=None`` is still running: it
is treated as ending at ``now``, so while paused the computed ``due`` is the earliest moment
the target could be breached if the pause ended now; it moves later as ``now`` advances. A
pause that begins after the clock already ran out does not move ``due``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from models.enums import Priority
from router.weekdays import LocalTime, Weekdays, workweek

SlaTarget = Literal["first_response", "next_response", "resolution"]
TARGETS: tuple[SlaTarget, ...] = get_args(SlaTarget)

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_DAY = timedelta(days=1)
_ZERO = timedelta(0)


class WorkingHours(BaseModel):
    """A daily local working window [start, end) on the given weekdays (Monday=0)."""

    model_config = _FROZEN

    days: Weekdays = Field(default_factory=workweek)
    start: LocalTime = time(9, 0)
    end: LocalTime = time(18, 0)

    @model_validator(mode="after")
    def _check_order(self) -> WorkingHours:
        if self.end <= self.start:
            raise ValueError("end must be after start (overnight windows are not supported)")
        return self


_SPANS_KEPT = 4096  # days a calendar keeps worked out (about eleven years of them)


class Calendar(BaseModel):
    """Working time in one zone: working hours (None = 24/7), holidays and extra workdays."""

    model_config = _FROZEN

    timezone: str = "Europe/Moscow"
    hours: WorkingHours | None = WorkingHours()
    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)

    _zone: ZoneInfo = PrivateAttr()
    _off: frozenset[date] = PrivateAttr()
    _on: frozenset[date] = PrivateAttr()
    _spans: dict[date, tuple[datetime, datetime] | None] = PrivateAttr()

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown time zone {name!r}") from exc
        return name

    @model_validator(mode="after")
    def _check_days(self) -> Calendar:
        both = sorted(set(self.holidays) & set(self.workdays))
        if both:
            raise ValueError(f"dates are both holidays and workdays: {both}")
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Cache the zone and the day sets used on every step of the clock."""
        self._zone = ZoneInfo(self.timezone)
        self._off = frozenset(self.holidays)
        self._on = frozenset(self.workdays)
        self._spans = {}

    def is_working(self, moment: datetime) -> bool:
        """Whether the aware `moment` falls inside working time (window end excluded)."""
        moment = _utc(moment)
        span = self._span(moment.astimezone(self._zone).date())
        return span is not None and span[0] <= moment < span[1]

    def _span(self, day: date) -> tuple[datetime, datetime] | None:
        """The UTC working interval of a local day, or None for a day off; kept once worked out
        (the clock asks for the same few days for every appeal, and the calendar never
        changes)."""
        spans = self._spans
        try:
            return spans[day]
        except KeyError:
            pass
        if len(spans) >= _SPANS_KEPT:
            spans.clear()
        span = spans[day] = self._worked_out(day)
        return span

    def _worked_out(self, day: date) -> tuple[datetime, datetime] | None:
        if day in self._off:
            return None
        if self.hours is None:
            return _at(day, time(0), self._zone), _at(day + _DAY, time(0), self._zone)
        if day not in self._on and day.weekday() not in self.hours.days:
            return None
        return _at(day, self.hours.start, self._zone), _at(day, self.hours.end, self._zone)


class SlaTargets(BaseModel):
    """Minutes allowed per target; None disables a target."""

    model_config = _FROZEN

    first_response_minutes: int = Field(default=120, gt=0)
    next_response_minutes: int | None = Field(default=240, gt=0)
    resolution_minutes: int | None = Field(default=1440, gt=0)
    business_hours: bool = True

    def minutes_for(self, target: SlaTarget) -> int | None:
        """The minutes allowed for `target`, or None when it is not tracked."""
        _check_target(target)
        minutes: int | None = getattr(self, f"{target}_minutes")
        return minutes


class SlaPolicy(BaseModel):
    """Targets for appeals of some categories and priorities (empty list = any)."""

    model_config = _FROZEN

    name: str = Field(min_length=1)
    categories: list[str] = Field(default_factory=list)
    priorities: list[str] = Field(default_factory=list)
    targets: SlaTargets
    warn_at: float = Field(default=0.75, gt=0, lt=1)
    breach_escalation: Literal["none", "raise_priority", "reassign"] = "raise_priority"

    @field_validator("priorities")
    @classmethod
    def _check_priorities(cls, priorities: list[str]) -> list[str]:
        bad = [p for p in priorities if p not in set(Priority)]
        if bad:
            raise ValueError(f"unknown priorities {bad}; expected {[p.value for p in Priority]}")
        return priorities

    def matches(self, category: str | None, priority: str) -> bool:
        """Whether an appeal of this category and priority falls under the policy."""
        if self.categories and category not in self.categories:
            return False
        return not self.priorities or priority in self.priorities


def _default_policies() -> list[SlaPolicy]:
    def tier(priority: Priority, first: int) -> SlaPolicy:
        targets = SlaTargets(
            first_response_minutes=first,
            next_response_minutes=2 * first,
            resolution_minutes=16 * first,
        )
        return SlaPolicy(name=priority.value, priorities=[priority], targets=targets)

    return [
        tier(Priority.URGENT, 30),
        tier(Priority.HIGH, 60),
        SlaPolicy(name="default", targets=SlaTargets()),
    ]


class SlaSettings(BaseModel):
    """The working calendar and the ordered SLA policies; the last one catches all."""

    model_config = _FROZEN

    calendar: Calendar = Calendar()
    policies: list[SlaPolicy] = Field(default_factory=_default_policies, min_length=1)

    @model_validator(mode="after")
    def _check_policies(self) -> SlaSettings:
        names = [p.name for p in self.policies]
        if len(set(names)) != len(names):
            raise ValueError(f"policy names must be unique: {names}")
        last = self.policies[-1]
        if last.categories or last.priorities:
            raise ValueError(f"the last policy ({last.name!r}) must match any category/priority")
        return self

    def policy_for(self, category: str | None, priority: str) -> SlaPolicy:
        """The first policy matching the appeal, in order."""
        return next(p for p in self.policies if p.matches(category, priority))

    def promise_minutes(self, category: str | None, priority: str) -> int:
        """The first answer promised to a customer, in minutes (of working time by default)."""
        return self.policy_for(category, priority).targets.first_response_minutes


@dataclass(frozen=True)
class Pause:
    """A period the clock stood still (appeal pending); end=None means still paused."""

    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        _utc(self.start)
        if self.end is not None and _utc(self.end) < _utc(self.start):
            raise ValueError("a pause cannot end before it starts")


@dataclass(frozen=True)
class Deadline:
    """When a target is due and when to warn about it (aware UTC)."""

    target: SlaTarget
    due: datetime
    warn_at: datetime


@dataclass(frozen=True)
class SlaState:
    """A target at a moment: met (None = still running), breached, warned and share used."""

    target: SlaTarget
    due: datetime
    warn_at: datetime
    met: bool | None
    breached: bool
    warned: bool
    elapsed_share: float
    paused: bool = False


def add_working_minutes(start: datetime, minutes: int, calendar: Calendar) -> datetime:
    """The moment `minutes` of working time after `start`; minutes=0 returns `start` (UTC)."""
    if minutes < 0:
        raise ValueError("minutes must not be negative")
    return _advance(_utc(start), timedelta(minutes=minutes), calendar)


def working_minutes_between(start: datetime, end: datetime, calendar: Calendar) -> float:
    """Working minutes in [start, end); 0 when end <= start."""
    return _elapsed(_utc(start), _utc(end), calendar) / timedelta(minutes=1)


def deadline(
    target: SlaTarget,
    started: datetime,
    minutes: int,
    calendar: Calendar,
    *,
    business_hours: bool,
    pauses: Sequence[Pause] = (),
    warn_share: float = 0.75,
    now: datetime | None = None,
) -> Deadline:
    """Due and warn moments of a target; open pauses count as ending at `now` (then required)."""
    _check_target(target)
    if minutes < 0:
        raise ValueError("minutes must not be negative")
    if not 0 < warn_share < 1:
        raise ValueError("warn_share must be between 0 and 1")
    start = _utc(started)
    cal = calendar if business_hours else None
    stops = _stops(start, pauses, None if now is None else _utc(now))
    budget = timedelta(minutes=minutes)
    return Deadline(
        target=target,
        due=_run_clock(start, budget, stops, cal),
        warn_at=_run_clock(start, budget * warn_share, stops, cal),
    )


def evaluate(
    target: SlaTarget,
    started: datetime,
    minutes: int,
    calendar: Calendar,
    *,
    business_hours: bool,
    now: datetime,
    pauses: Sequence[Pause] = (),
    done_at: datetime | None = None,
    warn_share: float = 0.75,
) -> SlaState:
    """The state of a target at `now`; the clock stops at `done_at` (met = done_at <= due)."""
    stop = _utc(now) if done_at is None else _utc(done_at)
    dl = deadline(
        target,
        started,
        minutes,
        calendar,
        business_hours=business_hours,
        pauses=pauses,
        warn_share=warn_share,
        now=stop,
    )
    start = _utc(started)
    cal = calendar if business_hours else None
    used = _elapsed(start, stop, cal)
    for begin, end in _stops(start, pauses, stop):
        used -= _elapsed(begin, min(end, stop), cal)
    budget = timedelta(minutes=minutes)
    return SlaState(
        target=target,
        due=dl.due,
        warn_at=dl.warn_at,
        met=None if done_at is None else stop <= dl.due,
        breached=stop > dl.due,
        warned=stop >= dl.warn_at,
        elapsed_share=used / budget if budget else 1.0,
        paused=done_at is None
        and any(_utc(p.start) <= stop and (p.end is None or stop < _utc(p.end)) for p in pauses),
    )


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"unknown SLA target {target!r}; expected one of {TARGETS}")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"an aware datetime is required, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    # A local time inside a DST gap resolves with the pre-transition offset (fold=0), the same
    # way for the end of one day and the start of the next, so intervals stay contiguous.
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def _advance(start: datetime, budget: timedelta, calendar: Calendar | None) -> datetime:
    """Walk whole working days from `start` until `budget` of working time is spent."""
    if calendar is None or budget <= _ZERO:
        return start + max(budget, _ZERO)
    day = start.astimezone(calendar._zone).date()
    while True:  # ends: a calendar has a working weekday (or is 24/7) and finitely many holidays
        span = calendar._span(day)
        if span is not None and start < span[1]:
            begin = max(start, span[0])
            if budget <= span[1] - begin:
                return begin + budget
            budget -= span[1] - begin
        day += _DAY


def _elapsed(start: datetime, end: datetime, calendar: Calendar | None) -> timedelta:
    """Working time in [start, end), summed per local day."""
    if end <= start:
        return _ZERO
    if calendar is None:
        return end - start
    total = _ZERO
    day, last = start.astimezone(calendar._zone).date(), end.astimezone(calendar._zone).date()
    while day <= last:
        span = calendar._span(day)
        if span is not None:
            total += max(min(end, span[1]) - max(start, span[0]), _ZERO)
        day += _DAY
    return total


def _stops(
    started: datetime, pauses: Sequence[Pause], now: datetime | None
) -> list[tuple[datetime, datetime]]:
    """Pauses clipped to after `started`, open ones closed at `now`, sorted and merged."""
    spans: list[tuple[datetime, datetime]] = []
    for pause in pauses:
        if pause.end is not None:
            end = _utc(pause.end)
        elif now is None:
            raise ValueError("an open pause needs `now` to compute the deadline")
        else:
            end = max(_utc(pause.start), now)
        begin = max(_utc(pause.start), started)
        if end > begin:
            spans.append((begin, end))
    merged: list[tuple[datetime, datetime]] = []
    for begin, end in sorted(spans):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return merged


def _run_clock(
    started: datetime,
    budget: timedelta,
    stops: list[tuple[datetime, datetime]],
    calendar: Calendar | None,
) -> datetime:
    """When `budget` of clock time is used up, the clock standing still during `stops`."""
    cursor = started
    for begin, end in stops:
        due = _advance(cursor, budget, calendar)
        if due <= begin:
            return due
        budget -= _elapsed(cursor, begin, calendar)
        cursor = end
    return _advance(cursor, budget, calendar)
