"""What intake needs to know about a batch of inbound messages, loaded with a few IN-queries.

One query each for the messages already stored (duplicates, edits, albums), the contact points
of every sender, their customers, their open and recently resolved appeals, the rating requests
that may be waiting for a comment, and the «new appeal» presses. Intake then threads each
message from these maps, in order, and keeps them current as it stores (a second message of a
new customer in the same batch finds the customer and the appeal the first one made).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from tortoise.expressions import Q

from channels.base import InboundMessage
from desk.appeals.customers import contact_keys
from models import (
    OPEN_STATUSES,
    Appeal,
    AppealStatus,
    ContactPoint,
    Customer,
    KeyValue,
    Message,
    RatingRequest,
)

if TYPE_CHECKING:
    from desk.appeals.lifecycle import IngestResult  # lifecycle imports this module

Key = tuple[str, str]  # (channel, address) or (channel, external id)


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A customer message that only continues an open appeal: stored with the others of its
    kind in one INSERT (its event follows once it has an id)."""

    index: int  # its place in the batch
    msg: InboundMessage
    appeal: Appeal
    customer: Customer


NEW_APPEAL_CHANNELS = ("telegram", "vk")


def stored_id(msg: InboundMessage) -> str:
    """The external id a message is stored under: an album's parts share their group's."""
    return f"group:{msg.group_id}" if msg.group_id else msg.external_id


def new_appeal_key(channel: str, address: str) -> str:
    """The KeyValue row that says «the next message of this chat opens a new appeal»."""
    return f"{channel}.new_appeal.{address}"


@dataclass
class IntakeBatch:
    """The rows a batch of inbound messages touches, by key; ``None`` values mean "looked up,
    not there", so nothing is looked up twice."""

    messages: dict[Key, Message | None] = field(default_factory=dict)
    points: dict[Key, int | None] = field(default_factory=dict)  # → the customer's id
    customers: dict[int, Customer] = field(default_factory=dict)
    open_appeals: dict[int, Appeal] = field(default_factory=dict)  # newest open, by customer
    resolved: dict[int, Appeal] = field(default_factory=dict)  # last resolved, by customer
    comment_waits: set[int] = field(default_factory=set)  # customers a comment may be for
    new_appeal_since: dict[str, datetime | None] = field(default_factory=dict)
    used_presses: list[str] = field(default_factory=list)
    follow_ups: list[FollowUp] = field(default_factory=list)  # waiting for their INSERT
    following: set[Key] = field(default_factory=set)  # their (channel, external id)
    results: list[IngestResult | None] = field(default_factory=list)  # by place in the batch

    @classmethod
    async def load(
        cls,
        msgs: Sequence[InboundMessage],
        now: datetime,
        *,
        reopen_since: datetime,
        lock: bool,
    ) -> IntakeBatch:
        """Everything the batch refers to, in a constant number of queries (call inside the
        batch's transaction; ``lock`` takes the customers' rows FOR UPDATE, in id order;
        appeals resolved before ``reopen_since`` cannot be reopened and are not loaded)."""
        batch = cls()
        await batch._load_messages(msgs)
        await batch._load_points(msgs)
        customer_ids = sorted({c for c in batch.points.values() if c is not None})
        if customer_ids:
            query = Customer.filter(id__in=customer_ids).order_by("id")
            for customer in await (query.select_for_update() if lock else query):
                batch.customers[customer.id] = customer
            await batch._load_appeals(customer_ids, reopen_since)
            await batch._load_comment_waits(msgs, customer_ids, now)
        await batch._load_presses(msgs)
        return batch

    async def _load_messages(self, msgs: Sequence[InboundMessage]) -> None:
        wanted: set[Key] = set()
        for msg in msgs:
            wanted.add((msg.channel.value, stored_id(msg)))
            if msg.edit_of:
                wanted.add((msg.channel.value, msg.edit_of))
            wanted.update((msg.channel.value, ref) for ref in msg.replies_to)
        self.messages = dict.fromkeys(wanted)
        channels = sorted({c for c, _ in wanted})
        ids = sorted({i for _, i in wanted})
        for row in await Message.filter(channel__in=channels, external_id__in=ids):
            key = (row.channel, row.external_id or "")
            if key in wanted:
                self.messages[key] = row

    def answered_appeal(self, msg: InboundMessage) -> int | None:
        """The appeal of the first message the desk knows among those ``msg`` answers."""
        for ref in msg.replies_to:
            known = self.messages.get((msg.channel.value, ref))
            if known is not None:
                return int(known.appeal_id)
        return None

    async def _load_points(self, msgs: Sequence[InboundMessage]) -> None:
        wanted = {key for msg in msgs for key in contact_keys(msg)}
        self.points = dict.fromkeys(wanted)
        if not wanted:
            return
        channels = sorted({c for c, _ in wanted})
        addresses = sorted({a for _, a in wanted})
        found = ContactPoint.filter(channel__in=channels, address__in=addresses)
        for channel, address, customer_id in await found.values_list(
            "channel", "address", "customer_id"
        ):
            key = (str(channel), str(address))
            if key in wanted:
                self.points[key] = int(customer_id)

    async def _load_appeals(self, customer_ids: list[int], reopen_since: datetime) -> None:
        """Each customer's newest open appeal and the one resolved last inside the reopen
        window: the candidates are read as ids first, and only the chosen ones as rows (a
        customer's history does not make a batch slower)."""
        recent = Q(status=AppealStatus.RESOLVED, resolved_at__gte=reopen_since)
        rows = await (
            Appeal.filter(Q(status__in=list(OPEN_STATUSES)) | recent, customer_id__in=customer_ids)
            .order_by("-id")
            .values_list("id", "customer_id", "status", "resolved_at")
        )
        newest_open: dict[int, int] = {}
        last_resolved: dict[int, tuple[datetime, int]] = {}
        for appeal_id, customer_id, status, resolved_at in rows:
            if status in OPEN_STATUSES:
                newest_open.setdefault(customer_id, appeal_id)
            elif resolved_at is not None:
                last = last_resolved.get(customer_id)
                if last is None or resolved_at > last[0]:
                    last_resolved[customer_id] = (resolved_at, appeal_id)
        wanted = {*newest_open.values(), *(i for _, i in last_resolved.values())}
        chosen = {a.id: a for a in await Appeal.filter(id__in=sorted(wanted))} if wanted else {}
        self.open_appeals = {c: chosen[i] for c, i in newest_open.items() if i in chosen}
        self.resolved = {c: chosen[i] for c, (_, i) in last_resolved.items() if i in chosen}

    async def _load_comment_waits(
        self, msgs: Sequence[InboundMessage], customer_ids: list[int], now: datetime
    ) -> None:
        refs = [f"{m.channel.value}:{m.external_id}" for m in msgs]
        waiting = RatingRequest.filter(
            Q(comment_ref__in=refs) | Q(comment_until__gt=now), customer_id__in=customer_ids
        )
        self.comment_waits = {int(row[0]) for row in await waiting.values_list("customer_id")}

    async def _load_presses(self, msgs: Sequence[InboundMessage]) -> None:
        keys = sorted(
            {
                new_appeal_key(m.channel.value, m.address)
                for m in msgs
                if m.channel.value in NEW_APPEAL_CHANNELS and not m.edit_of and m.address
            }
        )
        if not keys:
            return
        for key, value in await KeyValue.filter(key__in=keys).values_list("key", "value"):
            self.new_appeal_since[str(key)] = _pressed_at(str(value))

    def wants_new_appeal(self, msg: InboundMessage) -> bool:
        """Whether the customer pressed «new appeal» before writing ``msg`` (the press is used
        up by the first message sent after it)."""
        if msg.edit_of or msg.channel.value not in NEW_APPEAL_CHANNELS:
            return False
        key = new_appeal_key(msg.channel.value, msg.address)
        if key not in self.new_appeal_since:
            return False
        since = self.new_appeal_since[key]
        if since is not None and msg.sent_at < since:
            return False  # written before the press, read late: still the old appeal
        del self.new_appeal_since[key]
        self.used_presses.append(key)
        return True

    async def finish(self) -> None:
        """Delete the presses the batch used (one statement)."""
        if self.used_presses:
            await KeyValue.filter(key__in=self.used_presses).delete()


def _pressed_at(value: str) -> datetime | None:
    """When «new appeal» was pressed (second precision, as platforms date messages); None for
    a press stored before the time was kept: it applies to the next message."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
