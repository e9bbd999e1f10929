"""``Idempotency-Key``: the same key with the same request gets the first answer again."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tortoise.exceptions import IntegrityError

from desk.errors import IdempotencyConflict
from models import IdempotencyKey


def fingerprint(request: Any) -> str:
    """A stable digest of a request body (JSON-able)."""
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


async def claim(key: str, request: Any, value: str) -> tuple[str, bool]:
    """Remember ``value`` under ``key`` for ``request``: (the value kept, whether this call set
    it). The key seen before with another request is an IdempotencyConflict."""
    digest = fingerprint(request)
    row = await IdempotencyKey.filter(key=key).first()
    first = False
    if row is None:
        try:
            row = await IdempotencyKey.create(key=key, fingerprint=digest, external_id=value)
            first = True
        except IntegrityError:  # the same key arrived twice at once
            row = await IdempotencyKey.get(key=key)
    if row.fingerprint != digest:
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request")
    return row.external_id, first
