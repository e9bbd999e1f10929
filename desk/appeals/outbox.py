"""The outbox: every outbound message is a row first, delivered later by the delivery worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from tortoise.expressions import F

from channels.base import Attachment
from desk.appeals.held import holding
from models import Appeal, Message, OutboxItem, OutboxStatus, sql

HELD_COLUMNS = (
    "appeal_id",
    "channel",
    "address",
    "queue_key",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
)
# Inside ``batched()``: rows queued with ``queue`` and not written yet.
_held: ContextVar[list[tuple[Any, ...]] | None] = ContextVar("outbox_held", default=None)


def batched() -> AbstractAsyncContextManager[None]:
    """Inside, rows queued with ``Outbox.queue`` are written together (one multi-row INSERT)
    when the block ends, or earlier when the outbox is read (``flush``)."""
    return holding(_held, [], flush)


async def flush() -> None:
    """Write the rows ``batched()`` holds so far (nothing outside it); a reader of the outbox
    inside a batch calls this first."""
    held = _held.get()
    if held:
        rows, held[:] = list(held), []
        await sql.insert_many("outbox", HELD_COLUMNS, rows, returning=None)


def queue_key(channel: str, address: str) -> str:
    """Rows with the same key are delivered one at a time, in id order (one conversation)."""
    return f"{channel}:{address}"


def _payload(
    text: str,
    subject: str,
    fmt: str,
    attachments: Sequence[Attachment],
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "text": text,
        "subject": subject,
        "fmt": fmt,
        "attachments": [asdict(a) for a in attachments],
        "extra": extra or {},
    }


async def waiting_in(queue: str, *, after: datetime | None = None, **extra: Any) -> bool:
    """Whether a row of ``queue`` still waits (due later than ``after``, when given) whose
    payload's ``extra`` has these fields; the batch's own rows count too.

    The caller counts on that row to show what its transaction changes, so the row is locked
    until the commit (PostgreSQL): a delivery worker that claimed it meanwhile would read the
    state from before the commit and send that, and a resolved appeal's card stayed «waiting»
    with its topic open (CI met it). A row a claim has taken first is not waiting any more.
    On SQLite the one writer orders the claim and the transaction already."""
    await flush()
    rows = OutboxItem.filter(queue_key=queue, status=OutboxStatus.PENDING)
    if after is not None:
        rows = rows.filter(next_attempt_at__gt=after)
    for row_id, payload in await rows.order_by("id").values_list("id", "payload"):
        found: dict[str, Any] = payload.get("extra", {}) if isinstance(payload, dict) else {}
        if not all(found.get(k) == v for k, v in extra.items()):
            continue
        if not sql.is_postgres(sql.connection()):
            return True
        still = OutboxItem.filter(id=row_id, status=OutboxStatus.PENDING)
        if await still.select_for_update().only("id"):
            return True
    return False


async def waiting_after(
    queue: str, after_id: int, limit: int, only: list[int] | None = None
) -> list[OutboxItem]:
    """The rows of ``queue`` still waiting behind row ``after_id``, in order (of ``only``,
    when given)."""
    rows = OutboxItem.filter(queue_key=queue, status=OutboxStatus.PENDING, id__gt=after_id)
    if only is not None:
        rows = rows.filter(id__in=only)
    return list(await rows.order_by("id").limit(limit))


async def mark_merged(ids: Sequence[int], external_id: str) -> None:
    """Rows whose content went out inside another row's post: sent, as that post."""
    await OutboxItem.filter(id__in=list(ids), status=OutboxStatus.PENDING).update(
        status=OutboxStatus.SENT, external_id=external_id, last_error="merged"
    )


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
        return await OutboxItem.create(
            appeal=appeal,
            message=message,
            channel=channel,
            address=address,
            queue_key=queue or queue_key(channel, address),
            payload=_payload(text, subject, fmt, attachments, extra),
            status=OutboxStatus.PENDING,
            next_attempt_at=max(self._clock(), not_before or self._clock()),
        )

    async def queue(
        self,
        *,
        channel: str,
        address: str,
        text: str,
        appeal: Appeal | None = None,
        subject: str = "",
        fmt: str = "plain",
        extra: dict[str, Any] | None = None,
        queue: str | None = None,
        not_before: datetime | None = None,
    ) -> None:
        """``enqueue`` for a caller that needs no row back: inside ``batched()`` the row is
        written with the batch's others in one INSERT (in the order queued, so one
        conversation's rows keep their order if all of them are queued this way)."""
        held = _held.get()
        if held is None:
            await self.enqueue(
                channel=channel,
                address=address,
                text=text,
                appeal=appeal,
                subject=subject,
                fmt=fmt,
                extra=extra,
                queue=queue,
                not_before=not_before,
            )
            return
        now = self._clock()
        held.append(
            (
                appeal.id if appeal is not None else None,
                channel,
                address,
                queue or queue_key(channel, address),
                sql.json_value(_payload(text, subject, fmt, (), extra)),
                OutboxStatus.PENDING.value,
                0,
                max(now, not_before or now),
                "",
                datetime.now(UTC),  # as the ORM's auto_now_add writes it: the real time
            )
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
