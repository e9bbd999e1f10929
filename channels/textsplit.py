"""Splitting long texts for channels with a length limit: at paragraphs, then lines, sentences,
words; never cutting inside a word unless a single word is longer than the limit."""

from __future__ import annotations

import re
from collections.abc import Callable

_SEPARATORS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?<=\n\n)"),  # paragraphs
    re.compile(r"(?<=\n)"),  # lines
    re.compile(r"(?<=[.!?…;])\s+"),  # sentences
    re.compile(r"(?<=\s)"),  # words
)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int, measure: Callable[[str], int] = utf16_len) -> list[str]:
    """Pieces of ``text``, each at most ``limit`` long, together holding all of it."""
    if limit < 1:
        raise ValueError("limit must be positive")
    if measure(text) <= limit:
        return [text]
    return [p for p in (piece.strip() for piece in _split(text, limit, measure, 0)) if p]


def _split(text: str, limit: int, measure: Callable[[str], int], level: int) -> list[str]:
    if measure(text) <= limit:
        return [text]
    if level >= len(_SEPARATORS):
        return _hard_cut(text, limit, measure)
    parts = [p for p in _SEPARATORS[level].split(text) if p]
    if len(parts) == 1:
        return _split(text, limit, measure, level + 1)
    joiner = " " if level == 2 else ""
    pieces: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current}{joiner}{part}" if current and joiner else current + part
        if measure(candidate) <= limit:
            current = candidate
            continue
        if current:
            pieces.append(current)
        if measure(part) <= limit:
            current = part
        else:
            pieces.extend(_split(part, limit, measure, level + 1))
            current = ""
    if current:
        pieces.append(current)
    return pieces


def _hard_cut(text: str, limit: int, measure: Callable[[str], int]) -> list[str]:
    pieces: list[str] = []
    current, size = "", 0
    for char in text:
        width = measure(char)
        if size + width > limit:
            pieces.append(current)
            current, size = "", 0
        current += char
        size += width
    if current:
        pieces.append(current)
    return pieces
