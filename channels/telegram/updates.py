"""Telegram channel: settings, the bot, updates in (polling or webhook), messages normalised."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

from aiogram import Bot
from aiogram import methods as aiogram_methods
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import PRODUCTION, TelegramAPIServer
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError, TelegramConflictError
from aiogram.methods.base import Response
from aiogram.types import CallbackQuery, Message, Update
from aiogram.types.update import UpdateTypeLookupError
from aiohttp import web
from pydantic import ValidationError

from channels.base import (
    Attachment,
    BadInbound,
    ChannelKind,
    InboundMessage,
    file_name,
    wait_or_stop,
)
from channels.settings import TELEGRAM_API_URL, TelegramSettings
from channels.stream import AppealStream
from models import storable

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
UpdateHandler = Callable[[Update], Awaitable[None]]


def _response_types() -> tuple[type, ...]:
    """Every ``Response[T]`` aiogram validates Bot API answers with, made once.

    aiogram parametrises ``Response[method.__returning__]`` on every call, and pydantic keeps
    parametrised classes in a weak cache: nothing else holds them, so the next garbage
    collection frees them and the next call builds the class and its schema again (about
    0.5 ms, a few per message sent). Held here, they are built once.
    """
    kept: list[type] = []
    for name in aiogram_methods.__all__:
        returning = getattr(getattr(aiogram_methods, name), "__returning__", None)
        if returning is None:
            continue
        with contextlib.suppress(Exception):  # a type pydantic cannot take: aiogram fails too
            kept.append(cast("Any", Response)[returning])
    return tuple(kept)


RESPONSE_TYPES = _response_types()


def make_bot(settings: TelegramSettings) -> Bot:
    """The aiogram bot for these settings, talking to ``api_url`` (Telegram, or a local server)."""
    if settings.token is None:
        raise ValueError("DESK_TELEGRAM__TOKEN is not set")
    base = settings.api_url.rstrip("/")
    api = PRODUCTION if base == TELEGRAM_API_URL else TelegramAPIServer.from_base(base)
    session = AiohttpSession(api=api, timeout=settings.timeout_s)
    return Bot(settings.token.get_secret_value(), session=session)


# -- messages in ------------------------------------------------------------------------------


def message_key(message: Message) -> str:
    """The external id of a Telegram message: unique per chat and message."""
    return f"{message.chat.id}:{message.message_id}"


def customer_inbound(message: Message, *, new_appeal: bool = False) -> InboundMessage:
    """A customer's private message as an InboundMessage; content we cannot keep is BadInbound."""
    attachments = attachments_of(message)
    text = message.text or message.caption or ""
    if message.location is not None:
        text = text or f"📍 {message.location.latitude}, {message.location.longitude}"
    if not text and not attachments:
        raise BadInbound(f"unsupported content type {message.content_type}")
    user = message.from_user
    edit_date = message.edit_date
    sent_at = message.date
    if edit_date is not None:
        sent_at = (
            datetime.fromtimestamp(edit_date, UTC) if isinstance(edit_date, int) else edit_date
        )
    group = f"{message.chat.id}:{message.media_group_id}" if message.media_group_id else ""
    return InboundMessage(
        channel=ChannelKind.TELEGRAM,
        external_id=message_key(message) + (f":e{int(sent_at.timestamp())}" if edit_date else ""),
        address=str(message.chat.id),
        text=storable(text),
        sender_name=storable(user.full_name) if user is not None else "",
        language=storable(user.language_code or "") if user is not None else "",
        sent_at=sent_at,
        attachments=attachments,
        new_appeal=new_appeal,
        group_id=storable(group),
        edit_of=message_key(message) if edit_date else "",
    )


def attachments_of(message: Message) -> tuple[Attachment, ...]:
    """The files of a message, kept by Telegram file id (the largest size of a photo); names
    are made harmless file names."""
    return tuple(
        replace(a, ref=storable(a.ref), name=file_name(a.name), mime=storable(a.mime))
        for a in _attachments(message)
    )


def _attachments(message: Message) -> tuple[Attachment, ...]:
    if message.photo:
        best = max(message.photo, key=lambda p: p.width * p.height)
        return (Attachment("photo", best.file_id, size=best.file_size or 0),)
    if message.document is not None:
        doc = message.document
        return (
            Attachment(
                "document",
                doc.file_id,
                name=doc.file_name or "",
                mime=doc.mime_type or "",
                size=doc.file_size or 0,
            ),
        )
    for kind in ("video", "voice", "audio", "video_note", "animation"):
        media = getattr(message, kind)
        if media is not None:
            stored = "video" if kind in ("video_note", "animation") else kind
            if stored == "audio":
                stored = "document"
            return (
                Attachment(
                    stored,
                    media.file_id,
                    name=getattr(media, "file_name", None) or "",
                    mime=getattr(media, "mime_type", None) or "",
                    size=media.file_size or 0,
                ),
            )
    if message.sticker is not None:
        return (Attachment("sticker", message.sticker.file_id, name=message.sticker.emoji or ""),)
    if message.location is not None:
        ref = f"{message.location.latitude},{message.location.longitude}"
        return (Attachment("location", ref),)
    return ()


# -- updates in -------------------------------------------------------------------------------


class CustomerMessages:
    """The channel's own way into the stream: a customer's plain private message (or an edit)
    becomes an ``InboundMessage`` and is appended (durably, before the update counts as
    handled); every other update goes to ``converse``, the bots' dispatcher.

    ``conversation`` tells a message the bots answer themselves (a command, a menu button);
    content the stream cannot keep, a text over ``max_chars`` and the bots' own chats go to
    them too, so the customer hears why. aiogram's dispatcher (middlewares, filters, handler
    lookup) cost about as much per message as validating the update.
    """

    def __init__(
        self,
        stream: AppealStream,
        converse: UpdateHandler,
        *,
        conversation: Callable[[Message], bool],
        max_chars: int,
        staff_chats: tuple[int | None, ...] = (),
    ) -> None:
        self._stream = stream
        self._converse = converse
        self._conversation = conversation
        self._max_chars = max_chars
        self._staff_chats = staff_chats

    async def __call__(self, update: Update) -> None:
        inbound = self._plain(update)
        if inbound is None:
            await self._converse(update)
        else:
            await self._stream.publish(inbound)  # intake decides whether it opens an appeal

    def _plain(self, update: Update) -> InboundMessage | None:
        message = update.message
        if message is None:
            message = update.edited_message
            if message is None or message.chat.type != ChatType.PRIVATE:
                return None
        elif (
            message.chat.type != ChatType.PRIVATE
            or message.contact is not None
            or self._conversation(message)
        ):
            return None
        if message.chat.id in self._staff_chats:
            return None  # a misconfigured chat id: its routers decide, as they would
        try:
            inbound = customer_inbound(message)
        except BadInbound:
            return None
        return inbound if len(inbound.text) <= self._max_chars else None


def parse_update(raw: bytes, bot: Bot) -> Update:
    """An update from the bytes Telegram sent; anything unreadable is BadInbound."""
    try:
        return Update.model_validate(json.loads(raw), context={"bot": bot})
    except (ValueError, ValidationError) as exc:
        raise BadInbound(f"unreadable telegram update: {_unreadable(exc)}") from None
    except RecursionError:
        raise BadInbound("unreadable telegram update: nested too deeply") from None


class Poller:
    """getUpdates long polling that moves the offset on only after an update is handled.

    aiogram's own polling confirms an update even when its handler fails; here an update whose
    handler raised (the database is down, say) is fetched and handled again, so nothing
    acknowledged is lost. Handlers are idempotent by message id.
    """

    def __init__(
        self,
        bot: Bot,
        handle: UpdateHandler,
        *,
        timeout_s: int = 25,
        max_failures: int = 20,
    ) -> None:
        self._bot = bot
        self._handle = handle
        self._timeout = timeout_s
        self._max_failures = max_failures
        self._offset: int | None = None
        self._failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; errors are logged and retried with a pause."""
        with contextlib.suppress(TelegramAPIError):
            await self._bot.delete_webhook(drop_pending_updates=False)
        pause = 1.0
        while not stop.is_set():
            try:
                updates = await self._fetch(stop)
                if updates and not stop.is_set():  # else not confirmed: fetched again later
                    await self._all(updates)
                pause = 1.0
            except TelegramConflictError:
                log.error("another process takes this bot's updates (or a webhook is set)")
                await wait_or_stop(stop, 5.0)
            except Exception:  # a task root: log, wait, poll again
                log.exception("telegram polling failed")
                await wait_or_stop(stop, pause)
                pause = min(pause * 2, 30.0)
        await self._confirm()

    async def _confirm(self) -> None:
        """Tell Telegram which updates are handled, so a restart does not fetch them again."""
        if self._offset is None:
            return
        try:
            await self._bot.get_updates(
                offset=self._offset, limit=1, timeout=0, allowed_updates=ALLOWED_UPDATES
            )
        except Exception as exc:  # they come again after a restart; handlers are idempotent
            log.warning("telegram offset not confirmed", extra={"reason": str(exc)[:200]})

    async def _fetch(self, stop: asyncio.Event) -> list[Update]:
        fetch = asyncio.ensure_future(
            self._bot.get_updates(
                offset=self._offset,
                timeout=self._timeout,
                allowed_updates=ALLOWED_UPDATES,
                request_timeout=self._timeout + 10,
            )
        )
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([fetch, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not fetch.done():
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetch
            return []
        return fetch.result()

    async def _all(self, updates: list[Update]) -> None:
        """Handle one fetch: each chat's updates in their order, the chats side by side (so
        their writes to the stream go in one group commit). The offset moves past what was
        handled up to the first failure; a failure raises (fetched again after the pause),
        until it has failed ``max_failures`` times in a row: then the fetch is given up."""
        lanes: dict[int | None, list[Update]] = {}
        for update in updates:
            lanes.setdefault(_chat_of(update), []).append(update)
        failed: list[tuple[int, Exception]] = []

        async def lane(chat_updates: list[Update]) -> None:
            for update in chat_updates:
                try:
                    await self._handle(update)
                except Exception as exc:
                    failed.append((update.update_id, exc))
                    return  # the chat's later updates wait for this one: their order holds

        await asyncio.gather(*(lane(chat_updates) for chat_updates in lanes.values()))
        if not failed:
            self._failures = 0
            self._offset = updates[-1].update_id + 1
            return
        self._failures += 1
        first_id, first_exc = min(failed, key=lambda f: f[0])
        if self._failures < self._max_failures:
            self._offset = first_id  # the handled before it are not fetched again
            raise first_exc
        log.error(
            "updates dropped after repeated failures",
            extra={"updates": sorted(f[0] for f in failed)},
            exc_info=first_exc,
        )
        self._failures = 0
        self._offset = updates[-1].update_id + 1


def _chat_of(update: Update) -> int | None:
    """The chat an update belongs to (its order matters within it), None when it has none."""
    try:
        event = update.event
    except UpdateTypeLookupError:
        return None
    chat = getattr(event, "chat", None)
    if chat is None and isinstance(event, CallbackQuery) and event.message is not None:
        chat = event.message.chat
    return chat.id if chat is not None else None


def _unreadable(exc: ValueError | ValidationError) -> str:
    """Why an update was unreadable, by field names only: pydantic's own text quotes the
    input, which holds what the customer wrote."""
    if isinstance(exc, ValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        return f"{exc.error_count()} invalid field(s): {', '.join(fields)}"[:300]
    return "not JSON"


HANDLED = b'{"ok": true}'  # the webhook's answer to every handled update, encoded once


def webhook_view(
    secret: str, bot: Bot, handle: UpdateHandler
) -> Callable[..., Awaitable[web.Response]]:
    """The aiohttp view of the webhook: the secret header checked, the update handled before
    the answer (Telegram sends it again on anything but 200)."""

    async def view(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            log.warning("webhook call with a wrong secret")
            return web.json_response({"ok": False, "error": "unauthorized"}, status=401)
        try:
            update = parse_update(await request.read(), bot)
        except BadInbound as exc:
            # A clear 400: sending the same bytes again would not make them readable.
            log.warning("unreadable telegram update", extra={"reason": str(exc)})
            return web.json_response({"ok": False, "error": "bad update"}, status=400)
        try:
            await handle(update)
        except Exception:
            log.exception("telegram update not handled", extra={"update": update.update_id})
            return web.json_response({"ok": False, "error": "try again"}, status=500)
        return web.Response(body=HANDLED, content_type="application/json")

    return view
