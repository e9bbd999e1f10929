"""Outgoing webhooks of automation rules: a signed JSON POST, retried through the outbox.

The receiver checks ``X-Desk-Signature: sha256=<hex>``, an HMAC-SHA256 with the shared secret
of ``<X-Desk-Timestamp>.<body>``, and may drop a repeated ``X-Desk-Delivery`` (a retry after a
timeout can deliver twice)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime

import aiohttp

from channels.base import DeliveryFailed, OutboundMessage, RateLimited, Rejected

KIND = "webhook"
TIMEOUT_S = 10.0
DEFAULT_RETRY_AFTER_S = 30.0


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of ``X-Desk-Signature`` for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class WebhookSender:
    """The ``webhook`` channel adapter: ``address`` is the URL, ``extra.body`` the JSON."""

    kind = KIND

    def __init__(self, secret: bytes, clock: Callable[[], datetime]) -> None:
        self._secret = secret
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, out: OutboundMessage) -> str:
        body = json.dumps(out.extra.get("body", {}), ensure_ascii=False, default=str).encode()
        stamp = str(int(self._clock().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "X-Desk-Timestamp": stamp,
            "X-Desk-Signature": signature(self._secret, stamp, body),
            "X-Desk-Delivery": str(out.outbox_id),
        }
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        try:
            async with self._session.post(out.address, data=body, headers=headers) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryFailed(KIND, f"{type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            return f"{status}"
        if status == 429:
            delay = float(retry_after) if retry_after.isdigit() else DEFAULT_RETRY_AFTER_S
            raise RateLimited(delay)
        if status >= 500 or status == 408:
            raise DeliveryFailed(KIND, f"HTTP {status}")
        raise Rejected(KIND, f"HTTP {status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
