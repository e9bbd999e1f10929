"""Automation rules as data: validated like the config they come from, fired without loops."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from desk.appeals.event_types import EVENT_TYPES
from desk.config.notice_templates import rule_problems
from desk.config.settings import default_rules
from desk.config.texts import Texts
from desk.outbound.notify import next_allowed
from router.automation import EVENTS, MAX_CHAIN, QuietHours, Rule, firing

LOW_RATING: dict[str, Any] = {
    "name": "low rating → call the customer",
    "on": "rating.received",
    "if": "score < 4",
    "do": [
        {"action": "create_task", "kind": "call", "template": "low_rating_call"},
        {"action": "alert_managers"},
    ],
}
THANKS: dict[str, Any] = {
    "name": "high rating → thank you",
    "on": "rating.received",
    "if": "score > 4",
    "do": [{"action": "notify_customer", "template": "thank_you"}],
}


def rules(*raw: dict[str, Any]) -> list[Rule]:
    return [Rule.model_validate(r) for r in raw]


def test_seed_004_triggers_fire_by_score() -> None:
    loaded = rules(LOW_RATING, THANKS)
    assert [f.rule for f in firing(loaded, "rating.received", {"score": 2})] == [LOW_RATING["name"]]
    assert [f.rule for f in firing(loaded, "rating.received", {"score": 5})] == [THANKS["name"]]
    assert firing(loaded, "rating.received", {"score": 4}) == []
    assert firing(loaded, "appeal.created", {"score": 1}) == []
    actions = firing(loaded, "rating.received", {"score": 1})[0].actions
    assert [a.action for a in actions] == ["create_task", "alert_managers"]


def test_conditions_may_read_the_appeal_and_customer() -> None:
    rule = rules(
        {
            "name": "vip closed",
            "on": "appeal.status_changed",
            "if": "after == 'resolved' and customer.vip",
            "do": [{"action": "add_tag", "tag": "VIP"}],
        }
    )
    assert firing(rule, "appeal.status_changed", {"after": "resolved", "customer": {"vip": True}})
    assert not firing(rule, "appeal.status_changed", {"after": "resolved", "customer": {}})


def test_a_rule_does_not_fire_again_from_its_own_actions() -> None:
    loop = rules(
        {
            "name": "raise on priority change",
            "on": "appeal.priority_changed",
            "do": [{"action": "set_priority", "priority": "urgent"}],
        }
    )
    assert firing(loop, "appeal.priority_changed", {}, chain=())
    assert not firing(loop, "appeal.priority_changed", {}, chain=("raise on priority change",))
    assert not firing(loop, "appeal.priority_changed", {}, chain=("a",) * MAX_CHAIN)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"on": "rating.recieved"}, "unknown event 'rating.recieved'"),
        ({"if": "score <"}, "condition: the condition ends too early"),
        ({"if": "stars < 4"}, "reads 'stars', which rating.received does not have"),
        ({"do": [{"action": "send_sms"}]}, "send_sms"),
        ({"do": []}, "at least 1"),
        ({"do": [{"action": "assign"}]}, "exactly one of agent or team"),
        ({"do": [{"action": "call_webhook", "url": "ftp://x"}]}, "should match pattern"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_config_mistakes_are_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Rule.model_validate({**LOW_RATING, **change})


def test_shipped_rules_name_templates_that_exist() -> None:
    texts = Texts()
    shipped = default_rules()
    assert {r.name for r in shipped} >= {"acknowledge", "notify on resolve", "low rating"}
    assert [p for r in shipped for p in rule_problems(texts, r)] == []
    missing = rules({**THANKS, "do": [{"action": "notify_customer", "template": "nope"}]})[0]
    assert rule_problems(texts, missing) == [
        "rule 'high rating → thank you', notify_customer: template 'nope' is missing for ru, "
        "en: add templates/<lang>/notify/nope.txt.j2 (or one variant per channel)"
    ]


def test_disabled_rules_stay_quiet() -> None:
    assert not firing(rules({**THANKS, "enabled": False}), "rating.received", {"score": 5})


BERLIN = ZoneInfo("Europe/Berlin")  # summer time ends on 25 October 2026 at 03:00


@pytest.mark.parametrize(
    ("now", "window", "expected"),
    [
        # Inside the window: at once.
        (datetime(2026, 11, 23, 12, 0, tzinfo=UTC), (9, 21), datetime(2026, 11, 23, 12, 0)),
        # 23:10 local: 09:00 the next morning.
        (datetime(2026, 11, 23, 22, 10, tzinfo=UTC), (9, 21), datetime(2026, 11, 24, 8, 0)),
        # 06:30 local: 09:00 the same morning.
        (datetime(2026, 11, 24, 5, 30, tzinfo=UTC), (9, 21), datetime(2026, 11, 24, 8, 0)),
        # 23:30 summer time on the night the clocks go back: 09:00 winter time = 08:00 UTC.
        (datetime(2026, 10, 24, 21, 30, tzinfo=UTC), (9, 21), datetime(2026, 10, 25, 8, 0)),
        # The evening before: 09:00 summer time = 07:00 UTC.
        (datetime(2026, 10, 23, 21, 30, tzinfo=UTC), (9, 21), datetime(2026, 10, 24, 7, 0)),
        # A window across midnight (20:00-02:00): 01:00 is inside, 03:00 waits for 20:00.
        (datetime(2026, 11, 23, 0, 0, tzinfo=UTC), (20, 2), datetime(2026, 11, 23, 0, 0)),
        (datetime(2026, 11, 23, 2, 0, tzinfo=UTC), (20, 2), datetime(2026, 11, 23, 19, 0)),
    ],
)
def test_quiet_hours_hold_until_the_window_opens_in_local_time(
    now: datetime, window: tuple[int, int], expected: datetime
) -> None:
    quiet = QuietHours(start=time(window[0]), end=time(window[1]))
    assert next_allowed(now, BERLIN, quiet) == expected.replace(tzinfo=UTC)


def test_every_event_a_rule_may_listen_to_is_a_domain_event_offering_its_fields() -> None:
    # The router names events by their history names (it imports nothing of desk); each one is
    # a typed event whose data offers every field a condition may read.
    for name, offered in EVENTS.items():
        kind = EVENT_TYPES[name]
        payload = {f.name for f in fields(kind)} - {"actor", "appeal", "customer"}
        assert offered <= payload, (name, offered - payload)
