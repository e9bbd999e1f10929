"""Automation conditions: parsed into a tree, evaluated safely, errors that say where."""

from __future__ import annotations

from typing import Any

import pytest

from router.conditions import ConditionError, Logic, holds, names, parse

pytestmark = pytest.mark.backend_agnostic

EVENT: dict[str, Any] = {
    "score": 3,
    "comment": "долго ждал",
    "appeal": {"channel": "telegram", "tags": ["Важно"], "priority": "high", "number": "A-000007"},
    "customer": {"vip": False, "language": "ru"},
    "order": None,
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("score < 4", True),
        ("score >= 4", False),
        ("score == 3 and appeal.channel == 'telegram'", True),
        ("appeal.channel in ['telegram', 'vk']", True),
        ("appeal.channel not in ['email']", True),
        ("appeal.tags contains 'Важно'", True),
        ("comment contains 'ждал'", True),
        ("not customer.vip", True),
        ("customer.vip or appeal.priority == 'high'", True),
        ("not (score < 4 and appeal.priority == 'high')", False),
        ("order.stage == 'shipped'", False),  # a missing path is null
        ("order == null", True),
        ("missing.deep.path != null", False),
        ("score > 'a'", False),  # ordering across types is false, not an error
        ("score < null", False),
        ('appeal.number == "A-000007"', True),
        ("score == 3.0", True),
        ("true", True),
        ("score < 4 or score > 10 and false", True),  # and binds tighter than or
    ],
)
def test_conditions_evaluate_like_a_support_lead_would_read_them(
    condition: str, expected: bool
) -> None:
    assert holds(parse(condition), EVENT) is expected


def test_names_lists_what_a_condition_reads() -> None:
    tree = parse("score < 4 and appeal.channel in ['vk'] or not customer.vip")
    assert names(tree) == {"score", "appeal.channel", "customer.vip"}
    assert isinstance(tree, Logic) and tree.op == "or"


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("", "empty"),
        ("score <", "ends too early"),
        ("score < 4 and", "ends too early"),
        ("(score < 4", "ends too early"),
        ("score < 4)", "unexpected '\\)'"),
        ("score ; 4", "unexpected character"),
        ("__import__('os').system('ls')", "unexpected"),
        ("score in [appeal.channel]", "constants only"),
        ("and score", "unexpected 'and'"),
    ],
)
def test_bad_conditions_are_refused_with_a_clear_reason(condition: str, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        parse(condition)


def test_deep_nesting_and_long_conditions_are_refused() -> None:
    with pytest.raises(ConditionError, match="too deeply"):
        parse("(" * 100 + "true" + ")" * 100)
    with pytest.raises(ConditionError, match="at most"):
        parse("score < 4 and " * 300 + "true")
