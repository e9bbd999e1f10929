"""The appeal lifecycle: intake of customer messages, status transitions, staff replies."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from tortoise.exceptions import IntegrityError, TransactionManagementError
from tortoise.transactions import in_transaction

from channels.base import (
    NO_REPLY_ADDRESS,
    TAKEN_CHANNELS,
    Attachment,
    ChannelKind,
    InboundMessage,
)
from desk.appeals import appeal_changes
from desk.appeals.customers import resolve_customer
from desk.appeals.event_types import (
    AppealCreated,
    AppealPostponed,
    AppealReopened,
    AppealTaken,
    CustomerCreated,
    MessageEdited,
    MessageExtended,
    MessageReceived,
    MessageSent,
    NoteAdded,
    ReplyEdited,
    StatusChanged,
    Undelivered,
)
from desk.appeals.events import CUSTOMERS, MESSAGES, ROUTES, EventBus, batch_held, hold_in_batch
from desk.appeals.intake_batch import FollowUp, IntakeBatch, new_appeal_key, stored_id
from desk.appeals.outbox import Outbox
from desk.appeals.postpone import checked
from desk.config.errors import AppealNotFound, InvalidInput, InvalidTransition
from desk.config.settings import Settings
from desk.ops.log_context import log_scope
from desk.ops.metrics import Metrics
from models import (
    OPEN_STATUSES,
    Agent,
    Appeal,
    AppealStatus,
    ContactPoint,
    Customer,
    DeliveryState,
    Direction,
    KeyValue,
    Message,
    OutboxItem,
    OutboxStatus,
    fits,
    sql,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
FOLLOW_UP_COLUMNS = (
    "appeal_id",
    "direction",
    "author",
    "channel",
    "address",
    "external_id",
    "text",
    "attachments",
    "delivery_state",
    "delivery_error",
    "sent_at",
    "created_at",
)
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
EDITABLE_CHANNELS = (ChannelKind.TELEGRAM.value, ChannelKind.VK.value)


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
    edited: bool = False
    comment: bool = False  # the comment to a rating: stored with the rating, not the appeal


Capture = Callable[[InboundMessage, Customer], Awaitable[Appeal | bool | None]]


class Undeliverable(Protocol):
    """Sends an answer that cannot go to a known-unreachable address elsewhere (another
    contact point, else the appeal's call task): ``Fallback.elsewhere``."""

    async def __call__(
        self,
        appeal: Appeal,
        channel: str,
        address: str,
        *,
        text: str,
        subject: str,
        reason: str,
        outbox_id: int | None = None,
    ) -> None: ...


KNOWN_UNREACHABLE = "not sent: the address has been unreachable since an earlier delivery"


class Lifecycle:
    """Every change of an appeal goes through here, with its history event in one transaction."""

    def __init__(
        self,
        settings: Settings,
        outbox: Outbox,
        clock: Clock,
        events: EventBus | None = None,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._clock = clock
        self.events = events or EventBus(clock)
        self.metrics = metrics or Metrics()
        # Takes a message that answers something else (a rating's comment) before threading:
        # returns the appeal it concerns (True without one), None for an ordinary message.
        self.capture: Capture | None = None
        # The email channel can send: a web customer who gave an email gets answers by mail.
        self.answer_by_mail = False
        # Where an answer for a known-unreachable address goes instead (none: it is tried).
        self.undeliverable: Undeliverable | None = None

    # -- intake -------------------------------------------------------------------------------

    def check(self, msg: InboundMessage) -> None:
        """Raise ``InvalidInput`` for a message intake can never store (over the text limit)."""
        limit = self._settings.lifecycle.max_text_chars
        if len(msg.text) > limit:
            raise InvalidInput(f"text of {len(msg.text)} characters is over the limit of {limit}")

    async def ingest(self, msg: InboundMessage) -> IngestResult:
        """Store a customer message in its appeal (new, continued or reopened), exactly once."""
        return (await self.ingest_batch([msg]))[0]

    async def ingest_batch(self, msgs: Sequence[InboundMessage]) -> list[IngestResult]:
        """Store customer messages in one transaction, in their order, each exactly once.

        What the batch refers to is loaded with a few IN-queries first (``IntakeBatch``); the
        history rows of the whole batch are written together. When one message fails, nothing
        of the batch is stored and the error propagates: the caller splits the batch.
        """
        for msg in msgs:
            self.check(msg)
        started = time.perf_counter()

        async def run() -> list[IngestResult]:
            async with in_transaction():
                now = self._clock()
                window = timedelta(hours=self._settings.lifecycle.reopen_window_hours)
                batch = await IntakeBatch.load(msgs, now, reopen_since=now - window, lock=True)
                async with self.events.batch():
                    await batch.create_new_senders(msgs)
                    for index, msg in enumerate(msgs):
                        await sql.give_turn()
                        with log_scope(channel=msg.channel.value):  # the appeal joins later
                            batch.results.append(await self._ingest_one(index, msg, batch))
                    await self._store_follow_ups(batch)
                await batch.finish()
                return [r for r in batch.results if r is not None]

        with sql.inline():  # a batch's statements are short: no thread hop each
            results = await self.atomic(run)
        self._outbox.wake()
        share = (time.perf_counter() - started) / max(len(msgs), 1)
        for msg, result in zip(msgs, results, strict=True):
            channel = msg.channel.value
            self.metrics.intake_seconds.labels(channel).observe(share)
            if not (result.duplicate or result.edited):
                self.metrics.messages_in.labels(channel).inc()
        return results

    async def _stored(self, batch: IntakeBatch, key: tuple[str, str]) -> Message | None:
        """The stored message with this (channel, external id), from what the batch knows."""
        if key in batch.following:  # a repeat (or an edit) of a follow-up not inserted yet
            await self._store_follow_ups(batch)
            batch.messages[key] = await Message.filter(channel=key[0], external_id=key[1]).first()
        return batch.messages.get(key)

    async def _store_follow_ups(self, batch: IntakeBatch) -> None:
        """Insert the follow-ups waiting (one INSERT), touch their appeals (one UPDATE), then
        tell their events in order; their results go to their places in the batch's."""
        waiting, batch.follow_ups = batch.follow_ups, []
        batch.following.clear()
        if not waiting:
            return
        now = self._clock()
        created = datetime.now(UTC)  # as the ORM's auto_now_add writes it: the real time
        ids = await sql.insert_many(
            "message",
            FOLLOW_UP_COLUMNS,
            [
                (
                    f.appeal.id,
                    Direction.IN.value,
                    f.msg.sender_name[:200] or "customer",
                    f.msg.channel.value,
                    f.msg.address,
                    stored_id(f.msg),
                    f.msg.text,
                    sql.json_value([attachment_json(a) for a in f.msg.attachments]),
                    DeliveryState.RECEIVED.value,
                    "",
                    f.msg.sent_at,
                    created,
                )
                for f in waiting
            ],
        )
        appeals = {f.appeal.id: f.appeal for f in waiting}
        await sql.execute_in(
            'UPDATE "appeal" SET "last_message_at" = {p1}, "updated_at" = {p2}, '
            '"waiting_since" = COALESCE("waiting_since", {p3}) WHERE "id" IN {in}',
            list(appeals),
            before=[now, now, now],
        )
        for appeal in appeals.values():
            appeal.last_message_at = appeal.updated_at = now
            appeal.waiting_since = appeal.waiting_since or now
        for follow_up, message_id in zip(waiting, ids, strict=True):
            msg, appeal = follow_up.msg, follow_up.appeal
            hold_in_batch(ROUTES, appeal.id, (msg.channel.value, msg.address))
            with log_scope(channel=msg.channel.value):
                await self.events.emit(
                    MessageReceived(
                        actor="customer",
                        appeal=appeal,
                        customer=follow_up.customer,
                        message_id=message_id,
                        channel=msg.channel.value,
                        album=False,
                        first=False,
                    )
                )
            log.info(
                "message stored",
                extra={
                    "appeal": appeal.number,
                    "channel": msg.channel.value,
                    "message_id": message_id,
                    "new_appeal": False,
                },
            )
            batch.results[follow_up.index] = IngestResult(
                appeal.id, appeal.number or "", message_id
            )

    async def ask_new_appeal(self, channel: str, address: str, at: datetime | None) -> None:
        """The customer pressed «new appeal»: the next message they send from this chat opens
        one. With ``at`` (the platform's time of the press, as it dates messages) messages
        written before the press and read after it stay in the old appeal; without it (a
        button with no date) the next message read takes it."""
        await KeyValue.update_or_create(
            key=new_appeal_key(channel, address),
            defaults={"value": at.isoformat() if at is not None else "next"},
        )

    async def _ingest_one(
        self, index: int, msg: InboundMessage, batch: IntakeBatch
    ) -> IngestResult | None:
        """Store one message of the batch; None when it waits with the batch's other
        follow-ups for one INSERT (``_store_follow_ups``)."""
        channel = msg.channel.value
        external_id = stored_id(msg)
        existing = await self._stored(batch, (channel, external_id))
        if existing is None and msg.edit_of:
            original = await self._stored(batch, (channel, msg.edit_of))
            if original is not None:
                return await self._edit(original, msg)
        if existing is not None:
            if msg.group_id:
                return await self._extend(existing, msg)
            appeal = await _appeal(existing.appeal_id)
            return IngestResult(appeal.id, appeal.number or "", existing.id, duplicate=True)
        if batch.wants_new_appeal(msg):
            msg = replace(msg, new_appeal=True)
        # The customer stays locked: one threading decision per customer at a time.
        customer, new_customer = await resolve_customer(
            msg, batch.points, batch.customers, batch.fresh
        )
        hold_in_batch(CUSTOMERS, customer.id, customer)
        if new_customer:
            await self.events.emit(
                CustomerCreated(actor="intake", customer=customer, channel=channel)
            )
        if (
            self.capture is not None
            and not msg.appeal_number
            and batch.answered_appeal(msg) is None
            and not msg.new_appeal
            and customer.id in batch.comment_waits
        ):
            taken = await self.capture(msg, customer)
            if taken is not None:
                rated = taken if isinstance(taken, Appeal) else None
                number = rated.number or "" if rated is not None else ""
                return IngestResult(rated.id if rated else 0, number, 0, comment=True)
        appeal, created, reopened = await self._thread(msg, customer, batch)
        if not (created or reopened or msg.group_id) and appeal.customer_id == customer.id:
            batch.follow_ups.append(FollowUp(index, msg, appeal, customer))
            batch.following.add((channel, external_id))
            return None
        # Anything else may read what came before it: the follow-ups waiting go first.
        await self._store_follow_ups(batch)
        message = await Message.create(
            appeal=appeal,
            direction=Direction.IN,
            author=msg.sender_name[:200] or "customer",
            channel=channel,
            address=msg.address,
            external_id=external_id,
            text=msg.text,
            attachments=[attachment_json(a) for a in msg.attachments],
            delivery_state=DeliveryState.RECEIVED,
            sent_at=msg.sent_at,
        )
        batch.messages[(channel, external_id)] = message
        hold_in_batch(MESSAGES, message.id, message)
        hold_in_batch(ROUTES, appeal.id, (channel, msg.address))
        now = self._clock()
        appeal.last_message_at = now
        appeal.waiting_since = appeal.waiting_since or now
        await appeal_changes.save(appeal, ["last_message_at", "waiting_since", "updated_at"])
        await self.events.emit(
            MessageReceived(
                actor="customer",
                appeal=appeal,
                customer=customer if customer.id == appeal.customer_id else None,
                message_id=message.id,
                channel=channel,
                album=bool(msg.group_id),
                first=created,
                new_customer=new_customer,
            )
        )
        if appeal.customer_id == customer.id and appeal.status in OPEN_STATUSES:
            batch.open_appeals[customer.id] = appeal  # what the router left it (still open)
        log.info(
            "message stored",
            extra={
                "appeal": appeal.number,
                "channel": channel,
                "message_id": message.id,
                "new_appeal": created,
            },
        )
        return IngestResult(appeal.id, appeal.number or "", message.id, created, reopened)

    async def _edit(self, original: Message, msg: InboundMessage) -> IngestResult:
        """The customer edited a stored message: keep the new text, tell the staff the old one."""
        appeal = await _appeal(original.appeal_id)
        if original.edited_at is not None and original.edited_at >= msg.sent_at:
            return IngestResult(appeal.id, appeal.number or "", original.id, duplicate=True)
        before = original.text
        original.text = msg.text
        original.edited_at = msg.sent_at
        await original.save(update_fields=["text", "edited_at"])
        await self.events.emit(
            MessageEdited(
                actor="customer",
                appeal=appeal,
                message_id=original.id,
                before=before,
                after=msg.text,
            )
        )
        return IngestResult(appeal.id, appeal.number or "", original.id, edited=True)

    async def _extend(self, message: Message, msg: InboundMessage) -> IngestResult:
        """Another part of an album: its files (and caption) join the album's message."""
        appeal = await _appeal(message.appeal_id)
        known = {str(a.get("ref")) for a in message.attachments}
        added = [attachment_json(a) for a in msg.attachments if a.ref not in known]
        text = msg.text.strip()
        if not added and (not text or text in message.text):
            return IngestResult(appeal.id, appeal.number or "", message.id, duplicate=True)
        message.attachments = [*message.attachments, *added]
        if text and text not in message.text:
            message.text = f"{message.text}\n{text}".strip()
        await message.save(update_fields=["attachments", "text"])
        await self.events.emit(
            MessageExtended(
                actor="customer", appeal=appeal, message_id=message.id, added=len(added)
            )
        )
        return IngestResult(appeal.id, appeal.number or "", message.id)

    async def _thread(
        self, msg: InboundMessage, customer: Customer, batch: IntakeBatch
    ) -> tuple[Appeal, bool, bool]:
        """The appeal a message belongs to: named, open, reopened inside the window, or new."""
        now = self._clock()
        window = timedelta(hours=self._settings.lifecycle.reopen_window_hours)
        candidate: Appeal | None = None
        answered = batch.answered_appeal(msg)  # a mail threaded by our Message-IDs
        if answered is not None or msg.appeal_number:
            named = (
                await Appeal.filter(id=answered).first()
                if answered is not None
                else appeal_changes.by_number(msg.appeal_number)
                or await Appeal.filter(number=msg.appeal_number).first()
            )
            # A web reply carries a number proven by a signed link; others must own the appeal.
            if named is not None and (
                msg.channel is ChannelKind.WEB or named.customer_id == customer.id
            ):
                candidate = named
        elif not msg.new_appeal:
            candidate = _latest(
                batch.open_appeals.get(customer.id), batch.resolved.get(customer.id)
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
                await self.move(
                    candidate,
                    AppealStatus.OPEN,
                    actor="customer",
                    reason="customer wrote inside the reopen window",
                )
                return candidate, False, True
        return await self._create(msg, customer, now), True, False

    async def _create(self, msg: InboundMessage, customer: Customer, now: datetime) -> Appeal:
        subject = (msg.subject or _first_line(msg.text))[:300]
        # Due times come from the SLA clock, which hears appeal.created.
        appeal = await Appeal.create(
            customer=customer,
            channel=msg.channel.value,
            subject=subject,
            status=AppealStatus.NEW,
            last_message_at=now,
            created_at=now,
        )
        appeal_changes.created(appeal)
        appeal.number = appeal_number(appeal.id)
        # Written with the batch's other changes to it: nobody outside the transaction can
        # know the number before the commit, and inside it ``_thread`` finds it (``by_number``).
        await appeal_changes.save(appeal, ["number"])
        await self.events.emit(
            AppealCreated(
                actor=msg.taken_by or "customer",
                appeal=appeal,
                channel=msg.channel.value,
                address=msg.address,
                number=appeal.number,
            )
        )
        if msg.channel in TAKEN_CHANNELS:  # the history says who took it down, and where
            await self.events.emit(
                AppealTaken(
                    actor=msg.taken_by or "staff",
                    appeal=appeal,
                    channel=msg.channel.value,
                    via=msg.taken_via,
                )
            )
        return appeal

    # -- staff actions ------------------------------------------------------------------------

    def wake(self) -> None:
        """Tell the delivery workers that a committed change queued messages."""
        self._outbox.wake()

    async def get(self, number: str) -> Appeal:
        """The appeal with this number; ``AppealNotFound`` otherwise."""
        key = number.strip().upper()
        appeal = await Appeal.filter(number=key).first() if fits(Appeal, "number", key) else None
        if appeal is None:
            raise AppealNotFound(number)
        return appeal

    async def transition(
        self,
        number: str,
        to: AppealStatus,
        *,
        actor: str,
        reason: str = "",
        until: datetime | None = None,
    ) -> Appeal:
        """Move an appeal to another status; an impossible move raises ``InvalidTransition``.
        ``until`` (with ``pending``): postponed until then, back in work when it comes; left
        out, ``lifecycle.postpone_hours`` from now (see ``move``)."""
        if until is not None and to is not AppealStatus.PENDING:
            raise InvalidInput("only a postponed (pending) appeal waits until a time")
        if until is not None:
            checked(until, self._clock())

        async def run() -> Appeal:
            async with in_transaction():
                appeal = await self.get(number)
                await self.move(appeal, to, actor=actor, reason=reason, until=until)
                return appeal

        appeal = await self.atomic(run)
        self._outbox.wake()
        return appeal

    async def move(
        self,
        appeal: Appeal,
        to: AppealStatus,
        *,
        actor: str,
        reason: str,
        until: datetime | None = None,
    ) -> None:
        """Change the status of an appeal already loaded; call inside a transaction.

        Postponed (``pending``), an appeal is not done (seed 001): it comes back to work at
        ``until``, by default ``lifecycle.postpone_hours`` from now (``wake_postponed``), the
        one place the staff group's /postpone and «Отложить» and the API's postpone all pass;
        leaving ``pending`` any other way forgets that time."""
        current = appeal.status
        if to not in TRANSITIONS[current]:
            raise InvalidTransition(appeal.number or "", current.value, to.value)
        now = self._clock()
        changes: dict[str, object] = {"status": to, "updated_at": now}
        if to is AppealStatus.PENDING:
            hours = self._settings.lifecycle.postpone_hours
            until = until or now + timedelta(hours=hours)
            changes["pending_until"] = until
        elif appeal.pending_until is not None:
            changes["pending_until"] = None
        if to is AppealStatus.RESOLVED:
            changes["resolved_at"] = now
        elif to is AppealStatus.CLOSED:
            changes["closed_at"] = now
        elif to is AppealStatus.OPEN and current is AppealStatus.RESOLVED:
            changes["resolved_at"] = None
        if appeal_changes.is_fresh(appeal):  # nobody else sees it yet: written with its batch
            for key, value in changes.items():
                setattr(appeal, key, value)
            await appeal_changes.save(appeal, changes)
        else:
            # A conditional update: two workers moving one appeal cannot both win.
            updated = await Appeal.filter(id=appeal.id, status=current).update(**changes)
            if updated != 1:
                fresh = await Appeal.get(id=appeal.id)
                raise InvalidTransition(appeal.number or "", fresh.status.value, to.value)
            for key, value in changes.items():
                setattr(appeal, key, value)
        moved = (
            AppealReopened
            if current is AppealStatus.RESOLVED and to is AppealStatus.OPEN
            else StatusChanged
        )
        await self.events.emit(
            moved(actor=actor, appeal=appeal, before=current.value, after=to.value, reason=reason)
        )
        if to is AppealStatus.PENDING and until is not None:
            await self.events.emit(
                AppealPostponed(actor=actor, appeal=appeal, until=until.isoformat(), reason=reason)
            )

    async def wake_postponed(self, now: datetime, limit: int = 200) -> int:
        """Postponed appeals whose time has come (``pending_until`` past) go back to work:
        ``open`` again and waiting for an answer (since the customer wrote, or since now they
        are back), so the feed lists them among the waiting; soonest first, at most ``limit``
        a pass; returns how many. Safe with several processes and with an agent meanwhile: the
        appeal moves only while it is still pending with a time that has come."""
        due = (
            await Appeal.filter(status=AppealStatus.PENDING, pending_until__lte=now)
            .order_by("pending_until", "id")
            .limit(limit)
        )
        woken = 0
        for appeal in due:

            async def run(appeal: Appeal = appeal) -> bool:
                async with in_transaction():
                    came = appeal.pending_until or now
                    waiting = appeal.waiting_since or came  # the customer may have written since
                    updated = await Appeal.filter(
                        id=appeal.id, status=AppealStatus.PENDING, pending_until__lte=now
                    ).update(waiting_since=waiting)
                    if not updated:
                        return False  # moved or postponed again meanwhile
                    appeal.waiting_since = waiting
                    await self.move(
                        appeal,
                        AppealStatus.OPEN,
                        actor="scheduler",
                        reason=f"postponed until {came.isoformat()}",
                    )
                    return True

            try:
                with log_scope(appeal=appeal.number, channel=appeal.channel):
                    woken += await self.atomic(run)
            except InvalidTransition:  # moved meanwhile by someone else
                continue
        if woken:
            self._outbox.wake()
        return woken

    async def reply(
        self,
        number: str,
        text: str,
        *,
        actor: str,
        agent: Agent | None = None,
        attachments: Sequence[Attachment] = (),
        signature: str = "",
        source: str = "api",
        source_ref: str | None = None,
    ) -> Message:
        """A staff answer to the customer: stored, queued in the outbox, counted as a response.

        ``signature`` is added to what the customer receives; ``source_ref`` (the id of the
        agent's message where it was written) makes a repeated call return the first answer.
        """
        text = text.strip()
        if not attachments:
            text = checked_text(text, self._settings.lifecycle.max_text_chars)

        async def run() -> Message:
            async with in_transaction():
                if (done := await _by_source(source_ref)) is not None:
                    return done
                appeal = await self.get(number)
                if appeal.status is AppealStatus.CLOSED:
                    raise InvalidTransition(appeal.number or "", "closed", "answered")
                channel, address = await self.reply_route(appeal)
                if channel == ChannelKind.WEB.value:
                    channel, address = await self._web_route(appeal)
                dead = await self._known_unreachable(channel, address)
                files = [attachment_json(a) for a in attachments]
                message = await Message.create(
                    appeal=appeal,
                    direction=Direction.OUT,
                    author=actor,
                    agent=agent,
                    channel=channel,
                    address=address,
                    text=text,
                    attachments=files,
                    source_ref=source_ref,
                    delivery_state=DeliveryState.FAILED if dead else DeliveryState.QUEUED,
                    delivery_error=KNOWN_UNREACHABLE if dead else "",
                )
                delivered = f"{text}\n\n{signature}".strip() if signature else text
                if dead and self.undeliverable is not None:
                    await self.events.emit(
                        Undelivered(
                            actor="delivery",
                            appeal=appeal,
                            outbox_id=None,
                            channel=channel,
                            reason=KNOWN_UNREACHABLE,
                        )
                    )
                    await self.undeliverable(
                        appeal,
                        channel,
                        address,
                        text=delivered,
                        subject="",
                        reason=KNOWN_UNREACHABLE,
                    )
                else:
                    await self._outbox.enqueue(
                        channel=channel,
                        address=address,
                        text=delivered,
                        attachments=attachments,
                        appeal=appeal,
                        message=message,
                    )
                now = self._clock()
                if appeal.first_response_at is None:
                    appeal.first_response_at = now
                appeal.last_message_at = now
                appeal.waiting_since = None
                await appeal.save(
                    update_fields=[
                        "first_response_at",
                        "last_message_at",
                        "waiting_since",
                        "updated_at",
                    ]
                )
                await self.events.emit(
                    MessageSent(
                        actor=actor,
                        appeal=appeal,
                        message_id=message.id,
                        channel=channel,
                        source=source,
                    )
                )
                if appeal.status is AppealStatus.NEW:
                    await self.move(appeal, AppealStatus.OPEN, actor=actor, reason="first answer")
                return message

        message = await self.atomic(run)
        self._outbox.wake()
        return message

    async def edit_reply(
        self, source_ref: str, text: str, *, actor: str, signature: str = ""
    ) -> bool | None:
        """An agent corrected an answer: the stored text changes, and the customer's copy is
        edited where the channel allows it (Telegram, VK). Returns None when no answer has that
        source, False when the customer's copy cannot be changed (a mail already sent)."""
        text = checked_text(text, self._settings.lifecycle.max_text_chars)

        async def run() -> bool | None:
            async with in_transaction():
                message = await Message.filter(
                    source_ref=source_ref, direction=Direction.OUT
                ).first()
                if message is None:
                    return None
                if message.text == text:
                    return True
                appeal = await _appeal(message.appeal_id)
                before = message.text
                message.text = text
                message.edited_at = self._clock()
                await message.save(update_fields=["text", "edited_at"])
                delivered = f"{text}\n\n{signature}".strip() if signature else text
                waiting = await OutboxItem.filter(
                    message_id=message.id, status=OutboxStatus.PENDING
                ).first()
                editable = True
                if waiting is not None:
                    waiting.payload = {**waiting.payload, "text": delivered}
                    await waiting.save(update_fields=["payload"])
                elif message.external_id and message.channel in EDITABLE_CHANNELS:
                    await self._outbox.enqueue(
                        channel=message.channel,
                        address=message.address,
                        text=delivered,
                        appeal=appeal,
                        extra={"edit_of": message.external_id},
                    )
                else:
                    editable = False
                await self.events.emit(
                    ReplyEdited(
                        actor=actor,
                        appeal=appeal,
                        message_id=message.id,
                        before=before,
                        after=text,
                        delivered=editable,
                    )
                )
                return editable

        result = await self.atomic(run)
        self._outbox.wake()
        return result

    async def note(
        self,
        number: str,
        text: str,
        *,
        actor: str,
        agent: Agent | None = None,
        source: str = "api",
        source_ref: str | None = None,
    ) -> Message:
        """An internal staff note: kept in the appeal, never sent to the customer."""
        text = checked_text(text, self._settings.lifecycle.max_text_chars)

        async def run() -> Message:
            async with in_transaction():
                if (done := await _by_source(source_ref)) is not None:
                    return done
                appeal = await self.get(number)
                message = await Message.create(
                    appeal=appeal,
                    direction=Direction.NOTE,
                    author=actor,
                    agent=agent,
                    channel="staff",
                    text=text,
                    source_ref=source_ref,
                    delivery_state=DeliveryState.NONE,
                )
                await self.events.emit(
                    NoteAdded(actor=actor, appeal=appeal, message_id=message.id, source=source)
                )
                return message

        message = await self.atomic(run)
        self._outbox.wake()
        return message

    async def reply_route(self, appeal: Appeal) -> tuple[str, str]:
        """Where an answer goes: the channel and address of the customer's last message."""
        held: tuple[str, str] | None = batch_held(ROUTES, appeal.id)
        if held is not None:  # the batch stored it
            channel, address = held
        else:
            last_in = await (
                Message.filter(appeal_id=appeal.id, direction=Direction.IN).order_by("-id").first()
            )
            if last_in is None:
                return ChannelKind.WEB.value, appeal.number or ""
            channel, address = last_in.channel, last_in.address
        # A web form's or a taken appeal's: by mail or to the status page (``_web_route``).
        if channel in NO_REPLY_ADDRESS or not address:
            return ChannelKind.WEB.value, appeal.number or ""
        return channel, address

    async def _known_unreachable(self, channel: str, address: str) -> bool:
        """Whether an earlier delivery found this address unreachable (blocked bot, refused
        mailbox) and the customer has not written from it since: it is not tried again."""
        if self.undeliverable is None or channel == ChannelKind.WEB.value:
            return False
        return await ContactPoint.filter(channel=channel, address=address, reachable=False).exists()

    async def _web_route(self, appeal: Appeal) -> tuple[str, str]:
        """Where a staff answer in a web conversation goes: by mail when the customer gave a
        reachable email (the mail carries the status link), else to the status page only."""
        if self.answer_by_mail:
            mail = (
                await ContactPoint.filter(
                    customer_id=appeal.customer_id,
                    channel=ChannelKind.EMAIL.value,
                    reachable=True,
                )
                .order_by("-last_seen_at", "-id")
                .first()
            )
            if mail is not None:
                return ChannelKind.EMAIL.value, mail.address
        return ChannelKind.WEB.value, appeal.number or ""

    async def atomic(self, action: Callable[[], Awaitable[T]]) -> T:
        """Run a transaction again when a concurrent writer won a unique key or a lock."""
        for attempt in range(_RETRIES):
            try:
                return await action()
            except (IntegrityError, TransactionManagementError):
                if attempt == _RETRIES - 1:
                    raise
                log.info("transaction conflict, retrying", extra={"attempt": attempt + 1})
        raise AssertionError("unreachable")


async def _appeal(appeal_id: int) -> Appeal:
    """An appeal by id: the batch's own object when the batch created it."""
    return appeal_changes.loaded(appeal_id) or await Appeal.get(id=appeal_id)


async def _by_source(source_ref: str | None) -> Message | None:
    """The message already stored from this staff message (a repeated update), if any."""
    if source_ref is None:
        return None
    return await Message.filter(source_ref=source_ref).first()


def _latest(newest_open: Appeal | None, last_resolved: Appeal | None) -> Appeal | None:
    """The appeal a customer's message continues: their newest open one, else the one resolved
    last (either may have changed status earlier in the batch)."""
    if newest_open is not None and newest_open.status in OPEN_STATUSES:
        return newest_open
    resolved = [
        a
        for a in (newest_open, last_resolved)
        if a is not None and a.status is AppealStatus.RESOLVED and a.resolved_at is not None
    ]
    return max(resolved, key=lambda a: a.resolved_at or a.created_at) if resolved else None


def checked_text(text: str, limit: int) -> str:
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


def attachment_json(attachment: Attachment) -> dict[str, object]:
    return asdict(attachment)
