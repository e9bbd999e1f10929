"""What customers keep writing about: the phrases (two or three words, as lemmas, read by the
router's words) of the customers' own messages, counted as appeals per category and day.

A day is counted once it is over (by the daily job, or by the first report that needs it) and
kept in ``phrase_day``; today is counted live. Addresses, links, phone numbers and any word with
a digit break a phrase and are never kept; stop words are skipped."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError
from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from desk.reports.periods import Period, local_midnight
from models import Appeal, Direction, KeyValue, Message, PhraseDay
from router.model import STOP
from router.words import NEGATIONS, read

log = logging.getLogger(__name__)

SHORTEST, LONGEST = 2, 3  # words in a phrase
KEEP_PER_DAY = 100  # phrases kept per day and category: the long tail says little
BACKFILL_DAYS = 62  # the daily job also counts missed days this far back (a month and the last)
# Polite and filler words that make no phrase of their own (on top of the router's stop words).
FILLER = frozenset(
    [
        "пожалуйста",
        "спасибо",
        "благодарить",
        "здравствуйте",
        "добрый",
        "вечер",
        "утро",
        "привет",
        "подсказать",
        "еще",
        "уже",
        "быть",
        "весь",
        "этот",
        "тот",
        "свой",
        "который",
        "там",
        "тут",
        "вот",
        "очень",
        "просто",
        "можно",
        "please",
        "thanks",
        "thank",
        "hello",
        "hi",
        "dear",
        "could",
        "would",
        "can",
    ]
)
# Personal data and numbers: e-mail addresses, links, phone and card numbers, any word with a
# digit. They are cut out of the text before reading, so no phrase spans them.
_PERSONAL = re.compile(
    r"\S+@\S+|https?://\S+|www\.\S+|\+?\d[\d\s()\-]{5,}\d|\S*\d\S*", re.IGNORECASE
)
_BREAK = re.compile(r"[.!?;:,()\[\]\"«»\n\r\t|]+")
_MARK = "phrases:"


@dataclass(frozen=True, slots=True)
class Phrase:
    """One phrase of a text: its lemma key and the words as the customer wrote them."""

    key: str
    shown: str


def phrases(text: str) -> list[Phrase]:
    """The phrases of ``text``, each once, in the order they first appear."""
    found: dict[str, str] = {}
    for piece in _BREAK.split(_PERSONAL.sub("|", text)):
        if not piece.strip():
            continue
        words = _words(piece)
        for size in range(SHORTEST, LONGEST + 1):
            for i in range(len(words) - size + 1):
                run = words[i : i + size]
                key = " ".join(lemma for lemma, _ in run)
                found.setdefault(key, " ".join(word for _, word in run))
    return [Phrase(k, v) for k, v in found.items()]


def _words(piece: str) -> list[tuple[str, str]]:
    """(lemma, word) of the words that count; a negation joins the word after it."""
    reading = read(piece)
    out: list[tuple[str, str]] = []
    negation = ""
    for word, lemma in zip(reading.words, reading.lemmas, strict=True):
        if lemma in NEGATIONS or word in NEGATIONS:
            negation = word
            continue
        if lemma in STOP or lemma in FILLER or word in FILLER or len(lemma) < 2:
            negation = ""
            continue
        if negation:
            out.append((f"{negation} {lemma}", f"{negation} {word}"))
            negation = ""
        else:
            out.append((lemma, word))
    return out


@dataclass(slots=True)
class Tally:
    """Appeals per category and phrase, and the commonest wording of each phrase."""

    appeals: dict[str, Counter[str]] = field(default_factory=dict)
    wordings: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, category: str, found: Iterable[Phrase]) -> None:
        """One appeal of ``category`` that used these phrases."""
        counts = self.appeals.setdefault(category, Counter())
        for phrase in found:
            counts[phrase.key] += 1
            self.wordings.setdefault(phrase.key, Counter())[phrase.shown] += 1

    def shown(self, key: str) -> str:
        """How customers wrote the phrase most often."""
        wordings = self.wordings.get(key)
        return wordings.most_common(1)[0][0] if wordings else key


async def count_day(day: date, zone: ZoneInfo) -> Tally:
    """The phrases of the appeals opened on ``day``, from their customers' messages."""
    rows = (
        await Message.filter(
            direction=Direction.IN,
            appeal__created_at__gte=local_midnight(day, zone),
            appeal__created_at__lt=local_midnight(day + timedelta(days=1), zone),
        )
        .order_by("appeal_id", "id")
        .values_list("appeal_id", "appeal__category", "text")
    )
    tally = Tally()
    by_appeal: dict[int, tuple[str, dict[str, Phrase]]] = {}
    for appeal_id, category, text in rows:
        _, seen = by_appeal.setdefault(int(appeal_id), (str(category or ""), {}))
        for phrase in phrases(str(text or "")):
            seen.setdefault(phrase.key, phrase)
    for category, seen in by_appeal.values():
        tally.add(category, seen.values())
    return tally


async def roll_up(day: date, zone: ZoneInfo) -> bool:
    """Count a finished day into ``phrase_day`` once (across processes); True if done here."""
    key = f"{_MARK}{day.isoformat()}"
    if await KeyValue.filter(key=key).exists():
        return False
    tally = await count_day(day, zone)
    rows = [
        PhraseDay(day=day, category=category, phrase=phrase, shown=tally.shown(phrase), appeals=n)
        for category, counts in tally.appeals.items()
        for phrase, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:KEEP_PER_DAY]
    ]
    try:
        async with in_transaction():
            await KeyValue.create(key=key, value=str(len(rows)))
            await PhraseDay.bulk_create(rows, batch_size=1000)
    except IntegrityError:
        return False  # another process counted the day
    return True


async def roll_up_missing(days: Iterable[date], zone: ZoneInfo) -> int:
    """Count every one of ``days`` not counted yet; returns how many were counted now."""
    first = await Appeal.all().order_by("created_at").first()
    if first is None or first.created_at is None:
        return 0  # nothing to count, and no day to mark
    opened = local_midnight(first.created_at.astimezone(zone).date(), zone)
    wanted = [d for d in days if local_midnight(d + timedelta(days=1), zone) > opened]
    if not wanted:
        return 0
    marks = KeyValue.filter(key__in=[f"{_MARK}{d.isoformat()}" for d in wanted])
    done = {str(key) for key in await marks.values_list("key", flat=True)}
    counted = 0
    for day in wanted:
        if f"{_MARK}{day.isoformat()}" not in done:
            counted += await roll_up(day, zone)
    return counted


async def backfill(today: date, zone: ZoneInfo) -> int:
    """The daily job: count yesterday and any day of the last ``BACKFILL_DAYS`` missed."""
    days = [today - timedelta(days=n) for n in range(BACKFILL_DAYS, 0, -1)]
    counted = await roll_up_missing(days, zone)
    log.info("phrases counted", extra={"days": counted})
    return counted


async def period_tally(period: Period, zone: ZoneInfo, today: date, categories: list[str]) -> Tally:
    """The phrases of ``categories`` over the period: finished days from ``phrase_day`` (counted
    first where missing), today live."""
    past = [d for d in period.days() if d < today]
    await roll_up_missing(past, zone)
    tally = Tally()
    if past:
        rows = (
            await PhraseDay.filter(day__gte=past[0], day__lte=past[-1], category__in=categories)
            .annotate(total=Sum("appeals"))
            .group_by("category", "phrase", "shown")
            .values("category", "phrase", "shown", "total")
        )
        for row in rows:
            n = int(row["total"] or 0)
            tally.appeals.setdefault(str(row["category"]), Counter())[str(row["phrase"])] += n
            tally.wordings.setdefault(str(row["phrase"]), Counter())[str(row["shown"])] += n
    if period.first_day <= today <= period.last_day:
        live = await count_day(today, zone)
        for category, counts in live.appeals.items():
            if category in categories:
                tally.appeals.setdefault(category, Counter()).update(counts)
        for key, wordings in live.wordings.items():
            tally.wordings.setdefault(key, Counter()).update(wordings)
    return tally
