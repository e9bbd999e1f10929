"""Which category an appeal belongs to: configured recognisers (words in any form or with a typo,
phrases, regular expressions, volumes of goods, channel, customer facts) together with the model
learnt from agents."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator

from router.model import TextModel
from router.words import (
    NEGATIONS,
    TYPO_LENGTH,
    Spelling,
    counts,
    forms,
    known,
    lemmas,
    negated,
    read,
)

# Log-odds one rule point (a word 1, a phrase or a pattern 2) adds to its category on top of the
# model's log-probability: the best held-out accuracy over many splits of the labelled set.
RULE_WEIGHT = 2.5
PRIOR_EXAMPLES = 20  # the model counts fully once it has seen many more appeals than this
CONFIDENT = 0.45  # below this the appeal waits for a person to pick the category
# A rule word counts as far as the labelled appeals bear it out: its point is the share of the
# appeals with it that are of its category, as if this many more had been. A word the appeals
# hardly know keeps its full point; one agents keep filing elsewhere counts less.
RULE_PRIOR = 4.0


class Recogniser(BaseModel):
    """What makes a text belong to a category; words match in any form («вернула» ~ «вернуть»)
    and with one typo in a long word («вазврат»), but not right after a negation («не подошёл» is
    no «подходить»); a phrase may have one word inserted («заказ ещё не пришёл»)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keywords: list[str] = Field(default_factory=list)
    phrases: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    volume: int | None = Field(
        default=None, ge=2, description="goods counted in this many or more («40 кресел»)"
    )
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
    phrases: tuple[tuple[str, ...], ...]  # each phrase as lemmas, read as ru and as uk
    needs: tuple[tuple[frozenset[str], ...], ...]  # the words each reading of a phrase needs
    # The phrases (their indexes) a reading of which starts with a word: only these may match
    # a text with that word (an appeal is checked against a few phrases, not all of them).
    openings: dict[str, tuple[int, ...]]
    patterns: tuple[re.Pattern[str], ...]
    volume: int | None
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
    """Rules and the learnt model vote together; ``fallback`` is used when nothing fits.

    Each rule hit adds ``rule_weight`` to its category's log-odds on top of the model's
    log-probability, so one clear rule outweighs a hesitant model and a confident model outweighs
    a stray word. A model that has seen few appeals is shrunk towards «any category»."""

    def __init__(
        self,
        recognisers: Sequence[tuple[str, Recogniser]],
        model: TextModel | None = None,
        *,
        fallback: str | None = None,
        confident: float = CONFIDENT,
        rule_weight: float = RULE_WEIGHT,
    ) -> None:
        self._rules = [_compile(category, r) for category, r in recognisers]
        self._vocabulary = frozenset(
            word
            for rule in self._rules
            for word in (*rule.words, *(w for rs in rule.phrases for r in rs for w in r.split()))
        )
        self._spelling = Spelling(self._vocabulary)
        self.model = model
        self._fallback = fallback
        self._confident = confident
        self._rule_weight = rule_weight

    def classify(
        self, text: str, *, channel: str = "", customer: CustomerFacts | None = None
    ) -> Classification:
        """The category of ``text`` (an appeal's first message and subject)."""
        facts = customer or CustomerFacts()
        hits, reasons = self.rule_hits(text, channel=channel, customer=facts)
        model = self.model
        learnt = model.predict(text) if model is not None and model.size else {}
        if not hits and not learnt:
            return Classification(self._fallback, 0.0, {}, ("nothing recognised",))
        if learnt and model is not None:
            known = {rule.category for rule in self._rules} | set(learnt)
            trust = model.size / (model.size + PRIOR_EXAMPLES)
            logits = {
                c: math.log(trust * learnt.get(c, 0.0) + (1 - trust) / len(known))
                + self._rule_weight * hits.get(c, 0.0)
                for c in known
            }
            scores = _softmax(logits)
        else:
            scores = _shares(hits)
        best = max(scores, key=lambda c: scores[c])
        confidence = scores[best]
        if learnt:
            reasons.append(f"model: {best} {learnt.get(best, 0.0):.0%}")
        if confidence < self._confident:
            return Classification(None, confidence, scores, (*reasons, "not sure enough"))
        return Classification(best, confidence, scores, tuple(reasons))

    def rule_hits(
        self, text: str, *, channel: str = "", customer: CustomerFacts | None = None
    ) -> tuple[dict[str, float], list[str]]:
        """How strongly the configured rules point at each category, and which hits did it: a
        word 1 (less when the labelled appeals often file it elsewhere), a phrase, a pattern or
        a volume 2; a negated word («не подошёл») does not count."""
        facts = customer or CustomerFacts()
        words, typed, other = self._spelled(text)
        present = {
            form
            for word, no, alternatives in zip(words, negated(words), other, strict=True)
            if not no
            for form in (word, *alternatives)
        }
        joined = f" {' '.join(words)} "
        have = set(words)
        counted = counts(text) if any(r.volume for r in self._rules) else []
        hits: dict[str, float] = {}
        reasons: list[str] = []
        for rule in self._rules:
            if not rule.applies(channel, facts):
                continue
            score = 0.0
            for word in sorted(rule.words & present):
                score += self._borne_out(word, rule.category)
                spelt = f" (typed «{typed[word]}»)" if word in typed else ""
                reasons.append(f"{rule.category}: word «{word}»{spelt}")
            matched: set[str] = set()  # «не подошёл» and «не подошла» read alike: count once
            candidates = {i for word in have & rule.openings.keys() for i in rule.openings[word]}
            for index in sorted(candidates):
                readings, needs = rule.phrases[index], rule.needs[index]
                here = [r for r, need in zip(readings, needs, strict=True) if need <= have]
                found = next((r for r in here if r not in matched and f" {r} " in joined), None)
                apart = ""
                if found is None:
                    found = next((r for r in here if r not in matched and _apart(r, words)), None)
                    apart = " (a word apart)"
                if found is not None:
                    matched.add(found)
                    score += 2.0
                    reasons.append(f"{rule.category}: phrase «{found}»{apart}")
            for pattern in rule.patterns:
                if pattern.search(text):
                    score += 2.0
                    reasons.append(f"{rule.category}: pattern {pattern.pattern!r}")
            if rule.volume is not None:
                many = next(((n, what) for n, what in counted if n >= rule.volume), None)
                if many is not None:
                    score += 2.0
                    reasons.append(f"{rule.category}: volume «{many[0]} {many[1]}»")
            if score:
                hits[rule.category] = hits.get(rule.category, 0.0) + score
        return hits, reasons

    def _borne_out(self, word: str, category: str) -> float:
        """What a rule word of ``category`` counts (1 at most): the share of the model's
        labelled appeals with ``word`` that are of ``category``, drawn towards 1."""
        seen = self.model.seen.get(word) if self.model is not None else None
        if not seen:
            return 1.0
        return (seen.get(category, 0.0) + RULE_PRIOR) / (sum(seen.values()) + RULE_PRIOR)

    def _spelled(self, text: str) -> tuple[list[str], dict[str, str], list[frozenset[str]]]:
        """The lemmas of ``text`` with misspelt words read as the lexicon word one letter away
        («вазврат» as «возврат»), what each corrected word was typed as, and the other forms each
        word may have («примете»: «примета», but maybe «принять»). Only long words the
        dictionary does not know are corrected: a real word is never read as another."""
        reading = read(text)
        words = list(reading.lemmas)
        typed: dict[str, str] = {}
        other = [forms(w, reading.ukrainian) for w in reading.words]
        for i, (spelt, word) in enumerate(zip(reading.words, reading.lemmas, strict=True)):
            if (
                word in self._vocabulary
                or len(spelt) < TYPO_LENGTH
                or spelt.isascii()
                or known(spelt, reading.ukrainian)
            ):
                continue
            fixed = self._spelling.closest(spelt) or self._spelling.closest(word)
            if fixed is not None:
                words[i] = fixed
                typed[fixed] = spelt
        return words, typed, other


def _compile(category: str, rule: Recogniser) -> _Compiled:
    """A rule ready to match: its words and phrases as lemmas, read both as Russian and as
    Ukrainian (a keyword such as «дякую» has no Ukrainian letter to tell)."""
    words: set[str] = set()
    phrases: list[tuple[str, ...]] = []
    for text in rule.keywords:
        for ukrainian in (False, True):
            words.update(lemmas(text, ukrainian=ukrainian, latin_as_russian=False)[:1])
    for text in rule.phrases:
        readings = {
            " ".join(lemmas(text, ukrainian=ukrainian, latin_as_russian=False))
            for ukrainian in (False, True)
        }
        found = tuple(sorted(r for r in readings if r))
        if found and found not in phrases:
            phrases.append(found)
    openings: dict[str, set[int]] = {}
    for index, phrase in enumerate(phrases):
        for reading in phrase:
            openings.setdefault(reading.split()[0], set()).add(index)
    return _Compiled(
        category,
        frozenset(words),
        tuple(phrases),
        tuple(tuple(frozenset(r.split()) for r in readings) for readings in phrases),
        {word: tuple(sorted(at)) for word, at in openings.items()},
        tuple(re.compile(p, re.IGNORECASE) for p in rule.patterns),
        rule.volume,
        frozenset(rule.channels),
        rule.vip,
        frozenset(rule.lifecycle),
        frozenset(rule.warmth),
    )


def _apart(phrase: str, words: list[str]) -> bool:
    """Whether the lemmas ``words`` hold ``phrase`` with one word between two of its words
    («заказ ещё не пришёл» holds «заказ не прийти»); a negation is never that word (it would
    turn the meaning) and binds to the word right after it («не понять мой заказ» does not hold
    «не мой заказ»)."""
    wanted = phrase.split()
    if len(wanted) < 2:
        return False
    for start, word in enumerate(words):
        if word != wanted[0]:
            continue
        at = start
        for next_word in wanted[1:]:
            if at + 1 < len(words) and words[at + 1] == next_word:
                at += 1
            elif (
                at + 2 < len(words)
                and words[at + 2] == next_word
                and words[at] not in NEGATIONS
                and words[at + 1] not in NEGATIONS
            ):
                at += 2
            else:
                break
        else:
            return True
    return False


def _shares(hits: dict[str, float]) -> dict[str, float]:
    """Rule scores as shares that sum to 1 (a clear single hit counts fully)."""
    total = sum(hits.values())
    return {c: v / total for c, v in hits.items()} if total else {}


def _softmax(logits: dict[str, float]) -> dict[str, float]:
    """Log-odds as probabilities that sum to 1."""
    top = max(logits.values())
    exp = {c: math.exp(v - top) for c, v in logits.items()}
    norm = sum(exp.values())
    return {c: v / norm for c, v in exp.items()}
