"""Assignment of appeals to agents: who is available now and which of them gets the appeal.

Pure functions: `desk/` passes in the candidates (with their loads), `now` and the stored
round-robin cursor, and applies the returned `Assignment` and new cursor. Shift hours are
local times of the company zone; an overnight shift (end < start) belongs to the weekday it
starts on, so a Friday 22:00-06:00 shift covers Saturday 03:00.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from enum import StrEnum
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

from router.weekdays import LocalTime, Weekdays, workweek

_OLDEST = datetime.min.replace(tzinfo=UTC)


class Strategy(StrEnum):
    """How an agent is picked among the available ones."""

    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"
    STICKY = "sticky"


class ShiftHours(BaseModel):
    """An agent's local working window [start, end) on the weekdays it starts (Monday=0)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: Weekdays = Field(default_factory=workweek)
    start: LocalTime = time(9, 0)
    end: LocalTime = time(18, 0)

    @model_validator(mode="after")
    def _check_length(self) -> ShiftHours:
        if self.start == self.end:
            raise ValueError("a shift cannot be empty; use hours=None for round the clock")
        return self

    def covers(self, local: datetime) -> bool:
        """Whether the local wall-clock moment falls inside a shift (end excluded)."""
        clock, day = local.time(), local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= clock < self.end
        if clock >= self.start:
            return day in self.days
        return clock < self.end and (day - 1) % 7 in self.days


@dataclass(frozen=True)
class Candidate:
    """An agent as the router sees it: teams, duty, load and shift."""

    agent_id: int
    name: str
    teams: tuple[str, ...]
    on_duty: bool
    capacity: int
    open_appeals: int
    hours: ShiftHours | None = None  # None: any time
    last_assigned_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.capacity < 0 or self.open_appeals < 0:
            raise ValueError(f"agent {self.agent_id}: capacity and open appeals must be >= 0")
        last = self.last_assigned_at
        if last is not None and last.utcoffset() is None:
            raise ValueError(f"agent {self.agent_id}: last_assigned_at must be timezone-aware")


@dataclass(frozen=True)
class Assignment:
    """The decision: the agent (None = the appeal waits unassigned) and why."""

    agent_id: int | None
    reason: str
    strategy: Strategy | None  # the strategy that picked the agent; None when nobody was
    team: str | None


def _local(now: datetime, zone: str) -> datetime:
    if now.utcoffset() is None:
        raise ValueError(f"an aware datetime is required, got naive {now.isoformat()}")
    try:
        return now.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {zone!r}") from exc


def _unavailable(c: Candidate, team: str | None, local: datetime) -> str | None:
    """Why the candidate cannot take an appeal now, or None if it can."""
    if team is not None and team not in c.teams:
        return f"not in team {team!r}"
    if not c.on_duty:
        return "off duty"
    if c.hours is not None and not c.hours.covers(local):
        return "outside shift hours"
    if c.open_appeals >= c.capacity:
        return f"full ({c.open_appeals}/{c.capacity} open)"
    return None


def available(
    candidates: Iterable[Candidate], team: str | None, now: datetime, *, zone: str = "Europe/Moscow"
) -> list[Candidate]:
    """Candidates in the team (None = any), on duty, on shift at `now` and below capacity."""
    local = _local(now, zone)
    pool = sorted(candidates, key=lambda c: c.agent_id)
    if len({c.agent_id for c in pool}) < len(pool):
        raise ValueError("candidates must have distinct agent ids")
    return [c for c in pool if _unavailable(c, team, local) is None]


def _nobody(candidates: Sequence[Candidate], team: str | None, local: datetime) -> str:
    where = "in any team" if team is None else f"in team {team!r}"
    reasons = (_unavailable(c, team, local) or "" for c in candidates)
    counts = Counter(r.split(" (")[0] for r in reasons if not r.startswith("not in"))
    if not counts:
        return f"nobody available {where}: no agents"
    detail = ", ".join(f"{n} {why}" for why, n in sorted(counts.items()))
    return f"nobody available {where}: all off duty, off shift or full ({detail})"


def _load(c: Candidate) -> str:
    return f"{c.open_appeals}/{c.capacity} open"


def _round_robin(pool: list[Candidate], cursor: int | None) -> tuple[Candidate, str]:
    if cursor is None:
        return pool[0], f"round_robin: start of rotation, {_load(pool[0])}"
    later = next((c for c in pool if c.agent_id > cursor), None)
    if later is not None:
        return later, f"round_robin: next after agent {cursor}, {_load(later)}"
    return pool[0], f"round_robin: wrapped after agent {cursor}, {_load(pool[0])}"


def _least_loaded(pool: list[Candidate]) -> tuple[Candidate, str]:
    best = min(
        pool,
        key=lambda c: (
            Fraction(c.open_appeals, c.capacity),
            c.open_appeals,
            c.last_assigned_at is not None,
            c.last_assigned_at or _OLDEST,
            c.agent_id,
        ),
    )
    return best, f"least_loaded: {_load(best)}"


def _sticky(
    candidates: Sequence[Candidate],
    team: str | None,
    local: datetime,
    previous: int | None,
    appeal: str | None,
) -> tuple[int | None, str]:
    """The previous agent if still available (else None), and the sticky part of the reason."""
    if previous is None:
        return None, "sticky: no previous agent; "
    served = f"sticky: agent {previous} served this customer" + (f" on {appeal}" if appeal else "")
    prev = next((c for c in candidates if c.agent_id == previous), None)
    why = "unknown" if prev is None else _unavailable(prev, team, local)
    return (previous, served) if why is None else (None, f"{served} but is {why}; ")


def choose(
    strategy: Strategy,
    candidates: Sequence[Candidate],
    *,
    team: str | None,
    now: datetime,
    zone: str = "Europe/Moscow",
    previous_agent_id: int | None = None,
    previous_appeal: str | None = None,
    cursor: int | None = None,
    fallback: Strategy = Strategy.LEAST_LOADED,
) -> tuple[Assignment, int | None]:
    """Pick an agent for one appeal; returns the decision and the cursor to store next."""
    if fallback is Strategy.STICKY:
        raise ValueError("the sticky fallback must be round_robin or least_loaded")
    local = _local(now, zone)
    pool = available(candidates, team, now, zone=zone)
    prefix = ""
    if strategy is Strategy.STICKY:
        kept, prefix = _sticky(candidates, team, local, previous_agent_id, previous_appeal)
        if kept is not None:
            return Assignment(kept, prefix, Strategy.STICKY, team), cursor
        strategy = fallback
    if not pool:
        return Assignment(None, prefix + _nobody(candidates, team, local), None, team), cursor
    if strategy is Strategy.ROUND_ROBIN:
        agent, why = _round_robin(pool, cursor)
        cursor = agent.agent_id
    else:
        agent, why = _least_loaded(pool)
    return Assignment(agent.agent_id, prefix + why, strategy, team), cursor


def offered_back(agent_id: int, open_appeal_numbers: Sequence[str]) -> list[str]:
    """The appeals to offer back to the team when the agent goes off duty: all of its open ones."""
    # Every open appeal goes back, once each and in the caller's order (its priority order);
    # agent_id is kept so a later rule (e.g. keep appeals awaiting the customer) fits here.
    return list(dict.fromkeys(open_appeal_numbers))


def spread(assignments: Iterable[Assignment]) -> dict[int, int]:
    """How many appeals each agent got (unassigned ones are not counted), by agent id."""
    counts = Counter(a.agent_id for a in assignments if a.agent_id is not None)
    return dict(sorted(counts.items()))
