"""A small statistical classifier trained on labelled appeals: multinomial naive Bayes over word
lemmas and lemma pairs. Trained locally in milliseconds; no network, no third-party ML."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from router.words import lemmas

STOP = frozenset(
    {
        "и",
        "в",
        "во",
        "не",
        "на",
        "я",
        "с",
        "со",
        "что",
        "а",
        "по",
        "к",
        "у",
        "за",
        "из",
        "о",
        "об",
        "же",
        "бы",
        "ли",
        "то",
        "это",
        "вы",
        "мы",
        "он",
        "она",
        "они",
        "как",
        "так",
        "но",
        "да",
        "нет",
        "или",
        "от",
        "до",
        "для",
        "при",
        "мне",
        "меня",
        "вас",
        "нам",
        "мой",
        "моя",
        "мои",
        "ваш",
        "ваша",
        "ваши",
        "здравствуйте",
        "добрый",
        "день",
        "пожалуйста",
        "спасибо",
        "the",
        "a",
        "an",
        "to",
        "of",
        "in",
        "on",
        "for",
        "is",
        "are",
        "i",
        "you",
        "my",
        "your",
        "please",
        "hello",
        "hi",
        "і",
        "й",
        "та",
        "що",
        "це",
        "ви",
        "ми",
        "мені",
        "мій",
        "добрий",
        "будь",
        "ласка",
        "дякую",
    }
)


def features(text: str) -> list[str]:
    """Lemmas without stop words, adjacent pairs (``вернуть_деньги``), and the 3–5 letter pieces
    of each lemma, which carry typos and Ukrainian/Russian cousins («повернути» ~ «вернуть»)."""
    words = [w for w in lemmas(text) if w not in STOP and len(w) > 1]
    pieces = []
    for word in words:
        padded = f"<{word}>"
        for n in (3, 4, 5):
            pieces += [padded[i : i + n] for i in range(len(padded) - n + 1)]
    return words + [f"{a}_{b}" for a, b in itertools.pairwise(words)] + pieces


@dataclass
class NaiveBayes:
    """Multinomial naive Bayes with Laplace smoothing; ``predict`` gives probabilities."""

    alpha: float = 0.5
    class_counts: Counter[str] = field(default_factory=Counter)
    feature_counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    totals: Counter[str] = field(default_factory=Counter)
    vocabulary: set[str] = field(default_factory=set)

    @classmethod
    def trained(cls, examples: Iterable[tuple[str, str]], alpha: float = 0.5) -> NaiveBayes:
        """A model trained on (text, category) pairs."""
        model = cls(alpha=alpha)
        for text, category in examples:
            model.learn(text, category)
        return model

    def learn(self, text: str, category: str) -> None:
        """Add one labelled example."""
        found = features(text)
        self.class_counts[category] += 1
        self.feature_counts[category].update(found)
        self.totals[category] += len(found)
        self.vocabulary.update(found)

    @property
    def size(self) -> int:
        """How many examples the model has seen."""
        return sum(self.class_counts.values())

    def predict(self, text: str) -> dict[str, float]:
        """Probability of each known category for ``text`` (they sum to 1); empty if untrained."""
        if not self.class_counts:
            return {}
        found = [f for f in features(text) if f in self.vocabulary]
        total = self.size
        vocab = len(self.vocabulary) or 1
        logs: dict[str, float] = {}
        for category, count in self.class_counts.items():
            counts = self.feature_counts[category]
            denominator = self.totals[category] + self.alpha * vocab
            score = math.log(count / total)
            for feature in found:
                score += math.log((counts[feature] + self.alpha) / denominator)
            logs[category] = score
        top = max(logs.values())
        exp = {c: math.exp(v - top) for c, v in logs.items()}
        norm = sum(exp.values())
        return {c: v / norm for c, v in exp.items()}


def accuracy(
    predict: Sequence[tuple[str, str]], guess: dict[str, str]
) -> tuple[float, dict[str, float]]:
    """Overall and per-category accuracy of ``guess`` (text → category) on labelled pairs."""
    right: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for text, category in predict:
        seen[category] += 1
        right[category] += guess.get(text) == category
    overall = sum(right.values()) / max(1, sum(seen.values()))
    return overall, {c: right[c] / seen[c] for c in seen}
