"""What a log line is about: the appeal and channel being handled, added to every line written
meanwhile; and a last guard that masks personal data and secrets that slipped into a line."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

STANDARD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}
# None outside any scope: a long-lived task (the SLA scan, a poller) never keeps the number of
# the last appeal it touched.
_FIELDS: ContextVar[Mapping[str, str] | None] = ContextVar("desk_log_fields", default=None)

_SECRETS = (
    # Telegram bot tokens: in Bot API URLs (…/bot123456:ABC…/getMe), and on their own.
    (re.compile(r"/bot[^/\s]+/"), "/bot<token>/"),
    (re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{20,}"), "<token>"),
    # VK access tokens (vk1.a.… and the older 85 hex characters).
    (re.compile(r"\bvk1\.a\.[A-Za-z0-9_.-]+|\b[0-9a-f]{85}\b"), "<token>"),
    # Secrets in query strings (VK puts access_token there; long poll keys).
    (re.compile(r"(?i)([?&](?:access_token|token|key|secret|password)=)[^&\s'\"]+"), r"\1<secret>"),
    # The desk's own API tokens, bare (a header line too long for aiohttp is logged as is).
    (re.compile(r"desk_[A-Za-z0-9_-]{16,}"), "desk_<token>"),
    # Bearer tokens in a header that made it into an error text.
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), "Bearer <token>"),
    # Passwords in URLs: scheme://user:password@host.
    (re.compile(r"(?<=://)([^/\s:@]+):[^/\s@]+@"), r"\1:***@"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "<email>"),
    # Phone numbers: "+" and 10-15 digits, spaced or not, or a Russian 8/7 9xx mobile; bare
    # ids (chat ids, entry ids) have no "+" and another length, so they stay.
    (re.compile(r"\+\d(?:[\s()-]*\d){9,14}"), "<phone>"),
    (re.compile(r"(?<![\d-])[78][\s(-]*9\d{2}[\s)-]*\d{3}[\s-]*\d{2}[\s-]*\d{2}(?!\d)"), "<phone>"),
)


@contextmanager
def log_scope(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (``appeal``, ``channel``) to every log line written inside the block,
    by this task and the tasks it starts; empty values are left out."""
    outer = _FIELDS.get() or {}
    token = _FIELDS.set({**outer, **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _FIELDS.reset(token)


def bind(*, keep: tuple[str, ...] = (), **fields: str | None) -> bool:
    """Add ``fields`` to the innermost open scope until it ends (fields named in ``keep`` are
    only added when missing); outside any scope nothing is kept and False is returned."""
    current = _FIELDS.get()
    if current is None:
        return False
    new = {k: v for k, v in fields.items() if v and not (k in keep and k in current)}
    _FIELDS.set({**current, **new})
    return True


@contextmanager
def about(**fields: str | None) -> Iterator[None]:
    """Inside a scope, bind ``fields`` to it (kept after the block, for the lines that follow);
    outside any scope, a scope for the block only. The channel of a scope is kept."""
    if bind(keep=("channel",), **fields):
        yield
        return
    with log_scope(**fields):
        yield


def current_fields() -> Mapping[str, str]:
    """The fields of the scope open here (empty outside any scope)."""
    return _FIELDS.get() or {}


# Every pattern above needs one of these (or is at least 11 characters long and then needs a
# digit, "bearer", "desk_" or 85 hex letters): most of what is logged has none, and is not
# scanned ten times for nothing (the service writes a few lines a message).
_SHORT = 11
_MARKS = frozenset("@/=")
_MAYBE_SECRET = re.compile(r"[\d@/=]|(?i:bearer)|desk_|[0-9a-f]{85}")
KNOWN_SECRET_MIN = 8  # shorter configured secrets are not searched for in every line


def redact(text: str) -> str:
    """``text`` with tokens, URL passwords, email addresses and phone numbers masked."""
    if len(text) < _SHORT and _MARKS.isdisjoint(text):
        return text
    if _MAYBE_SECRET.search(text) is None:
        return text
    for pattern, mask in _SECRETS:
        text = pattern.sub(mask, text)
    return text


class ContextFilter(logging.Filter):
    """Adds the scope's fields to a record (its own extra fields win) and masks personal data
    and secrets in all its text: the message with its arguments (of any type: an exception's
    text too), its string fields, its traceback and stack. ``secrets``: the configured ones,
    masked wherever they appear, whatever their shape."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        known = {s for s in secrets if len(s) >= KNOWN_SECRET_MIN}
        self._secrets = sorted(known, key=len, reverse=True)  # a longer one holding a shorter

    def mask(self, text: str) -> str:
        """``text`` with the known secrets and everything ``redact`` finds masked."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "<secret>")
        return redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_fields().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        if record.args or not isinstance(record.msg, str):
            try:
                message = record.getMessage()
            except Exception:  # a broken format: logging reports it; mask what we can
                message = f"{record.msg} {record.args}"
            record.msg, record.args = message, None
        record.msg = self.mask(record.msg)
        for key, value in list(record.__dict__.items()):
            if key not in STANDARD_FIELDS and isinstance(value, str):
                setattr(record, key, self.mask(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True
