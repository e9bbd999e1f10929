"""The outbox: every outbound message is a row first, delivered later by the delivery worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from tortoise.expressions import F

from channels.base import Attachment
from models import Appeal, Message, OutboxItem, OutboxStatus


def queue_key(channel: str, address: str) -> str:
    """Rows with the same key are delivered one at a time, in id order (one conversation)."""
    return f"{channel}:{address}"


class Outbox:
    """Writes outbox rows and wakes the delivery workers of this process."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._wakeup = asyncio.Event()

    async def enqueue(
        self,
        *,
        channel: str,
        address: str,
        text: str,
        appeal: Appeal | None = None,
        message: Message | None = None,
        subject: str = "",
        fmt: str = "plain",
        attachments: Sequence[Attachment] = (),
        extra: dict[str, Any] | None = None,
        queue: str | None = None,
        not_before: datetime | None = None,
    ) -> OutboxItem:
        """Add one message to deliver; call inside the transaction that decided to send it.

        ``queue`` names the conversation whose rows go one at a time in order (by default the
        channel and address); ``not_before`` delays the row.
        """
        payload = {
            "text": text,
            "subject": subject,
            "fmt": fmt,
            "attachments": [asdict(a) for a in attachments],
            "extra": extra or {},
        }
        return await OutboxItem.create(
            appeal=appeal,
            message=message,
            channel=channel,
            address=address,
            queue_key=queue or queue_key(channel, address),
            payload=payload,
            status=OutboxStatus.PENDING,
            next_attempt_at=max(self._clock(), not_before or self._clock()),
        )

    @staticmethod
    async def release(holders: Sequence[str], ids: Sequence[int] | None = None) -> int:
        """Give back rows these delivery workers claimed and did not send (a stopping
        process), so any process takes them at once instead of after the lease; the claim's
        attempt does not count. Returns how many."""
        query = OutboxItem.filter(status=OutboxStatus.SENDING, locked_by__in=list(holders))
        if ids is not None:
            query = query.filter(id__in=list(ids))
        return await query.update(
            status=OutboxStatus.PENDING,
            locked_by=None,
            locked_until=None,
            attempts=F("attempts") - 1,
        )

    def wake(self) -> None:
        """Tell this process's delivery workers that rows are waiting (after the commit)."""
        self._wakeup.set()

    async def wait(self, timeout: float) -> None:
        """Sleep until woken or until ``timeout`` seconds pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        self._wakeup.clear()
