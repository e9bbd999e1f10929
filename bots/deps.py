"""What the Telegram handlers need, handed to them by the dispatcher (never module globals)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from aiogram.types import InlineKeyboardMarkup, ReplyKeyboardMarkup
from tortoise.transactions import in_transaction

from bots.staff_sync import StaffSync
from channels.base import ChannelKind
from channels.telegram.send import TelegramSender
from desk.config.texts import LANGUAGES
from desk.context import AppContext
from desk.features.answers import AnswerBook

if TYPE_CHECKING:
    from bots.task_board import TaskBoard


@dataclass
class BotDeps:
    """The service context plus the Telegram parts: sender, staff sync, answer templates."""

    ctx: AppContext
    sender: TelegramSender
    staff: StaffSync | None
    answers: AnswerBook
    tasks: TaskBoard | None = None

    @cached_property
    def menu_labels(self) -> frozenset[str]:
        """The customer menu's buttons the chat answers (new appeal, my appeals, my orders), in
        every language: looked up once, the strings do not change while the service runs."""
        keys = ("menu.new", "menu.list", "menu.orders")
        return frozenset(self.ctx.texts.string(key, lang) for key in keys for lang in LANGUAGES)

    async def tell_customer(
        self,
        chat_id: int,
        text: str,
        *,
        markup: InlineKeyboardMarkup | ReplyKeyboardMarkup | None = None,
    ) -> None:
        """Queue an HTML message to a customer's private chat (the outbox keeps the limits)."""
        extra: dict[str, Any] = {}
        if markup is not None:
            extra["reply_markup"] = markup.model_dump(mode="json", exclude_none=True)
        async with in_transaction():
            await self.ctx.outbox.enqueue(
                channel=ChannelKind.TELEGRAM.value,
                address=str(chat_id),
                text=text,
                fmt="html",
                extra=extra,
            )
        self.ctx.outbox.wake()
