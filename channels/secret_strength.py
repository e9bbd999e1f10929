"""Whether a configured secret (a signing key, a webhook secret, a bearer token) is too short or
guessable; used by the settings of every section that holds one."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from pydantic import AfterValidator, SecretStr

GENERATE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
SIGNING_KEY_CHARS = 32  # keys that sign links and webhook calls
TOKEN_CHARS = 16  # shared secrets and bearer tokens
# Placeholders and common words: what is left without them must still be long enough.
_WORDS = (
    "changeme",
    "change",
    "replace",
    "placeholder",
    "example",
    "secret",
    "password",
    "passw0rd",
    "passwd",
    "token",
    "random",
    "default",
    "admin",
    "qwerty",
    "letmein",
)
_SEPARATORS = str.maketrans("", "", "-_. ")


def weakness(secret: str, minimum: int) -> str | None:
    """Why ``secret`` is too weak to be used (too short, a placeholder, a pattern), or None."""
    hint = f"use at least {minimum} random characters, e.g. from: {GENERATE}"
    if len(secret) < minimum:
        return f"too short ({len(secret)} character{'s' * (len(secret) != 1)}): {hint}"
    rest = secret.lower().translate(_SEPARATORS)
    found = [word for word in _WORDS if word in rest]
    for word in found:
        rest = rest.replace(word, "")
    if found and len(rest) < minimum:
        return f"guessable: made of placeholder words ('{found[0]}'): {hint}"
    plain = secret.translate(_SEPARATORS)
    if len(set(plain.lower())) < 5 or _repeats(plain) or _runs(plain):
        return f"guessable: repeated characters or a sequence: {hint}"
    return None


def _repeats(text: str) -> bool:
    """A string that repeats its own pieces (``abcabcabc``, ``aaaa``): most of its 3-letter
    pieces occur more than once. In a random string they almost never do."""
    pieces = [text[i : i + 3] for i in range(len(text) - 2)]
    return bool(pieces) and len(set(pieces)) < 0.75 * len(pieces)


def _runs(text: str) -> bool:
    """Mostly consecutive characters (``0123456789``, ``abcdef``, ``zyxw``)."""
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(text)]
    return bool(steps) and max(steps.count(1), steps.count(-1)) > len(steps) / 2


def strong_secret(minimum: int) -> AfterValidator:
    """A field validator refusing a weak secret (an empty one counts as unset and passes)."""

    def check(value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and text:
            reason = weakness(text, minimum)
            if reason is not None:
                raise ValueError(reason)
        return value

    validator: Callable[[Any], Any] = check
    return AfterValidator(validator)
