"""Domain events become rows for the staff group: cards, customer messages, notes, the feed."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from bots.callbacks import AppealButton, CallButton, CategoryButton
from channels.base import STAFF_CHANNEL
from desk.appeals.agents import agent_by_id
from desk.appeals.customers import customer_of
from desk.appeals.event_types import (
    AppealAssigned,
    AppealCategorised,
    AppealCreated,
    AppealImportant,
    AppealTagged,
    AppealTaken,
    AppealTransferred,
    AppealUnsorted,
    DomainEvent,
    MessageEdited,
    MessageExtended,
    MessageReceived,
    MessageSent,
    NoteAdded,
    PriorityChanged,
    RatingCommented,
    RatingReceived,
    Rerouted,
    SlaBreached,
    SlaRaised,
    StatusMove,
    TaskCreated,
    TaskDue,
    Undelivered,
)
from desk.appeals.events import first_in_batch
from desk.appeals.messages import first_message, message_by_id
from desk.appeals.outbox import Outbox, waiting_in
from desk.config.settings import Settings, categories_of
from desk.config.texts import Texts
from models import Agent, Appeal

FEED_QUEUE = "staff:feed"
# What redraws an appeal's card in its topic; with its first message, what changes the feed.
CARD_EVENTS = (
    StatusMove,
    AppealAssigned,
    AppealTagged,
    PriorityChanged,
    AppealTransferred,
    AppealCategorised,
)
FEED_EVENTS = (*CARD_EVENTS, AppealCreated, MessageReceived, MessageSent)
# Told in the appeal's topic as a post of their own (``telegram/<kind>.html.j2``).
NOTICE_EVENTS = (Undelivered, Rerouted, TaskCreated, TaskDue)


def mention(agent: Agent) -> str:
    """The agent's name as a Telegram HTML mention (their phone rings), or just the name."""
    if agent.telegram_id:
        return user_mention(int(agent.telegram_id), agent.name)
    return html.escape(agent.name, quote=False)


def user_mention(user_id: int, name: str) -> str:
    """A Telegram user's name as an HTML mention: their phone rings."""
    return f'<a href="tg://user?id={user_id}">{html.escape(name, quote=False)}</a>'


def appeal_queue(appeal_id: int) -> str:
    """One queue per appeal: its posts reach its topic in order."""
    return f"staff:{appeal_id}"


class StaffSync:
    """Subscribes to domain events and queues what the staff group must show."""

    def __init__(
        self, outbox: Outbox, settings: Settings, texts: Texts, clock: Callable[[], datetime]
    ) -> None:
        self._outbox = outbox
        self._settings = settings
        self._texts = texts
        self._clock = clock
        self._chat = str(settings.telegram.staff_chat_id)
        self._lang = settings.company.language

    # What ``on_event`` listens to.
    KINDS = (
        *FEED_EVENTS,
        *NOTICE_EVENTS,
        MessageExtended,
        MessageEdited,
        NoteAdded,
        SlaRaised,
        AppealUnsorted,
        AppealImportant,
        RatingReceived,
        RatingCommented,
        AppealTaken,
    )

    async def on_event(self, event: DomainEvent) -> None:
        """Queue the staff-group side of one event (runs inside its transaction)."""
        appeal = event.appeal
        if appeal is not None:
            await self._for_appeal(event, appeal)
        if isinstance(event, FEED_EVENTS):
            await self.feed_soon()

    async def _for_appeal(self, event: DomainEvent, appeal: Appeal) -> None:
        match event:
            case AppealCreated():
                await self.card(appeal, new=True)
            case _ if isinstance(event, CARD_EVENTS):
                await self.card(appeal)
            case MessageReceived(album=album, message_id=message_id):
                delay = self._settings.telegram.album_wait_s if album else 0.0
                await self.enqueue(
                    appeal,
                    "relay",
                    message_id=message_id,
                    not_before=self._clock() + timedelta(seconds=delay),
                )
            case MessageExtended(message_id=message_id, added=added):
                await self._album_rest(appeal, message_id, added)
            case MessageEdited(before=before, after=after):
                text = self._texts.render(
                    "telegram/edited.html.j2", self._lang, before=before, after=after
                )
                await self.enqueue(appeal, "post", text=text)
            case MessageSent(source=source) | NoteAdded(source=source) if source != "telegram":
                await self.enqueue(appeal, "echo", message_id=event.message_id)
            case SlaRaised():
                await self._sla(appeal, event)
            case AppealUnsorted():
                await self._picker(appeal)
            case (
                RatingReceived(score=score, comment=comment)
                | RatingCommented(score=score, comment=comment)
            ):
                text = self._texts.render(
                    f"telegram/{event.KIND.replace('.', '_')}.html.j2",
                    self._lang,
                    score=score,
                    comment=comment,
                )
                await self.enqueue(appeal, "post", text=text)
            case AppealTaken(channel=channel, via=via):
                text = self._texts.render(
                    "telegram/appeal_taken.html.j2",
                    self._lang,
                    actor=event.actor,
                    channel=self._texts.channel(channel, self._lang),
                    channel_value=channel,
                    via=via,
                )
                await self.enqueue(appeal, "post", text=text)
            case AppealImportant(reasons=reasons):
                await self.alert(appeal, list(reasons))
            case _ if isinstance(event, NOTICE_EVENTS):
                data = event.data()
                if data.get("channel") == STAFF_CHANNEL:
                    return  # the staff group itself failed: telling it would fail again
                text = self._texts.render(
                    f"telegram/{event.KIND.replace('.', '_')}.html.j2",
                    self._lang,
                    actor=event.actor,
                    **data,
                )
                await self.enqueue(appeal, "post", text=text)

    async def _sla(self, appeal: Appeal, event: SlaRaised) -> None:
        """A warning in the appeal's topic; a breach there and in the managers chat."""
        string = self._texts.string
        target = string(f"sla.{event.target}", self._lang)
        due = datetime.fromisoformat(event.due)
        minutes = max(1, int((due - self._clock()).total_seconds() // 60))
        left = self._texts.duration(minutes, self._lang)
        line = string(event.KIND, self._lang, number=appeal.number, target=target, left=left)
        text = html.escape(line, quote=False)
        agent = await agent_by_id(appeal.assignee_id)
        if agent is not None and agent.telegram_id:
            text += " " + mention(agent)  # the assignee's Telegram rings even in a muted topic
        await self.enqueue(appeal, "post", text=text)
        if isinstance(event, SlaBreached):
            await self.alert(appeal, [line])

    async def _picker(self, appeal: Appeal) -> None:
        """The router is unsure: one tap in General picks the category (and teaches it)."""
        message = await first_message(appeal)
        text = self._texts.render(
            "telegram/unsorted.html.j2",
            self._lang,
            number=appeal.number,
            text=(message.text if message is not None else appeal.subject)[:300],
        )
        buttons = [
            {
                "text": (c.title.get(self._lang) or c.id)[:30],
                "callback_data": CategoryButton(appeal_id=appeal.id, category=c.id).pack(),
            }
            for c in categories_of(self._settings)
        ]
        rows = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
        await self.enqueue(None, "post", text=text, markup={"inline_keyboard": rows})

    async def alert(
        self,
        appeal: Appeal | None,
        reasons: list[str] | None = None,
        *,
        text: str | None = None,
        buttons: Sequence[str] = ("take",),
        customer_id: int | None = None,
    ) -> None:
        """A customer may be lost: the managers hear at once, with the appeal's card (``text``
        replaces the standard alert, e.g. from an automation rule's template). «Взять» takes
        the appeal (reopening it); «Перезвонить» makes a call task for whoever pressed."""
        if text is None:
            if appeal is None:
                raise ValueError("an alert without an appeal needs its text")
            customer = await customer_of(appeal)
            text = self._texts.render(
                "telegram/alert.html.j2",
                self._lang,
                number=appeal.number,
                name=customer.name,
                subject=appeal.subject,
                reasons=reasons or [],
            )
        row = []
        if "take" in buttons and appeal is not None:
            row.append(
                {
                    "text": self._texts.string("button.take", self._lang),
                    "callback_data": AppealButton(action="mtake", appeal_id=appeal.id).pack(),
                }
            )
        who = customer_id if customer_id is not None else (appeal.customer_id if appeal else None)
        if "call" in buttons and who is not None:
            row.append(
                {
                    "text": self._texts.string("button.call", self._lang),
                    "callback_data": CallButton(
                        customer_id=who, appeal_id=appeal.id if appeal else 0
                    ).pack(),
                }
            )
        managers = self._settings.telegram.managers_chat_id
        await self.enqueue(
            None,
            "post",
            text=text,
            markup={"inline_keyboard": [row]} if row else None,
            chat=managers if managers is not None else None,
            queue="staff:managers",
        )

    async def card(self, appeal: Appeal, *, new: bool = False) -> None:
        """Bring the card and topic up to date, unless an update is already waiting (one
        queued earlier in this batch, or any for an appeal just created, certainly is)."""
        if not first_in_batch(f"staff.card.{appeal.id}"):
            return
        if new or not await _pending(appeal.id, kind="card"):
            await self.enqueue(appeal, "card")

    async def enqueue(
        self,
        appeal: Appeal | None,
        kind: str,
        *,
        text: str = "",
        markup: dict[str, Any] | None = None,
        reply_to: int | None = None,
        not_before: datetime | None = None,
        **extra: Any,
    ) -> None:
        """A row for the staff group: in the appeal's topic, or in General without an appeal
        (inside a batch, written with the batch's other rows)."""
        queue = extra.pop("queue", None)
        payload: dict[str, Any] = {
            "kind": kind,
            **{k: v for k, v in extra.items() if v is not None},
        }
        if appeal is not None:
            payload["appeal_id"] = appeal.id
        if markup is not None:
            payload["reply_markup"] = markup
        if reply_to is not None:
            payload["reply_to"] = reply_to
        await self._outbox.queue(
            channel=STAFF_CHANNEL,
            address=self._chat,
            text=text,
            fmt="html",
            appeal=appeal,
            extra=payload,
            queue=queue or (appeal_queue(appeal.id) if appeal is not None else "staff:general"),
            not_before=not_before,
        )

    async def feed_soon(self, delay_s: float | None = None) -> None:
        """Refresh the pinned feed soon: one waiting refresh at a time, at most one per
        ``feed_interval_s`` (edits, not new posts)."""
        if not first_in_batch("staff.feed"):
            return  # looked at (and queued if none waited) for this batch already
        # A refresh that is due may be sent before this transaction commits, and so show the
        # feed without what it changes: only one still to come makes another needless.
        if await waiting_in(FEED_QUEUE, after=self._clock()):
            return
        delay = self._settings.telegram.feed_interval_s if delay_s is None else delay_s
        await self._outbox.enqueue(
            channel=STAFF_CHANNEL,
            address=self._chat,
            text="",
            extra={"kind": "feed"},
            queue=FEED_QUEUE,
            not_before=self._clock() + timedelta(seconds=delay),
        )

    async def _album_rest(self, appeal: Appeal, message_id: int, added: int) -> None:
        """More parts of an album: the waiting relay shows them; after it went, post the rest."""
        if not added or await _pending(appeal.id, kind="relay", message_id=message_id):
            return
        message = await message_by_id(message_id)
        await self.enqueue(
            appeal, "relay", message_id=message_id, start=len(message.attachments) - added
        )


async def _pending(appeal_id: int, **wanted: Any) -> bool:
    """Whether a row of the appeal's queue with these payload fields still waits."""
    return await waiting_in(appeal_queue(appeal_id), **wanted)
