"""The appeal card in the staff group: its text, its buttons and the name of its topic."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bots.callbacks import AppealAction, AppealButton
from desk.appeals.agents import agent_by_id
from desk.appeals.customers import customer_profile
from desk.appeals.triage import IMPORTANT_TAG
from desk.config.settings import Settings, categories_of
from desk.config.texts import Texts
from models import Appeal, AppealStatus, Customer

TOPIC_NAME_LIMIT = 128
STATUS_MARKS = {
    AppealStatus.NEW: "🆕",
    AppealStatus.OPEN: "",
    AppealStatus.PENDING: "⏸",
    AppealStatus.RESOLVED: "✅",
    AppealStatus.CLOSED: "✅",
}
CLOSED_STATUSES = (AppealStatus.RESOLVED, AppealStatus.CLOSED)


@dataclass(frozen=True, slots=True)
class Card:
    """What the card message shows and the topic is called."""

    text: str
    markup: InlineKeyboardMarkup
    topic_name: str
    closed: bool

    @property
    def digest(self) -> str:
        """A short hash of the card, to skip edits that change nothing."""
        raw = self.text + repr(self.markup.model_dump())
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


class CardMaker:
    """Renders cards from the database in the staff's language."""

    def __init__(self, settings: Settings, texts: Texts) -> None:
        self._settings = settings
        self._texts = texts
        self._lang = settings.company.language
        self._zone = ZoneInfo(settings.company.timezone)

    async def card(self, appeal: Appeal) -> Card:
        """The card of ``appeal`` as it is now."""
        profile = await customer_profile(appeal.customer_id)
        customer, contacts, appeals = profile.customer, profile.contacts, profile.appeals_total
        assignee = await agent_by_id(appeal.assignee_id)
        s = self._texts.string
        lang = self._lang
        text = self._texts.render(
            "telegram/card.html.j2",
            lang,
            number=appeal.number,
            status=s(f"status.{appeal.status.value}", lang),
            subject=appeal.subject,
            customer=customer.name or s("card.no_name", lang),
            contacts=[
                {"channel": c.channel, "address": c.address, "reachable": c.reachable}
                for c in contacts
            ],
            appeals=appeals,
            channel=self._texts.channel(appeal.channel, lang),
            category=self.category_title(appeal.category),
            team=appeal.team,
            priority=s(f"priority.{appeal.priority.value}", lang),
            tags=list(appeal.tags),
            assignee=assignee.name if assignee else "",
            due=self.local(appeal.first_response_due if appeal.first_response_at is None else None)
            or self.local(appeal.resolution_due),
            answered=appeal.first_response_at is not None,
            postponed=self.local(appeal.pending_until),
        )
        return Card(
            text=text,
            markup=self.buttons(appeal),
            topic_name=self.topic_name(appeal, customer),
            closed=appeal.status in CLOSED_STATUSES,
        )

    def buttons(self, appeal: Appeal) -> InlineKeyboardMarkup:
        """Взять / Завершить / Отложить / Передать / Важно, or Открыть снова once resolved."""
        s = self._texts.string
        lang = self._lang

        def button(action: AppealAction, key: str) -> InlineKeyboardButton:
            return InlineKeyboardButton(
                text=s(key, lang),
                callback_data=AppealButton(action=action, appeal_id=appeal.id).pack(),
            )

        if appeal.status in CLOSED_STATUSES:
            rows = [[button("reopen", "button.reopen")]]
            if appeal.status is AppealStatus.CLOSED:
                rows = []
            return InlineKeyboardMarkup(inline_keyboard=rows)
        important = IMPORTANT_TAG in appeal.tags
        return InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    button("take", "button.take"),
                    button("done", "button.done"),
                    button("later", "button.later"),
                ],
                [
                    button("pass", "button.pass"),
                    button("imp", "button.unimportant" if important else "button.important"),
                ],
            ]
        )

    def topic_name(self, appeal: Appeal, customer: Customer) -> str:
        """``A-000123 · Ирина · Возврат``, with a mark for the status."""
        what = self.category_title(appeal.category) or appeal.subject or "—"
        who = customer.name or self._texts.string("card.no_name", self._lang)
        mark = STATUS_MARKS[appeal.status]
        if IMPORTANT_TAG in appeal.tags and appeal.status not in CLOSED_STATUSES:
            mark = "❗" + mark
        name = " · ".join(part for part in (appeal.number or "", who, what) if part)
        name = f"{mark} {name}" if mark else name
        return name if len(name) <= TOPIC_NAME_LIMIT else name[: TOPIC_NAME_LIMIT - 1] + "…"

    def category_title(self, category: str | None) -> str:
        """The category's title in the staff's language, or its id."""
        if not category:
            return ""
        for entry in categories_of(self._settings):
            if entry.id == category:
                return entry.title.get(self._lang) or entry.title.get("ru") or category
        return category

    def local(self, moment: datetime | None) -> str:
        """A moment in the company's time zone, as ``14:30 23.11``."""
        if moment is None:
            return ""
        return moment.astimezone(self._zone).strftime("%H:%M %d.%m")
