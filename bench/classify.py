"""Classifier speed: one appeal's category from the shipped rules and the seed-trained model.

Run by hand (not a test):  .venv/bin/python -m bench.classify [--rounds 5]
The shipped seed examples are the appeals; the first round meets each word for the first time
(the dictionaries' caches are cold), later rounds know the words, as a running desk knows common
ones.
"""

from __future__ import annotations

import argparse
import statistics
import time

from desk.config.settings import Settings, categories_of, default_seed_examples
from router.classify import Classifier
from router.model import TextModel
from router.words import read


def run(rounds: int) -> None:
    """Classify every seed appeal ``rounds`` times; print milliseconds per appeal."""
    settings = Settings()
    texts = [text for text, _ in default_seed_examples()]
    started = time.perf_counter()
    model = TextModel.trained([], seeds=default_seed_examples())
    print(f"trained on {model.size} seed examples in {time.perf_counter() - started:.1f} s")
    rules = [(c.id, c.match) for c in categories_of(settings)]
    classifier = Classifier(rules, model, confident=settings.router.confident)
    for round_ in range(1, rounds + 1):
        took = []
        for text in texts:
            read.cache_clear()  # each appeal is new to the desk; its words mostly are not
            start = time.perf_counter()
            classifier.classify(text)
            took.append((time.perf_counter() - start) * 1000)
        took.sort()
        print(
            f"round {round_}: {len(took)} appeals, mean {statistics.fmean(took):.2f} ms, "
            f"median {took[len(took) // 2]:.2f} ms, 95% under {took[int(len(took) * 0.95)]:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    run(parser.parse_args().rounds)


if __name__ == "__main__":
    main()
