"""Weekday lists and local times of working hours and shifts, validated the same way."""

from __future__ import annotations

from datetime import time
from typing import Annotated

from pydantic import AfterValidator


def _weekdays(days: list[int]) -> list[int]:
    bad = [d for d in days if not 0 <= d <= 6]
    if bad:
        raise ValueError(f"weekdays are 0 (Monday) .. 6 (Sunday), got {bad}")
    if not days:
        raise ValueError("list at least one working weekday")
    return sorted(set(days))


def _local(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("working hours are local times of the company's time zone")
    return value


Weekdays = Annotated[list[int], AfterValidator(_weekdays)]


def workweek() -> list[int]:
    """Monday to Friday."""
    return [0, 1, 2, 3, 4]


LocalTime = Annotated[time, AfterValidator(_local)]
