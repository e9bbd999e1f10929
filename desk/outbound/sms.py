"""SMS as the desk uses it: the day's parts cap and the stops (no money, refused credentials)
in front of the SMS adapter, and the delivery reports asked for afterwards.

``SmsGate`` is the ``sms`` channel's adapter the delivery worker calls: it sends through
``channels/sms/sender.py`` unless SMS are stopped, and it is what the notifier asks whether an
SMS may be chosen at all. A stop reroutes the message at once (``Unavailable``: a call task)
and is told to the staff group once a day per reason (``channel.stopped`` in the history).
``SmsReports`` asks the gateway what became of sent SMS and records it on the outbox row and
in the appeal's history; an SMS the gateway reports undelivered becomes a call task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from channels.base import (
    SMS_CHANNEL,
    DeliveryError,
    OutboundMessage,
    Rejected,
    Unavailable,
    Unreachable,
)
from channels.settings import SmsSettings
from channels.sms.provider import Receipt
from channels.sms.segments import count
from channels.sms.sender import SmsSender
from desk.appeals.event_types import ChannelStopped, DeliveryReceipt
from desk.appeals.events import EventBus
from desk.appeals.outbox import Outbox
from desk.config.texts import Texts, language_of
from desk.outbound.staff_group import StaffGroup
from models import Appeal, Event, OutboxItem, OutboxStatus

log = logging.getLogger(__name__)

STOPPED_TEMPLATE = "telegram/sms_stopped.html.j2"
DAILY_CAP, NO_MONEY, CREDENTIALS, SENDER = "daily_cap", "no_money", "credentials", "sender"
REPORTS_PER_PASS = 100
UndeliveredHook = Callable[[OutboxItem, str], Any]


def _stop_reason(exc: Unavailable) -> str:
    if "credentials" in exc.reason:
        return CREDENTIALS
    return SENDER if "sender" in exc.reason else NO_MONEY


class SmsGate:
    """The ``sms`` adapter with the day's cap and the stops in front of the sender."""

    kind = SMS_CHANNEL

    def __init__(
        self,
        settings: SmsSettings,
        sender: SmsSender,
        *,
        zone: ZoneInfo,
        clock: Callable[[], datetime],
        events: EventBus,
        outbox: Outbox,
        texts: Texts,
        language: str,
        staff: StaffGroup | None = None,
    ) -> None:
        self._settings = settings
        self.sender = sender
        self._zone = zone
        self._clock = clock
        self._events = events
        self._outbox = outbox
        self._texts = texts
        self._language = language_of(language)
        self._staff = staff
        self._stops: dict[str, datetime] = {}  # reason -> until
        # Sends of this process whose record the delivery worker may not have written yet
        # (outbox id -> (day, parts)): counted until the row shows as sent.
        self._unrecorded: dict[int, tuple[datetime, int]] = {}
        self._lock = asyncio.Lock()  # one SMS at a time here: the cap is checked, then spent

    @property
    def max_parts(self) -> int:
        """The parts one SMS may take."""
        return self._settings.max_parts

    def prepare(self, text: str) -> str:
        """The text as it will go (shortened to ``max_parts``)."""
        return self.sender.prepare(text)

    def parts(self, text: str) -> int:
        """The parts ``text`` will take as sent."""
        return count(self.prepare(text)).parts

    def day_start(self, now: datetime) -> datetime:
        """The start of ``now``'s day in company time, in UTC."""
        local = now.astimezone(self._zone)
        return datetime.combine(local.date(), datetime.min.time(), self._zone).astimezone(UTC)

    def _stopped(self, now: datetime) -> str | None:
        for reason, until in list(self._stops.items()):
            if until > now:
                return reason
            del self._stops[reason]
        return None

    async def spent_today(self) -> int:
        """The parts sent today (company time), by every process."""
        now = self._clock()
        start = self.day_start(now)
        rows = await OutboxItem.filter(
            channel=SMS_CHANNEL, status=OutboxStatus.SENT, sent_at__gte=start
        ).values_list("id", "payload")
        recorded = {row_id for row_id, _ in rows}
        self._unrecorded = {
            i: (day, parts)
            for i, (day, parts) in self._unrecorded.items()
            if i not in recorded and day == start
        }
        spent = sum(self.parts(str(p.get("text", ""))) for _, p in rows if isinstance(p, dict))
        return spent + sum(parts for _, parts in self._unrecorded.values())

    async def usable(self, parts: int = 1) -> bool:
        """Whether an SMS of ``parts`` parts may be chosen now (not stopped, inside the cap);
        a cap found spent stops SMS for the day (the staff are told)."""
        now = self._clock()
        if self._stopped(now) is not None:
            return False
        cap = self._settings.daily_parts
        if cap is None:
            return True
        spent = await self.spent_today()
        if spent >= cap:
            await self._stop(DAILY_CAP, self.day_start(now) + timedelta(days=1), f"{spent}/{cap}")
            return False
        return spent + parts <= cap

    async def deliver(self, out: OutboundMessage) -> str:
        """Send one row unless SMS are stopped or the day's cap would be passed (then
        ``Unavailable``: the row is rerouted); returns the gateway's id."""
        async with self._lock:
            now = self._clock()
            stopped = self._stopped(now)
            if stopped is not None:
                raise Unavailable(SMS_CHANNEL, f"SMS are stopped ({stopped})")
            parts = self.parts(out.text)
            cap = self._settings.daily_parts
            if cap is not None:
                spent = await self.spent_today()
                if spent + parts > cap:
                    until = self.day_start(now) + timedelta(days=1)
                    await self._stop(DAILY_CAP, until, f"{spent}/{cap}")
                    raise Unavailable(SMS_CHANNEL, f"the day's cap of {cap} parts is spent")
            try:
                sent = await self.sender.send(out)
            except Rejected as exc:  # this text will never go by SMS: the customer is called
                raise Unreachable(SMS_CHANNEL, exc.reason) from exc
            except Unavailable as exc:
                reason = _stop_reason(exc)
                await self._stop(
                    reason, now + timedelta(minutes=self._settings.pause_minutes), exc.reason
                )
                raise
            self._unrecorded[out.outbox_id] = (self.day_start(now), parts)
            return sent.id

    async def _stop(self, reason: str, until: datetime, detail: str) -> None:
        """Stop SMS until ``until``; the history and the staff group hear of it once a day."""
        self._stops[reason] = until
        log.warning("sms stopped", extra={"reason": reason, "until": until.isoformat()})
        start = self.day_start(self._clock())
        async with in_transaction():
            told = await Event.filter(kind=ChannelStopped.KIND, created_at__gte=start).values_list(
                "data", flat=True
            )
            if any(isinstance(d, dict) and d.get("reason") == reason for d in told):
                return
            await self._events.emit(
                ChannelStopped(
                    actor="delivery",
                    channel=SMS_CHANNEL,
                    reason=reason,
                    until=until.isoformat(),
                    detail=detail,
                )
            )
            if self._staff is not None:
                text = self._texts.render(
                    STOPPED_TEMPLATE,
                    self._language,
                    reason=reason,
                    until=until.astimezone(self._zone).strftime("%H:%M %d.%m"),
                    detail=detail,
                    cap=self._settings.daily_parts,
                ).strip()
                await self._staff.enqueue(None, "post", text=text)
        self._outbox.wake()


class SmsReports:
    """Asks the gateway what became of the SMS sent (delivered or not) and records it."""

    def __init__(
        self,
        settings: SmsSettings,
        gate: SmsGate,
        events: EventBus,
        clock: Callable[[], datetime],
        on_undelivered: UndeliveredHook | None = None,
    ) -> None:
        self._settings = settings
        self._gate = gate
        self._events = events
        self._clock = clock
        self._on_undelivered = on_undelivered

    async def poll(self) -> int:
        """One pass over the sent SMS still without a report; returns the reports recorded."""
        now = self._clock()
        since = now - timedelta(hours=self._settings.receipt_hours)
        await OutboxItem.filter(
            channel=SMS_CHANNEL,
            status=OutboxStatus.SENT,
            receipt__isnull=True,
            sent_at__lt=since,
        ).update(receipt="unknown")
        rows = await (
            OutboxItem.filter(
                channel=SMS_CHANNEL,
                status=OutboxStatus.SENT,
                receipt__isnull=True,
                external_id__isnull=False,
            )
            .order_by("id")
            .limit(REPORTS_PER_PASS)
        )
        recorded = 0
        for row in rows:
            try:
                status = await self._gate.sender.provider.status(str(row.external_id))
            except DeliveryError as exc:  # asked again next pass
                log.info("sms report not read", extra={"outbox_id": row.id, "reason": str(exc)})
                continue
            if not status.receipt.final:
                continue
            await self._record(row, status.receipt, status.detail)
            recorded += 1
        return recorded

    async def _record(self, row: OutboxItem, receipt: Receipt, detail: str) -> None:
        """The report on the row and in the appeal's history, one transaction; an undelivered
        SMS goes the way of an unreachable address (a call task)."""
        async with in_transaction():
            changed = await OutboxItem.filter(id=row.id, receipt__isnull=True).update(
                receipt=receipt.value,
                last_error="" if receipt is Receipt.DELIVERED else f"not delivered: {detail}",
            )
            if not changed:  # another process recorded it meanwhile
                return
            appeal = await Appeal.get_or_none(id=row.appeal_id) if row.appeal_id else None
            if appeal is not None:
                await self._events.emit(
                    DeliveryReceipt(
                        actor="delivery",
                        appeal=appeal,
                        outbox_id=row.id,
                        channel=SMS_CHANNEL,
                        receipt=receipt.value,
                        external_id=str(row.external_id),
                        detail=detail,
                    )
                )
            if receipt is Receipt.FAILED and self._on_undelivered is not None:
                await self._on_undelivered(row, f"sms not delivered ({detail or 'failed'})")
        log.info("sms report", extra={"outbox_id": row.id, "receipt": receipt.value})
