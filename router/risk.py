"""Priority and the «Важно» tag: signs that a customer may be lost (seed 001: the CEO must know)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from router.classify import CustomerFacts
from router.words import lemmas

PRIORITIES = ("low", "normal", "high", "urgent")


class RiskRules(BaseModel):
    """Phrases (any word form) that raise priority; configurable, with sensible defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    leaving: list[str] = Field(
        default_factory=lambda: [
            "больше не покупать",
            "больше не заказывать",
            "уйти к конкурент",
            "к конкурент",
            "у конкурент",
            "последний раз",
            "никогда больше",
            "больше никогда",
            "отказаться от услуга",
            "більше не купувати",
            "never again",
            "never buy",
            "going to competitor",
            "cancel my account",
        ]
    )
    refund: list[str] = Field(
        default_factory=lambda: [
            "вернуть деньги",
            "возврат денег",
            "верните деньги",
            "требовать возврат",
            "повернути гроші",
            "refund",
            "money back",
            "chargeback",
        ]
    )
    authorities: list[str] = Field(
        default_factory=lambda: [
            "роспотребнадзор",
            "прокуратура",
            "суд",
            "юрист",
            "адвокат",
            "защита прав потребитель",
            "жалоба",
            "претензия",
            "скарга",
            "lawyer",
            "court",
            "sue",
            "consumer protection",
        ]
    )
    repeat_complaints: int = Field(default=2, ge=1, description="complaints in 90 days")
    low_rating: int = Field(default=2, ge=1, le=5, description="a last rating at or below")


@dataclass(frozen=True, slots=True)
class Risk:
    """The priority an appeal should have at least, whether it is «Важно», and why."""

    priority: str
    important: bool
    reasons: tuple[str, ...]


def assess(
    text: str, category: str | None, base_priority: str, facts: CustomerFacts, rules: RiskRules
) -> Risk:
    """Raise ``base_priority`` for signs that the customer may be lost."""
    joined = " " + " ".join(lemmas(text)) + " "
    reasons: list[str] = []
    urgent = False
    for label, phrases in (
        ("threatens to leave", rules.leaving),
        ("demands a refund", rules.refund),
        ("mentions authorities or lawyers", rules.authorities),
    ):
        for phrase in phrases:
            if f" {' '.join(lemmas(phrase))} " in joined:
                reasons.append(f"{label}: «{phrase}»")
                urgent = urgent or label.startswith("mentions")
                break
    if category == "complaint" and facts.complaints_90d >= rules.repeat_complaints:
        reasons.append(f"repeat complaint ({facts.complaints_90d + 1} in 90 days)")
    if facts.vip:
        reasons.append("VIP customer")
    if facts.last_rating is not None and facts.last_rating <= rules.low_rating:
        reasons.append(f"low recent rating ({facts.last_rating})")
    if not reasons:
        return Risk(base_priority, False, ())
    floor = "urgent" if urgent and len(reasons) > 1 else "high"
    priority = max(base_priority, floor, key=PRIORITIES.index)
    return Risk(priority, True, tuple(reasons))
