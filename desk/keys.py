"""Secrets the service keeps: the link-signing key and the staff API tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError

from desk.settings import Settings
from models import ApiToken, KeyValue

SIGNING_KEY = "signing_key"


def token_hash(token: str) -> str:
    """The SHA-256 of a token: what the database stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


async def signing_key(settings: Settings) -> bytes:
    """``DESK_SECRET_KEY``, else a random key generated once and kept in the database."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value().encode()
    row = await KeyValue.filter(key=SIGNING_KEY).first()
    if row is None:
        try:
            row = await KeyValue.create(key=SIGNING_KEY, value=secrets.token_hex(32))
        except IntegrityError:  # another process generated it first
            row = await KeyValue.get(key=SIGNING_KEY)
    return row.value.encode()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling the staff API."""

    name: str
    role: str

    @property
    def actor(self) -> str:
        """How the caller appears in history."""
        return f"api:{self.name}"


class TokenBook:
    """Checks bearer tokens against the config and the database."""

    def __init__(self, settings: Settings) -> None:
        self._configured = {
            token_hash(t.token.get_secret_value()): Caller(t.name, t.role.value)
            for t in settings.api.tokens
        }

    async def caller(self, token: str) -> Caller | None:
        """The caller a token belongs to, or None."""
        digest = token_hash(token)
        for known, caller in self._configured.items():
            if hmac.compare_digest(known, digest):
                return caller
        row = await ApiToken.filter(token_hash=digest).first()
        return Caller(row.name, row.role) if row is not None else None


async def create_token(name: str, role: str = "supervisor") -> str:
    """Make a new API token, store its hash, and return it (shown once, never again)."""
    token = "desk_" + secrets.token_urlsafe(32)
    await ApiToken.create(name=name, token_hash=token_hash(token), role=role)
    return token


async def bootstrap_token(settings: Settings) -> str | None:
    """On a desk with no tokens at all, create an admin token and return it; else None."""
    if settings.api.tokens or await ApiToken.all().exists():
        return None
    try:
        return await create_token("admin", "supervisor")
    except IntegrityError:
        return None
