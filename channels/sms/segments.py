"""How many parts an SMS takes, and a text made to fit a number of parts (pure, no I/O).

GSM 03.38's 7-bit alphabet: 160 characters in one part, 153 in each part of a longer message
(the rest of each part is the concatenation header); the characters of the extension table
(``^{}\\[~]|€`` and form feed) take two places. Anything else (Cyrillic, emoji) sends the whole
message in UCS-2: 70 characters in one part, 67 in each part of a longer one; a character
outside the Basic Multilingual Plane (most emoji) is two UTF-16 code units and never split
between parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = "^{}\\[~]|€\f"
_BASIC = frozenset(GSM_BASIC)
_EXTENDED = frozenset(GSM_EXTENDED)

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67
ELLIPSIS = "…"
GSM_ELLIPSIS = "..."  # «…» is not in the GSM alphabet: it would make a Latin text UCS-2
URL = re.compile(r"https?://\S+")


@dataclass(frozen=True, slots=True)
class Segments:
    """What a text costs: its encoding, its parts and its length in that encoding's units."""

    encoding: str  # "gsm7" | "ucs2"
    parts: int
    units: int


def is_gsm7(text: str) -> bool:
    """Whether every character of ``text`` is in the GSM 7-bit alphabet (basic or extension)."""
    return all(ch in _BASIC or ch in _EXTENDED for ch in text)


def _units(text: str, gsm: bool) -> list[int]:
    """Each character's width in its encoding's units (septets, or UTF-16 code units)."""
    if gsm:
        return [2 if ch in _EXTENDED else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _parts(widths: list[int], single: int, part: int) -> int:
    total = sum(widths)
    if total <= single:
        return 1 if total else 0
    parts, used = 1, 0
    for width in widths:  # a character never straddles two parts
        if used + width > part:
            parts, used = parts + 1, 0
        used += width
    return parts


def count(text: str) -> Segments:
    """The parts ``text`` takes (0 for an empty text)."""
    gsm = is_gsm7(text)
    widths = _units(text, gsm)
    single, part = (GSM_SINGLE, GSM_PART) if gsm else (UCS2_SINGLE, UCS2_PART)
    return Segments("gsm7" if gsm else "ucs2", _parts(widths, single, part), sum(widths))


def fits(text: str, max_parts: int) -> bool:
    """Whether ``text`` takes at most ``max_parts`` parts."""
    return count(text).parts <= max_parts


def fit(text: str, max_parts: int) -> str:
    """``text`` shortened to ``max_parts`` parts, or unchanged when it fits.

    Links are kept whole: the words before the first link are cut at a word boundary with
    «…» (the link is usually what the message is for: a rating page, an order's choice); when
    the links alone do not fit, the last ones are dropped, and a text that cannot fit at all
    becomes its prose cut to the parts. The cut is marked «…» («...» in a GSM text, which
    «…» would turn into UCS-2). Whitespace runs are squeezed first (an SMS pays for
    every space)."""
    if max_parts < 1:
        raise ValueError("max_parts must be at least 1")
    text = _squeeze(text)
    if fits(text, max_parts):
        return text
    first = URL.search(text)
    prose, tail = (text[: first.start()], text[first.start() :]) if first else (text, "")
    links = [m.group(0) for m in URL.finditer(tail)]
    mark = GSM_ELLIPSIS if is_gsm7(text) else ELLIPSIS
    while True:
        kept = _tail_with(tail, links)
        cut = _cut(prose, kept, max_parts, mark)
        if cut is not None:
            return cut
        if not links:
            break
        links.pop()
    return _cut(prose, "", max_parts, mark) or _chars(prose, max_parts, mark)


def _chars(text: str, max_parts: int, mark: str) -> str:
    """``text`` cut between characters (one unbroken word longer than the parts)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[:mid] + mark, max_parts):
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + mark if lo else ""


def _squeeze(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def _tail_with(tail: str, links: list[str]) -> str:
    """The part from the first link on, with only ``links`` (in order) and what sits between
    them; an empty string when no link is kept."""
    if not links:
        return ""
    end = 0
    for link in links:
        end = tail.index(link, end) + len(link)
    return tail[:end]


def _cut(prose: str, tail: str, max_parts: int, mark: str) -> str | None:
    """``prose`` cut at a word boundary (with «…») so that it and ``tail`` fit; None when even
    no prose at all does not fit."""
    joiner = "\n" if tail and prose.endswith("\n") else (" " if tail else "")
    prose = prose.rstrip()
    whole = f"{prose}{joiner}{tail}" if prose else tail
    if fits(whole, max_parts):
        return whole
    if not fits(tail, max_parts):
        return None
    words = prose.split(" ")
    lo, hi = 0, len(words)  # the most words that fit, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        head = " ".join(words[:mid]).rstrip(" ,;:—-") + mark
        if fits(f"{head}{joiner}{tail}" if tail else head, max_parts):
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return tail or None
    head = " ".join(words[:lo]).rstrip(" ,;:—-") + mark
    return f"{head}{joiner}{tail}" if tail else head
