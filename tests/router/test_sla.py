"""The SLA clock: working calendars, deadlines with pauses, evaluation and config validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from router.sla import (
    Calendar,
    Deadline,
    Pause,
    SlaPolicy,
    SlaSettings,
    SlaTargets,
    WorkingHours,
    add_working_minutes,
    deadline,
    evaluate,
    working_minutes_between,
)

MSK = ZoneInfo("Europe/Moscow")
BER = ZoneInfo("Europe/Berlin")
NEW_YEAR = [date(2027, 1, d) for d in range(1, 9)]

MOSCOW = Calendar()
MOSCOW_NY = Calendar(holidays=NEW_YEAR)
MOSCOW_SAT = Calendar(workdays=[date(2027, 2, 6)])
ROUND_CLOCK = Calendar(hours=None)
BERLIN = Calendar(timezone="Europe/Berlin")
BERLIN_24 = Calendar(timezone="Europe/Berlin", hours=None)


def msk(day: str, clock: str = "00:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=MSK)


def ber(day: str, clock: str = "00:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=BER)


# 2027-02-05 is a Friday, 2027-02-08 a Monday.
@pytest.mark.parametrize(
    "calendar, start, minutes, due",
    [
        (MOSCOW, msk("2027-02-05", "17:30"), 120, msk("2027-02-08", "10:30")),
        (MOSCOW, msk("2027-02-09", "03:00"), 120, msk("2027-02-09", "11:00")),
        (MOSCOW, msk("2027-02-09", "10:00"), 120, msk("2027-02-09", "12:00")),
        (MOSCOW, msk("2027-02-09", "16:00"), 120, msk("2027-02-09", "18:00")),
        (MOSCOW, msk("2027-02-09", "18:00"), 60, msk("2027-02-10", "10:00")),
        (MOSCOW, msk("2027-02-09", "19:00"), 120, msk("2027-02-10", "11:00")),
        (MOSCOW, msk("2027-02-06", "12:00"), 120, msk("2027-02-08", "11:00")),
        (MOSCOW, msk("2027-02-06", "12:00"), 0, msk("2027-02-06", "12:00")),
        (MOSCOW, msk("2027-02-09", "10:00"), 0, msk("2027-02-09", "10:00")),
        (MOSCOW, msk("2027-02-08", "09:00"), 540 * 5, msk("2027-02-12", "18:00")),
        (MOSCOW, msk("2027-02-08", "09:00"), 540 * 5 + 1, msk("2027-02-15", "09:01")),
        (MOSCOW, datetime(2027, 2, 5, 14, 30, tzinfo=UTC), 120, msk("2027-02-08", "10:30")),
        (MOSCOW_NY, msk("2026-12-31", "17:00"), 120, msk("2027-01-11", "10:00")),
        (MOSCOW_NY, msk("2027-01-03", "12:00"), 30, msk("2027-01-11", "09:30")),
        (MOSCOW_SAT, msk("2027-02-05", "17:30"), 120, msk("2027-02-06", "10:30")),
        (MOSCOW_SAT, msk("2027-02-06", "17:00"), 120, msk("2027-02-08", "10:00")),
        (ROUND_CLOCK, msk("2027-02-06", "23:00"), 600, msk("2027-02-07", "09:00")),
        (ROUND_CLOCK, msk("2027-02-05", "17:30"), 120, msk("2027-02-05", "19:30")),
        (
            Calendar(hours=None, holidays=[date(2027, 2, 6)]),
            msk("2027-02-05", "23:00"),
            120,
            msk("2027-02-07", "01:00"),
        ),
        # Berlin springs forward on 2027-03-28 (Sunday); Friday 2027-03-26 is still CET.
        (BERLIN, ber("2027-03-26", "17:00"), 120, ber("2027-03-29", "10:00")),
        (BERLIN_24, ber("2027-03-28", "01:00"), 120, ber("2027-03-28", "04:00")),
        (BERLIN_24, ber("2027-03-28", "01:00"), 120, datetime(2027, 3, 28, 2, tzinfo=UTC)),
        # falls back on 2027-10-31: 01:30 CEST + 2h = 02:30 CET (the second 02:30), given in UTC
        (BERLIN_24, ber("2027-10-31", "01:30"), 120, datetime(2027, 10, 31, 1, 30, tzinfo=UTC)),
    ],
)
def test_add_working_minutes_lands_on_working_time(
    calendar: Calendar, start: datetime, minutes: int, due: datetime
) -> None:
    result = add_working_minutes(start, minutes, calendar)
    assert result == due
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    "calendar, start, end, minutes",
    [
        (MOSCOW, msk("2027-02-09", "10:00"), msk("2027-02-09", "12:30"), 150),
        (MOSCOW, msk("2027-02-05", "17:30"), msk("2027-02-08", "10:30"), 120),
        (MOSCOW, msk("2027-02-06", "00:00"), msk("2027-02-07", "23:59"), 0),
        (MOSCOW, msk("2027-02-08", "00:00"), msk("2027-02-15", "00:00"), 540 * 5),
        (MOSCOW, msk("2027-02-09", "12:00"), msk("2027-02-09", "10:00"), 0),
        (MOSCOW, msk("2027-02-09", "12:00"), msk("2027-02-09", "12:00"), 0),
        (MOSCOW_NY, msk("2026-12-31", "17:00"), msk("2027-01-11", "10:00"), 120),
        (MOSCOW_SAT, msk("2027-02-06", "00:00"), msk("2027-02-07", "00:00"), 540),
        (ROUND_CLOCK, msk("2027-02-05", "17:30"), msk("2027-02-08", "10:30"), 3900),
        (BERLIN_24, ber("2027-03-28"), ber("2027-03-29"), 23 * 60),
        (BERLIN_24, ber("2027-10-31"), ber("2027-11-01"), 25 * 60),
        (
            Calendar(
                timezone="Europe/Berlin", hours=WorkingHours(days=[6], start=time(1), end=time(5))
            ),
            ber("2027-03-28"),
            ber("2027-03-29"),
            180,
        ),
    ],
)
def test_working_minutes_between_counts_only_working_time(
    calendar: Calendar, start: datetime, end: datetime, minutes: float
) -> None:
    assert working_minutes_between(start, end, calendar) == minutes


@pytest.mark.parametrize("calendar", [MOSCOW, MOSCOW_NY, MOSCOW_SAT, ROUND_CLOCK, BERLIN])
@pytest.mark.parametrize("minutes", [0, 1, 59, 120, 541, 1440, 14400])
@pytest.mark.parametrize(
    "start", [msk("2026-12-30", "17:59"), msk("2027-02-05", "08:15"), ber("2027-03-27", "23:00")]
)
def test_working_minutes_between_inverts_add_working_minutes(
    calendar: Calendar, minutes: int, start: datetime
) -> None:
    due = add_working_minutes(start, minutes, calendar)
    assert working_minutes_between(start, due, calendar) == minutes


def test_round_clock_calendar_equals_wall_time() -> None:
    start = msk("2027-03-01", "13:17")
    for minutes in (0, 5, 1000, 14400):
        assert add_working_minutes(start, minutes, ROUND_CLOCK) == start + timedelta(
            minutes=minutes
        )


def test_long_targets_walk_days_not_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    span = Calendar._span

    def counting(self: Calendar, day: date) -> Any:
        nonlocal calls
        calls += 1
        return span(self, day)

    monkeypatch.setattr(Calendar, "_span", counting)
    due = add_working_minutes(msk("2027-02-08", "09:00"), 10 * 540, MOSCOW)
    assert due == msk("2027-02-19", "18:00")
    assert calls <= 14


def test_a_calendar_works_out_each_day_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SLA clock asks for the same few days for every appeal of a batch.
    calendar = Calendar(timezone="Europe/Moscow", holidays=[date(2027, 2, 23)])
    days: list[date] = []
    worked_out = Calendar._worked_out

    def counting(self: Calendar, day: date) -> Any:
        days.append(day)
        return worked_out(self, day)

    monkeypatch.setattr(Calendar, "_worked_out", counting)
    first = add_working_minutes(msk("2027-02-19", "17:00"), 3 * 540, calendar)
    asked = len(days)
    again = add_working_minutes(msk("2027-02-19", "17:00"), 3 * 540, calendar)
    assert first == again == msk("2027-02-25", "17:00")  # past a weekend and a holiday
    assert len(days) == asked == len(set(days))


@pytest.mark.parametrize(
    "moment, working",
    [
        (msk("2027-02-09", "09:00"), True),
        (msk("2027-02-09", "17:59"), True),
        (msk("2027-02-09", "18:00"), False),
        (msk("2027-02-09", "08:59"), False),
        (msk("2027-02-06", "12:00"), False),
        (datetime(2027, 2, 9, 6, 0, tzinfo=UTC), True),
        (datetime(2027, 2, 9, 5, 59, tzinfo=UTC), False),
    ],
)
def test_is_working_uses_the_calendar_zone(moment: datetime, working: bool) -> None:
    assert MOSCOW.is_working(moment) is working


def test_is_working_honours_holidays_workdays_and_round_clock() -> None:
    assert not MOSCOW_NY.is_working(msk("2027-01-05", "12:00"))
    assert MOSCOW_SAT.is_working(msk("2027-02-06", "12:00"))
    assert ROUND_CLOCK.is_working(msk("2027-02-06", "03:00"))


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        add_working_minutes(datetime(2027, 2, 9, 10), 10, MOSCOW)
    with pytest.raises(ValueError, match="aware"):
        MOSCOW.is_working(datetime(2027, 2, 9, 10))
    with pytest.raises(ValueError, match="aware"):
        Pause(datetime(2027, 2, 9, 10))


def test_negative_minutes_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_working_minutes(msk("2027-02-09", "10:00"), -1, MOSCOW)


MON = "2027-02-08"


@pytest.mark.parametrize(
    "pauses, due",
    [
        ([], msk(MON, "12:00")),
        # pending for 3 working hours: due moves 3 working hours later
        ([Pause(msk(MON, "10:30"), msk(MON, "13:30"))], msk(MON, "15:00")),
        # over the night only the working part (17:30-18:00 + 09:00-10:00) counts
        ([Pause(msk(MON, "11:30"), msk("2027-02-09", "10:00"))], msk("2027-02-09", "10:30")),
        # overlapping and unordered pauses count once
        (
            [
                Pause(msk(MON, "11:00"), msk(MON, "13:00")),
                Pause(msk(MON, "10:30"), msk(MON, "12:00")),
            ],
            msk(MON, "14:30"),
        ),
        # a pause begun before the clock started counts only from the start
        ([Pause(msk(MON, "08:00"), msk(MON, "11:00"))], msk(MON, "13:00")),
        # a pause after the clock ran out does not move the due
        ([Pause(msk(MON, "13:00"), msk(MON, "16:00"))], msk(MON, "12:00")),
        ([Pause(msk(MON, "12:00"), msk(MON, "16:00"))], msk(MON, "12:00")),
    ],
)
def test_deadline_moves_by_the_working_length_of_pauses(pauses: list[Pause], due: datetime) -> None:
    result = deadline(
        "first_response", msk(MON, "10:00"), 120, MOSCOW, business_hours=True, pauses=pauses
    )
    assert result.due == due


def test_deadline_pause_over_night_shifts_only_its_working_part() -> None:
    start = msk(MON, "17:00")
    plain = deadline("resolution", start, 240, MOSCOW, business_hours=True)
    paused = deadline(
        "resolution",
        start,
        240,
        MOSCOW,
        business_hours=True,
        pauses=[Pause(msk(MON, "17:30"), msk("2027-02-09", "10:00"))],
    )
    assert plain.due == msk("2027-02-09", "12:00")
    assert paused.due == msk("2027-02-09", "13:30")
    assert working_minutes_between(plain.due, paused.due, MOSCOW) == 90


def test_open_pause_counts_as_ending_now() -> None:
    pauses = [Pause(msk(MON, "10:30"))]
    at_noon = deadline(
        "first_response",
        msk(MON, "10:00"),
        120,
        MOSCOW,
        business_hours=True,
        pauses=pauses,
        now=msk(MON, "12:00"),
    )
    later = deadline(
        "first_response",
        msk(MON, "10:00"),
        120,
        MOSCOW,
        business_hours=True,
        pauses=pauses,
        now=msk(MON, "17:00"),
    )
    assert at_noon.due == msk(MON, "13:30")
    assert later.due == msk("2027-02-09", "09:30")


def test_open_pause_without_now_is_an_error() -> None:
    with pytest.raises(ValueError, match="now"):
        deadline(
            "first_response",
            msk(MON, "10:00"),
            120,
            MOSCOW,
            business_hours=True,
            pauses=[Pause(msk(MON, "10:30"))],
        )


def test_pause_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="before"):
        Pause(msk(MON, "12:00"), msk(MON, "11:00"))


@pytest.mark.parametrize(
    "business_hours, calendar, due, warn_at",
    [
        (True, MOSCOW, msk("2027-02-08", "10:30"), msk("2027-02-08", "10:00")),
        (False, MOSCOW, msk("2027-02-05", "19:30"), msk("2027-02-05", "19:00")),
        (True, ROUND_CLOCK, msk("2027-02-05", "19:30"), msk("2027-02-05", "19:00")),
    ],
)
def test_deadline_warns_at_share_of_the_span(
    business_hours: bool, calendar: Calendar, due: datetime, warn_at: datetime
) -> None:
    result = deadline(
        "first_response", msk("2027-02-05", "17:30"), 120, calendar, business_hours=business_hours
    )
    assert result == Deadline("first_response", due, warn_at)


def test_deadline_with_zero_minutes_is_due_at_start() -> None:
    start = msk("2027-02-06", "12:00")
    result = deadline("next_response", start, 0, MOSCOW, business_hours=True)
    assert result.due == result.warn_at == start


def test_deadline_wall_time_across_dst() -> None:
    result = deadline("resolution", ber("2027-03-28", "01:00"), 180, BERLIN, business_hours=False)
    assert result.due == ber("2027-03-28", "05:00")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": "lunch"}, "unknown SLA target"),
        ({"minutes": -5}, "negative"),
        ({"warn_share": 0.0}, "warn_share"),
        ({"warn_share": 1.0}, "warn_share"),
    ],
)
def test_deadline_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"target": "first_response", "minutes": 60, "warn_share": 0.75}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        deadline(
            args["target"],
            msk(MON, "10:00"),
            args["minutes"],
            MOSCOW,
            business_hours=True,
            warn_share=args["warn_share"],
        )


START = msk(MON, "10:00")  # 120 working minutes: warn 11:30, due 12:00


@pytest.mark.parametrize(
    "now, done_at, pauses, met, breached, warned, share, paused",
    [
        (msk(MON, "10:30"), None, [], None, False, False, 0.25, False),
        (msk(MON, "11:30"), None, [], None, False, True, 0.75, False),
        (msk(MON, "12:00"), None, [], None, False, True, 1.0, False),
        (msk(MON, "13:00"), None, [], None, True, True, 1.5, False),
        (msk(MON, "13:00"), msk(MON, "11:00"), [], True, False, False, 0.5, False),
        (msk(MON, "13:00"), msk(MON, "12:00"), [], True, False, True, 1.0, False),
        (msk(MON, "13:00"), msk(MON, "12:30"), [], False, True, True, 1.25, False),
        (msk(MON, "19:00"), None, [], None, True, True, 4.0, False),
        (msk(MON, "13:00"), None, [Pause(msk(MON, "10:30"))], None, False, False, 0.25, True),
        (
            msk(MON, "13:00"),
            None,
            [Pause(msk(MON, "10:30"), msk(MON, "12:30"))],
            None,
            False,
            False,
            0.5,
            False,
        ),
        (msk(MON, "14:00"), None, [Pause(msk(MON, "13:00"))], None, True, True, 1.5, True),
    ],
)
def test_evaluate_reports_the_state_at_now(
    now: datetime,
    done_at: datetime | None,
    pauses: list[Pause],
    met: bool | None,
    breached: bool,
    warned: bool,
    share: float,
    paused: bool,
) -> None:
    state = evaluate(
        "first_response",
        START,
        120,
        MOSCOW,
        business_hours=True,
        now=now,
        pauses=pauses,
        done_at=done_at,
    )
    assert (state.met, state.breached, state.warned, state.paused) == (
        met,
        breached,
        warned,
        paused,
    )
    assert state.elapsed_share == pytest.approx(share)


def test_evaluate_open_pause_keeps_due_ahead_of_now() -> None:
    state = evaluate(
        "first_response",
        START,
        120,
        MOSCOW,
        business_hours=True,
        now=msk(MON, "17:00"),
        pauses=[Pause(msk(MON, "10:30"))],
    )
    assert state.due == msk("2027-02-09", "09:30")
    assert not state.breached


def test_evaluate_clock_stops_at_done_at() -> None:
    state = evaluate(
        "resolution",
        START,
        120,
        MOSCOW,
        business_hours=True,
        now=msk("2027-02-10", "12:00"),
        done_at=msk(MON, "11:00"),
        pauses=[Pause(msk(MON, "10:30"))],
    )
    assert state.due == msk(MON, "12:30")
    assert state.met is True
    assert state.elapsed_share == pytest.approx(0.25)


def test_evaluate_with_zero_minutes_is_due_at_once() -> None:
    state = evaluate("first_response", START, 0, MOSCOW, business_hours=True, now=msk(MON, "10:01"))
    assert state.breached
    assert state.elapsed_share == 1.0


@pytest.mark.parametrize(
    "category, priority, name, minutes",
    [
        (None, "urgent", "urgent", 30),
        ("billing", "high", "high", 60),
        (None, "normal", "default", 120),
        (None, "low", "default", 120),
        ("billing", "critical", "default", 120),
    ],
)
def test_default_policies_pick_by_priority(
    category: str | None, priority: str, name: str, minutes: int
) -> None:
    policy = SlaSettings().policy_for(category, priority)
    assert policy.name == name
    assert policy.targets.minutes_for("first_response") == minutes


def test_policy_for_takes_the_first_match_in_order() -> None:
    settings = SlaSettings(
        policies=[
            SlaPolicy(
                name="vip-billing",
                categories=["billing"],
                priorities=["urgent"],
                targets=SlaTargets(first_response_minutes=10),
            ),
            SlaPolicy(
                name="billing",
                categories=["billing"],
                targets=SlaTargets(first_response_minutes=45, resolution_minutes=None),
            ),
            SlaPolicy(name="any", targets=SlaTargets()),
        ]
    )
    assert settings.policy_for("billing", "urgent").name == "vip-billing"
    assert settings.policy_for("billing", "low").name == "billing"
    assert settings.policy_for("delivery", "urgent").name == "any"
    assert settings.policy_for(None, "urgent").name == "any"
    assert settings.policy_for("billing", "low").targets.minutes_for("resolution") is None


def test_settings_parse_from_plain_config() -> None:
    settings = SlaSettings.model_validate(
        {
            "calendar": {
                "timezone": "Asia/Yekaterinburg",
                "hours": {"days": [4, 0, 1, 2, 3], "start": "08:00", "end": "17:00"},
                "holidays": ["2027-01-01"],
                "workdays": ["2027-02-06"],
            },
            "policies": [{"name": "all", "targets": {"business_hours": False}, "warn_at": 0.5}],
        }
    )
    assert settings.calendar.hours == WorkingHours(start=time(8), end=time(17))
    assert settings.policies[0].targets.business_hours is False


@pytest.mark.parametrize(
    "model, data, message",
    [
        (Calendar, {"timezone": "Mars/Olympus"}, "unknown time zone"),
        (Calendar, {"timezone": ""}, "unknown time zone"),
        (Calendar, {"timezone": "../etc/passwd"}, "unknown time zone"),
        (Calendar, {"holidays": ["2027-02-06"], "workdays": ["2027-02-06"]}, "both"),
        (Calendar, {"zone": "UTC"}, "Extra inputs"),
        (WorkingHours, {"start": "18:00", "end": "09:00"}, "end must be after start"),
        (WorkingHours, {"start": "09:00", "end": "09:00"}, "end must be after start"),
        (WorkingHours, {"days": [0, 7]}, "weekdays"),
        (WorkingHours, {"days": [-1]}, "weekdays"),
        (WorkingHours, {"days": []}, "at least one"),
        (WorkingHours, {"start": "09:00+03:00"}, "local times"),
        (SlaPolicy, {"name": "x", "targets": {}, "warn_at": 0}, "greater than 0"),
        (SlaPolicy, {"name": "x", "targets": {}, "warn_at": 1}, "less than 1"),
        (SlaPolicy, {"name": "x", "targets": {}, "warn_at": 1.5}, "less than 1"),
        (SlaPolicy, {"name": "x", "targets": {}, "priorities": ["critical"]}, "priorities"),
        (SlaPolicy, {"name": "x", "targets": {}, "breach_escalation": "page"}, "breach"),
        (SlaTargets, {"first_response_minutes": 0}, "greater than 0"),
        (SlaSettings, {"policies": []}, "at least 1"),
        (
            SlaSettings,
            {"policies": [{"name": "u", "priorities": ["urgent"], "targets": {}}]},
            "must match any",
        ),
        (
            SlaSettings,
            {"policies": [{"name": "a", "targets": {}}, {"name": "a", "targets": {}}]},
            "unique",
        ),
    ],
)
def test_config_validation_errors(model: type[Any], data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        model.model_validate(data)


def test_config_models_are_frozen() -> None:
    with pytest.raises(ValidationError):
        MOSCOW.timezone = "UTC"
