"""Signed, expiring links: a token names one thing and cannot be forged or altered."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

from desk.config.errors import DeskError


class BadToken(DeskError):
    """A token that was forged, altered or cut."""


class ExpiredToken(DeskError):
    """A genuine token whose time is over."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 tokens of the form ``<payload>.<signature>`` with a purpose and an expiry."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, purpose: str, subject: str, now: datetime, ttl: timedelta) -> str:
        """A token for ``subject`` (e.g. a web receipt) valid for ``ttl`` from ``now``."""
        body = json.dumps(
            {"p": purpose, "s": subject, "e": int((now + ttl).timestamp())}, separators=(",", ":")
        ).encode()
        payload = _b64(body)
        return f"{payload}.{self._mac(payload)}"

    def verify(self, purpose: str, token: str, now: datetime) -> str:
        """The subject of a valid token; ``BadToken`` or ``ExpiredToken`` otherwise."""
        payload, dot, mac = token.partition(".")
        given = mac.encode("utf-8", "replace")  # compare_digest refuses non-ASCII text
        if not dot or not hmac.compare_digest(given, self._mac(payload).encode()):
            raise BadToken("the link is damaged or forged")
        try:
            data: dict[str, Any] = json.loads(_unb64(payload))
            subject, expires, kind = str(data["s"]), int(data["e"]), data["p"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BadToken("the link is damaged or forged") from exc
        if kind != purpose:
            raise BadToken("the link is for something else")
        if now.timestamp() > expires:
            raise ExpiredToken("the link has expired")
        return subject

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode("utf-8", "replace"), hashlib.sha256).digest()
        return _b64(digest[:20])
