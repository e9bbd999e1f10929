"""Sending through the Telegram Bot API within its limits; aiogram errors become delivery errors."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BufferedInputFile,
    ChatFullInfo,
    ForceReply,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    InputMediaVideo,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    ReplyParameters,
)

from channels.base import (
    Attachment,
    ChannelKind,
    DeliveryError,
    DeliveryFailed,
    OutboundMessage,
    RateLimited,
    Rejected,
    Unreachable,
)
from channels.textsplit import split_text
from channels.window import CallWindow
from models import StoredFile

log = logging.getLogger(__name__)

T = TypeVar("T")
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
ALBUM_LIMIT = 10
EDIT_WEIGHT = 1 / 3
PRUNE_AT = 1_000  # private chats the limiter holds before it forgets the ones at rest
PROGRESS_ROWS = 1_000  # half-sent rows remembered (the rest of one goes on a retry)
Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | ForceReply
_ALBUM_KINDS = ("photo", "video")


class TopicClosed(Rejected):
    """The forum topic is closed: reopen it, then send again."""


class TopicGone(Rejected):
    """The forum topic (or reply thread) no longer exists."""


class MessageGone(Rejected):
    """The message to edit or pin no longer exists."""


class TelegramLimiter:
    """Telegram's flood limits, kept on our side so we rarely meet a 429.

    About 1 message/s in a private chat (short bursts allowed), 20 per minute in a group (all
    topics together), 30 per second for the bot. ``sending`` spends from them.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        private_rate: float = 1.0,
        private_burst: float = 3.0,
        group_messages: int = 20,
        group_window_s: float = 60.0,
        bot_per_second: int = 30,
    ) -> None:
        self._clock = clock
        self._private_rate = private_rate
        self._private_burst = private_burst
        self._group_messages = group_messages
        self._group_window = group_window_s
        self._buckets: dict[int, tuple[float, float]] = {}  # chat -> (tokens, at)
        self._prune_at = PRUNE_AT
        self._groups: dict[int, CallWindow] = {}
        self._bot = CallWindow(bot_per_second, 1.0, clock)

    @asynccontextmanager
    async def sending(self, chat_id: int, weight: float = 1.0) -> AsyncIterator[None]:
        """Spend ``weight`` messages to ``chat_id`` from the chat's budget and the bot's, for
        the calls made inside the block (they count as in flight until it ends).

        The chat's own limit raises RateLimited with its wait: only that chat waits (the
        delivery worker holds its rows). The bot's 30/s is every chat's, and frees up within a
        second: it is waited out here, so a busy second does not hold hundreds of chats.
        """
        while True:
            chat_wait = self._chat_wait(chat_id, weight)
            if chat_wait > 0:
                raise RateLimited(chat_wait)
            bot_wait = self._bot.wait(weight)
            if bot_wait <= 0:
                break
            await asyncio.sleep(bot_wait)
        calls = [(self._bot, self._bot.start(weight))]
        if chat_id > 0:  # users have positive ids; groups and channels negative
            self._spend_private(chat_id, weight)
        else:
            group = self._group(chat_id)
            calls.append((group, group.start(weight)))
        try:
            yield
        finally:
            for window, call in calls:
                window.end(call)

    def _group(self, chat_id: int) -> CallWindow:
        if (window := self._groups.get(chat_id)) is None:
            window = CallWindow(self._group_messages, self._group_window, self._clock)
            self._groups[chat_id] = window
        return window

    def _chat_wait(self, chat_id: int, weight: float) -> float:
        if chat_id <= 0:
            return self._group(chat_id).wait(weight)
        tokens = self._tokens(chat_id, self._clock())
        need = min(weight, self._private_burst)
        return 0.0 if tokens >= need else (need - tokens) / self._private_rate

    def _prune(self, now: float) -> None:
        """Forget the chats whose bucket has filled up again (the same as never seen), so that
        memory follows the chats written to in the last seconds, not every chat ever."""
        self._buckets = {
            chat: (tokens, at)
            for chat, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self._private_rate < self._private_burst
        }
        self._prune_at = max(PRUNE_AT, 2 * len(self._buckets))

    def _tokens(self, chat_id: int, now: float) -> float:
        tokens, at = self._buckets.get(chat_id, (self._private_burst, now))
        return min(self._private_burst, tokens + (now - at) * self._private_rate)

    def _spend_private(self, chat_id: int, weight: float) -> None:
        now = self._clock()
        if len(self._buckets) >= self._prune_at:
            self._prune(now)
        self._buckets[chat_id] = (self._tokens(chat_id, now) - weight, now)


def markup_of(data: dict[str, Any] | None) -> Markup | None:
    """A reply markup from its Bot API JSON form (as kept in an outbox row)."""
    if not data:
        return None
    if "inline_keyboard" in data:
        return InlineKeyboardMarkup.model_validate(data)
    if "keyboard" in data:
        return ReplyKeyboardMarkup.model_validate(data)
    if data.get("remove_keyboard"):
        return ReplyKeyboardRemove.model_validate(data)
    if data.get("force_reply"):
        return ForceReply.model_validate(data)
    raise Rejected(ChannelKind.TELEGRAM, "unknown reply markup")


def translate(exc: TelegramAPIError) -> DeliveryError:
    """The delivery error an aiogram exception means."""
    text = str(exc.message)
    lowered = text.lower()
    if isinstance(exc, TelegramRetryAfter):
        return RateLimited(float(exc.retry_after))
    if isinstance(exc, TelegramForbiddenError):
        return Unreachable(ChannelKind.TELEGRAM, text)
    if isinstance(exc, TelegramServerError | TelegramNetworkError | TelegramUnauthorizedError):
        return DeliveryFailed(ChannelKind.TELEGRAM, text)
    if isinstance(exc, TelegramNotFound):
        return DeliveryFailed(ChannelKind.TELEGRAM, text)
    if isinstance(exc, TelegramBadRequest):
        if "topic_closed" in lowered:
            return TopicClosed(ChannelKind.TELEGRAM, text)
        if "thread not found" in lowered or "topic_deleted" in lowered:
            return TopicGone(ChannelKind.TELEGRAM, text)
        if "message to edit not found" in lowered or "message to pin not found" in lowered:
            return MessageGone(ChannelKind.TELEGRAM, text)
        if "chat not found" in lowered or "user is deactivated" in lowered:
            return Unreachable(ChannelKind.TELEGRAM, text)
        return Rejected(ChannelKind.TELEGRAM, text)
    return DeliveryFailed(ChannelKind.TELEGRAM, text)


class TelegramSender:
    """Every call the desk makes to the Bot API, rate-limited and with translated errors."""

    kind: str = ChannelKind.TELEGRAM

    def __init__(
        self,
        bot: Bot,
        limiter: TelegramLimiter,
        *,
        timeout_s: float = 10.0,
        answer_wait_s: int = 40,
    ) -> None:
        self.bot = bot
        self._limiter = limiter
        self._timeout = timeout_s
        # A call that posts is waited for this long: an answer that comes late is no failure
        # (the post is in the chat), and a retry after a timeout would post it twice.
        self._wait = answer_wait_s
        self._progress: dict[int, list[int]] = {}  # outbox id -> parts already sent

    async def ping(self) -> None:
        """Raise a delivery error when the Bot API does not answer getMe (server down, token
        revoked)."""
        await self.whoami()

    async def whoami(self) -> str:
        """The bot's @username (getMe with the token): a wrong token raises a delivery error."""
        try:
            me = await self.bot.get_me(request_timeout=int(self._timeout))
        except TelegramAPIError as exc:
            raise translate(exc) from exc
        return f"@{me.username}" if me.username else f"bot {me.id}"

    # -- the ChannelAdapter protocol: one message to a customer ----------------------------

    async def deliver(self, out: OutboundMessage) -> str:
        """Send an outbox row to a private chat: text, files and keyboard, split if long.

        Returns the external id of what was sent, ``<chat>:<message>`` like an inbound
        message's: Telegram numbers messages per chat, so the number alone is not unique.
        """
        chat_id = _chat_id(out.address)
        if edit_of := out.extra.get("edit_of"):
            message_id = int(str(edit_of).rpartition(":")[2])
            await self.edit(chat_id, message_id, out.text, markup=None, html=out.fmt == "html")
            return str(edit_of)
        markup = markup_of(out.extra.get("reply_markup"))
        ids = await self.send(
            chat_id,
            out.text,
            html=out.fmt == "html",
            attachments=out.attachments,
            markup=markup,
            key=out.outbox_id,
        )
        return f"{chat_id}:{ids[0]}" if ids else ""

    # -- primitives for the staff group -------------------------------------------------------

    async def send(
        self,
        chat_id: int,
        text: str,
        *,
        html: bool = False,
        attachments: Sequence[Attachment] = (),
        markup: Markup | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
        key: int | None = None,
    ) -> list[int]:
        """Send text and files as few messages as Telegram allows; returns their ids.

        With ``key`` (an outbox id), parts sent before a failure are remembered, so a retry
        sends only the rest.
        """
        steps = self._plan(chat_id, text, html, attachments, markup, thread_id, reply_to)
        done = self._progress.pop(key, []) if key is not None else []
        todo = steps[len(done) :]
        try:
            async with self._limiter.sending(chat_id, float(len(todo))):
                for step in todo:
                    done.append(await self._call(step))
        except BaseException:
            if key is not None and done:  # only a row cut half-way is remembered
                if len(self._progress) >= PROGRESS_ROWS:  # the oldest goes: memory stays bounded
                    del self._progress[next(iter(self._progress))]
                self._progress[key] = done
            raise
        return done

    async def send_photo(
        self,
        chat_id: int,
        content: bytes,
        *,
        filename: str = "image.png",
        caption: str = "",
        html: bool = False,
        thread_id: int | None = None,
        reply_to: int | None = None,
    ) -> list[int]:
        """Upload an image made here (a report's chart) as a photo; a caption too long for
        Telegram follows as messages. Returns the ids of what was sent."""
        mode = "HTML" if html else None
        common: dict[str, Any] = {
            "chat_id": chat_id,
            "message_thread_id": thread_id,
            "request_timeout": self._wait,
        }
        if reply_to is not None:
            common["reply_parameters"] = ReplyParameters(
                message_id=reply_to, allow_sending_without_reply=True
            )
        first, rest = _caption_and_rest(caption, True)
        photo = BufferedInputFile(content, filename=filename)

        async def upload() -> int:
            sent = await self.bot.send_photo(
                photo=photo, caption=first or None, parse_mode=mode if first else None, **common
            )
            return sent.message_id

        steps: list[Callable[[], Awaitable[int]]] = [upload]
        if rest.strip():
            steps += [self._text_step(c, mode, None, common) for c in split_text(rest, TEXT_LIMIT)]
        async with self._limiter.sending(chat_id, float(len(steps))):
            return [await self._call(step) for step in steps]

    async def edit(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        markup: InlineKeyboardMarkup | None,
        html: bool = True,
    ) -> None:
        """Edit a message's text and buttons; an unchanged message is not an error."""
        async with self._limiter.sending(chat_id, EDIT_WEIGHT):
            await self._call(
                lambda: self.bot.edit_message_text(
                    chat_id=chat_id,
                    message_id=message_id,
                    text=text,
                    parse_mode="HTML" if html else None,
                    reply_markup=markup,
                    request_timeout=self._wait,
                )
            )

    # A new topic posts its service message in the group, and Telegram counts it in the
    # group's 20 a minute like any post (a burst of new appeals met 429s on topic creation).

    async def create_topic(self, chat_id: int, name: str) -> int:
        """A new forum topic; returns its thread id."""
        async with self._limiter.sending(chat_id):
            topic = await self._call(
                lambda: self.bot.create_forum_topic(
                    chat_id=chat_id, name=name[:128], request_timeout=self._wait
                )
            )
        return int(topic.message_thread_id)

    async def rename_topic(self, chat_id: int, thread_id: int, name: str) -> None:
        """Give a forum topic a new name."""
        await self._call(
            lambda: self.bot.edit_forum_topic(
                chat_id=chat_id,
                message_thread_id=thread_id,
                name=name[:128],
                request_timeout=self._wait,
            )
        )

    async def close_topic(self, chat_id: int, thread_id: int, closed: bool) -> None:
        """Close or reopen a forum topic (already so is fine)."""
        method = self.bot.close_forum_topic if closed else self.bot.reopen_forum_topic
        try:
            await self._call(
                lambda: method(
                    chat_id=chat_id, message_thread_id=thread_id, request_timeout=self._wait
                )
            )
        except Rejected as exc:
            if "topic_not_modified" not in exc.reason.lower():
                raise

    async def chat(self, chat_id: int) -> ChatFullInfo:
        """What Telegram says about a chat (whether a group is a forum, say)."""
        return await self._call(lambda: self.bot.get_chat(chat_id=chat_id))

    async def pin(self, chat_id: int, message_id: int) -> None:
        """Pin a message quietly (counted: a group shows a service message for it)."""
        async with self._limiter.sending(chat_id):
            await self._call(
                lambda: self.bot.pin_chat_message(
                    chat_id=chat_id,
                    message_id=message_id,
                    disable_notification=True,
                    request_timeout=self._wait,
                )
            )

    async def answer_callback(self, query_id: str, text: str = "", alert: bool = False) -> None:
        """The small notice under a pressed button (free of the message limits)."""
        await self._call(
            lambda: self.bot.answer_callback_query(
                callback_query_id=query_id, text=text[:200] or None, show_alert=alert
            )
        )

    async def download(self, file_id: str) -> bytes:
        """The content of a file Telegram keeps for the bot."""
        file = await self._call(lambda: self.bot.get_file(file_id))
        if not file.file_path:
            raise Rejected(ChannelKind.TELEGRAM, "the file cannot be downloaded")
        buffer = io.BytesIO()
        await self._call(lambda: self.bot.download_file(file.file_path or "", buffer))
        return buffer.getvalue()

    # -- internals ----------------------------------------------------------------------------

    async def _call(self, action: Callable[[], Awaitable[T]]) -> T:
        try:
            # aiohttp's own timeout (the call's, or the session's) ends it first.
            return await asyncio.wait_for(action(), max(self._timeout, self._wait) + 5)
        except TelegramBadRequest as exc:
            if "message is not modified" in str(exc.message).lower():
                return None  # type: ignore[return-value]
            raise translate(exc) from exc
        except TelegramAPIError as exc:
            raise translate(exc) from exc
        except TimeoutError as exc:
            raise DeliveryFailed(ChannelKind.TELEGRAM, "timed out") from exc

    def _plan(
        self,
        chat_id: int,
        text: str,
        html: bool,
        attachments: Sequence[Attachment],
        markup: Markup | None,
        thread_id: int | None,
        reply_to: int | None,
    ) -> list[Callable[[], Awaitable[int]]]:
        """The calls that deliver one message, in order; each returns a message id."""
        mode = "HTML" if html else None
        common: dict[str, Any] = {
            "chat_id": chat_id,
            "message_thread_id": thread_id,
            "request_timeout": self._wait,
        }
        if reply_to is not None:
            common["reply_parameters"] = ReplyParameters(
                message_id=reply_to, allow_sending_without_reply=True
            )
        steps: list[Callable[[], Awaitable[int]]] = []
        caption, rest = _caption_and_rest(text, bool(attachments))
        for i, batch in enumerate(_batches(attachments)):
            steps.append(self._media_step(batch, caption if i == 0 else "", mode, common))
        chunks = split_text(rest, TEXT_LIMIT) if rest.strip() else []
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            steps.append(self._text_step(chunk, mode, markup if last else None, common))
        if markup is not None and not chunks and steps:
            # Buttons need a message of their own when the files carry the text.
            steps.append(self._text_step("⬆️", None, markup, common))
        return steps

    def _text_step(
        self, text: str, mode: str | None, markup: Markup | None, common: dict[str, Any]
    ) -> Callable[[], Awaitable[int]]:
        async def step() -> int:
            sent = await self.bot.send_message(
                text=text, parse_mode=mode, reply_markup=markup, **common
            )
            return sent.message_id

        return step

    def _media_step(
        self,
        batch: list[Attachment],
        caption: str,
        mode: str | None,
        common: dict[str, Any],
    ) -> Callable[[], Awaitable[int]]:
        bot = self.bot
        if len(batch) > 1:

            async def album() -> int:
                media: list[Any] = [
                    _input_media(a, await _source(a), caption if i == 0 else None, mode)
                    for i, a in enumerate(batch)
                ]
                sent = await bot.send_media_group(media=media, **common)
                return sent[0].message_id

            return album
        item = batch[0]
        with_caption: dict[str, Any] = {"caption": caption or None, "parse_mode": mode}

        async def single() -> int:
            source = await _source(item)
            if item.kind == "photo":
                sent = await bot.send_photo(photo=source, **with_caption, **common)
            elif item.kind == "video":
                sent = await bot.send_video(video=source, **with_caption, **common)
            elif item.kind == "voice":
                sent = await bot.send_voice(voice=source, **with_caption, **common)
            elif item.kind == "sticker":
                sent = await bot.send_sticker(sticker=source, **common)
            elif item.kind == "location":
                latitude, longitude = (float(v) for v in item.ref.split(","))
                sent = await bot.send_location(latitude=latitude, longitude=longitude, **common)
            else:
                sent = await bot.send_document(document=source, **with_caption, **common)
            return sent.message_id

        return single


def _chat_id(address: str) -> int:
    try:
        return int(address)
    except ValueError:
        raise Rejected(ChannelKind.TELEGRAM, f"not a chat id: {address!r}") from None


def _caption_and_rest(text: str, has_files: bool) -> tuple[str, str]:
    """Text that fits under the files as a caption, and what must follow as messages."""
    if not has_files or not text.strip():
        return "", text
    pieces = split_text(text, CAPTION_LIMIT)
    return pieces[0], "\n\n".join(pieces[1:])


def _batches(attachments: Sequence[Attachment]) -> list[list[Attachment]]:
    """Files grouped the way Telegram accepts them: photos and videos in albums of up to ten,
    documents in their own albums, the rest one by one."""
    visual = [a for a in attachments if a.kind in _ALBUM_KINDS]
    documents = [a for a in attachments if a.kind in ("document", "file")]
    others = [a for a in attachments if a not in visual and a not in documents]
    batches: list[list[Attachment]] = []
    for group in (visual, documents):
        batches += [group[i : i + ALBUM_LIMIT] for i in range(0, len(group), ALBUM_LIMIT)]
    batches += [[a] for a in others]
    return batches


async def _source(item: Attachment) -> str | BufferedInputFile:
    """A Telegram file id as it is; a file the desk stored (``file:<id>``) uploaded."""
    stored = await StoredFile.by_ref(item.ref)
    if stored is None:
        return item.ref
    return BufferedInputFile(stored.content, filename=item.name or stored.name or "file")


def _input_media(
    item: Attachment, source: str | BufferedInputFile, caption: str | None, mode: str | None
) -> InputMediaPhoto | InputMediaVideo | InputMediaDocument:
    mode = mode if caption else None
    if item.kind == "photo":
        return InputMediaPhoto(media=source, caption=caption or None, parse_mode=mode)
    if item.kind == "video":
        return InputMediaVideo(media=source, caption=caption or None, parse_mode=mode)
    return InputMediaDocument(media=source, caption=caption or None, parse_mode=mode)
