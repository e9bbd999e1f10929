"""``Idempotency-Key``: the same key with the same request gets the first answer again.

Keys are kept per operation and caller: an anonymous appeal's key and a shop's order key of
the same text are two keys, and no caller learns from a refusal which keys another one used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tortoise.exceptions import IntegrityError

from desk.config.errors import IdempotencyConflict
from models import IdempotencyRecord

ANONYMOUS = "anonymous"
MAX_KEY = 200  # characters: the key is stored as it was sent, in a column this long
MAX_CALLER = 200


@dataclass(frozen=True, slots=True)
class RequestKey:
    """An ``Idempotency-Key`` as its caller sent it, and whose it is."""

    key: str
    caller: str = ANONYMOUS

    @classmethod
    def of_caller(cls, key: str, name: str) -> RequestKey:
        """The key of an authenticated API caller ``name``."""
        caller = f"api:{name}"
        if len(caller) > MAX_CALLER:  # a configured name has no length limit; a digest has
            caller = "api:#" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()
        return cls(key, caller)


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be an idempotency key (too long to store, not text), or None."""
    if len(key) > MAX_KEY:
        return f"at most {MAX_KEY} characters"
    if not key.isprintable():  # control characters, or bytes that were not UTF-8
        return "printable text only"
    return None


def fingerprint(request: Any) -> str:
    """A stable digest of a request body (JSON-able)."""
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


async def claim(operation: str, key: RequestKey, request: Any, value: str) -> tuple[str, bool]:
    """Remember ``value`` under ``key`` for ``operation`` and ``request``: (the value kept,
    whether this call set it). The key seen before with another request is an
    IdempotencyConflict."""
    digest = fingerprint(request)
    mine = IdempotencyRecord.filter(operation=operation, caller=key.caller, key=key.key)
    row = await mine.first()
    first = False
    if row is None:
        try:
            row = await IdempotencyRecord.create(
                operation=operation,
                caller=key.caller,
                key=key.key,
                fingerprint=digest,
                external_id=value,
            )
            first = True
        except IntegrityError:  # the same key arrived twice at once
            row = await mine.get()
    if row.fingerprint != digest:
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request")
    return row.external_id, first
