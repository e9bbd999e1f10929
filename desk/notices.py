"""Telling customers at once that their appeal is registered, in their channel and language."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from zoneinfo import ZoneInfo

from channels.base import ChannelKind
from desk.events import DomainEvent
from desk.outbox import Outbox
from desk.settings import Settings
from desk.sla import promise_minutes
from desk.texts import Texts, language_of
from models import Appeal, Customer, Message

# What each channel's acknowledgement is made of: template, format, and a subject template.
ACK_TEMPLATES: dict[str, tuple[str, str, str]] = {
    ChannelKind.TELEGRAM.value: ("telegram/ack.html.j2", "html", ""),
    ChannelKind.VK.value: ("vk/ack.txt.j2", "plain", ""),
    ChannelKind.EMAIL.value: ("email/ack.txt.j2", "plain", "email/ack_subject.txt.j2"),
}


class Acknowledgements:
    """Queue the «registered, we answer within …» message for every new appeal (seed 000)."""

    def __init__(
        self,
        outbox: Outbox,
        settings: Settings,
        texts: Texts,
        channels: Collection[str],
        clock: Callable[[], datetime],
    ) -> None:
        self._outbox = outbox
        self._settings = settings
        self._texts = texts
        self._channels = channels
        self._clock = clock

    async def on_event(self, event: DomainEvent) -> None:
        """Queue the acknowledgement once a new appeal's first message is stored and routed
        (so the promise follows its category and priority)."""
        appeal = event.appeal
        channel = str(event.data.get("channel", ""))
        if event.kind != "message.received" or not event.data.get("first") or appeal is None:
            return
        if channel not in self._channels:
            return
        message = await Message.get(id=int(event.data["message_id"]))
        template, fmt, subject_template = ACK_TEMPLATES[channel]
        customer = await Customer.get(id=appeal.customer_id)
        lang = language_of(customer.language)
        values = {
            "number": appeal.number,
            "subject": appeal.subject,
            "name": customer.name,
            "company": self._settings.company.name,
            "promise": self._promise(appeal, lang),
        }
        subject = (
            self._texts.render(subject_template, lang, **values).strip() if subject_template else ""
        )
        await self._outbox.enqueue(
            channel=channel,
            address=message.address,
            text=self._texts.render(template, lang, **values).strip(),
            subject=subject,
            fmt=fmt,
            appeal=appeal,
            extra={"automatic": True},  # an automatic reply: mail carries Auto-Submitted
        )

    def _promise(self, appeal: Appeal, lang: str) -> str:
        """«не позже чем через 2 часа», or «до 11:00 24.11» when working hours push it later."""
        minutes = promise_minutes(self._settings, appeal.category, appeal.priority.value)
        due = appeal.first_response_due
        now = self._clock()
        if due is None or (due - now).total_seconds() <= (minutes + 1) * 60:
            return self._texts.string("ack.within", lang, span=self._texts.duration(minutes, lang))
        local = due.astimezone(ZoneInfo(self._settings.company.timezone))
        return self._texts.string("ack.until", lang, time=local.strftime("%H:%M %d.%m"))
