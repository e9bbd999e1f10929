"""Words of an appeal as the router compares them: lower case, ё→е, lemmas (Russian and
Ukrainian by pymorphy3, English by the Snowball stemmer)."""

from __future__ import annotations

import re
from functools import lru_cache

import pymorphy3
import snowballstemmer

_WORD = re.compile(r"[a-zа-яёіїєґ0-9']+", re.IGNORECASE)
_UKRAINIAN = re.compile(r"[іїєґ]")
_CYRILLIC = re.compile(r"[а-яё]")


@lru_cache(maxsize=1)
def _russian() -> pymorphy3.MorphAnalyzer:
    return pymorphy3.MorphAnalyzer(lang="ru")


@lru_cache(maxsize=1)
def _ukrainian() -> pymorphy3.MorphAnalyzer:
    return pymorphy3.MorphAnalyzer(lang="uk")


@lru_cache(maxsize=1)
def _english() -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer("english")


def tokens(text: str) -> list[str]:
    """The words of ``text``, lower-cased, ё as е."""
    return [w.strip("'") for w in _WORD.findall(text.lower().replace("ё", "е")) if w.strip("'")]


@lru_cache(maxsize=200_000)
def lemma(word: str, ukrainian: bool = False) -> str:
    """A word's dictionary form: «вернула» → «вернуть», «рахунку» → «рахунок», «returned» →
    «return»; long numbers become ``#num``."""
    if word.isdigit():
        return "#num" if len(word) >= 4 else word
    if _CYRILLIC.search(word) or _UKRAINIAN.search(word):
        analyzer = _ukrainian() if ukrainian or _UKRAINIAN.search(word) else _russian()
        return str(analyzer.parse(word)[0].normal_form).replace("ё", "е")
    return str(_english().stemWord(word))


def lemmas(text: str) -> list[str]:
    """The lemmas of every word of ``text``, in order (a text with і, ї, є or ґ is read as
    Ukrainian throughout)."""
    ukrainian = bool(_UKRAINIAN.search(text.lower()))
    return [lemma(w, ukrainian) for w in tokens(text)]
