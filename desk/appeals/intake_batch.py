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

from channels.base import NO_REPLY_ADDRESS, InboundMessage
from desk.appeals.customers import contact_keys, new_customer
from models import (
    OPEN_STATUSES,
    Appeal,
    AppealStatus,
    ContactPoint,
    Customer,
    KeyValue,
    Message,
    sql,
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
    # Customers made for the batch's new senders, with their contact points, until the first
    # message of each is handled (it says the customer is new).
    fresh: dict[int, list[ContactPoint]] = field(default_factory=dict)
    open_appeals: dict[int, Appeal] = field(default_factory=dict)  # newest open, by customer
    resolved: dict[int, Appeal] = field(default_factory=dict)  # last resolved, by customer
    comment_waits: set[int] = field(default_factory=set)  # customers a comment may be for
    new_appeal_since: dict[str, datetime | None] = field(default_factory=dict)
    unreachable: list[int] = field(default_factory=list)  # senders' points marked unreachable
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
        appeals resolved before ``reopen_since`` cannot be reopened and are not loaded).

        The statements are written out (``models/sql.py``), not built by the ORM in Python
        for every batch."""
        batch = cls()
        await batch._load_messages(msgs)
        await batch._load_points(msgs)
        customer_ids = sorted({c for c in batch.points.values() if c is not None})
        if customer_ids:
            await batch._load_customers(customer_ids, lock)
            await batch._load_appeals(customer_ids, reopen_since)
            await batch._load_comment_waits(msgs, customer_ids, now)
        await batch._load_presses(msgs)
        return batch

    async def create_new_senders(self, msgs: Sequence[InboundMessage]) -> None:
        """Customers for the senders none of whose contact points is known, with their
        points: one INSERT of each for the whole batch, where one sender at a time took two.
        A message stored already (a repeat, more of an album, an edit) is left out: its
        sender is known; so is one sharing a contact point with an earlier one of the batch
        (it finds that customer as it is handled)."""
        taken: set[Key] = set()
        made: list[tuple[Customer, list[Key]]] = []
        for msg in msgs:
            await sql.give_turn()
            channel = msg.channel.value
            if self.messages.get((channel, stored_id(msg))) is not None:
                continue
            if msg.edit_of and self.messages.get((channel, msg.edit_of)) is not None:
                continue
            keys = contact_keys(msg)
            if not keys or any(self.points.get(k) is not None or k in taken for k in keys):
                continue
            taken.update(keys)
            made.append((new_customer(msg), keys))
        if not made:
            return
        await sql.insert_models([customer for customer, _ in made])
        points = [
            ContactPoint(customer_id=customer.id, channel=channel, address=address)
            for customer, keys in made
            for channel, address in keys
        ]
        await sql.insert_models(points)
        for point in points:
            self.fresh.setdefault(point.customer_id, []).append(point)
        for customer, keys in made:
            self.customers[customer.id] = customer
            self.points.update(dict.fromkeys(keys, customer.id))

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
        text = (
            f'SELECT * FROM "message" WHERE "channel" IN {sql.listed(1, len(channels))} '  # noqa: S608 (markers only)
            f'AND "external_id" IN {sql.listed(len(channels) + 1, len(ids))}'
        )
        for row in sql.models_of(Message, await sql.fetch(text, [*channels, *ids])):
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
        senders = {
            (msg.channel.value, msg.address)
            for msg in msgs
            if msg.address and msg.channel not in NO_REPLY_ADDRESS
        }
        channels = sorted({c for c, _ in wanted})
        addresses = sorted({a for _, a in wanted})
        text = (
            'SELECT "id", "channel", "address", "customer_id", "reachable" '  # noqa: S608 (markers only)
            f'FROM "contact_point" WHERE "channel" IN {sql.listed(1, len(channels))} '
            f'AND "address" IN {sql.listed(len(channels) + 1, len(addresses))}'
        )
        for row in await sql.fetch(text, [*channels, *addresses]):
            key = (str(row["channel"]), str(row["address"]))
            if key in wanted:
                self.points[key] = int(row["customer_id"])
                if key in senders and not row["reachable"]:
                    self.unreachable.append(int(row["id"]))

    async def _load_customers(self, customer_ids: list[int], lock: bool) -> None:
        marks = sql.listed(1, len(customer_ids))
        text = f'SELECT * FROM "customer" WHERE "id" IN {marks} ORDER BY "id"'  # noqa: S608 (markers only)
        if lock and sql.is_postgres(sql.connection()):
            text += " FOR UPDATE"
        for customer in sql.models_of(Customer, await sql.fetch(text, customer_ids)):
            self.customers[customer.id] = customer

    async def _load_appeals(self, customer_ids: list[int], reopen_since: datetime) -> None:
        """Each customer's newest open appeal and the one resolved last inside the reopen
        window: the candidates are read as ids first, and only the chosen ones as rows (a
        customer's history does not make a batch slower)."""
        statuses = [s.value for s in OPEN_STATUSES]
        first = len(statuses) + 3
        text = (
            'SELECT "id", "customer_id", "status", "resolved_at" FROM "appeal" '  # noqa: S608 (markers only)
            f'WHERE ("status" IN {sql.listed(1, len(statuses))} '
            f'OR ("status" = {{p{first - 2}}} AND "resolved_at" >= {{p{first - 1}}})) '
            f'AND "customer_id" IN {sql.listed(first, len(customer_ids))} ORDER BY "id" DESC'
        )
        rows = await sql.fetch(
            text, [*statuses, AppealStatus.RESOLVED.value, reopen_since, *customer_ids]
        )
        newest_open: dict[int, int] = {}
        last_resolved: dict[int, tuple[datetime, int]] = {}
        for row in rows:
            appeal_id, customer_id = int(row["id"]), int(row["customer_id"])
            if row["status"] in statuses:
                newest_open.setdefault(customer_id, appeal_id)
            elif row["resolved_at"] is not None:
                resolved_at = sql.datetime_loaded(row["resolved_at"])
                last = last_resolved.get(customer_id)
                if last is None or resolved_at > last[0]:
                    last_resolved[customer_id] = (resolved_at, appeal_id)
        wanted = sorted({*newest_open.values(), *(i for _, i in last_resolved.values())})
        chosen: dict[int, Appeal] = {}
        if wanted:
            text = f'SELECT * FROM "appeal" WHERE "id" IN {sql.listed(1, len(wanted))}'  # noqa: S608 (markers only)
            chosen = {a.id: a for a in sql.models_of(Appeal, await sql.fetch(text, wanted))}
        self.open_appeals = {c: chosen[i] for c, i in newest_open.items() if i in chosen}
        self.resolved = {c: chosen[i] for c, (_, i) in last_resolved.items() if i in chosen}

    async def _load_comment_waits(
        self, msgs: Sequence[InboundMessage], customer_ids: list[int], now: datetime
    ) -> None:
        refs = [f"{m.channel.value}:{m.external_id}" for m in msgs]
        text = (
            'SELECT "customer_id" FROM "rating_request" '  # noqa: S608 (markers only)
            f'WHERE ("comment_ref" IN {sql.listed(1, len(refs))} '
            f'OR "comment_until" > {{p{len(refs) + 1}}}) '
            f'AND "customer_id" IN {sql.listed(len(refs) + 2, len(customer_ids))}'
        )
        rows = await sql.fetch(text, [*refs, now, *customer_ids])
        self.comment_waits = {int(row["customer_id"]) for row in rows}

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
        marks = sql.listed(1, len(keys))
        text = f'SELECT "key", "value" FROM "key_value" WHERE "key" IN {marks}'  # noqa: S608 (markers only)
        for row in await sql.fetch(text, keys):
            self.new_appeal_since[str(row["key"])] = _pressed_at(str(row["value"]))

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
        """Delete the presses the batch used, and make reachable again the addresses found
        unreachable before that the customers wrote from now (a statement each, when any)."""
        if self.used_presses:
            await KeyValue.filter(key__in=self.used_presses).delete()
        if self.unreachable:
            await sql.execute_in(
                'UPDATE "contact_point" SET "reachable" = {p1} WHERE "id" IN {in}',
                sorted(set(self.unreachable)),
                before=[True],
            )


def _pressed_at(value: str) -> datetime | None:
    """When «new appeal» was pressed (second precision, as platforms date messages); None for
    a press stored before the time was kept: it applies to the next message."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
