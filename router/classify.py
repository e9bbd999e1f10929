"""Which category an appeal belongs to: configured recognisers (words in any form, phrases,
regular expressions, channel, customer facts) together with the model learnt from agents."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator

from router.model import NaiveBayes
from router.words import lemmas

RULE_WEIGHT = 0.55
MODEL_WEIGHT = 0.45
CONFIDENT = 0.45  # below this the appeal waits for a person to pick the category


class Recogniser(BaseModel):
    """What makes a text belong to a category; words match in any form («вернула» ~ «вернуть»)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keywords: list[str] = Field(default_factory=list)
    phrases: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list, description="only from these channels")
    vip: bool | None = Field(default=None, description="only for VIP customers (or not)")
    lifecycle: list[str] = Field(default_factory=list, description="prospect, active, lost")
    warmth: list[str] = Field(default_factory=list, description="hot, warm, cold")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
        return value


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What the router may know about the customer (loaded by the desk)."""

    vip: bool = False
    complaints_90d: int = 0
    last_rating: int | None = None
    lifecycle: str = "prospect"
    warmth: str = "warm"


@dataclass(frozen=True, slots=True)
class Classification:
    """The router's verdict: a category (None when unsure), its confidence, and why."""

    category: str | None
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Compiled:
    category: str
    words: frozenset[str]
    phrases: tuple[tuple[str, ...], ...]
    patterns: tuple[re.Pattern[str], ...]
    channels: frozenset[str]
    vip: bool | None
    lifecycle: frozenset[str]
    warmth: frozenset[str]

    def applies(self, channel: str, facts: CustomerFacts) -> bool:
        """Whether the rule's channel and customer conditions hold."""
        return (
            (not self.channels or channel in self.channels)
            and (self.vip is None or self.vip == facts.vip)
            and (not self.lifecycle or facts.lifecycle in self.lifecycle)
            and (not self.warmth or facts.warmth in self.warmth)
        )


class Classifier:
    """Rules first, the learnt model alongside; ``fallback`` is used when nothing fits."""

    def __init__(
        self,
        recognisers: Sequence[tuple[str, Recogniser]],
        model: NaiveBayes | None = None,
        *,
        fallback: str | None = None,
        confident: float = CONFIDENT,
    ) -> None:
        self._rules = [_compile(category, r) for category, r in recognisers]
        self.model = model
        self._fallback = fallback
        self._confident = confident

    def classify(
        self, text: str, *, channel: str = "", customer: CustomerFacts | None = None
    ) -> Classification:
        """The category of ``text`` (an appeal's first message and subject)."""
        facts = customer or CustomerFacts()
        words = lemmas(text)
        present = set(words)
        joined = " ".join(words)
        hits: dict[str, float] = {}
        reasons: list[str] = []
        for rule in self._rules:
            if not rule.applies(channel, facts):
                continue
            score = 0.0
            for word in rule.words & present:
                score += 1.0
                reasons.append(f"{rule.category}: word «{word}»")
            for phrase in rule.phrases:
                if " ".join(phrase) in joined:
                    score += 2.0
                    reasons.append(f"{rule.category}: phrase «{' '.join(phrase)}»")
            for pattern in rule.patterns:
                if pattern.search(text):
                    score += 2.0
                    reasons.append(f"{rule.category}: pattern {pattern.pattern!r}")
            if score:
                hits[rule.category] = hits.get(rule.category, 0.0) + score
        rule_share = _shares(hits)
        learnt = self.model.predict(text) if self.model is not None and self.model.size else {}
        categories = set(rule_share) | set(learnt)
        if not categories:
            return Classification(self._fallback, 0.0, {}, ("nothing recognised",))
        if learnt:
            scores = {
                c: RULE_WEIGHT * rule_share.get(c, 0.0) + MODEL_WEIGHT * learnt.get(c, 0.0)
                for c in categories
            }
            if not rule_share:
                scores = dict(learnt)
        else:
            scores = rule_share
        best = max(scores, key=lambda c: scores[c])
        confidence = scores[best]
        if learnt:
            reasons.append(f"model: {best} {learnt.get(best, 0.0):.0%}")
        if confidence < self._confident:
            return Classification(None, confidence, scores, (*reasons, "not sure enough"))
        return Classification(best, confidence, scores, tuple(reasons))


def _compile(category: str, rule: Recogniser) -> _Compiled:
    words = frozenset(w for keyword in rule.keywords for w in lemmas(keyword)[:1])
    phrases = tuple(tuple(lemmas(p)) for p in rule.phrases if lemmas(p))
    return _Compiled(
        category,
        words,
        phrases,
        tuple(re.compile(p, re.IGNORECASE) for p in rule.patterns),
        frozenset(rule.channels),
        rule.vip,
        frozenset(rule.lifecycle),
        frozenset(rule.warmth),
    )


def _shares(hits: dict[str, float]) -> dict[str, float]:
    """Rule scores as shares that sum to 1 (a clear single hit counts fully)."""
    total = sum(hits.values())
    return {c: v / total for c, v in hits.items()} if total else {}
