"""The staff group's side of the delivery worker: topics, cards, relayed messages, merged posts."""

from __future__ import annotations

import logging
from typing import Any
from zoneinfo import ZoneInfo

from bots.cards import CardMaker
from bots.feed import FeedBoard
from bots.staff_sync import appeal_queue
from channels.base import (
    STAFF_CHANNEL,
    Attachment,
    ChannelKind,
    DeliveryFailed,
    OutboundMessage,
    Rejected,
)
from channels.telegram.send import (
    TEXT_LIMIT,
    Markup,
    MessageGone,
    TelegramSender,
    TopicClosed,
    TopicGone,
    markup_of,
)
from channels.textsplit import utf16_len
from desk.appeals.messages import messages_by_id
from desk.appeals.outbox import mark_merged, waiting_after
from desk.appeals.staff_refs import save_staff_refs
from desk.config.settings import Settings
from desk.config.texts import Texts
from desk.outbound.delivery import passed
from models import (
    FILE_REF_PREFIX,
    Appeal,
    Customer,
    Direction,
    Message,
)

log = logging.getLogger(__name__)

MERGE_LOOKAHEAD = 50
CARRIED_ROWS = 1_000  # merged posts remembered until sent (a retry carries the same messages)
UNSHOWN_KINDS = ("email", "skipped")  # the raw mail; a file over the size cap


class StaffPoster:
    """Delivers ``staff`` outbox rows: each appeal in its topic (or threaded under its card)."""

    kind = STAFF_CHANNEL

    def __init__(
        self, sender: TelegramSender, settings: Settings, texts: Texts, feed: FeedBoard
    ) -> None:
        if settings.telegram.staff_chat_id is None:
            raise ValueError("DESK_TELEGRAM__STAFF_CHAT_ID is not set")
        self._sender = sender
        self._chat = settings.telegram.staff_chat_id
        self._texts = texts
        self._lang = settings.company.language
        self._zone = ZoneInfo(settings.company.timezone)
        self._cards = CardMaker(settings, texts)
        self._feed = feed
        self._forum: bool | None = None
        # Relay rows whose post failed, with the rows merged into it: a retry posts the same
        # messages, not more (the lost call may have reached the group after all).
        self._carried: dict[int, list[int]] = {}

    async def deliver(self, out: OutboundMessage) -> str:
        """Post one row; returns the id of the (first) message it made."""
        kind = out.extra.get("kind")
        if kind == "feed":
            return await self._feed.refresh()
        appeal_id = out.extra.get("appeal_id")
        if kind == "edit":  # a post in General changed (a task's result): its text, no buttons
            await self._sender.edit(
                int(out.extra.get("chat") or self._chat),
                int(out.extra["message_id"]),
                out.text,
                markup=None,
            )
            return str(out.extra["message_id"])
        if appeal_id is None:
            ids = await self._sender.send(
                int(out.extra.get("chat") or self._chat),
                out.text,
                html=True,
                attachments=out.attachments,
                markup=markup_of(out.extra.get("reply_markup")),
                reply_to=out.extra.get("reply_to"),
                key=out.outbox_id,
            )
            return _first(ids)
        appeal = await passed(Appeal, int(appeal_id))
        if appeal is None:
            raise Rejected(STAFF_CHANNEL, f"appeal {appeal_id} no longer exists")
        if kind == "card":
            return await self.sync_card(appeal)
        if kind == "relay":
            return await self._relay(out, appeal)
        if kind == "echo":
            return await self._echo(out, appeal)
        return await self._post(
            appeal,
            out.text,
            markup=markup_of(out.extra.get("reply_markup")),
            reply_to=out.extra.get("reply_to"),
            key=out.outbox_id,
        )

    # -- topic and card -----------------------------------------------------------------------

    async def sync_card(self, appeal: Appeal) -> str:
        """Create the topic and card if missing; edit the card, rename, close or reopen the topic
        to match the appeal as it is now."""
        card = await self._cards.card(appeal)
        state: dict[str, Any] = dict(appeal.staff_state or {})
        thread = await self._thread(appeal, card.topic_name, state)
        if appeal.staff_card_ref is None:
            ids = await self._send_in(
                appeal, card.text, thread=thread, markup=card.markup, state=state
            )
            appeal.staff_card_ref = _first(ids)
            state["card"] = card.digest
            await self._save(appeal, state)
        elif state.get("card") != card.digest:
            try:
                await self._sender.edit(
                    self._chat, int(appeal.staff_card_ref), card.text, markup=card.markup
                )
            except MessageGone:
                appeal.staff_card_ref = None
                await self._save(appeal, state)
                return await self.sync_card(appeal)
            state["card"] = card.digest
            await self._save(appeal, state)
        if thread is not None:
            if state.get("name") != card.topic_name:
                await self._sender.rename_topic(self._chat, thread, card.topic_name)
                state["name"] = card.topic_name
                await self._save(appeal, state)
            if bool(state.get("closed")) != card.closed:
                await self._sender.close_topic(self._chat, thread, card.closed)
                state["closed"] = card.closed
                await self._save(appeal, state)
        return appeal.staff_card_ref or ""

    async def _thread(self, appeal: Appeal, name: str, state: dict[str, Any]) -> int | None:
        """The appeal's topic id (made now if the group is a forum and it has none)."""
        if appeal.staff_thread:
            return int(appeal.staff_thread)
        if not await self._is_forum():
            return None
        thread = await self._sender.create_topic(self._chat, name)
        appeal.staff_thread = str(thread)
        state.update(name=name, closed=False)
        await self._save(appeal, state)
        return thread

    async def _is_forum(self) -> bool:
        if self._forum is None:
            chat = await self._sender.chat(self._chat)
            self._forum = bool(chat.is_forum)
        return self._forum

    async def _placed(self, appeal: Appeal) -> tuple[int | None, int | None]:
        """Where the appeal's posts go: (topic id, message to reply to) — a topic in a forum,
        a reply to the card otherwise. The card is made first when missing."""
        if appeal.staff_card_ref is None or (
            appeal.staff_thread is None and await self._is_forum()
        ):
            await self.sync_card(appeal)
        if appeal.staff_thread:
            return int(appeal.staff_thread), None
        return None, int(appeal.staff_card_ref or 0) or None

    async def _send_in(
        self,
        appeal: Appeal,
        text: str,
        *,
        thread: int | None,
        reply_to: int | None = None,
        markup: Markup | None = None,
        attachments: tuple[Attachment, ...] = (),
        key: int | None = None,
        state: dict[str, Any] | None = None,
    ) -> list[int]:
        """Send into the appeal's place; a closed topic is reopened, a deleted one remade."""

        async def send() -> list[int]:
            return await self._sender.send(
                self._chat,
                text,
                html=True,
                attachments=attachments,
                markup=markup,
                thread_id=thread,
                reply_to=reply_to,
                key=key,
            )

        try:
            return await send()
        except TopicClosed:
            if thread is None:
                raise
            await self._sender.close_topic(self._chat, thread, False)
            return await send()
        except TopicGone:
            if thread is None:
                raise
            log.warning("staff topic is gone, making a new one", extra={"appeal": appeal.number})
            appeal.staff_thread = None
            appeal.staff_card_ref = None
            fresh = dict(state or appeal.staff_state or {})
            fresh.pop("card", None)
            await self._save(appeal, fresh)
            raise DeliveryFailed(
                STAFF_CHANNEL, "the topic was deleted; a new one is made"
            ) from None

    async def _post(
        self,
        appeal: Appeal,
        text: str,
        *,
        markup: Markup | None = None,
        reply_to: int | None = None,
        attachments: tuple[Attachment, ...] = (),
        key: int | None = None,
    ) -> str:
        thread, card_reply = await self._placed(appeal)
        ids = await self._send_in(
            appeal,
            text,
            thread=thread,
            reply_to=reply_to or card_reply,
            markup=markup,
            attachments=attachments,
            key=key,
        )
        return _first(ids)

    # -- customer messages --------------------------------------------------------------------

    async def _relay(self, out: OutboundMessage, appeal: Appeal) -> str:
        """A customer message in the topic; text messages waiting behind it join the same post."""
        message = await passed(Message, int(out.extra["message_id"]))
        if message is None:
            raise Rejected(STAFF_CHANNEL, f"message {out.extra['message_id']} no longer exists")
        start = int(out.extra.get("start", 0))
        files = _sendable(message, start)
        batch = [message]
        followers: list[int] = []
        if not files:
            carried = self._carried.pop(out.outbox_id, None)
            batch, followers = await self._mergeable(out, appeal, message, carried)
        customer = await passed(Customer, appeal.customer_id)
        text = self._texts.render(
            "telegram/relay.html.j2",
            self._lang,
            name=(customer.name if customer is not None else "") or message.author,
            messages=[self._relay_item(m, start if m is message else 0) for m in batch],
            merged=len(batch) > 1,
        )
        try:
            posted = await self._post(appeal, text, attachments=files, key=out.outbox_id)
        except BaseException:
            if len(self._carried) >= CARRIED_ROWS:  # the oldest goes: memory stays bounded
                del self._carried[next(iter(self._carried))]
            self._carried[out.outbox_id] = followers
            raise
        if followers:
            # The queue's head is ours, so nobody else is delivering these rows.
            await mark_merged(followers, posted)
            log.info("customer messages merged", extra={"appeal": appeal.number, "n": len(batch)})
        return posted

    async def _mergeable(
        self, out: OutboundMessage, appeal: Appeal, first: Message, only: list[int] | None
    ) -> tuple[list[Message], list[int]]:
        """Text-only customer messages queued right behind ``first``, as long as they fit (of
        the rows ``only``, when a failed post carried those)."""
        if only == []:
            return [first], []
        rows = await waiting_after(appeal_queue(appeal.id), out.outbox_id, MERGE_LOOKAHEAD, only)
        relays = []
        for row in rows:
            extra = row.payload.get("extra", {})
            if extra.get("kind") != "relay" or extra.get("start"):
                break
            relays.append((row.id, int(extra.get("message_id", 0))))
        found = await messages_by_id([mid for _, mid in relays])  # one query for the run
        batch, ids = [first], []
        size = utf16_len(first.text) + 200
        for row_id, message_id in relays:
            message = found.get(message_id)
            if message is None or message.attachments:
                break
            size += utf16_len(message.text) + 40
            if size > TEXT_LIMIT:
                break
            batch.append(message)
            ids.append(row_id)
        return batch, ids

    def _relay_item(self, message: Message, start: int) -> dict[str, Any]:
        skipped = self._texts.string("relay.skipped", self._lang)
        names = []
        if message.channel != ChannelKind.TELEGRAM.value:
            for a in message.attachments[start:]:
                shown = str(a.get("ref", "")).startswith(FILE_REF_PREFIX)
                if a.get("kind") == "email" or (shown and a.get("kind") not in UNSHOWN_KINDS):
                    continue  # the raw mail stays in the API; stored files are posted as files
                name = str(a.get("name") or a.get("kind"))
                names.append(f"{name} — {skipped}" if a.get("kind") == "skipped" else name)
        when = message.sent_at or message.created_at
        return {
            "text": message.text,
            "time": when.astimezone(self._zone).strftime("%H:%M") if when else "",
            "files": names,
            "continued": start > 0,
        }

    async def _echo(self, out: OutboundMessage, appeal: Appeal) -> str:
        """An answer or note written outside the staff group (API, automation), shown in it."""
        message = await passed(Message, int(out.extra["message_id"]))
        if message is None:
            raise Rejected(STAFF_CHANNEL, f"message {out.extra['message_id']} no longer exists")
        text = self._texts.render(
            "telegram/echo.html.j2",
            self._lang,
            author=message.author,
            note=message.direction is Direction.NOTE,
            text=message.text,
        )
        return await self._post(appeal, text, key=out.outbox_id)

    async def _save(self, appeal: Appeal, state: dict[str, Any]) -> None:
        await save_staff_refs(appeal, state)


def _first(ids: list[int]) -> str:
    return str(ids[0]) if ids else ""


def _sendable(message: Message, start: int) -> tuple[Attachment, ...]:
    """Files to show in the topic: Telegram's by file id (never re-uploaded), other channels'
    from the desk's own store; the raw mail and files over the size cap are only named."""
    files = [Attachment(**a) for a in message.attachments[start:]]
    if message.channel == ChannelKind.TELEGRAM.value:
        return tuple(files)
    shown = []
    for item in files:
        if not item.ref.startswith(FILE_REF_PREFIX) or item.kind in UNSHOWN_KINDS:
            continue
        kind = item.kind if item.kind in ("photo", "video") else "document"
        shown.append(Attachment(kind, item.ref, name=item.name, mime=item.mime, size=item.size))
    return tuple(shown)
