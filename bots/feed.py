"""The empty feed: one pinned message in the staff group listing the appeals that wait for an
answer, and those put off for later (an appeal put off is not done)."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bots.cards import CardMaker
from channels.telegram.send import TEXT_LIMIT, MessageGone, TelegramSender
from channels.textsplit import utf16_len
from desk.appeals.waiting import keep_value, kept_value, postponed_appeals, waiting_appeals
from desk.config.settings import Settings
from desk.config.texts import Texts
from models import Appeal

FEED_LIMIT = 30  # waiting appeals listed; the rest are counted
POSTPONED_LIMIT = 10  # postponed ones listed after them
_TAG = re.compile(r"<[^>]*>")


def visible_length(html_text: str) -> int:
    """How long Telegram counts a text of ours in HTML: without the tags, entities as one."""
    return utf16_len(html.unescape(_TAG.sub("", html_text)))


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
        """The feed's text and how many appeals wait: those waiting for an answer, oldest
        first, then those put off, soonest back first. It is one message: rows that would take
        it over Telegram's limit are left to «… and N more», the postponed ones first."""
        waiting = await waiting_appeals(FEED_LIMIT)
        later = await postponed_appeals(POSTPONED_LIMIT)
        now = self._clock()
        step = timedelta(minutes=self._settings.sla.promise_minutes(None, "normal"))
        rows = []
        for appeal in waiting.appeals:
            due = appeal.first_response_due if appeal.first_response_at is None else None
            due = due or ((appeal.waiting_since or now) + step)
            left = int((due - now).total_seconds() // 60)
            rows.append({**self._row(appeal, waiting.names), "left": left})
        later_rows = [
            {**self._row(appeal, later.names), "back": self._cards.local(appeal.pending_until)}
            for appeal in later.appeals
        ]
        while True:
            text = self._texts.render(
                "telegram/feed.html.j2",
                self._lang,
                rows=rows,
                total=waiting.total,
                more=max(0, waiting.total - len(rows)),
                later=later_rows,
                later_total=later.total,
                later_more=max(0, later.total - len(later_rows)),
                updated=self._cards.local(now),
            )
            if visible_length(text) <= TEXT_LIMIT or not (rows or later_rows):
                return text, waiting.total
            (later_rows or rows).pop()

    def _row(self, appeal: Appeal, names: dict[int, str]) -> dict[str, Any]:
        return {
            "number": appeal.number,
            "name": names.get(appeal.customer_id, ""),
            "subject": appeal.subject[:60],
            "link": self._link(appeal),
        }

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
