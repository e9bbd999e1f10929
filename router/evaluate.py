"""How well the classifier does: a seeded hold-out split of labelled appeals, trained on the
rest (rules plus the model learnt from them), scored on the held-out part; or any classifier
scored on a separate evaluation set."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from router.classify import Classifier, Recogniser
from router.model import TextModel


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Accuracy overall, per category and per language on the held-out part, the commonest
    mistakes, and how it goes at a confidence threshold: how many appeals are left to a person
    and how often the ones answered are right."""

    trained_on: int
    tested_on: int
    accuracy: float
    per_category: dict[str, float] = field(default_factory=dict)
    unsure: int = 0
    confusions: tuple[tuple[str, str, int], ...] = ()
    seeds: int = 0  # of ``trained_on``, shipped seed examples
    per_language: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.0
    abstained: int = 0  # below ``threshold``: left to a person
    answered_right: int = 0  # at or above ``threshold`` and right

    @property
    def answered_accuracy(self) -> float:
        """Accuracy on the appeals the router placed itself at ``threshold``."""
        answered = self.tested_on - self.abstained
        return self.answered_right / answered if answered else 0.0

    @property
    def abstention(self) -> float:
        """The share of appeals left to a person at ``threshold``."""
        return self.abstained / self.tested_on if self.tested_on else 0.0


def split(
    examples: Sequence[tuple[str, str]], held_out: float = 0.2, seed: int = 7
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A stratified split: ``held_out`` of every category goes to the test part."""
    by_category: dict[str, list[tuple[str, str]]] = {}
    for example in examples:
        by_category.setdefault(example[1], []).append(example)
    rng = random.Random(seed)
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    for items in by_category.values():
        shuffled = items[:]
        rng.shuffle(shuffled)
        cut = max(1, round(len(shuffled) * held_out)) if len(shuffled) > 1 else 0
        test += shuffled[:cut]
        train += shuffled[cut:]
    return train, test


def evaluate(
    examples: Sequence[tuple[str, str]],
    recognisers: Sequence[tuple[str, Recogniser]],
    *,
    held_out: float = 0.2,
    seed: int = 7,
    confident: float = 0.0,
    seeds: Sequence[tuple[str, str]] = (),
    threshold: float = 0.0,
    languages: Mapping[str, str] | None = None,
) -> Evaluation:
    """Train on the rest (as agents' choices, on top of ``seeds``), score on the held-out part;
    an unsure verdict counts as wrong. A seed that is one of ``examples`` is left out: the model
    never learns a held-out appeal, and a labelled one counts as the agents' choice."""
    train, test = split(examples, held_out, seed)
    labelled = {text for text, _ in examples}
    kept = [(text, category) for text, category in seeds if text not in labelled]
    model = TextModel.trained(train, seeds=kept)
    classifier = Classifier(recognisers, model, confident=confident)
    result = measure(
        classifier,
        test,
        trained_on=len(train) + len(kept),
        threshold=threshold,
        languages=languages,
    )
    return dataclasses.replace(result, seeds=len(kept))


def measure(
    classifier: Classifier,
    test: Sequence[tuple[str, str]],
    *,
    trained_on: int = 0,
    threshold: float = 0.0,
    languages: Mapping[str, str] | None = None,
) -> Evaluation:
    """How ``classifier`` places labelled appeals it has not learnt from (a held-out part or a
    separate evaluation set); an unsure verdict counts as wrong. At ``threshold`` the verdicts
    less sure than it count as left to a person (``languages`` maps a text to its language)."""
    right: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    by_language: Counter[str] = Counter()
    right_by_language: Counter[str] = Counter()
    confusions: Counter[tuple[str, str]] = Counter()
    unsure = abstained = answered_right = 0
    for text, category in test:
        verdict = classifier.classify(text)
        guess = verdict.category
        seen[category] += 1
        language = (languages or {}).get(text)
        if language:
            by_language[language] += 1
            right_by_language[language] += guess == category
        if verdict.confidence < threshold:
            abstained += 1
        else:
            answered_right += guess == category
        if guess == category:
            right[category] += 1
        elif guess is None:
            unsure += 1
        else:
            confusions[(category, guess)] += 1
    total = sum(seen.values())
    return Evaluation(
        trained_on=trained_on,
        tested_on=total,
        accuracy=sum(right.values()) / total if total else 0.0,
        per_category={c: right[c] / seen[c] for c in sorted(seen)},
        unsure=unsure,
        confusions=tuple((a, b, n) for (a, b), n in confusions.most_common(8)),
        per_language={lang: right_by_language[lang] / n for lang, n in sorted(by_language.items())},
        threshold=threshold,
        abstained=abstained,
        answered_right=answered_right,
    )
