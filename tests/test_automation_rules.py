"""Automation rules as data: validated like the config they come from, fired without loops."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from router.automation import MAX_CHAIN, Rule, firing, templates_of

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


def test_templates_named_by_rules_are_listed_for_checking() -> None:
    assert templates_of(rules(LOW_RATING, THANKS)) == {"low_rating_call", "alert", "thank_you"}


def test_disabled_rules_stay_quiet() -> None:
    assert not firing(rules({**THANKS, "enabled": False}), "rating.received", {"score": 5})
