"""The Telegram side of the service wired together: bot, dispatcher, sender, staff group."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Dispatcher
from aiogram.types import Update
from aiohttp import web
from tortoise.transactions import in_transaction

from bots.customer import answered, customer_router
from bots.deps import BotDeps
from bots.feed import FeedBoard
from bots.managers import managers_router
from bots.staff import staff_router
from bots.staff_posts import StaffPoster
from bots.staff_sync import StaffSync
from bots.task_board import TaskBoard
from channels.base import STAFF_CHANNEL, ChannelKind, wait_or_stop
from channels.telegram.send import TelegramLimiter, TelegramSender
from channels.telegram.updates import (
    ALLOWED_UPDATES,
    CustomerMessages,
    Poller,
    make_bot,
    webhook_view,
)
from desk.appeals.event_types import TaskCreated
from desk.appeals.events import Stage
from desk.context import AppContext
from desk.features.answers import AnswerBook
from desk.ops.log_context import log_scope
from desk.ops.scheduler import Daily
from desk.outbound.chat_desk import ChatDesk

log = logging.getLogger(__name__)

FEED_TICK_S = 60.0


def telegram_desk(ctx: AppContext) -> ChatDesk | None:
    """The Telegram bots when a token is set (the service finds this in the entry points)."""
    return TelegramDesk(ctx) if ctx.settings.telegram.disabled_reason() is None else None


class TelegramDesk:
    """Everything Telegram: registered on the context as the ``telegram`` and ``staff``
    adapters and as event subscribers, so every process (serve or worker) delivers the same.
    The runtime sees it as a ``desk.outbound.chat_desk.ChatDesk``."""

    name = ChannelKind.TELEGRAM.value

    def __init__(self, ctx: AppContext) -> None:
        settings = ctx.settings.telegram
        self.ctx = ctx
        self.settings = settings
        self.timeout_s = settings.timeout_s
        self.bot = make_bot(settings)
        limits = settings.limits
        limiter = TelegramLimiter(
            lambda: ctx.clock().timestamp(),
            private_rate=limits.private_per_second,
            private_burst=limits.private_burst,
            group_messages=limits.group_per_minute,
            bot_per_second=limits.bot_per_second,
        )
        self.sender = TelegramSender(
            self.bot, limiter, timeout_s=settings.timeout_s, answer_wait_s=settings.answer_wait_s
        )
        self.staff: StaffSync | None = None
        self.tasks: TaskBoard | None = None
        if settings.staff_chat_id is not None:
            self.staff = StaffSync(ctx.outbox, ctx.settings, ctx.texts, ctx.clock)
            self.tasks = TaskBoard(self.staff, ctx)
        answers = ctx.answers if ctx.answers is not None else AnswerBook.of(ctx.settings)
        self.deps = BotDeps(ctx, self.sender, self.staff, answers, self.tasks)
        # No FSM: the desk keeps its state in the database, and aiogram's in-memory FSM would
        # keep a record (and an isolation lock) for every user ever seen.
        # Customers' plain messages go to the stream from the channel; the rest to the bots.
        self.updates = CustomerMessages(
            ctx.stream,
            self.handle,
            conversation=lambda message: answered(message, self.deps),
            max_chars=ctx.settings.lifecycle.max_text_chars,
            staff_chats=(settings.staff_chat_id, settings.managers_chat_id),
        )
        self.dispatcher = Dispatcher(disable_fsm=True)
        self.dispatcher.include_router(managers_router())  # /rating before staff commands
        self.dispatcher.include_router(staff_router())
        self.dispatcher.include_router(customer_router())
        ctx.adapters[ChannelKind.TELEGRAM.value] = self.sender
        if self.staff is not None:
            feed = FeedBoard(self.sender, ctx.settings, ctx.texts, ctx.clock)
            ctx.adapters[STAFF_CHANNEL] = StaffPoster(self.sender, ctx.settings, ctx.texts, feed)
            ctx.lifecycle.events.subscribe(Stage.STAFF, self.staff.on_event, *StaffSync.KINDS)
        if self.tasks is not None:
            ctx.lifecycle.events.subscribe(Stage.TASKS, self.tasks.on_event, TaskCreated)

    async def handle(self, update: Update) -> None:
        """Handle one update to the end (written durably) before it is acknowledged."""
        with log_scope():  # a staff action's lines carry its appeal once it is known
            await self.dispatcher.feed_update(self.bot, update, deps=self.deps)

    def poller(self) -> Poller:
        """Long polling that confirms an update only after ``handle`` returned."""
        return Poller(self.bot, self.updates, timeout_s=self.settings.poll_timeout_s)

    async def whoami(self) -> str:
        """Our bot's @username (getMe)."""
        return await self.sender.whoami()

    def add_routes(self, app: web.Application) -> None:
        """Serve the webhook on the service's own HTTP server (in webhook mode)."""
        if self.settings.mode != "webhook":
            return
        secret = self.settings.webhook_secret
        if secret is None:
            raise ValueError("webhook mode needs DESK_TELEGRAM__WEBHOOK_SECRET")
        view = webhook_view(secret.get_secret_value(), self.bot, self.updates)
        app.router.add_post(self.settings.webhook_path, view)

    async def open(self, public_url: str) -> None:
        """In webhook mode, tell Telegram where to post updates (with the secret it must send
        back); then draw the staff feed as it is now."""
        if self.settings.mode == "webhook":
            await self._set_webhook(public_url)
        if self.staff is not None:
            async with in_transaction():
                await self.staff.feed_soon(0)

    def loops(self, stop: asyncio.Event) -> dict[str, Coroutine[Any, Any, None]]:
        """Long polling (in polling mode) and the staff feed's ticker."""
        loops: dict[str, Coroutine[Any, Any, None]] = {}
        if self.settings.mode == "polling":
            loops["tg-polling"] = self.poller().run(stop)
        if self.staff is not None:
            loops["tg-feed"] = self.feed_ticker(stop)
        return loops

    def daily_jobs(self) -> list[Daily]:
        """The reminder of overdue tasks, in the task board's chat."""
        if self.tasks is None:
            return []
        settings = self.ctx.settings
        zone = ZoneInfo(settings.company.timezone)
        return [
            Daily("overdue-tasks", settings.customers.remind_at, zone, self.tasks.remind_overdue)
        ]

    async def download(self, ref: str) -> bytes:
        """A customer's file by its Telegram file id."""
        return await self.sender.download(ref)

    async def _set_webhook(self, public_url: str) -> None:
        secret = self.settings.webhook_secret
        await self.bot.set_webhook(
            url=public_url.rstrip("/") + self.settings.webhook_path,
            secret_token=secret.get_secret_value() if secret else None,
            allowed_updates=ALLOWED_UPDATES,
            drop_pending_updates=False,
        )

    async def feed_ticker(self, stop: asyncio.Event) -> None:
        """Keep the feed's "time left" fresh while appeals wait (one edit a minute at most)."""
        if self.staff is None:
            return
        while not stop.is_set():
            await wait_or_stop(stop, max(FEED_TICK_S, self.settings.feed_interval_s))
            if stop.is_set():
                return
            try:
                async with in_transaction():
                    await self.staff.feed_soon(0)
                self.ctx.outbox.wake()
            except Exception:  # a task root: the next tick tries again
                log.exception("feed tick failed")

    async def close(self) -> None:
        """Close the bot's HTTP session."""
        await self.bot.session.close()
