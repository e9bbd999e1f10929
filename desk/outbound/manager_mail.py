"""The managers' alerts by mail: a low rating, «Важно» and an SLA breach reach every address of
``managers.emails`` beside the managers' chat (or instead of it, on a desk without Telegram).

Each alert is one outbox row per manager (channel ``staff_mail``), queued inside the
transaction of the event it tells of: it is there exactly when the event is, and the delivery
worker sends it once, retried and dead-lettered like any other row. The rows name no appeal
(like the chat's alerts), so a failed one never reroutes to the customer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from channels.base import STAFF_MAIL_CHANNEL
from channels.email.text import html_to_text
from desk.appeals.customers import customer_of
from desk.appeals.event_types import AppealImportant, AppealTagged, DomainEvent, SlaBreached
from desk.appeals.outbox import Outbox
from desk.appeals.tasks import contacts_of, phones_of
from desk.appeals.triage import IMPORTANT_TAG
from desk.config.settings import ManagerEmail, Settings, category_titles
from desk.config.texts import Texts
from models import Appeal, Customer

log = logging.getLogger(__name__)

SUBJECT = "email/manager_alert_subject.txt.j2"
TEXT = "email/manager_alert.txt.j2"
PAGE = "email/manager_alert.html.j2"
IMPORTANT = "important"
SLA_BREACHED = "sla_breached"
# The router's «Важно» comes with an AppealImportant of its own, which carries its reasons
# (desk/decide/routing.py): its AppealTagged is not told a second time.
ROUTER_ACTOR = "router"
StaffLink = Callable[[str], str]  # an appeal number -> a link for the desk's staff


class ManagerMail:
    """Queues the managers' alert mails; ``on_event`` takes «Важно» and SLA breaches, the
    automation's ``alert_managers`` action calls ``alert`` (low ratings and other rules)."""

    KINDS = (AppealImportant, AppealTagged, SlaBreached)

    def __init__(
        self,
        settings: Settings,
        outbox: Outbox,
        texts: Texts,
        clock: Callable[[], datetime],
        *,
        link: StaffLink | None = None,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._texts = texts
        self._clock = clock
        self._link = link
        self._managers: tuple[ManagerEmail, ...] = tuple(settings.managers.emails)
        self._zone = ZoneInfo(settings.company.timezone)

    @property
    def enabled(self) -> bool:
        """Whether any manager is to be mailed."""
        return bool(self._managers)

    async def on_event(self, event: DomainEvent) -> None:
        """Queue the mails an event calls for (inside its transaction)."""
        appeal = event.appeal
        if appeal is None or not self._managers:
            return
        match event:
            case SlaBreached(target=target, due=due):
                await self.sla_breach(appeal, target, datetime.fromisoformat(due))
            case AppealImportant(reasons=reasons):
                await self.alert(IMPORTANT, appeal, reasons=list(reasons))
            case AppealTagged(tag=tag, added=True, actor=actor) if (
                tag == IMPORTANT_TAG and actor != ROUTER_ACTOR
            ):
                await self.alert(IMPORTANT, appeal, reasons=[], marked_by=actor)

    async def sla_breach(self, appeal: Appeal, target: str, due: datetime) -> int:
        """A deadline missed: which one, when it was due and by how much it is over."""
        late = max(1, int((self._clock() - due).total_seconds() // 60))
        return await self.alert(
            SLA_BREACHED,
            appeal,
            target=target,
            due=due.astimezone(self._zone).strftime("%d.%m.%Y %H:%M"),
            late_minutes=late,
        )

    async def alert(
        self,
        kind: str,
        appeal: Appeal | None,
        *,
        customer: Customer | None = None,
        note_html: str = "",
        **values: Any,
    ) -> int:
        """Queue the alert ``kind`` (``important``, ``sla_breached``, or an automation
        template's name: ``low_rating_alert``, ``low_rating_comment``, any other is told by its
        chat text ``note_html``) for every manager, each in their language; returns how many."""
        if not self._managers:
            return 0
        if customer is None and appeal is not None:
            customer = await customer_of(appeal)
        facts = await self._facts(appeal, customer)
        # Telegram HTML keeps its line breaks as they are: as <br> they stay lines of the text.
        note = html_to_text(note_html.replace("\n", "<br>")) if note_html else ""
        rendered: dict[str, tuple[str, str, str]] = {}
        for manager in self._managers:
            lang = manager.language or self._settings.company.language
            if lang not in rendered:
                rendered[lang] = self._render(kind, lang, facts, note, values)
            subject, text, page = rendered[lang]
            await self._outbox.queue(
                channel=STAFF_MAIL_CHANNEL,
                address=manager.address,
                subject=subject,
                text=text,
                extra={
                    "html": page,
                    "alert": kind,
                    "appeal_number": facts["number"],
                    "automatic": True,
                },
            )
        log.info(
            "managers' alert mailed",
            extra={"alert": kind, "appeal": facts["number"], "managers": len(self._managers)},
        )
        return len(self._managers)

    async def _facts(self, appeal: Appeal | None, customer: Customer | None) -> dict[str, Any]:
        """What every alert says of the appeal and the customer, whatever the language."""
        number = (appeal.number or "") if appeal is not None else ""
        contacts: list[str] = []
        if customer is not None:
            phones = await phones_of(customer.id)
            contacts = [phones] if phones else []
            contacts += [
                f"{c['channel']}: {c['address']}"
                for c in await contacts_of(customer.id)
                if c["reachable"]
            ]
        return {
            "number": number,
            "subject": appeal.subject if appeal is not None else "",
            "category": appeal.category if appeal is not None else None,
            "priority": appeal.priority.value if appeal is not None else "",
            "status": appeal.status.value if appeal is not None else "",
            "name": customer.name if customer is not None else "",
            "contacts": contacts,
            "link": self._link(number) if number and self._link is not None else "",
        }

    def _render(
        self, kind: str, lang: str, facts: dict[str, Any], note: str, values: dict[str, Any]
    ) -> tuple[str, str, str]:
        """(subject, text, HTML) of one alert in ``lang``."""
        titles = category_titles(self._settings, lang)
        category = facts["category"]
        context: dict[str, Any] = {
            **facts,
            **values,
            "kind": kind,
            "note": note,
            "company": self._settings.company.name,
            "category": titles.get(category, category) if category else "",
        }
        if kind == SLA_BREACHED:
            context["target_title"] = self._texts.string(f"sla.{values['target']}", lang)
            context["late"] = self._texts.duration(int(values["late_minutes"]), lang)
        subject = " ".join(self._texts.render(SUBJECT, lang, **context).split())
        text = self._texts.render(TEXT, lang, **context).strip() + "\n"
        page = self._texts.render(PAGE, lang, **context)
        return subject, text, page
