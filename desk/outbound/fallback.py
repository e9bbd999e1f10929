"""When a customer's address is unreachable: another contact point, or a call task."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime

from tortoise.expressions import Q

from channels.base import PHONE_CHANNEL, SMS_CHANNEL
from channels.sms.segments import fits
from desk.appeals.event_types import Rerouted
from desk.appeals.events import EventBus
from desk.appeals.outbox import Outbox
from desk.appeals.tasks import CALL_DUE, call_owner, contacts_of, create_task, phones_of
from desk.config.settings import Settings
from desk.config.texts import Texts, language_of
from desk.outbound.sms import SmsGate
from models import Appeal, ContactPoint, Customer, OutboxItem

log = logging.getLogger(__name__)

CALL_UNREACHABLE = "tasks/call_unreachable.txt.j2"
UNREACHABLE = "unreachable"  # the cause of the one open call task an appeal keeps for it


class Fallback:
    """Marks a dead contact point and reroutes its message (called inside the failure's
    transaction, so the reroute and the failure commit together)."""

    def __init__(
        self,
        outbox: Outbox,
        events: EventBus,
        texts: Texts,
        channels: Collection[str],
        clock: Callable[[], datetime],
        settings: Settings,
        sms: SmsGate | None = None,
    ) -> None:
        self._sms = sms  # an SMS to the customer's phone comes before a call task
        self._outbox = outbox
        self._events = events
        self._texts = texts
        self._channels = channels  # the channels this service can deliver to
        self._clock = clock
        self._settings = settings

    async def reroute(self, item: OutboxItem, reason: str) -> None:
        """Mark ``item``'s address unreachable; send its message elsewhere or make a call task."""
        dead = await ContactPoint.filter(channel=item.channel, address=item.address).first()
        if dead is not None and dead.reachable:
            dead.reachable = False
            await dead.save(update_fields=["reachable"])
        if item.appeal_id is None:
            if item.channel == SMS_CHANNEL:  # a notice of no appeal (an order's stage)
                await self._call_about_sms(item, reason)
            return
        appeal = await Appeal.get(id=item.appeal_id)
        await self.elsewhere(
            appeal,
            item.channel,
            item.address,
            text=str(item.payload.get("text", "")),
            subject=str(item.payload.get("subject", "")),
            reason=reason,
            outbox_id=item.id,
        )

    async def elsewhere(
        self,
        appeal: Appeal,
        channel: str,
        address: str,
        *,
        text: str,
        subject: str,
        reason: str,
        outbox_id: int | None = None,
    ) -> None:
        """A message for ``appeal`` that cannot go to (``channel``, ``address``): to the
        customer's latest other reachable contact point, else into the appeal's one open call
        task for an unreachable customer (with the text, and what to do without a phone)."""
        customer = await Customer.get(id=appeal.customer_id)
        other = (
            await ContactPoint.filter(
                customer_id=customer.id, reachable=True, channel__in=list(self._channels)
            )
            .filter(~Q(channel=channel, address=address))  # not .exclude(): see TECH-NOTES
            .order_by("-last_seen_at", "-id")
            .first()
        )
        route = (other.channel, other.address) if other is not None else None
        if route is None and channel != SMS_CHANNEL:
            route = await self._sms_route(customer, text)
        if route is not None:
            await self._outbox.enqueue(
                channel=route[0],
                address=route[1],
                text=text,
                subject=subject,
                appeal=appeal,
                message=None,
            )
            await self._events.emit(
                Rerouted(
                    actor="delivery",
                    appeal=appeal,
                    outbox_id=outbox_id,
                    before=channel,
                    after=route[0],
                    reason=reason,
                )
            )
            log.info("delivery rerouted", extra={"appeal": appeal.number, "to": route[0]})
            return
        await self._call(customer, appeal, channel, address, text=text, reason=reason)

    async def _sms_route(self, customer: Customer, text: str) -> tuple[str, str] | None:
        """The customer's phone by SMS, when SMS may go now and ``text`` fits without being
        shortened (a long answer is read out in a call instead)."""
        if self._sms is None or not fits(text, self._sms.max_parts):
            return None
        phone = (
            await ContactPoint.filter(
                customer_id=customer.id, channel=PHONE_CHANNEL, reachable=True
            )
            .order_by("-last_seen_at", "-id")
            .first()
        )
        if phone is None or not await self._sms.usable(self._sms.parts(text)):
            return None
        return SMS_CHANNEL, phone.address

    async def _call_about_sms(self, item: OutboxItem, reason: str) -> None:
        """An SMS of no appeal that cannot go: a call task for the phone's customer."""
        point = await ContactPoint.filter(channel=PHONE_CHANNEL, address=item.address).first()
        if point is None:
            return
        customer = await Customer.get(id=point.customer_id)
        text = str(item.payload.get("text", ""))
        await self._call(customer, None, item.channel, item.address, text=text, reason=reason)

    async def _call(
        self,
        customer: Customer,
        appeal: Appeal | None,
        channel: str,
        address: str,
        *,
        text: str,
        reason: str,
    ) -> None:
        """The appeal's one open call task for an unreachable customer (with the text, and
        what to do without a phone); a customer's own task without an appeal."""
        lang = language_of(self._settings.company.language)
        task_text = self._texts.render(
            CALL_UNREACHABLE,
            lang,
            number=(appeal.number or "") if appeal is not None else "",
            name=customer.name,
            channel=channel,
            address=address,
            phones=await phones_of(customer.id),
            contacts=await contacts_of(customer.id),
            text=text,
        ).strip()
        await create_task(
            self._events,
            kind="call",
            text=task_text,
            due_at=self._clock() + CALL_DUE,
            actor="delivery",
            reason=reason,
            appeal=appeal,
            customer=customer,
            assignee_id=await call_owner(self._settings, appeal, customer.id),
            once=UNREACHABLE,
        )
        log.info(
            "call task for an unreachable customer",
            extra={"appeal": appeal.number if appeal is not None else None},
        )
