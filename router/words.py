"""Words of an appeal as the router compares them: lower case, ё→е, lemmas (Russian and
Ukrainian by pymorphy3, English by the Snowball stemmer). Russian typed in Latin letters
(«zakaz gde», «hochu vernut») is read back into Cyrillic first."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import pymorphy3
import snowballstemmer

_WORD = re.compile(r"[a-zа-яёіїєґ0-9']+", re.IGNORECASE)
_UKRAINIAN = re.compile(r"[іїєґ]")
_CYRILLIC = re.compile(r"[а-яё]")
_LATIN = re.compile(r"^[a-z']+$")

# Words that mark a negated phrase: «не подошёл» is not «подошёл», «not happy» is not «happy».
NEGATIONS = frozenset({"не", "ни", "нет", "ні", "немає", "not", "no", "never", "nothing"})

# What a number counts when it is not goods: time, money, distance, weight, size, ranks.
_MEASURES = frozenset(
    word
    for line in (
        "секунда минута час сутки день неделя месяц год лет вечер утро ночь число раз",
        "рубль руб копейка гривна грн доллар евро тысяча тыс миллион млн процент балл бонус",
        "километр км метр м сантиметр см миллиметр мм дюйм кг килограмм грамм литр мл этаж",
        "градус ватт вт вольт гигабайт гб мегабайт мб подписчик звезда отзыв",
        "хвилина година доба тиждень місяць рік гривня тисяча відсоток поверх кілометр",
        "second minut hour day week month year time dollar euro pound rubl percent mile km sub",
        "meter metr kg gram liter litr floor inch cm mm gb follow subscrib star point review",
    )
    for word in line.split()
)
# Order numbers have five digits or more; a count of goods has two to four.
_DIGITS = re.compile(r"^\d{2,4}$")
# A reading of a word at least this share as likely as its likeliest one counts for a rule.
LIKELY = 0.3
# A misspelt word this long or longer may stand for a lexicon word one edit away.
TYPO_LENGTH = 6

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
# Latin-typed words a letter-by-letter reading gets wrong.
_LATIN_WORDS = {"eshe": "еще", "ewe": "еще", "ischo": "еще", "shto": "что"}
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


@lru_cache(maxsize=50_000)
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
def forms(word: str, ukrainian: bool = False) -> frozenset[str]:
    """Every dictionary form ``word`` may plausibly have: «примете» is most likely «примета»,
    but may be «принять»; a reading far less likely than the first is left out."""
    if not (_CYRILLIC.search(word) or _UKRAINIAN.search(word)):
        return frozenset({lemma(word, ukrainian)})
    analyzer = _ukrainian() if ukrainian or _UKRAINIAN.search(word) else _russian()
    parses = analyzer.parse(word)
    top = parses[0].score
    return frozenset(
        {lemma(word, ukrainian)}
        | {str(p.normal_form).replace("ё", "е") for p in parses if p.score >= top * LIKELY}
    )


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


def _as_cyrillic(word: str) -> str:
    return _LATIN_WORDS.get(word) or cyrillic(word)


def _typed_in_latin(words: list[str]) -> bool:
    """Whether a text without Cyrillic letters is Russian in Latin letters: no common English
    words, and most of its words are Russian once read in Cyrillic."""
    latin = [w for w in words if _LATIN.match(w) and len(w) > 1]
    if len(latin) < 2 or any(_CYRILLIC.search(w) or _UKRAINIAN.search(w) for w in words):
        return False
    if sum(w in _ENGLISH for w in latin) > len(latin) * 0.15:
        return False
    known = sum(bool(_russian().word_is_known(_as_cyrillic(w))) for w in latin)
    return known >= len(latin) * 0.6


@dataclass(frozen=True, slots=True)
class Reading:
    """A text as the router reads it: its words as spelled (Latin-typed Russian already in
    Cyrillic), their lemmas, and whether it was read as Ukrainian."""

    words: tuple[str, ...]
    lemmas: tuple[str, ...]
    ukrainian: bool


@lru_cache(maxsize=1024)
def read(text: str, *, ukrainian: bool | None = None, latin_as_russian: bool = True) -> Reading:
    """``text`` read word by word (the rules, the counts of goods and the model each read an
    appeal: it is read once). A text with і, ї, є or ґ, or with a word only Ukrainian has,
    is read as Ukrainian throughout (``ukrainian`` decides instead when given); Russian typed in
    Latin letters is read as Russian unless ``latin_as_russian`` is off."""
    words = tokens(text)
    if ukrainian is None:
        ukrainian = bool(_UKRAINIAN.search(text.lower())) or not _UKRAINIAN_WORDS.isdisjoint(words)
    if latin_as_russian and not ukrainian and _typed_in_latin(words):
        words = [_as_cyrillic(w) if _LATIN.match(w) else w for w in words]
    return Reading(tuple(words), tuple(lemma(w, ukrainian) for w in words), ukrainian)


def lemmas(text: str, *, ukrainian: bool | None = None, latin_as_russian: bool = True) -> list[str]:
    """The lemmas of every word of ``text``, in order (see ``read``)."""
    return list(read(text, ukrainian=ukrainian, latin_as_russian=latin_as_russian).lemmas)


@lru_cache(maxsize=50_000)
def known(word: str, ukrainian: bool = False) -> bool:
    """Whether the dictionary knows ``word`` as it is spelled (a typo usually is unknown)."""
    analyzer = _ukrainian() if ukrainian or _UKRAINIAN.search(word) else _russian()
    return bool(analyzer.word_is_known(word))


class Spelling:
    """Finds the one word of a vocabulary a misspelt word stands for: one letter missing, extra,
    wrong or two neighbours swapped («вазврат» → «возврат», «кросовка» → «кроссовка»)."""

    def __init__(self, vocabulary: Iterable[str], shortest: int = TYPO_LENGTH - 1) -> None:
        self._index: dict[str, set[str]] = {}
        for word in vocabulary:
            if len(word) >= shortest and " " not in word:
                for key in {word, *_deletions(word)}:
                    self._index.setdefault(key, set()).add(word)

    def closest(self, word: str) -> str | None:
        """The vocabulary word one edit away from ``word``; None if there is none or several."""
        found: set[str] = set()
        for key in {word, *_deletions(word)}:
            found.update(w for w in self._index.get(key, ()) if _one_edit(word, w))
        return found.pop() if len(found) == 1 else None


def _deletions(word: str) -> list[str]:
    return [word[:i] + word[i + 1 :] for i in range(len(word))]


def _one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by exactly one edit (a transposition counts as one)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[i:] == long_[i + 1 :]


def counts(text: str) -> list[tuple[int, str]]:
    """Numbers of goods in ``text``, each with what it counts: «нужно 40 офисных кресел» →
    (40, «кресло»), «300 mugs» → (300, «mug»). Time, money and other measures
    («40 минут», «15 тысяч») are no goods."""
    reading = read(text)
    words = reading.words
    found: list[tuple[int, str]] = []
    for i, word in enumerate(words):
        if not _DIGITS.match(word):
            continue
        for after in words[i + 1 : i + 3]:
            thing = _counted(after, reading.ukrainian)
            if thing is None:
                continue
            if thing and thing not in _MEASURES and after not in _MEASURES:
                found.append((int(word), thing))
            break
    return found


@lru_cache(maxsize=50_000)
def _counted(word: str, ukrainian: bool) -> str | None:
    """What ``word`` names after a number: the lemma of a noun in the genitive plural
    («стульев» → «стул») or the stem of an English plural right after it («mugs» → «mug»); None
    for an adjective, which may stand between the number and the noun («40 офисных кресел»); ""
    for anything else, which ends the count."""
    if _LATIN.match(word):
        # English tells no noun from a verb («says»): only a plural right after the number counts.
        stem = lemma(word)
        plural = word.endswith("s") and len(word) > 3 and stem != word and word not in _ENGLISH
        return stem if plural else ""
    if not (_CYRILLIC.search(word) or _UKRAINIAN.search(word)):
        return ""
    analyzer = _ukrainian() if ukrainian or _UKRAINIAN.search(word) else _russian()
    parse = analyzer.parse(word)[0]
    if parse.tag.POS in {"ADJF", "PRTF"}:
        return None
    if parse.tag.POS == "NOUN" and {"plur", "gent"} <= parse.tag.grammemes:
        return str(parse.normal_form).replace("ё", "е")
    return ""


def negated(words: list[str]) -> list[bool]:
    """For each lemma, whether a negation («не», «ні», «not») stands right before it."""
    return [i > 0 and words[i - 1] in NEGATIONS for i in range(len(words))]
