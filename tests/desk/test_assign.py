"""Assignment: availability (duty, shifts, capacity, teams), the three strategies, balance."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from itertools import permutations
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from router.assign import (
    Assignment,
    Candidate,
    ShiftHours,
    Strategy,
    available,
    choose,
    offered_back,
    spread,
)

MSK = ZoneInfo("Europe/Moscow")
DAY = ShiftHours()
NIGHT = ShiftHours(start=time(22), end=time(6))  # Monday..Friday nights, into the next morning
WEEKEND = ShiftHours(days=[5, 6], start=time(10), end=time(16))
LL, RR, ST = Strategy.LEAST_LOADED, Strategy.ROUND_ROBIN, Strategy.STICKY


def msk(day: str, clock: str = "12:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=MSK)


# 2027-02-05 is a Friday, 2027-02-06 a Saturday, 2027-02-08 a Monday.
MON_NOON = msk("2027-02-08")


def agent(
    agent_id: int,
    *,
    teams: tuple[str, ...] = ("support",),
    on_duty: bool = True,
    capacity: int = 10,
    open_appeals: int = 0,
    hours: ShiftHours | None = None,
    last: datetime | None = None,
) -> Candidate:
    return Candidate(
        agent_id, f"agent {agent_id}", teams, on_duty, capacity, open_appeals, hours, last
    )


@pytest.mark.parametrize(
    "hours, moment, covered",
    [
        (DAY, msk("2027-02-08", "09:00"), True),
        (DAY, msk("2027-02-08", "17:59"), True),
        (DAY, msk("2027-02-08", "18:00"), False),
        (DAY, msk("2027-02-08", "08:59"), False),
        (DAY, msk("2027-02-06", "12:00"), False),
        (NIGHT, msk("2027-02-08", "22:00"), True),
        (NIGHT, msk("2027-02-09", "03:00"), True),
        (NIGHT, msk("2027-02-09", "06:00"), False),
        (NIGHT, msk("2027-02-08", "21:59"), False),
        (NIGHT, msk("2027-02-08", "12:00"), False),
        (NIGHT, msk("2027-02-06", "03:00"), True),  # Friday's night shift runs into Saturday
        (NIGHT, msk("2027-02-06", "23:00"), False),
        (NIGHT, msk("2027-02-08", "03:00"), False),  # no Sunday night shift
        (WEEKEND, msk("2027-02-06", "10:00"), True),
        (WEEKEND, msk("2027-02-07", "15:59"), True),
        (WEEKEND, msk("2027-02-08", "12:00"), False),
    ],
)
def test_shift_covers_local_moments_including_overnight_and_weekend(
    hours: ShiftHours, moment: datetime, covered: bool
) -> None:
    assert hours.covers(moment) is covered


@pytest.mark.parametrize(
    "fields",
    [
        {"days": [7]},
        {"days": []},
        {"start": time(9), "end": time(9)},
        {"start": time(9, tzinfo=UTC)},
    ],
)
def test_invalid_shift_hours_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ShiftHours.model_validate(fields)


def test_shift_hours_are_frozen_and_days_normalised() -> None:
    hours = ShiftHours(days=[4, 0, 4])
    assert hours.days == [0, 4]
    with pytest.raises(ValidationError):
        hours.start = time(8)


@pytest.mark.parametrize(
    "candidate, team, now, ok",
    [
        (agent(1), "support", MON_NOON, True),
        (agent(1), None, MON_NOON, True),
        (agent(1, teams=("billing",)), "support", MON_NOON, False),
        (agent(1, teams=("billing",)), None, MON_NOON, True),
        (agent(1, on_duty=False), "support", MON_NOON, False),
        (agent(1, capacity=3, open_appeals=2), "support", MON_NOON, True),
        (agent(1, capacity=3, open_appeals=3), "support", MON_NOON, False),
        (agent(1, capacity=0), "support", MON_NOON, False),
        (agent(1, hours=DAY), "support", msk("2027-02-08", "19:00"), False),
        (agent(1, hours=DAY), "support", msk("2027-02-06"), False),
        (agent(1, hours=NIGHT), "support", msk("2027-02-09", "02:00"), True),
        (agent(1, hours=NIGHT), "support", MON_NOON, False),
        (agent(1, hours=WEEKEND), "support", msk("2027-02-06"), True),
        # 07:00 UTC is 10:00 in Moscow: the shift is read in the company zone, not in UTC.
        (agent(1, hours=DAY), "support", datetime(2027, 2, 8, 7, tzinfo=UTC), True),
        (agent(1, hours=DAY), "support", datetime(2027, 2, 8, 15, 30, tzinfo=UTC), False),
    ],
)
def test_available_filters_team_duty_hours_and_capacity(
    candidate: Candidate, team: str | None, now: datetime, ok: bool
) -> None:
    assert available([candidate], team, now) == ([candidate] if ok else [])


def test_available_reads_shifts_in_the_given_zone() -> None:
    now = datetime(2027, 2, 8, 16, 30, tzinfo=UTC)  # 19:30 in Moscow, 17:30 in Berlin
    assert available([agent(1, hours=DAY)], None, now) == []
    assert available([agent(1, hours=DAY)], None, now, zone="Europe/Berlin") != []


@pytest.mark.parametrize(
    "call",
    [
        lambda: available([agent(1)], None, datetime(2027, 2, 8, 12)),
        lambda: available([agent(1)], None, MON_NOON, zone="Mars/Olympus"),
        lambda: available([agent(1), agent(1)], None, MON_NOON),
        lambda: choose(ST, [agent(1)], team=None, now=MON_NOON, fallback=ST),
        lambda: agent(1, capacity=-1),
        lambda: agent(1, open_appeals=-1),
        lambda: agent(1, last=datetime(2027, 2, 8, 12)),
    ],
)
def test_bad_input_raises_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        call()


@pytest.mark.parametrize(
    "candidates, expected_id, reason",
    [
        ([agent(1, open_appeals=2), agent(2, open_appeals=1)], 2, "least_loaded: 1/10 open"),
        # 2/10 is a lighter load than 1/3, though it is more appeals.
        ([agent(1, capacity=3, open_appeals=1), agent(2, open_appeals=2)], 2, "2/10 open"),
        # Same load: the agent never assigned comes first, then the one idle longest.
        ([agent(1, last=MON_NOON), agent(2)], 2, "least_loaded: 0/10 open"),
        # Equal ratio 1/2: fewer open appeals wins.
        ([agent(1, capacity=4, open_appeals=2), agent(2, capacity=2, open_appeals=1)], 2, "1/2"),
        ([agent(1, last=MON_NOON), agent(2, last=MON_NOON - timedelta(hours=1))], 2, "0/10"),
        # All else equal: the lower agent id.
        ([agent(2), agent(1)], 1, "least_loaded: 0/10 open"),
        # A full agent is out whatever its ratio would say.
        ([agent(1, open_appeals=9, capacity=9), agent(2, open_appeals=9)], 2, "9/10 open"),
    ],
)
def test_least_loaded_picks_lowest_ratio_then_fewer_open_then_longest_idle(
    candidates: list[Candidate], expected_id: int, reason: str
) -> None:
    decision, cursor = choose(LL, candidates, team="support", now=MON_NOON, cursor=5)
    assert decision.agent_id == expected_id
    assert reason in decision.reason
    assert decision.strategy is LL
    assert cursor == 5  # only round robin moves the cursor


ROTA = [agent(1), agent(3), agent(5, on_duty=False), agent(7, capacity=1, open_appeals=1), agent(9)]


@pytest.mark.parametrize(
    "cursor, expected_id, reason",
    [
        (None, 1, "round_robin: start of rotation"),
        (1, 3, "round_robin: next after agent 1"),
        (3, 9, "round_robin: next after agent 3"),  # 5 off duty, 7 full
        (5, 9, "round_robin: next after agent 5"),
        (9, 1, "round_robin: wrapped after agent 9"),
        (42, 1, "round_robin: wrapped after agent 42"),  # the last agent left the team
        (0, 1, "round_robin: next after agent 0"),
    ],
)
def test_round_robin_takes_next_available_after_cursor_and_wraps(
    cursor: int | None, expected_id: int, reason: str
) -> None:
    decision, new_cursor = choose(RR, ROTA, team="support", now=MON_NOON, cursor=cursor)
    assert (decision.agent_id, new_cursor, decision.strategy) == (expected_id, expected_id, RR)
    assert decision.reason.startswith(reason)


def test_round_robin_cycles_through_available_agents_in_id_order() -> None:
    cursor, picked = None, []
    for _ in range(7):
        decision, cursor = choose(RR, ROTA[::-1], team="support", now=MON_NOON, cursor=cursor)
        picked.append(decision.agent_id)
    assert picked == [1, 3, 9, 1, 3, 9, 1]


SUPPORT = [agent(7, capacity=5, open_appeals=4), agent(8, open_appeals=3), agent(9)]


@pytest.mark.parametrize(
    "previous, appeal, pool, fallback, expected_id, strategy, reason",
    [
        (7, "A-000120", SUPPORT, LL, 7, ST, "sticky: agent 7 served this customer on A-000120"),
        (7, None, SUPPORT, LL, 7, ST, "sticky: agent 7 served this customer"),
        (
            7,
            "A-000120",
            [replace(SUPPORT[0], on_duty=False), *SUPPORT[1:]],
            LL,
            9,
            LL,
            "sticky: agent 7 served this customer on A-000120 but is off duty; "
            "least_loaded: 0/10 open",
        ),
        (
            7,
            "A-000120",
            [replace(SUPPORT[0], open_appeals=5), *SUPPORT[1:]],
            RR,
            8,
            RR,
            "sticky: agent 7 served this customer on A-000120 but is full (5/5 open); "
            "round_robin: start of rotation, 3/10 open",
        ),
        (
            7,
            "A-000120",
            [replace(SUPPORT[0], hours=WEEKEND), *SUPPORT[1:]],
            LL,
            9,
            LL,
            "but is outside shift hours; least_loaded",
        ),
        (
            7,
            "A-000120",
            [replace(SUPPORT[0], teams=("billing",)), *SUPPORT[1:]],
            LL,
            9,
            LL,
            "but is not in team 'support'; least_loaded",
        ),
        (
            4,
            "A-000120",
            SUPPORT,
            LL,
            9,
            LL,
            "agent 4 served this customer on A-000120 but is unknown",
        ),
        (None, None, SUPPORT, LL, 9, LL, "sticky: no previous agent; least_loaded: 0/10 open"),
    ],
)
def test_sticky_keeps_the_previous_agent_or_falls_back_and_says_why(
    previous: int | None,
    appeal: str | None,
    pool: list[Candidate],
    fallback: Strategy,
    expected_id: int,
    strategy: Strategy,
    reason: str,
) -> None:
    decision, _ = choose(
        ST,
        pool,
        team="support",
        now=MON_NOON,
        previous_agent_id=previous,
        previous_appeal=appeal,
        fallback=fallback,
    )
    assert (decision.agent_id, decision.strategy, decision.team) == (
        expected_id,
        strategy,
        "support",
    )
    assert reason in decision.reason


def test_sticky_hit_leaves_the_cursor_and_round_robin_fallback_moves_it() -> None:
    def sticky(pool: list[Candidate]) -> tuple[Assignment, int | None]:
        return choose(
            ST, pool, team="support", now=MON_NOON, previous_agent_id=7, cursor=8, fallback=RR
        )

    hit, cursor = sticky(SUPPORT)
    assert (hit.agent_id, cursor) == (7, 8)
    miss, cursor = sticky([replace(SUPPORT[0], on_duty=False), *SUPPORT[1:]])
    assert (miss.agent_id, cursor) == (9, 9)


@pytest.mark.parametrize(
    "strategy, pool, team, reason",
    [
        (
            LL,
            [agent(1, on_duty=False), agent(2, capacity=2, open_appeals=2), agent(3, teams=("x",))],
            "support",
            "nobody available in team 'support': all off duty, off shift or full "
            "(1 full, 1 off duty)",
        ),
        (RR, [agent(1, hours=NIGHT), agent(2, capacity=0)], None, "in any team: all off duty"),
        (RR, [agent(1, teams=("billing",))], "support", "in team 'support': no agents"),
        (LL, [], None, "nobody available in any team: no agents"),
        (
            ST,
            [agent(1, on_duty=False)],
            "support",
            "sticky: agent 1 served this customer but is off duty; nobody available in team",
        ),
    ],
)
def test_nobody_available_leaves_the_appeal_unassigned_with_a_reason(
    strategy: Strategy, pool: list[Candidate], team: str | None, reason: str
) -> None:
    decision, cursor = choose(
        strategy, pool, team=team, now=MON_NOON, previous_agent_id=1, cursor=4
    )
    assert decision == Assignment(None, decision.reason, None, team)
    assert reason in decision.reason
    assert cursor == 4


@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("cursor", [None, 2, 4])
def test_choice_does_not_depend_on_candidate_order(strategy: Strategy, cursor: int | None) -> None:
    pool = [
        agent(1, open_appeals=2, last=MON_NOON),
        agent(2, open_appeals=2, last=MON_NOON - timedelta(minutes=5)),
        agent(3, open_appeals=2),
        agent(4, capacity=5, open_appeals=1),
    ]
    results = {
        choose(strategy, order, team="support", now=MON_NOON, previous_agent_id=3, cursor=cursor)
        for order in permutations(pool)
    }
    assert len(results) == 1


@pytest.mark.parametrize("strategy", [LL, RR])
def test_capacity_is_never_exceeded_when_appeals_keep_coming(strategy: Strategy) -> None:
    caps = {1: 1, 2: 2, 3: 0, 4: 3}
    load = dict.fromkeys(caps, 0)
    cursor = None
    for _ in range(20):
        pool = [agent(a, capacity=caps[a], open_appeals=load[a]) for a in caps]
        decision, cursor = choose(strategy, pool, team="support", now=MON_NOON, cursor=cursor)
        if decision.agent_id is not None:
            load[decision.agent_id] += 1
    assert load == caps


def test_offered_back_returns_each_open_appeal_once_in_order() -> None:
    assert offered_back(7, ["A-000120", "A-000007", "A-000120"]) == ["A-000120", "A-000007"]
    assert offered_back(7, []) == []


def test_spread_counts_assignments_per_agent_and_skips_unassigned() -> None:
    made = [
        Assignment(2, "", LL, None),
        Assignment(None, "", None, None),
        Assignment(1, "", RR, None),
    ]
    assert spread([*made, made[0]]) == {1: 1, 2: 2}


CAPACITIES = {1: 2, 2: 3, 3: 5, 4: 8, 5: 13}


def simulate(
    strategy: Strategy, seed: int, close: float, appeals: int = 1000
) -> tuple[list[Assignment], dict[int, int], set[int]]:
    """Feed appeals one a minute; each open appeal closes with probability `close` per minute.

    Agent 1 is off duty for a stretch. Returns the decisions, each agent's peak load and the
    agents that were available at every step.
    """
    rng = random.Random(seed)
    start = msk("2027-02-08", "09:00")
    load, peak = dict.fromkeys(CAPACITIES, 0), dict.fromkeys(CAPACITIES, 0)
    last: dict[int, datetime] = {}
    always, decisions, cursor = set(CAPACITIES), [], None
    for step in range(appeals):
        now = start + timedelta(minutes=step)
        for a in load:
            load[a] -= sum(rng.random() < close for _ in range(load[a]))
        pool = [
            agent(a, on_duty=not (a == 1 and 300 <= step < 500), capacity=cap, open_appeals=load[a])
            for a, cap in CAPACITIES.items()
        ]
        pool = [replace(c, last_assigned_at=last.get(c.agent_id)) for c in pool]
        rng.shuffle(pool)
        always &= {c.agent_id for c in available(pool, "support", now)}
        decision, cursor = choose(strategy, pool, team="support", now=now, cursor=cursor)
        decisions.append(decision)
        if decision.agent_id is not None:
            load[decision.agent_id] += 1
            last[decision.agent_id] = now
            peak[decision.agent_id] = max(peak[decision.agent_id], load[decision.agent_id])
    return decisions, peak, always


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_least_loaded_fills_agents_up_to_capacity_and_never_past_it(seed: int) -> None:
    decisions, peak, _ = simulate(LL, seed, close=0.03)  # more work than the team can take
    assert all(peak[a] <= cap for a, cap in CAPACITIES.items())
    assert peak == CAPACITIES  # the load did reach every agent's limit
    waited = [d for d in decisions if d.agent_id is None]
    assert waited
    assert all(d.reason.startswith("nobody available in team 'support'") for d in waited)
    assert sum(spread(decisions).values()) + len(waited) == 1000


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_round_robin_spreads_evenly_among_always_available_agents(seed: int) -> None:
    decisions, peak, always = simulate(RR, seed, close=0.15)
    assert all(peak[a] <= cap for a, cap in CAPACITIES.items())
    assert {4, 5} <= always and 1 not in always
    counts = spread(decisions)
    assert sum(counts.values()) == 1000
    steady = [counts[a] for a in always]
    assert max(steady) - min(steady) <= 1
    assert all(counts[a] <= max(steady) for a in set(CAPACITIES) - always)
