"""Finding the customer behind a message: by contact point, linked by shared email or phone."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from channels.base import NO_REPLY_ADDRESS, ChannelKind, InboundMessage
from channels.base import PHONE_CHANNEL as PHONE
from desk.appeals.event_types import CustomerLinked, CustomerMerged, CustomerStateChanged
from desk.appeals.events import CONTACTS, EventBus, hold_in_batch
from models import (
    Appeal,
    ContactPoint,
    Customer,
    Direction,
    Event,
    Lifecycle,
    Message,
    Order,
    Rating,
    RatingRequest,
    Task,
    Warmth,
    parse_id,
)

LINK_TRIES = 3
# Whitespace as str.strip() and Python's re know it, spelled out: the API's document says the
# same in any regex dialect (ECMA's \s, which schemathesis uses, lacks \x1c-\x1f and \x85).
SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NO = rf"""@{SPACE}<>"'\x00"""  # not in any part of an email address
# What an email address looks like here: the API's document states the same pattern.
EMAIL_PATTERN = rf"[^{_NO}]{{1,64}}@[^{_NO}]{{1,255}}\.[^{_NO}.]{{2,}}"
# A phone number: 10 to 15 digits among any other characters (spaces, +, brackets, dashes).
PHONE_PATTERN = "[^0-9]*(?:[0-9][^0-9]*){10,15}"
_EMAIL = re.compile(EMAIL_PATTERN)


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """Who a customer is, as a card or /customer shows them."""

    customer: Customer
    contacts: list[ContactPoint]  # oldest first
    appeals_total: int
    recent: list[Appeal]  # newest first, as many as asked for


async def customer_profile(customer_id: int, *, recent: int = 0) -> CustomerProfile:
    """The customer with their contact points, how many appeals they made and the latest
    ``recent`` of them."""
    customer = await Customer.get(id=customer_id)
    contacts = await ContactPoint.filter(customer_id=customer_id).order_by("id")
    total = await Appeal.filter(customer_id=customer_id).count()
    latest = (
        await Appeal.filter(customer_id=customer_id).order_by("-id").limit(recent) if recent else []
    )
    return CustomerProfile(customer, list(contacts), total, list(latest))


async def recent_appeals(customer_id: int, limit: int) -> list[Appeal]:
    """The customer's latest appeals, newest first."""
    return list(await Appeal.filter(customer_id=customer_id).order_by("-id").limit(limit))


async def customer_of(appeal: Appeal) -> Customer:
    """The appeal's customer."""
    return await Customer.get(id=appeal.customer_id)


async def customer_by_id(customer_id: int) -> Customer | None:
    """The customer with this id (None when there is none)."""
    return await Customer.get_or_none(id=customer_id) if customer_id else None


async def customer_id_at(channel: str, address: str) -> int | None:
    """The customer behind an address on a channel (a chat, a VK peer), if the desk knows it."""
    point = await ContactPoint.filter(channel=channel, address=address).first()
    return point.customer_id if point is not None else None


async def customer_by_ref(ref: str) -> int | None:
    """The customer an operator names: an id (``42``), a channel address (``telegram:12345``,
    ``email:anna@example.com``, ``phone:+79161234567``), an email or a phone number."""
    ref = ref.strip()
    if ref.isdigit():  # "²" and 5,000 digits are digits too, but no customer's id
        number = parse_id(ref)
        return number if number is not None and await Customer.exists(id=number) else None
    if (email := normalise_email(ref.removeprefix("email:"))) is not None:
        return await customer_id_at(ChannelKind.EMAIL.value, email)
    channel, sep, address = ref.partition(":")
    if (sep and channel == PHONE) or (not sep and ref.startswith("+")):
        phone = normalise_phone(address if sep else ref)
        return await customer_id_at(PHONE, phone) if phone is not None else None
    if sep and channel and address:
        return await customer_id_at(channel, address)
    return None


def normalise_email(value: str) -> str | None:
    """A lower-cased email address, or None when it does not look like one."""
    value = value.strip()
    return value.lower() if _EMAIL.fullmatch(value) and len(value) <= 320 else None


def normalise_phone(value: str) -> str | None:
    """A phone number as ``+<digits>`` (Russian 8XXXXXXXXXX becomes +7…), or None."""
    digits = re.sub("[^0-9]", "", value)
    if len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    if len(digits) == 10 and digits.startswith("9"):
        digits = "7" + digits
    if not 10 <= len(digits) <= 15:
        return None
    return "+" + digits


def contact_keys(msg: InboundMessage) -> list[tuple[str, str]]:
    """(channel, address) pairs that identify the sender, strongest first."""
    keys: list[tuple[str, str]] = []
    if msg.channel not in NO_REPLY_ADDRESS and msg.address:
        keys.append((msg.channel.value, msg.address))
    for hint in msg.contacts:
        address = hint.address
        if hint.channel == PHONE:
            address = normalise_phone(address) or address
        elif hint.channel == ChannelKind.EMAIL.value:
            address = normalise_email(address) or address
        key = (hint.channel, address)
        if key not in keys:
            keys.append(key)
    return keys


async def resolve_customer(
    msg: InboundMessage,
    points: dict[tuple[str, str], int | None] | None = None,
    customers: dict[int, Customer] | None = None,
    fresh: dict[int, list[ContactPoint]] | None = None,
) -> tuple[Customer, bool]:
    """The customer who wrote ``msg``, created if unknown; new contact points are linked to them.

    Call inside a transaction: a concurrent writer can make the inserts fail on the
    (channel, address) unique key, and the caller retries the whole ingest. ``points`` and
    ``customers`` are what a batch loaded already (kept current here), ``fresh`` the customers
    it made for its new senders (``new_customer``), taken from it as new by their first message.
    """
    return await customer_by_contacts(
        contact_keys(msg),
        name=msg.sender_name,
        language=msg.language,
        preferred=_preferred(msg),
        points=points,
        customers=customers,
        fresh=fresh,
    )


def new_customer(msg: InboundMessage) -> Customer:
    """The customer ``msg``'s sender becomes when none of its contact points is known (not
    saved: a batch inserts its new senders together)."""
    return Customer(
        name=msg.sender_name[:200],
        language=_language(msg.language),
        preferred_channel=_preferred(msg),
    )


def _preferred(msg: InboundMessage) -> str | None:
    # Where they first wrote is where notifications go until they say otherwise (a form, a
    # call or a visit is no channel to write back by: the contacts they gave are).
    return None if msg.channel in NO_REPLY_ADDRESS else msg.channel.value


async def customer_by_contacts(
    keys: list[tuple[str, str]],
    *,
    name: str,
    language: str,
    preferred: str | None,
    points: dict[tuple[str, str], int | None] | None = None,
    customers: dict[int, Customer] | None = None,
    fresh: dict[int, list[ContactPoint]] | None = None,
) -> tuple[Customer, bool]:
    """The customer owning the first known of ``keys`` (strongest first), created if none is
    known; the other keys become their contact points. Call inside a transaction: the customer
    row stays locked until it ends (PostgreSQL; SQLite has one writer), so decisions about one
    customer are taken one at a time. ``points`` (contact point → its customer's id, None:
    "looked up, not there") and ``customers`` spare the queries for what they hold, and learn
    what is created; a customer of ``fresh`` (made for this batch, with their contact points)
    counts as created the first time it is found."""
    known = points if points is not None else {}
    owners: dict[tuple[str, str], int] = {}
    for key in keys:
        if key in known:
            owner = known[key]
        else:
            owner = await customer_id_at(*key)
        if owner is not None:
            owners[key] = owner
    made: list[ContactPoint] = []
    if owners:
        owner_id = next(owners[k] for k in keys if k in owners)
        held = customers.get(owner_id) if customers is not None else None
        customer = held or await Customer.filter(id=owner_id).select_for_update().get()
        points_made = fresh.pop(owner_id, None) if fresh is not None else None
        created = points_made is not None
        made = points_made or []
    else:
        customer = await Customer.create(
            name=name[:200], language=_language(language), preferred_channel=preferred
        )
        created = True
    if customers is not None:
        customers[customer.id] = customer
    for channel, address in keys:
        if (channel, address) not in owners:
            made.append(
                await ContactPoint.create(customer=customer, channel=channel, address=address)
            )
            if points is not None:
                points[(channel, address)] = customer.id
    if created:  # all of a new customer's contact points, for the batch's readers
        hold_in_batch(CONTACTS, customer.id, made)
    if not customer.name and name:
        customer.name = name[:200]
        await customer.save(update_fields=["name", "updated_at"])
    return customer, created


def _language(code: str) -> str:
    # Telegram's rule for the desk: Russian for ru, English for anyone else who said a language.
    return "ru" if not code or code.lower().startswith("ru") else "en"


async def link_phone(
    channel: str,
    address: str,
    phone: str,
    *,
    name: str,
    language: str,
    events: EventBus,
) -> Customer:
    """Tie a chat to the customer who has ``phone``: the two customers become one.

    The chat's own customer (if any) is merged into the phone's owner, so appeals from every
    channel are one history. Idempotent: linking twice changes nothing more.
    """
    number = normalise_phone(phone) or phone.strip()

    async def link() -> Customer:
        async with in_transaction():
            chat = await ContactPoint.filter(channel=channel, address=address).first()
            owner = await ContactPoint.filter(channel=PHONE, address=number).first()
            if chat is not None and owner is not None:
                if chat.customer_id != owner.customer_id:
                    await merge_customers(
                        chat.customer_id, owner.customer_id, events, actor="customer"
                    )
                customer = await Customer.get(id=owner.customer_id)
            elif owner is not None:
                customer = await Customer.get(id=owner.customer_id)
                await ContactPoint.create(customer=customer, channel=channel, address=address)
            else:
                if chat is not None:
                    customer = await Customer.get(id=chat.customer_id)
                else:
                    customer = await Customer.create(name=name[:200], language=_language(language))
                    await ContactPoint.create(customer=customer, channel=channel, address=address)
                await ContactPoint.create(
                    customer=customer, channel=PHONE, address=number, verified=True
                )
            await events.emit(CustomerLinked(actor="customer", customer=customer, channel=channel))
        return customer

    for attempt in range(LINK_TRIES):
        try:
            return await link()
        except IntegrityError:
            # Two chats of one person shared the phone at the same moment: the other one's
            # phone point won the unique key. Again, it is found and the two are merged.
            if attempt == LINK_TRIES - 1:
                raise
    raise AssertionError("unreachable")


async def merge_customers(source_id: int, target_id: int, events: EventBus, *, actor: str) -> None:
    """Move everything of customer ``source_id`` (contact points, appeals, history, tasks,
    ratings, orders) to ``target_id`` and delete the source; call inside a transaction."""
    if source_id == target_id:
        return
    source = await Customer.get(id=source_id)
    target = await Customer.get(id=target_id)
    for model in (ContactPoint, Appeal, Event, Task, Rating, RatingRequest, Order):
        await model.filter(customer_id=source_id).update(customer_id=target_id)
    if not target.name and source.name:
        target.name = source.name
        await target.save(update_fields=["name", "updated_at"])
    await source.delete()
    await events.emit(
        CustomerMerged(actor=actor, customer=target, merged=source_id, name=source.name)
    )


async def set_state(
    events: EventBus,
    customer: Customer,
    to: Lifecycle | Warmth,
    *,
    actor: str,
    reason: str,
) -> bool:
    """Move a customer along prospect → active → lost (a ``Lifecycle``), or set how warm the
    relationship is (a ``Warmth``), with the ``customer.state_changed`` event; call inside a
    transaction. False when it is already so."""
    field = "lifecycle" if isinstance(to, Lifecycle) else "warmth"
    before: Lifecycle | Warmth = getattr(customer, field)
    if before is to:
        return False
    setattr(customer, field, to)
    await customer.save(update_fields=[field, "updated_at"])
    await events.emit(
        CustomerStateChanged(
            actor=actor,
            customer=customer,
            field=field,
            before=before.value,
            after=to.value,
            reason=reason,
        )
    )
    return True


async def latest_channel(appeal: Appeal) -> str:
    """Where the customer wrote last in the appeal (its origin when nothing came in yet)."""
    last = await Message.filter(appeal_id=appeal.id, direction=Direction.IN).order_by("-id").first()
    return last.channel if last is not None else appeal.channel
