"""Values from outside (URLs, query strings, bodies, button data, commands) checked before they
reach the database: a value no row can hold finds nothing, and text is made storable, instead of
failing in the database driver."""

from __future__ import annotations

import re

from tortoise.fields import CharField
from tortoise.models import Model

MAX_ID = 2**63 - 1  # BIGINT: a larger number cannot name a row on any backend
_SURROGATE = re.compile("[\ud800-\udfff]")  # half of a UTF-16 pair: not text on its own


def parse_id(text: str) -> int | None:
    """The id ``text`` spells in ASCII digits, or None when it is not one that can exist."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


def fits(model: type[Model], field: str, value: str) -> bool:
    """True when ``value`` could be stored in ``model.field``: not longer than the column, and
    without NUL (PostgreSQL text cannot hold it)."""
    column = model._meta.fields_map[field]
    limit = column.max_length if isinstance(column, CharField) else None
    return "\x00" not in value and (limit is None or len(value) <= limit)


def whole_characters(text: str) -> str:
    """``text`` with unpaired surrogates (not UTF-8) replaced by U+FFFD: the same length."""
    return _SURROGATE.sub("\ufffd", text)


def storable(text: str) -> str:
    """``text`` as every backend can store it: NUL dropped (PostgreSQL text cannot hold it),
    unpaired surrogates (not UTF-8) replaced by U+FFFD."""
    return whole_characters(text.replace("\x00", ""))
