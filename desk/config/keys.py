"""Secrets the service keeps: the link-signing key and the staff API tokens."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.exceptions import IntegrityError

from desk.config.settings import Settings
from models import ApiToken, KeyValue

SIGNING_KEY = "signing_key"
TOKEN_PREFIX = "desk_"  # noqa: S105 (the prefix of made tokens, for log masking)
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per token
_PERIOD = re.compile(r"^\s*(\d{1,5})\s*([hdw])\s*$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


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


def _now() -> datetime:
    return datetime.now(UTC)


class TokenBook:
    """Checks bearer tokens against the config and the database; an expired or revoked
    token is as unknown as a wrong one."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = _now) -> None:
        self._configured = {
            token_hash(t.token.get_secret_value()): Caller(t.name, t.role.value)
            for t in settings.api.tokens
        }
        self._clock = clock
        self._touched: dict[int, datetime] = {}  # token id -> when last_used_at was written

    async def caller(self, token: str) -> Caller | None:
        """The caller a token belongs to, or None."""
        digest = token_hash(token)
        for known, caller in self._configured.items():
            if hmac.compare_digest(known, digest):
                return caller
        row = await ApiToken.filter(token_hash=digest).first()
        if row is None:
            return None
        now = self._clock()
        if row.expires_at is not None and row.expires_at <= now:
            return None
        await self._touch(row, now)
        return Caller(row.name, row.role)

    async def _touch(self, row: ApiToken, now: datetime) -> None:
        """Record the use: one write a minute per token at most, not one per request."""
        last = max(filter(None, (self._touched.get(row.id), row.last_used_at)), default=None)
        if last is not None and now - last < TOUCH_EVERY:
            return
        self._touched[row.id] = now
        await ApiToken.filter(id=row.id).update(last_used_at=now)


def parse_period(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w`` as a timedelta; anything else is a ValueError."""
    match = _PERIOD.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"'{text}' is not a period like 90d, 12h or 2w")
    return int(match.group(1)) * _UNITS[match.group(2)]


async def create_token(
    name: str, role: str = "supervisor", *, expires_at: datetime | None = None
) -> str:
    """Make a new API token, store its hash, and return it (shown once, never again)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await ApiToken.create(name=name, token_hash=token_hash(token), role=role, expires_at=expires_at)
    return token


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What ``token list`` shows of a token: never the token itself."""

    id: int | None  # None: named in the config
    name: str
    role: str
    created_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None


async def list_tokens(settings: Settings) -> list[TokenInfo]:
    """The tokens of the database (oldest first), then those named in the config."""
    rows = await ApiToken.all().order_by("id")
    stored = [
        TokenInfo(r.id, r.name, r.role, r.created_at, r.last_used_at, r.expires_at) for r in rows
    ]
    named = [TokenInfo(None, t.name, t.role.value, None, None, None) for t in settings.api.tokens]
    return stored + named


async def revoke_token(ref: str) -> str | None:
    """Delete the stored token with this id or name; its name, or None when none matches."""
    by_id = ref.isdigit() and len(ref) < 19
    query = ApiToken.filter(id=int(ref)) if by_id else ApiToken.filter(name=ref)
    row = await query.first()
    if row is None:
        return None
    await ApiToken.filter(id=row.id).delete()
    return row.name


async def bootstrap_token(settings: Settings) -> str | None:
    """On a desk with no tokens at all, create an admin token and return it; else None."""
    if settings.api.tokens or await ApiToken.all().exists():
        return None
    try:
        return await create_token("admin", "supervisor")
    except IntegrityError:
        return None
