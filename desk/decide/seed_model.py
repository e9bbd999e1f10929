"""The router's model of the shipped seeds alone, trained once per machine instead of at every
start: kept in memory for the process and on disk for the next one.

Training it is seconds of CPU (7 s on a slow machine); every desk without agents' choices yet
(a new one, each test's) starts from it, and so does every ``serve`` and ``worker`` process at
its start. The file is JSON in the user's cache directory (``$XDG_CACHE_HOME/appeal-desk``,
else ``~/.cache/appeal-desk``), named by a digest of everything the model depends on: the seeds,
the router's code, the word libraries' versions, the Python version. A file that cannot be read
or written is no error: the model is trained as it would be without a cache."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import router.model
import router.words
from router.model import TextModel

log = logging.getLogger(__name__)

# Bumped when the file's layout changes.
FORMAT = 1
# Files of other seed sets (other desks' categories, older code) kept beside the newest ones.
KEEP = 8
PREFIX = "router-seeds-"
# What a trained model depends on besides its seeds: the router's code and the word libraries.
_SOURCES = (Path(str(router.model.__file__)), Path(str(router.words.__file__)))
_LIBRARIES = ("pymorphy3", "pymorphy3-dicts-ru", "pymorphy3-dicts-uk", "snowballstemmer")


@lru_cache(maxsize=KEEP)
def seeded_model(seeds: tuple[tuple[str, str], ...]) -> TextModel:
    """The model of ``seeds`` alone, read from the cache or trained (and then cached). Callers
    that let it learn take a copy: the one returned is shared."""
    path = cache_dir() / f"{PREFIX}{fingerprint(seeds)}.json"
    model = _read(path)
    if model is None:
        model = TextModel.trained([], seeds=seeds)
        _write(path, model)
    return model


def cache_dir() -> Path:
    """Where the desk keeps what it can compute again: the XDG cache directory's ``appeal-desk``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "appeal-desk"


def fingerprint(seeds: tuple[tuple[str, str], ...]) -> str:
    """A digest of the seeds and of everything else a model trained on them depends on."""
    digest = hashlib.sha256(f"{FORMAT} {sys.version}".encode())
    for source in _SOURCES:
        digest.update(source.read_bytes())
    for name in _LIBRARIES:
        try:
            digest.update(f"{name} {metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name} -".encode())
    digest.update(json.dumps(seeds, ensure_ascii=False).encode())
    return digest.hexdigest()[:32]


def _read(path: Path) -> TextModel | None:
    try:
        with path.open(encoding="utf-8") as f:
            model = TextModel.from_state(json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # JSON's own errors are ValueErrors too
        log.warning("the router's cached model is unreadable; training it again: %s", e)
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # kept as one of the newest
    log.info("router model of the seeds read from the cache", extra={"path": str(path)})
    return model


def _write(path: Path, model: TextModel) -> None:
    """Write the file whole or not at all (another process may read it meanwhile), then drop
    the oldest files past ``KEEP``."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(model.state(), f, ensure_ascii=False)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _drop_oldest(path.parent)
    except OSError as e:
        log.warning("the router's model could not be cached (it is trained at every start): %s", e)


def _drop_oldest(directory: Path) -> None:
    def age(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    files = sorted(directory.glob(f"{PREFIX}*.json"), key=age, reverse=True)
    for old in files[KEEP:]:
        old.unlink(missing_ok=True)
