"""Forgetting a customer (a data subject's erasure request): their personal data is cleared or
replaced by a marker, the figures stay.

Cleared: the customer's name and time zone, their contact points (so a forgotten customer who
writes again is a new customer), every message text, author name, address and attachment of
their appeals (files the desk stored are deleted when no other message names them), appeal
subjects and staff topic names, rating comments, task texts and reasons, order stage notes,
personal fields of history events, outbox payloads about them, the router's examples taken from
their appeals, and stream entries still holding their messages.

Kept: every row and its counts, categories, priorities, statuses, timestamps, SLA figures,
scores, amounts and the agents' names, so reports add up the same before and after. The
customer is marked ``do_not_contact``; their open tasks are cancelled and their undelivered
outbox rows fail. A ``customer.forgotten`` event (with counts only) records that it happened.
Forgetting twice changes nothing more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.expressions import Q, RawSQL
from tortoise.transactions import in_transaction

from channels.base import ChannelKind
from channels.stream import local_entries
from channels.web import RECEIPT_PREFIX
from desk.appeals import history
from desk.features.data_export import customer_scope, deliveries_of, file_refs
from models import (
    FILE_REF_PREFIX,
    Appeal,
    ContactPoint,
    Customer,
    Direction,
    Event,
    LabelledExample,
    Message,
    Order,
    OutboxItem,
    OutboxStatus,
    Rating,
    RatingRequest,
    StoredFile,
    Task,
    TaskStatus,
    db,
)

log = logging.getLogger(__name__)

MARKER = "[forgotten]"
FORGOTTEN_ID = "forgotten:"  # what a forgotten message's external id starts with
FORGOTTEN = "customer.forgotten"
# History fields that hold what a person wrote or where they write from. Statuses, scores,
# ids, channels and timings in the other fields stay for the reports.
PERSONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "message.edited": ("before", "after"),
    "reply.edited": ("before", "after"),
    "task.completed": ("reason",),
}
ALWAYS_PERSONAL = ("address", "name", "text", "comment", "subject", "sender")
MIN_NEEDLE = 3  # shorter names would match inside unrelated words
MIN_TEXT_NEEDLE = 12  # shorter texts («Да», «Спасибо») are no sign of this customer
TEXT_NEEDLE = 40  # a text's start: alerts quote texts shortened
SCAN_BATCH = 500


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What forgetting one customer cleared."""

    customer_id: int
    appeals: int
    messages: int
    contact_points: int
    files_deleted: int
    already: bool  # forgotten before: nothing personal was left

    def describe(self) -> dict[str, Any]:
        """The counts, for the event, the log and the API (no personal data)."""
        return {
            "appeals": self.appeals,
            "messages": self.messages,
            "contact_points": self.contact_points,
            "files_deleted": self.files_deleted,
        }


async def is_forgotten(customer_id: int) -> bool:
    """Whether this customer was forgotten (their links then say so, and take nothing)."""
    return await Event.exists(customer_id=customer_id, kind=FORGOTTEN)


async def forget_customer(customer_id: int, *, actor: str, now: datetime) -> Forgotten | None:
    """Erase the personal data of one customer (see the module's docstring); None when there
    is no such customer."""
    async with db.erasing():
        done = await _forget(customer_id, actor=actor, now=now)
    if done is not None:
        log.info("customer forgotten", extra={"customer_id": customer_id, **done.describe()})
    return done


async def _forget(customer_id: int, *, actor: str, now: datetime) -> Forgotten | None:
    async with in_transaction():
        customer = await Customer.get_or_none(id=customer_id)
        if customer is None:
            return None
        already = await Event.exists(customer_id=customer_id, kind=FORGOTTEN)
        appeal_ids, addresses = await customer_scope(customer_id)
        messages = await Message.filter(appeal_id__in=appeal_ids)
        needles = await _needles(customer, addresses, appeal_ids, messages)
        refs = file_refs({"attachments": m.attachments} for m in messages)
        for message in messages:
            _clear_message(message)
        if messages:
            await Message.bulk_update(
                messages, fields=["text", "author", "address", "external_id", "attachments"]
            )
        await _clear_appeals(appeal_ids)
        await _clear_events(customer_id, appeal_ids, needles)
        await _clear_outbox(appeal_ids, addresses)
        await _clear_alerts(customer.created_at, needles)
        await _clear_work(customer_id, appeal_ids, now)
        await _clear_stream(addresses)
        await LabelledExample.filter(appeal_id__in=appeal_ids).delete()
        points = await ContactPoint.filter(customer_id=customer_id).delete()
        customer.name, customer.timezone, customer.do_not_contact = "", "", True
        await customer.save(update_fields=["name", "timezone", "do_not_contact", "updated_at"])
        deleted = await _delete_unused_files(refs)
        done = Forgotten(customer_id, len(appeal_ids), len(messages), points, deleted, already)
        if not already:
            await history.record(
                FORGOTTEN, actor=actor, customer=customer, at=now, **done.describe()
            )
    return done


async def _needles(
    customer: Customer,
    addresses: set[tuple[str, str]],
    appeal_ids: list[int],
    messages: list[Message],
) -> set[str]:
    """Strings that only this customer's data holds: their name, addresses and the starts of
    what they wrote (to find copies in alerts and history)."""
    texts = [m.text for m in messages if m.direction is Direction.IN]
    texts += [a.subject for a in await Appeal.filter(id__in=appeal_ids).only("id", "subject")]
    texts += [r.comment for r in await Rating.filter(customer_id=customer.id).only("id", "comment")]
    needles = {a for _, a in addresses if len(a) >= MIN_NEEDLE}
    if len(customer.name) >= MIN_NEEDLE:
        needles.add(customer.name)
    needles |= {t.strip()[:TEXT_NEEDLE] for t in texts if len(t.strip()) >= MIN_TEXT_NEEDLE}
    return needles


def _clear_message(message: Message) -> None:
    message.text = MARKER if message.text else ""
    if message.direction is Direction.IN:
        message.author = ""
    message.address = ""
    if message.external_id is not None:
        # Still unique per channel; a Telegram id holds the chat (the customer's address). A
        # web receipt is random: kept behind the prefix, so its status link can tell that the
        # appeal was forgotten (and show nothing of it).
        web = message.channel == ChannelKind.WEB.value
        web = web and message.external_id.startswith(RECEIPT_PREFIX)
        kept = message.external_id if web else str(message.id)
        message.external_id = FORGOTTEN_ID + kept
    message.attachments = [
        {
            "kind": a.get("kind", ""),
            "ref": "",
            "name": "",
            "mime": a.get("mime", ""),
            "size": a.get("size", 0),
        }
        for a in message.attachments
    ]


async def _clear_appeals(appeal_ids: list[int]) -> None:
    for appeal in await Appeal.filter(id__in=appeal_ids):
        state = {k: v for k, v in appeal.staff_state.items() if k != "name"}
        await Appeal.filter(id=appeal.id).update(
            subject=MARKER if appeal.subject else "", staff_state=state
        )


def scrub(value: Any, needles: set[str], keys: tuple[str, ...] = ()) -> Any:
    """``value`` with the ``keys`` of dicts and any string holding a needle made a marker."""
    if isinstance(value, dict):
        return {
            k: (MARKER if v and k in keys else scrub(v, needles, keys)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v, needles, keys) for v in value]
    if isinstance(value, str) and any(n in value for n in needles):
        return MARKER
    return value


async def _clear_events(customer_id: int, appeal_ids: list[int], needles: set[str]) -> None:
    about = Q(customer_id=customer_id) | Q(appeal_id__in=appeal_ids)
    for event in await Event.filter(about):
        keys = ALWAYS_PERSONAL + PERSONAL_FIELDS.get(event.kind, ())
        data = scrub(event.data, needles, keys)
        if data != event.data:
            await Event.filter(id=event.id).update(data=data)


async def _clear_outbox(appeal_ids: list[int], addresses: set[tuple[str, str]]) -> None:
    for row in await deliveries_of(appeal_ids, addresses):
        payload = row["payload"] or {}
        extra = payload.get("extra") or {}
        cleared = {
            "text": MARKER,
            "subject": "",
            "fmt": payload.get("fmt", "plain"),
            "attachments": [],
            # Ids and kinds say what the row was; names, texts and links go.
            "extra": {k: v for k, v in extra.items() if isinstance(v, int | bool)},
        }
        mine = (row["channel"], row["address"]) in addresses
        changes: dict[str, Any] = {"payload": cleared}
        if mine:
            changes.update(address=MARKER, queue_key=f"forgotten:{row['id']}")
            if row.get("external_id"):  # a Telegram answer is recorded as <chat>:<message>
                changes.update(external_id=f"forgotten:{row['id']}")
        if row["status"] in (OutboxStatus.PENDING, OutboxStatus.SENDING):
            changes.update(
                status=OutboxStatus.FAILED,
                locked_by=None,
                locked_until=None,
                last_error="customer forgotten",
            )
        await OutboxItem.filter(id=row["id"]).update(**changes)


async def _clear_alerts(since: datetime, needles: set[str]) -> None:
    """Rows about no appeal (managers' alerts, say) that quote the customer."""
    last = 0
    while True:
        rows = await (
            OutboxItem.filter(appeal_id__isnull=True, created_at__gte=since, id__gt=last)
            .order_by("id")
            .limit(SCAN_BATCH)
            .values("id", "payload")
        )
        for row in rows:
            payload = scrub(row["payload"], needles)
            if payload != row["payload"]:
                await OutboxItem.filter(id=row["id"]).update(payload=payload)
        if len(rows) < SCAN_BATCH:
            return
        last = rows[-1]["id"]


async def _clear_work(customer_id: int, appeal_ids: list[int], now: datetime) -> None:
    """Ratings, rating requests, tasks and orders: figures stay, words go."""
    about = Q(customer_id=customer_id) | Q(appeal_id__in=appeal_ids)
    await Rating.filter(about).exclude(comment="").update(comment=MARKER)
    await RatingRequest.filter(about).update(comment_ref=None, comment_until=None)
    await Task.filter(about, status=TaskStatus.OPEN).update(
        status=TaskStatus.CANCELLED, completed_at=now, result="forgotten"
    )
    await Task.filter(about).exclude(text="").update(text=MARKER)
    await Task.filter(about).exclude(reason="").update(reason=MARKER)
    for order in await Order.filter(customer_id=customer_id):
        history_rows = [{**h, "note": MARKER} if h.get("note") else h for h in order.stage_history]
        if history_rows != order.stage_history:
            await Order.filter(id=order.id).update(stage_history=history_rows)


async def _clear_stream(addresses: set[tuple[str, str]]) -> None:
    """Entries of the local stream (dead ones, or not yet stored) sent from their addresses."""
    entries = local_entries()
    for row in await entries.values("id", "payload"):
        payload = row["payload"] or {}
        sender = (str(payload.get("channel", "")), str(payload.get("address", "")))
        hints = {
            (str(c.get("channel")), str(c.get("address"))) for c in payload.get("contacts", [])
        }
        if sender in addresses or hints & addresses:
            await entries.filter(id=row["id"]).delete()


async def _delete_unused_files(refs: set[str]) -> int:
    """Delete the stored files no message names any more (contents are shared by hash)."""
    deleted = 0
    for ref in refs:
        raw = ref.removeprefix(FILE_REF_PREFIX)
        if not raw.isdigit():
            continue
        # The ref in quotes: "file:1" must not match "file:12".
        named = await (
            Message.annotate(files=RawSQL("CAST(attachments AS TEXT)"))
            .filter(files__contains=f'"{ref}"')
            .exists()
        )
        if not named:
            deleted += await StoredFile.filter(id=int(raw)).delete()
    return deleted
