"""A small statistical classifier trained on labelled appeals: multinomial logistic regression
over TF-IDF weighted word lemmas, lemma pairs, letter n-grams and a few signs of tone («!!!»,
CAPS, emoji). Pure Python, trained locally in under a second on the ~650 labelled appeals; no
network, no third-party ML."""

from __future__ import annotations

import itertools
import math
import operator
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from router.words import NEGATIONS, lemma, negated, read

# Words too common to tell appeals apart. «Спасибо» and «пожалуйста» stay: thanks are the
# commonest sign of feedback, «пришлите, пожалуйста» of a request for papers, and the model
# learns how much a polite word at the end of any appeal is worth.
STOP = frozenset(
    {
        "и",
        "в",
        "во",
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
    }
    # English function words as the stemmer reads them («does» is «doe»): without them every
    # «could you … please» looked like a request for papers, the English appeals the seeds
    # hold most of.
    | {
        lemma(word)
        for line in (
            "be am was were been being do does did have has had it its this that these those",
            "with at by from about as me we us our they them their can could would will should",
            "there so if some also",
        )
        for word in line.split()
    }
)
_GLAD = frozenset("👍🔥❤😍🥰😊🙂😀😃👌⭐✨👏💪🎉")
_ANGRY = frozenset("😡😠🤬👎😤😞😢😒🙄")
EPOCHS = 6
GRAMS = (3, 5)
SPAN = 4  # letters of the written text in one piece
# A feature of a single appeal only tells that appeal apart; dropped once there are plenty.
MIN_COUNT = 2
PLENTY = 100
# While the model is this small, a new example refits it from scratch (a fraction of a second);
# a larger one is nudged by the new example and refitted by the periodic retrain.
REFIT_BELOW = 200
NUDGES = 10
LEARNING_RATE = 1.0
L2 = 1e-3
# Regularised and briefly trained, the model is too modest: held-out appeals it gives 40% are
# right 80% of the time. Scaling its scores by this much (times the text's evidence, below) makes
# its probabilities honest (lowest held-out log-loss over many splits of the labelled set).
SHARPNESS = 3.0
# An agent's choice counts this many times a shipped seed example: where the desk sorts appeals
# its own way, its agents win over the seeds (two choices against ~1200 seeds already do).
AGENT_WEIGHT = 4.0
# What a word tells is judged as if it had been seen in this many more appeals spread evenly over
# the categories: a word seen in appeals of every kind («вопрос», «пожалуйста»), or only once or
# twice, tells little; one seen often in one kind of appeal («вернуть») tells much.
WORD_PRIOR = 8.0
# A word the model never met counts this much: it may be a product or a typo the model still
# reads by its letter pieces («посудомойку»), unlike a word it knows to tell little.
UNSEEN = 0.5
# The model's sharpness is scaled by E / (E + EVIDENCE), E being what the text's words tell
# (each 0 to 1): a text of words that tell nothing («помогите пожалуйста») leaves the model
# unsure. With SHARPNESS these gave the lowest held-out log-loss that keeps such texts unsure.
EVIDENCE = 0.5


def features(text: str) -> Counter[str]:
    """What the model sees in ``text``: lemmas without stop words (a negated one as
    ``не_подойти``), adjacent pairs (``вернуть_деньга``), the 3 and 5 letter pieces of each lemma,
    which carry typos and Ukrainian/Russian cousins («повернути» ~ «вернуть»), 4 letter pieces of
    the words as written, across word boundaries («@у вас», «@ас б»), and tone."""
    return _read(text)[0]


def _read(text: str) -> tuple[Counter[str], list[str]]:
    """The features of ``text`` and its words (lemmas without stop words) among them."""
    found: Counter[str] = Counter()
    reading = read(text)
    all_words = list(reading.lemmas)
    words = [
        f"не_{word}" if no else word
        for word, no in zip(all_words, negated(all_words), strict=True)
        if word not in STOP and word not in NEGATIONS and len(word) > 1
    ]
    found.update(words)
    found.update(f"{a}_{b}" for a, b in itertools.pairwise(words))
    for word in words:
        if word.startswith("#"):
            continue
        padded = f"<{word}>"
        for n in GRAMS:
            found.update(f"#{padded[i : i + n]}" for i in range(len(padded) - n + 1))
    written = f" {' '.join(w for w in reading.words if not w.isdigit())} "
    found.update(f"@{written[i : i + SPAN]}" for i in range(len(written) - SPAN + 1))
    letters = [c for c in text if c.isalpha()]
    tone = {
        "!tone:exclaim": "!" in text,
        "!tone:question": "?" in text,
        "!tone:caps": len(letters) > 5 and sum(c.isupper() for c in letters) > 0.6 * len(letters),
        "!tone:glad": any(c in _GLAD for c in text),
        "!tone:angry": any(c in _ANGRY for c in text),
        "!tone:wordless": not words,
    }
    found.update(name for name, present in tone.items() if present)
    return found, words


@dataclass
class TextModel:
    """Multinomial logistic regression on TF-IDF features; ``predict`` gives probabilities.

    ``seeds`` are the shipped labelled appeals a new desk starts from, ``examples`` the agents'
    choices, which weigh more. ``learn`` takes a new choice into account at once; ``trained``
    (the periodic retrain) fits everything again from scratch."""

    epochs: int = EPOCHS
    learning_rate: float = LEARNING_RATE
    l2: float = L2
    examples: list[tuple[str, str]] = field(default_factory=list)
    seeds: list[tuple[str, str]] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    idf: dict[str, float] = field(default_factory=dict)
    weights: dict[str, list[float]] = field(default_factory=dict)
    bias: list[float] = field(default_factory=list)
    # How many appeals of each category every word was seen in (weighted), and what the word
    # tells: 0 for a word seen everywhere or hardly ever, near 1 for one seen often in one place.
    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    telling: dict[str, float] = field(default_factory=dict)
    _agent_weight: float = field(default=1.0, init=False, repr=False)
    _step: int = field(default=0, init=False, repr=False)

    @classmethod
    def trained(
        cls,
        examples: Iterable[tuple[str, str]],
        epochs: int = EPOCHS,
        *,
        seeds: Iterable[tuple[str, str]] = (),
    ) -> TextModel:
        """A model trained on agents' (text, category) pairs on top of ``seeds``."""
        model = cls(epochs=epochs)
        model.fit(list(examples), list(seeds))
        return model

    def state(self) -> dict[str, Any]:
        """Everything the model has learnt, as plain JSON-ready data (``from_state`` reads it
        back into a model that predicts and learns exactly as this one)."""
        return {
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "examples": self.examples,
            "seeds": self.seeds,
            "categories": self.categories,
            "idf": self.idf,
            "weights": self.weights,
            "bias": self.bias,
            "seen": self.seen,
            "telling": self.telling,
            "agent_weight": self._agent_weight,
            "step": self._step,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TextModel:
        """The model ``state`` was taken from; ``ValueError`` if ``state`` is not one."""
        try:
            model = cls(
                epochs=int(state["epochs"]),
                learning_rate=float(state["learning_rate"]),
                l2=float(state["l2"]),
                examples=[(str(t), str(c)) for t, c in state["examples"]],
                seeds=[(str(t), str(c)) for t, c in state["seeds"]],
                categories=[str(c) for c in state["categories"]],
                idf={str(k): float(v) for k, v in state["idf"].items()},
                weights={str(k): [float(w) for w in v] for k, v in state["weights"].items()},
                bias=[float(b) for b in state["bias"]],
                seen={
                    str(k): {str(c): float(n) for c, n in v.items()}
                    for k, v in state["seen"].items()
                },
                telling={str(k): float(v) for k, v in state["telling"].items()},
            )
            model._agent_weight = float(state["agent_weight"])
            model._step = int(state["step"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not a model's state: {e!r}") from e
        width = len(model.categories)
        if len(model.bias) != width or any(len(row) != width for row in model.weights.values()):
            raise ValueError("not a model's state: weights do not match the categories")
        return model

    @property
    def size(self) -> int:
        """How many examples the model has seen, seeds included."""
        return len(self.examples) + len(self.seeds)

    def fit(
        self, examples: Sequence[tuple[str, str]], seeds: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Learn from scratch: weights for every category of ``examples`` and ``seeds``."""
        self.examples = list(examples)
        self.seeds = list(seeds)
        everything = [*self.seeds, *self.examples]
        seed_weight, self._agent_weight = _weights(len(self.seeds), len(self.examples))
        weights = [seed_weight] * len(self.seeds) + [self._agent_weight] * len(self.examples)
        self.categories = sorted({category for _, category in everything})
        self.weights = {}
        self.bias = [0.0] * len(self.categories)
        self._step = 0
        read_all = [_read(text) for text, _ in everything]
        appearances = Counter(name for found, _ in read_all for name in found)
        total = len(everything)
        least = MIN_COUNT if total >= PLENTY else 1
        self.idf = {
            name: math.log((1 + total) / (1 + n)) + 1.0
            for name, n in appearances.items()
            if n >= least
        }
        self.seen = {}
        for (_, words), (_, category), weight in zip(read_all, everything, weights, strict=True):
            for word in set(words):
                counted = self.seen.setdefault(word, {})
                counted[category] = counted.get(category, 0.0) + weight
        width = len(self.categories)
        self.telling = {word: _telling(n, width) for word, n in self.seen.items()}
        index = {c: i for i, c in enumerate(self.categories)}
        data = [
            (self._vector(found), index[category], weight)
            for (found, _), (_, category), weight in zip(read_all, everything, weights, strict=True)
        ]
        rng = random.Random(0)
        for _ in range(self.epochs):
            rng.shuffle(data)
            for vector, target, weight in data:
                self._update(vector, target, weight)

    def learn(self, text: str, category: str) -> None:
        """Add one agent's choice: refit a small model; nudge a large one until it places the
        example as the agent did (a few steps at most)."""
        self.examples.append((text, category))
        if self.size < REFIT_BELOW:
            self.fit(self.examples, self.seeds)
            return
        if category not in self.categories:
            self.categories.append(category)
            self.bias.append(0.0)
            for row in self.weights.values():
                row.append(0.0)
        found, words = _read(text)
        rare = math.log(1 + self.size) + 1.0
        for name in found:
            self.idf.setdefault(name, rare)
        width = len(self.categories)
        for word in set(words):
            counted = self.seen.setdefault(word, {})
            counted[category] = counted.get(category, 0.0) + self._agent_weight
            self.telling[word] = _telling(counted, width)
        vector = self._vector(found)
        target = self.categories.index(category)
        for _ in range(NUDGES):
            self._update(vector, target, self._agent_weight)
            scores = self._scores(vector)
            if max(scores) == scores[target]:
                break

    def predict(self, text: str) -> dict[str, float]:
        """Probability of each known category for ``text`` (they sum to 1); empty if untrained.

        A text whose words tell little («помогите пожалуйста», «вопрос») is drawn towards «any
        category»: the model is as sure as its evidence."""
        if not self.categories:
            return {}
        found, words = _read(text)
        evidence = sum(self.telling.get(word, UNSEEN) for word in set(words))
        sharpness = SHARPNESS * evidence / (evidence + EVIDENCE)
        chances = _softmax(self._scores(self._vector(found)), sharpness)
        return dict(zip(self.categories, chances, strict=True))

    def _vector(self, found: Counter[str]) -> dict[str, float]:
        """Sublinear TF-IDF, scaled to unit length; features the model does not know are
        dropped."""
        vector: dict[str, float] = {}
        for name, count in found.items():
            idf = self.idf.get(name)
            if idf is not None:
                vector[name] = (1.0 + math.log(count)) * idf
        norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        return {name: v / norm for name, v in vector.items()}

    def _scores(self, vector: dict[str, float]) -> list[float]:
        """Each category's score (log-odds up to a constant) for a feature vector: its bias
        plus the known features' weights, added in the vector's order (a category at a time,
        the products in C: several times faster than a list of scores per feature)."""
        weights = self.weights
        rows: list[list[float]] = []
        values: list[float] = []
        for name, value in vector.items():
            row = weights.get(name)
            if row is not None:
                rows.append(row)
                values.append(value)
        if not rows:
            return self.bias[:]
        return [
            sum(map(operator.mul, values, column), start=bias)
            for bias, column in zip(self.bias, zip(*rows, strict=True), strict=True)
        ]

    def _update(self, vector: dict[str, float], target: int, weight: float = 1.0) -> None:
        """One step of stochastic gradient descent on the cross-entropy of one example that
        counts ``weight`` times."""
        self._step += 1
        rate = self.learning_rate / (1.0 + self.l2 * self.learning_rate * self._step)
        width = len(self.categories)
        rows = [self.weights.setdefault(name, [0.0] * width) for name in vector]
        scores = self.bias[:]
        for row, value in zip(rows, vector.values(), strict=True):
            scores = [s + value * w for s, w in zip(scores, row, strict=True)]
        error = [weight * e for e in _softmax(scores)]
        error[target] -= weight
        self.bias = [b - 0.1 * rate * e for b, e in zip(self.bias, error, strict=True)]
        shrink = 1.0 - rate * self.l2
        for row, value in zip(rows, vector.values(), strict=True):
            row[:] = [w * shrink - rate * value * e for w, e in zip(row, error, strict=True)]


def _weights(seeds: int, agents: int) -> tuple[float, float]:
    """What a seed and an agent's choice count for: an agent's choice ``AGENT_WEIGHT`` seeds,
    and on average an example counts once (a model of seeds alone, or of agents' choices alone,
    is trained as if nothing were weighted)."""
    if not agents:
        return 1.0, AGENT_WEIGHT
    if not seeds:
        return 1.0 / AGENT_WEIGHT, 1.0
    seed = (seeds + agents) / (seeds + agents * AGENT_WEIGHT)
    return seed, seed * AGENT_WEIGHT


def _telling(seen: dict[str, float], width: int) -> float:
    """How much a word seen ``seen`` times per category tells about the category: one minus
    the entropy of its smoothed category shares (``WORD_PRIOR`` appeals spread evenly)."""
    if width < 2:
        return 1.0
    total = sum(seen.values()) + WORD_PRIOR
    even = WORD_PRIOR / width / total
    entropy = -(width - len(seen)) * even * math.log(even)
    for n in seen.values():
        share = n / total + even
        entropy -= share * math.log(share)
    return max(0.0, 1.0 - entropy / math.log(width))


def _softmax(scores: list[float], sharpness: float = 1.0) -> list[float]:
    """Scores as probabilities; ``sharpness`` above 1 makes the likeliest likelier."""
    top = max(scores)
    exp = [math.exp(sharpness * (s - top)) for s in scores]
    norm = sum(exp)
    return [e / norm for e in exp]


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
