"""The empty feed: one pinned message in the staff group listing appeals that wait for an answer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bots.cards import CardMaker
from channels.telegram.send import MessageGone, TelegramSender
from desk.appeals.waiting import keep_value, kept_value, waiting_appeals
from desk.config.settings import Settings
from desk.config.texts import Texts
from models import Appeal

FEED_LIMIT = 30


class FeedBoard:
    """Renders the feed and keeps its pinned message up to date by editing it."""

    def __init__(
        self,
        sender: TelegramSender,
        settings: Settings,
        texts: Texts,
        clock: Callable[[], datetime],
    ) -> None:
        self._sender = sender
        self._chat = settings.telegram.staff_chat_id or 0
        self._settings = settings
        self._texts = texts
        self._clock = clock
        self._lang = settings.company.language
        self._cards = CardMaker(settings, texts)
        self._key = f"telegram.feed.{self._chat}"

    async def render(self) -> tuple[str, int]:
        """The feed's text and how many appeals wait."""
        waiting = await waiting_appeals(FEED_LIMIT)
        appeals, total, names = waiting.appeals, waiting.total, waiting.names
        now = self._clock()
        step = timedelta(minutes=self._settings.sla.promise_minutes(None, "normal"))
        rows = []
        for appeal in appeals:
            due = appeal.first_response_due if appeal.first_response_at is None else None
            due = due or ((appeal.waiting_since or now) + step)
            left = int((due - now).total_seconds() // 60)
            rows.append(
                {
                    "number": appeal.number,
                    "name": names.get(appeal.customer_id, ""),
                    "subject": appeal.subject[:60],
                    "left": left,
                    "link": self._link(appeal),
                }
            )
        text = self._texts.render(
            "telegram/feed.html.j2",
            self._lang,
            rows=rows,
            total=total,
            more=max(0, total - len(rows)),
            updated=self._cards.local(now),
        )
        return text, total

    async def refresh(self) -> str:
        """Edit the pinned feed (post and pin it the first time); returns its message id."""
        text, total = await self.render()
        state = await self._state()
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        message_id = state.get("message_id")
        if message_id and state.get("digest") != digest:
            try:
                await self._sender.edit(self._chat, int(message_id), text, markup=None)
            except MessageGone:
                message_id = None
        if not message_id:
            ids = await self._sender.send(self._chat, text, html=True)
            message_id = ids[0]
            await self._sender.pin(self._chat, message_id)
        await self._save({"message_id": message_id, "digest": digest, "waiting": total})
        return str(message_id)

    def _link(self, appeal: Appeal) -> str:
        """A t.me link to the appeal's topic (for supergroups: -100… ids)."""
        chat = str(self._chat)
        if not chat.startswith("-100") or not appeal.staff_thread:
            return ""
        return f"https://t.me/c/{chat[4:]}/{appeal.staff_thread}"

    async def _state(self) -> dict[str, Any]:
        value = await kept_value(self._key)
        if value is None:
            return {}
        loaded = json.loads(value)
        return loaded if isinstance(loaded, dict) else {}

    async def _save(self, state: dict[str, Any]) -> None:
        await keep_value(self._key, json.dumps(state))
