"""Automatic messages to customers: through which channel, from which template, and when
(templates: see ``desk/config/notice_templates.py``)."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from channels.base import PHONE_CHANNEL, SMS_CHANNEL, ChannelKind
from channels.sms.segments import count
from desk.appeals.events import CONTACTS, EventBus, batch_held
from desk.appeals.lifecycle import Lifecycle
from desk.appeals.outbox import Outbox, queue_key
from desk.appeals.tasks import CALL_DUE, call_owner, contacts_of, create_task, phones_of
from desk.config.notice_templates import EMAIL_SUBJECT, GENERIC, SMS_VARIANT, VARIANTS
from desk.config.settings import Settings
from desk.config.texts import Texts, language_of
from desk.outbound.sms import SmsGate
from models import Appeal, ContactPoint, Customer
from router.automation import QuietHours

log = logging.getLogger(__name__)

Policy = Literal["preferred", "conversation", "any"]
Pages = Callable[[Sequence[str]], str | None]  # one page offering all these choices, if any

CALL_SCRIPT = "tasks/call_script.txt.j2"
NO_CHANNEL = "no_channel"  # the cause of the one open call task an appeal keeps for it


def local_zone(settings: Settings, customer: Customer) -> ZoneInfo:
    """The customer's time zone, else the company's."""
    for name in (customer.timezone, settings.company.timezone):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("unknown time zone", extra={"zone": name, "customer": customer.id})
    return ZoneInfo("UTC")


def next_allowed(now: datetime, zone: ZoneInfo, window: QuietHours) -> datetime:
    """``now`` if it is inside the allowed window in ``zone``, else the window's next start
    (a window may span midnight, e.g. 20:00–02:00)."""
    local = now.astimezone(zone)
    at, start, end = local.time(), window.start, window.end
    inside = start <= at < end if start <= end else (at >= start or at < end)
    if inside or start == end:
        return now
    day = local.date() if at < start else local.date() + timedelta(days=1)
    return datetime.combine(day, start, tzinfo=zone).astimezone(UTC)


def _live(appeal: Appeal | None, now: datetime, window: QuietHours) -> bool:
    """Whether the appeal's conversation is going on now (a message either way in the last
    ``window.live_minutes``): what follows it, the resolution or the rating prompt, is not
    held for quiet hours, as the agent's answer a moment before was not."""
    last = appeal.last_message_at if appeal is not None else None
    return last is not None and now - last <= timedelta(minutes=window.live_minutes)


@dataclass(frozen=True, slots=True)
class Button:
    """A choice under a notification: its label per language and the action it answers with
    (``oc:<order>:<choice>``, ``rt:<request>:<score>``)."""

    label: dict[str, str]
    action: str


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of one notification (written to the history)."""

    result: Literal["queued", "call_task", "skipped"]
    channel: str = ""
    at: datetime | None = None
    outbox_id: int | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"result": self.result}
        if self.channel:
            out["channel"] = self.channel
        if self.at is not None:
            out["not_before"] = self.at.isoformat()
        if self.outbox_id is not None:
            out["outbox_id"] = self.outbox_id
        return out


class Notifier:
    """Queues notifications in the outbox by the channel policy, holding them for quiet hours;
    with no reachable contact point, the assignee gets a call task with the script instead."""

    def __init__(
        self,
        outbox: Outbox,
        events: EventBus,
        lifecycle: Lifecycle,
        settings: Settings,
        texts: Texts,
        channels: Collection[str],
        clock: Callable[[], datetime],
        links: Callable[[str], str],
        *,
        sms: SmsGate | None = None,
        pages: Pages | None = None,
    ) -> None:
        self._outbox = outbox
        self._links = links  # the confirming page of a choice for mail
        self._pages = pages  # a page of all of a message's choices (the rating page), for SMS
        self._sms = sms  # SMS to a phone: the last channel before a call task
        self._events = events
        self._lifecycle = lifecycle
        self._settings = settings
        self._texts = texts
        self._channels = channels  # the customer channels this service can deliver to
        self._clock = clock

    async def notify(
        self,
        customer: Customer,
        template: str,
        *,
        appeal: Appeal | None = None,
        policy: Policy = "preferred",
        quiet: QuietHours | None = None,
        values: dict[str, Any] | None = None,
        buttons: Sequence[Button] = (),
        columns: int = 1,
        actor: str = "automation",
        call_if_unreachable: bool = True,
        to: tuple[str, str] | None = None,
    ) -> Sent:
        """Queue ``template`` for ``customer``; call inside the transaction that decided it.
        ``to`` (channel, address) answers where the customer just acted instead of the policy."""
        if customer.do_not_contact:
            return Sent("skipped")
        lang = language_of(customer.language)
        context = {**self.values(customer, appeal, lang), **(values or {})}
        route = to or await self.route(customer, appeal, policy)
        if route is None:
            if not call_if_unreachable:
                return Sent("skipped")
            script = self.render(template, ChannelKind.WEB.value, lang, context)[0]
            await self._call_task(customer, appeal, script, lang, actor)
            return Sent("call_task")
        channel, address = route
        text, fmt = self.render(template, channel, lang, context)
        subject = ""
        if channel == ChannelKind.EMAIL.value:
            subject_path = EMAIL_SUBJECT.format(template)
            subject = (
                self._texts.render(subject_path, lang, **context).strip()
                if self._texts.exists(subject_path, lang)
                else self._texts.string("notify.subject", lang, **context)
            )
        now = self._clock()
        at = now
        if quiet is not None and not _live(appeal, now, quiet):
            at = next_allowed(now, local_zone(self._settings, customer), quiet)
        extra: dict[str, Any] = {"automatic": True}  # an automatic message: Auto-Submitted
        if buttons:
            text = self._buttons(channel, buttons, columns, lang, text, extra)
        if channel == SMS_CHANNEL and self._sms is not None:
            text = self._sms.prepare(text)  # shortened to the parts cap, links kept
            extra["parts"] = count(text).parts
        item = await self._outbox.enqueue(
            channel=channel,
            address=address,
            text=text,
            subject=subject,
            fmt=fmt,
            appeal=appeal,
            extra=extra,
            not_before=at,
            # Held for quiet hours: in a queue of its own, so the conversation goes on meanwhile.
            queue=f"{queue_key(channel, address)}:held" if at > now else None,
        )
        return Sent("queued", channel, at if at > now else None, item.id)

    def _buttons(
        self,
        channel: str,
        buttons: Sequence[Button],
        columns: int,
        lang: str,
        text: str,
        extra: dict[str, Any],
    ) -> str:
        """Put the choices on the message: Telegram inline buttons, a VK inline keyboard, or in
        a mail links to a page where the choice is confirmed (a link scanner picks nothing)."""
        labels = [(b.label.get(lang) or next(iter(b.label.values()), b.action), b) for b in buttons]
        width = max(1, columns)
        rows = [labels[i : i + width] for i in range(0, len(labels), width)]
        if channel == ChannelKind.TELEGRAM.value:
            extra["reply_markup"] = {
                "inline_keyboard": [
                    [{"text": label[:64], "callback_data": b.action} for label, b in row]
                    for row in rows
                ]
            }
        elif channel == ChannelKind.VK.value:
            extra["keyboard"] = {
                "inline": True,
                "buttons": [
                    [
                        {
                            "action": {
                                "type": "callback",
                                "label": label[:40],
                                "payload": json.dumps({"choice": b.action}),
                            }
                        }
                        for label, b in row
                    ]
                    for row in rows
                ],
            }
        elif channel == SMS_CHANNEL:
            page = self._pages([b.action for b in buttons]) if self._pages else None
            lines = [page] if page else [f"{label}: {self._links(b.action)}" for label, b in labels]
            text = "\n".join([text, *lines])
        else:
            urls = [(label, self._links(b.action)) for label, b in labels]
            body = html.escape(text).replace("\n", "<br>\n")
            items = "".join(
                f'<li><a href="{html.escape(url)}">{html.escape(label)}</a></li>'
                for label, url in urls
            )
            extra["html"] = f"{body}\n<ul>{items}</ul>"  # the mail's HTML part: real links
            text = "\n\n".join([text, "\n".join(f"{label}: {url}" for label, url in urls)])
        return text

    def render(
        self, template: str, channel: str, lang: str, context: dict[str, Any]
    ) -> tuple[str, str]:
        """(text, format) of a notification for one channel."""
        default = SMS_VARIANT if channel == SMS_CHANNEL else (GENERIC, "plain")
        pattern, fmt = VARIANTS.get(channel, default)
        path = pattern.format(template)
        if not self._texts.exists(path, lang):
            path, fmt = GENERIC.format(template), "plain"
        return self._texts.render(path, lang, **context).strip(), fmt

    def values(self, customer: Customer, appeal: Appeal | None, lang: str) -> dict[str, Any]:
        """What every notification template may use."""
        zone = local_zone(self._settings, customer)
        out: dict[str, Any] = {
            "name": customer.name,
            "company": self._settings.company.name,
            "number": "",
            "subject": "",
            "date": "",
        }
        if appeal is not None:
            created = appeal.created_at or self._clock()
            out |= {
                "number": appeal.number or "",
                "subject": appeal.subject,
                "date": created.astimezone(zone).strftime("%d.%m.%Y"),
                "promise": self._promise(appeal, lang),
            }
        return out

    def _promise(self, appeal: Appeal, lang: str) -> str:
        """«не позже чем через 2 часа», or «до 11:00 24.11» when working hours push it later."""
        minutes = self._settings.sla.promise_minutes(appeal.category, appeal.priority.value)
        due = appeal.first_response_due
        now = self._clock()
        if due is None or (due - now).total_seconds() <= (minutes + 1) * 60:
            return self._texts.string("ack.within", lang, span=self._texts.duration(minutes, lang))
        local = due.astimezone(ZoneInfo(self._settings.company.timezone))
        return self._texts.string("ack.until", lang, time=local.strftime("%H:%M %d.%m"))

    async def route(
        self, customer: Customer, appeal: Appeal | None, policy: Policy
    ) -> tuple[str, str] | None:
        """The channel and address for a notification, or None when nothing is reachable: a
        chat or a mail by the policy; an SMS to the customer's phone when they prefer SMS or
        nothing else reaches them (and SMS may go now)."""
        wanted = [*self._channels, PHONE_CHANNEL] if self._sms is not None else self._channels
        if not wanted:
            return None  # no channel to send by is enabled
        made: list[ContactPoint] | None = batch_held(CONTACTS, customer.id)
        if made is not None:  # a customer new in this batch: never seen, newest first
            found = sorted(
                (p for p in made if p.reachable and p.channel in wanted),
                key=lambda p: -p.id,
            )
        else:
            found = list(
                await ContactPoint.filter(
                    customer_id=customer.id, reachable=True, channel__in=list(wanted)
                ).order_by("-last_seen_at", "-id")
            )
        phones = [p for p in found if p.channel == PHONE_CHANNEL]
        points = [p for p in found if p.channel != PHONE_CHANNEL]
        sms = (SMS_CHANNEL, phones[0].address) if phones else None
        preferred_sms = customer.preferred_channel == SMS_CHANNEL
        if sms is not None and preferred_sms and await self._sms_usable():
            return sms
        if not points:
            return sms if sms is not None and await self._sms_usable() else None
        conversation: tuple[str, str] | None = None
        if appeal is not None:
            channel, address = await self._lifecycle.reply_route(appeal)
            if any(p.channel == channel and p.address == address for p in points):
                conversation = (channel, address)
        preferred = next(
            (
                (p.channel, p.address)
                for p in points
                if customer.preferred_channel and p.channel == customer.preferred_channel
            ),
            None,
        )
        latest = (points[0].channel, points[0].address)
        order = {
            "conversation": (conversation, preferred, latest),
            "preferred": (preferred, conversation, latest),
            "any": (latest,),
        }[policy]
        return next((r for r in order if r is not None), None)

    async def _sms_usable(self) -> bool:
        """Whether an SMS may be chosen now (enabled, not stopped, the day's cap not spent)."""
        return self._sms is not None and await self._sms.usable()

    async def _call_task(
        self, customer: Customer, appeal: Appeal | None, script: str, lang: str, actor: str
    ) -> None:
        text = self._texts.render(
            CALL_SCRIPT,
            lang,
            name=customer.name,
            phones=await phones_of(customer.id),
            contacts=await contacts_of(customer.id),
            script=script,
        ).strip()
        await create_task(
            self._events,
            kind="call",
            text=text,
            due_at=self._clock() + CALL_DUE,
            actor=actor,
            reason=self._texts.string("task.no_channel", self._settings.company.language),
            appeal=appeal,
            customer=customer,
            assignee_id=await call_owner(self._settings, appeal, customer.id),
            once=NO_CHANNEL,
        )
