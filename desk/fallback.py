"""When a customer's address is unreachable: another contact point, or a call task."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime

from desk.events import EventBus
from desk.outbox import Outbox
from desk.tasks import CALL_DUE, create_task, phones_of
from desk.texts import Texts
from models import Appeal, ContactPoint, Customer, OutboxItem

log = logging.getLogger(__name__)


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
    ) -> None:
        self._outbox = outbox
        self._events = events
        self._texts = texts
        self._channels = channels  # the channels this service can deliver to
        self._clock = clock

    async def reroute(self, item: OutboxItem, reason: str) -> None:
        """Mark ``item``'s address unreachable; send its message elsewhere or make a call task."""
        dead = await ContactPoint.filter(channel=item.channel, address=item.address).first()
        if dead is not None and dead.reachable:
            dead.reachable = False
            await dead.save(update_fields=["reachable"])
        if item.appeal_id is None:
            return
        appeal = await Appeal.get(id=item.appeal_id)
        customer = await Customer.get(id=appeal.customer_id)
        candidates = ContactPoint.filter(
            customer_id=customer.id, reachable=True, channel__in=list(self._channels)
        )
        if dead is not None:
            candidates = candidates.exclude(id=dead.id)
        other = await candidates.order_by("-last_seen_at", "-id").first()
        if other is not None:
            await self._outbox.enqueue(
                channel=other.channel,
                address=other.address,
                text=str(item.payload.get("text", "")),
                subject=str(item.payload.get("subject", "")),
                appeal=appeal,
                message=None,
            )
            await self._events.emit(
                "delivery.rerouted",
                actor="delivery",
                appeal=appeal,
                outbox_id=item.id,
                before=item.channel,
                after=other.channel,
                reason=reason,
            )
            log.info("delivery rerouted", extra={"appeal": appeal.number, "to": other.channel})
            return
        text = self._texts.string(
            "task.call_unreachable",
            customer.language,
            number=appeal.number,
            channel=item.channel,
            phones=await phones_of(customer.id) or "—",
        )
        await create_task(
            self._events,
            kind="call",
            text=text,
            due_at=self._clock() + CALL_DUE,
            actor="delivery",
            reason=reason,
            appeal=appeal,
        )
        log.info("call task created for unreachable customer", extra={"appeal": appeal.number})
