"""The router's seeds model is trained once per machine: the next process reads it back from the
cache directory and routes exactly as a freshly trained one; a broken or unwritable cache only
costs the training."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from desk.config.settings import default_seed_examples
from desk.decide import seed_model
from desk.decide.seed_model import KEEP, cache_dir, fingerprint, seeded_model
from router.model import TextModel

# Every fourth shipped seed: every category, a second of training instead of several.
SEEDS = default_seed_examples()[::4]
ASKED = [
    "где мой заказ? трек не обновляется уже неделю",
    "верните деньги, товар пришёл разбитый!!!",
    "пришлите, пожалуйста, закрывающие документы за март",
    "спасибо, всё пришло вовремя",
    "хочу оформить возврат",
    "",
]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cache of this test's own; the process's memory of models forgotten around it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    seeded_model.cache_clear()
    yield tmp_path / "xdg" / "appeal-desk"
    seeded_model.cache_clear()


def cached_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("router-seeds-*.json"))


def test_the_next_process_reads_the_model_and_routes_exactly_alike(
    cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trained = seeded_model(SEEDS)
    assert cache_dir() == cache
    [file] = cached_files(cache)
    assert file.name == f"router-seeds-{fingerprint(SEEDS)}.json"

    seeded_model.cache_clear()  # as a new process would start
    with caplog.at_level(logging.INFO, logger="desk.decide.seed_model"):
        read = seeded_model(SEEDS)
    assert "read from the cache" in caplog.text
    assert read is not trained
    assert read.state() == trained.state()
    assert [read.predict(text) for text in ASKED] == [trained.predict(text) for text in ASKED]
    # It learns an agent's choice as the trained one does.
    for model in (read, trained):
        model.learn("посылка у соседа, курьер перепутал дверь", "order_status")
    assert read.state() == trained.state()
    assert read.state() == TextModel.from_state(json.loads(json.dumps(read.state()))).state()


def test_a_broken_cache_file_is_trained_again_and_replaced(
    cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = seeded_model(SEEDS).state()
    [file] = cached_files(cache)
    for broken in ('{"epochs": 6, "weights": ', '{"epochs": "many"}', "[]", "\x00\xff"):
        file.write_text(broken, encoding="utf-8", errors="surrogateescape")
        seeded_model.cache_clear()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="desk.decide.seed_model"):
            assert seeded_model(SEEDS).state() == expected
        assert "unreadable; training it again" in caplog.text
        assert json.loads(file.read_text(encoding="utf-8")) == json.loads(json.dumps(expected))


def test_weights_of_another_width_are_not_taken_for_a_model(cache: Path) -> None:
    state = seeded_model(SEEDS).state()
    state["bias"] = state["bias"][:-1]
    with pytest.raises(ValueError, match="do not match the categories"):
        TextModel.from_state(state)


def test_an_unwritable_cache_costs_only_the_training(
    cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("a file where the directory should be", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="desk.decide.seed_model"):
        model = seeded_model(SEEDS)
    assert "could not be cached" in caplog.text
    assert model.predict(ASKED[0])
    assert cache.read_text(encoding="utf-8") == "a file where the directory should be"


def test_other_seeds_or_other_code_make_another_file_and_only_the_newest_are_kept(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sets = [SEEDS[i : i + 25] + SEEDS[-25:] for i in range(0, 25 * (KEEP + 2), 25)]
    names = [fingerprint(seeds) for seeds in sets]
    assert len(set(names)) == len(sets)
    for seeds in sets:
        seeded_model(seeds)
    assert [f.name for f in cached_files(cache)] == sorted(
        f"router-seeds-{name}.json" for name in names[-KEEP:]
    )
    assert not list(cache.glob(".tmp-*"))

    # A change to the router's code is another model: its file is not read for the old one.
    changed = tmp_path / "words.py"
    shutil.copy(seed_model._SOURCES[1], changed)
    with changed.open("a", encoding="utf-8") as f:
        f.write("\n# a change\n")
    before = fingerprint(SEEDS)
    monkeypatch.setattr(seed_model, "_SOURCES", (seed_model._SOURCES[0], changed))
    assert fingerprint(SEEDS) != before
