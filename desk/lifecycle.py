"""The appeal lifecycle: intake of customer messages, status transitions, staff replies."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from tortoise.exceptions import IntegrityError, TransactionManagementError
from tortoise.transactions import in_transaction

from channels.base import Attachment, ChannelKind, InboundMessage
from desk import history
from desk.customers import resolve_customer
from desk.errors import AgentNotFound, AppealNotFound, InvalidInput, InvalidTransition
from desk.outbox import Outbox
from desk.settings import Settings
from models import (
    OPEN_STATUSES,
    Agent,
    Appeal,
    AppealStatus,
    Customer,
    DeliveryState,
    Direction,
    Message,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]

TRANSITIONS: dict[AppealStatus, frozenset[AppealStatus]] = {
    AppealStatus.NEW: frozenset(
        {AppealStatus.OPEN, AppealStatus.PENDING, AppealStatus.RESOLVED, AppealStatus.CLOSED}
    ),
    AppealStatus.OPEN: frozenset(
        {AppealStatus.PENDING, AppealStatus.RESOLVED, AppealStatus.CLOSED}
    ),
    AppealStatus.PENDING: frozenset(
        {AppealStatus.OPEN, AppealStatus.RESOLVED, AppealStatus.CLOSED}
    ),
    AppealStatus.RESOLVED: frozenset({AppealStatus.OPEN, AppealStatus.CLOSED}),
    AppealStatus.CLOSED: frozenset(),
}
_RETRIES = 4


def appeal_number(appeal_id: int) -> str:
    """The human number of an appeal: ``A-000123``."""
    return f"A-{appeal_id:06d}"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What intake did with one inbound message."""

    appeal_id: int
    number: str
    message_id: int
    created: bool = False
    reopened: bool = False
    duplicate: bool = False


class Lifecycle:
    """Every change of an appeal goes through here, with its history event in one transaction."""

    def __init__(self, settings: Settings, outbox: Outbox, clock: Clock) -> None:
        self._settings = settings
        self._outbox = outbox
        self._clock = clock

    # -- intake -------------------------------------------------------------------------------

    async def ingest(self, msg: InboundMessage) -> IngestResult:
        """Store a customer message in its appeal (new, continued or reopened), exactly once."""
        limit = self._settings.lifecycle.max_text_chars
        if len(msg.text) > limit:
            raise InvalidInput(f"text of {len(msg.text)} characters is over the limit of {limit}")
        return await self._retrying(lambda: self._ingest_once(msg))

    async def _ingest_once(self, msg: InboundMessage) -> IngestResult:
        async with in_transaction():
            existing = await Message.filter(
                channel=msg.channel.value, external_id=msg.external_id
            ).first()
            if existing is not None:
                appeal = await Appeal.get(id=existing.appeal_id)
                return IngestResult(appeal.id, appeal.number or "", existing.id, duplicate=True)
            customer, new_customer = await resolve_customer(msg)
            # Serialise the threading decision per customer (PostgreSQL; SQLite has one writer).
            await Customer.filter(id=customer.id).select_for_update().first()
            if new_customer:
                await history.record(
                    "customer.created", actor="intake", customer=customer, channel=msg.channel.value
                )
            appeal, created, reopened = await self._thread(msg, customer)
            message = await Message.create(
                appeal=appeal,
                direction=Direction.IN,
                author=msg.sender_name[:200] or "customer",
                channel=msg.channel.value,
                address=msg.address,
                external_id=msg.external_id,
                text=msg.text,
                attachments=[_attachment_json(a) for a in msg.attachments],
                delivery_state=DeliveryState.RECEIVED,
                sent_at=msg.sent_at,
            )
            appeal.last_message_at = self._clock()
            await appeal.save(update_fields=["last_message_at", "updated_at"])
            await history.record(
                "message.received",
                actor="customer",
                appeal=appeal,
                message_id=message.id,
                channel=msg.channel.value,
            )
        log.info(
            "message stored",
            extra={
                "appeal": appeal.number,
                "channel": msg.channel.value,
                "message_id": message.id,
                "new_appeal": created,
            },
        )
        return IngestResult(appeal.id, appeal.number or "", message.id, created, reopened)

    async def _thread(self, msg: InboundMessage, customer: Customer) -> tuple[Appeal, bool, bool]:
        """The appeal a message belongs to: named, open, reopened inside the window, or new."""
        now = self._clock()
        window = timedelta(hours=self._settings.lifecycle.reopen_window_hours)
        candidate: Appeal | None = None
        if msg.appeal_number:
            named = await Appeal.filter(number=msg.appeal_number).first()
            # A web reply carries a number proven by a signed link; others must own the appeal.
            if named is not None and (
                msg.channel is ChannelKind.WEB or named.customer_id == customer.id
            ):
                candidate = named
        elif not msg.new_appeal:
            candidate = await (
                Appeal.filter(customer_id=customer.id, status__in=list(OPEN_STATUSES))
                .order_by("-id")
                .first()
            )
            if candidate is None:
                candidate = await (
                    Appeal.filter(customer_id=customer.id, status=AppealStatus.RESOLVED)
                    .order_by("-resolved_at")
                    .first()
                )
        if candidate is not None:
            if candidate.status in OPEN_STATUSES:
                return candidate, False, False
            resolved_at = candidate.resolved_at
            if (
                candidate.status is AppealStatus.RESOLVED
                and resolved_at is not None
                and now - resolved_at <= window
            ):
                await self._move(
                    candidate,
                    AppealStatus.OPEN,
                    actor="customer",
                    reason="customer wrote inside the reopen window",
                )
                return candidate, False, True
        return await self._create(msg, customer, now), True, False

    async def _create(self, msg: InboundMessage, customer: Customer, now: datetime) -> Appeal:
        sla = self._settings.sla
        subject = (msg.subject or _first_line(msg.text))[:300]
        appeal = await Appeal.create(
            customer=customer,
            channel=msg.channel.value,
            subject=subject,
            status=AppealStatus.NEW,
            first_response_due=now + timedelta(minutes=sla.first_response_minutes),
            resolution_due=now + timedelta(hours=sla.resolution_hours),
            last_message_at=now,
        )
        appeal.number = appeal_number(appeal.id)
        await appeal.save(update_fields=["number"])
        await history.record(
            "appeal.created",
            actor="customer",
            appeal=appeal,
            channel=msg.channel.value,
            number=appeal.number,
        )
        return appeal

    # -- staff actions ------------------------------------------------------------------------

    async def get(self, number: str) -> Appeal:
        """The appeal with this number; ``AppealNotFound`` otherwise."""
        appeal = await Appeal.filter(number=number.strip().upper()).first()
        if appeal is None:
            raise AppealNotFound(number)
        return appeal

    async def transition(
        self, number: str, to: AppealStatus, *, actor: str, reason: str = ""
    ) -> Appeal:
        """Move an appeal to another status; an impossible move raises ``InvalidTransition``."""

        async def run() -> Appeal:
            async with in_transaction():
                appeal = await self.get(number)
                await self._move(appeal, to, actor=actor, reason=reason)
                return appeal

        return await self._retrying(run)

    async def _move(self, appeal: Appeal, to: AppealStatus, *, actor: str, reason: str) -> None:
        current = appeal.status
        if to not in TRANSITIONS[current]:
            raise InvalidTransition(appeal.number or "", current.value, to.value)
        now = self._clock()
        changes: dict[str, object] = {"status": to, "updated_at": now}
        if to is AppealStatus.RESOLVED:
            changes["resolved_at"] = now
        elif to is AppealStatus.CLOSED:
            changes["closed_at"] = now
        elif to is AppealStatus.OPEN and current is AppealStatus.RESOLVED:
            changes["resolved_at"] = None
        # A conditional update: two workers moving one appeal cannot both win.
        updated = await Appeal.filter(id=appeal.id, status=current).update(**changes)
        if updated != 1:
            fresh = await Appeal.get(id=appeal.id)
            raise InvalidTransition(appeal.number or "", fresh.status.value, to.value)
        for key, value in changes.items():
            setattr(appeal, key, value)
        kind = (
            "appeal.reopened"
            if current is AppealStatus.RESOLVED and to is AppealStatus.OPEN
            else "appeal.status_changed"
        )
        await history.record(
            kind, actor=actor, appeal=appeal, before=current.value, after=to.value, reason=reason
        )

    async def reply(
        self, number: str, text: str, *, actor: str, agent: Agent | None = None
    ) -> Message:
        """A staff answer to the customer: stored, queued in the outbox, counted as a response."""
        text = _checked_text(text, self._settings.lifecycle.max_text_chars)

        async def run() -> Message:
            async with in_transaction():
                appeal = await self.get(number)
                if appeal.status is AppealStatus.CLOSED:
                    raise InvalidTransition(appeal.number or "", "closed", "answered")
                channel, address = await self._reply_route(appeal)
                message = await Message.create(
                    appeal=appeal,
                    direction=Direction.OUT,
                    author=actor,
                    agent=agent,
                    channel=channel,
                    text=text,
                    delivery_state=DeliveryState.QUEUED,
                )
                await self._outbox.enqueue(
                    channel=channel, address=address, text=text, appeal=appeal, message=message
                )
                now = self._clock()
                if appeal.first_response_at is None:
                    appeal.first_response_at = now
                appeal.last_message_at = now
                await appeal.save(
                    update_fields=["first_response_at", "last_message_at", "updated_at"]
                )
                await history.record(
                    "message.sent",
                    actor=actor,
                    appeal=appeal,
                    message_id=message.id,
                    channel=channel,
                )
                if appeal.status is AppealStatus.NEW:
                    await self._move(appeal, AppealStatus.OPEN, actor=actor, reason="first answer")
                return message

        message = await self._retrying(run)
        self._outbox.wake()
        return message

    async def note(
        self, number: str, text: str, *, actor: str, agent: Agent | None = None
    ) -> Message:
        """An internal staff note: kept in the appeal, never sent to the customer."""
        text = _checked_text(text, self._settings.lifecycle.max_text_chars)
        async with in_transaction():
            appeal = await self.get(number)
            message = await Message.create(
                appeal=appeal,
                direction=Direction.NOTE,
                author=actor,
                agent=agent,
                channel="staff",
                text=text,
                delivery_state=DeliveryState.NONE,
            )
            await history.record("note.added", actor=actor, appeal=appeal, message_id=message.id)
            return message

    async def assign(self, number: str, agent_ref: str | None, *, actor: str) -> Appeal:
        """Give the appeal to an agent (by id, Telegram id or name), or take it from everyone."""
        async with in_transaction():
            appeal = await self.get(number)
            agent = await find_agent(agent_ref) if agent_ref else None
            before = appeal.assignee_id
            appeal.assignee = agent
            await appeal.save(update_fields=["assignee_id", "updated_at"])
            await history.record(
                "appeal.assigned",
                actor=actor,
                appeal=appeal,
                before=before,
                after=agent.id if agent else None,
                agent=agent.name if agent else None,
            )
            if agent is not None and appeal.status is AppealStatus.NEW:
                await self._move(appeal, AppealStatus.OPEN, actor=actor, reason="assigned")
            return appeal

    async def _reply_route(self, appeal: Appeal) -> tuple[str, str]:
        """Where an answer goes: the channel and address of the customer's last message."""
        last_in = await (
            Message.filter(appeal_id=appeal.id, direction=Direction.IN).order_by("-id").first()
        )
        if last_in is None or last_in.channel == ChannelKind.WEB.value or not last_in.address:
            return ChannelKind.WEB.value, appeal.number or ""
        return last_in.channel, last_in.address

    async def _retrying(self, action: Callable[[], Awaitable[T]]) -> T:
        """Run a transaction again when a concurrent writer won a unique key or a lock."""
        for attempt in range(_RETRIES):
            try:
                return await action()
            except (IntegrityError, TransactionManagementError):
                if attempt == _RETRIES - 1:
                    raise
                log.info("transaction conflict, retrying", extra={"attempt": attempt + 1})
        raise AssertionError("unreachable")


async def find_agent(ref: str) -> Agent:
    """An active agent by database id, Telegram id or exact name."""
    query = Agent.filter(active=True)
    agent = None
    if ref.isdigit():
        agent = (
            await query.filter(id=int(ref)).first()
            or await query.filter(telegram_id=int(ref)).first()
        )
    if agent is None:
        agent = await query.filter(name=ref).first()
    if agent is None:
        raise AgentNotFound(ref)
    return agent


def _checked_text(text: str, limit: int) -> str:
    text = text.strip()
    if not text:
        raise InvalidInput("text is empty")
    if len(text) > limit:
        raise InvalidInput(f"text of {len(text)} characters is over the limit of {limit}")
    return text


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _attachment_json(attachment: Attachment) -> dict[str, object]:
    return asdict(attachment)
