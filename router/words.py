"""Words of an appeal as the router compares them: lower case, ё→е, lemmas (Russian and
Ukrainian by pymorphy3, English by the Snowball stemmer). Russian typed in Latin letters
(«zakaz gde», «hochu vernut») is read back into Cyrillic first."""

from __future__ import annotations

import re
from functools import lru_cache

import pymorphy3
import snowballstemmer

_WORD = re.compile(r"[a-zа-яёіїєґ0-9']+", re.IGNORECASE)
_UKRAINIAN = re.compile(r"[іїєґ]")
_CYRILLIC = re.compile(r"[а-яё]")
_LATIN = re.compile(r"^[a-z']+$")

# Words that mark a negated phrase: «не подошёл» is not «подошёл», «not happy» is not «happy».
NEGATIONS = frozenset({"не", "ни", "нет", "ні", "немає", "not", "no", "never", "nothing"})

# Ukrainian words a Russian text does not use: a Ukrainian text without і, ї, є or ґ
# («дуже дякую», «скасуйте будь ласка замовлення») is still read as Ukrainian.
_UKRAINIAN_WORDS = frozenset(
    {
        "чи",
        "що",
        "це",
        "дуже",
        "ласка",
        "дякую",
        "вже",
        "було",
        "щоб",
        "ще",
        "або",
        "ви",
        "замовлення",
    }
)
# Common English words: a Latin text with these is English, not Russian typed in Latin letters.
_ENGLISH = frozenset(
    word
    for line in (
        "the is are was were be been my me you your we our us it its this that for and or of",
        "what how why when where do does did can could would will should have has had with at",
        "in from please thanks thank hi hello any there their they he she him her",
        "order delivery refund return size price stock item store shop status well done good",
        "great ok okay yes",
    )
    for word in line.split()
)
# Informal transliteration, longest spellings first («shch» before «sh» before «s»).
_TO_CYRILLIC = (
    ("shch", "щ"),
    ("sch", "щ"),
    ("zh", "ж"),
    ("kh", "х"),
    ("ch", "ч"),
    ("sh", "ш"),
    ("ts", "ц"),
    ("yu", "ю"),
    ("ju", "ю"),
    ("ya", "я"),
    ("ja", "я"),
    ("yo", "е"),
    ("jo", "е"),
    ("a", "а"),
    ("b", "б"),
    ("v", "в"),
    ("g", "г"),
    ("d", "д"),
    ("e", "е"),
    ("z", "з"),
    ("i", "и"),
    ("j", "й"),
    ("k", "к"),
    ("l", "л"),
    ("m", "м"),
    ("n", "н"),
    ("o", "о"),
    ("p", "п"),
    ("r", "р"),
    ("s", "с"),
    ("t", "т"),
    ("u", "у"),
    ("f", "ф"),
    ("h", "х"),
    ("c", "ц"),
    ("y", "ы"),
    ("w", "в"),
    ("x", "кс"),
    ("q", "к"),
    ("'", "ь"),
)
_ENDINGS = (
    ("yi", "ый"),
    ("yy", "ый"),
    ("iy", "ий"),
    ("ij", "ий"),
    ("oi", "ой"),
    ("oy", "ой"),
    ("ei", "ей"),
    ("ey", "ей"),
    ("ai", "ай"),
)


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


@lru_cache(maxsize=50_000)
def cyrillic(word: str) -> str:
    """A Latin-typed Russian word in Cyrillic: «vernut» → «вернут», «drugoi» → «другой»."""
    tail = ""
    for latin, ending in _ENDINGS:
        if len(word) > 3 and word.endswith(latin):
            word, tail = word[: -len(latin)], ending
            break
    out: list[str] = []
    i = 0
    while i < len(word):
        for latin, letter in _TO_CYRILLIC:
            if word.startswith(latin, i):
                out.append(letter)
                i += len(latin)
                break
        else:
            out.append(word[i])
            i += 1
    return "".join(out) + tail


def _typed_in_latin(words: list[str]) -> bool:
    """Whether a text without Cyrillic letters is Russian in Latin letters: no common English
    words, and most of its words are Russian once read in Cyrillic."""
    latin = [w for w in words if _LATIN.match(w) and len(w) > 1]
    if len(latin) < 2 or any(_CYRILLIC.search(w) or _UKRAINIAN.search(w) for w in words):
        return False
    if sum(w in _ENGLISH for w in latin) > len(latin) * 0.15:
        return False
    known = sum(bool(_russian().word_is_known(cyrillic(w))) for w in latin)
    return known >= len(latin) * 0.6


def lemmas(text: str, *, ukrainian: bool | None = None, latin_as_russian: bool = True) -> list[str]:
    """The lemmas of every word of ``text``, in order. A text with і, ї, є or ґ, or with a word
    only Ukrainian has, is read as Ukrainian throughout (``ukrainian`` decides instead when
    given); Russian typed in Latin letters is read as Russian unless ``latin_as_russian`` is
    off."""
    words = tokens(text)
    if ukrainian is None:
        ukrainian = bool(_UKRAINIAN.search(text.lower())) or not _UKRAINIAN_WORDS.isdisjoint(words)
    if latin_as_russian and not ukrainian and _typed_in_latin(words):
        words = [cyrillic(w) if _LATIN.match(w) else w for w in words]
    return [lemma(w, ukrainian) for w in words]


def negated(words: list[str]) -> list[bool]:
    """For each lemma, whether a negation («не», «ні», «not») stands right before it."""
    return [i > 0 and words[i - 1] in NEGATIONS for i in range(len(words))]
