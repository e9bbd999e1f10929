"""Finding the customer behind a message: by contact point, linked by shared email or phone."""

from __future__ import annotations

import re

from channels.base import ChannelKind, InboundMessage
from models import ContactPoint, Customer

_EMAIL = re.compile(r"^[^@\s<>\"']{1,64}@[^@\s<>\"']{1,255}\.[^@\s<>\"'.]{2,}$")


def normalise_email(value: str) -> str | None:
    """A lower-cased email address, or None when it does not look like one."""
    value = value.strip().lower()
    return value if _EMAIL.match(value) and len(value) <= 320 else None


def normalise_phone(value: str) -> str | None:
    """A phone number as ``+<digits>`` (Russian 8XXXXXXXXXX becomes +7…), or None."""
    digits = re.sub(r"\D", "", value)
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
    if msg.channel is not ChannelKind.WEB and msg.address:
        keys.append((msg.channel.value, msg.address))
    for hint in msg.contacts:
        key = (hint.channel, hint.address)
        if key not in keys:
            keys.append(key)
    return keys


async def resolve_customer(msg: InboundMessage) -> tuple[Customer, bool]:
    """The customer who wrote ``msg``, created if unknown; new contact points are linked to them.

    Call inside a transaction: a concurrent writer can make the inserts fail on the
    (channel, address) unique key, and the caller retries the whole ingest.
    """
    keys = contact_keys(msg)
    found: dict[tuple[str, str], ContactPoint] = {}
    for channel, address in keys:
        point = await ContactPoint.filter(channel=channel, address=address).first()
        if point is not None:
            found[(channel, address)] = point
    created = False
    if found:
        owner_id = next(p.customer_id for k in keys if (p := found.get(k)) is not None)
        customer = await Customer.get(id=owner_id)
    else:
        customer = await Customer.create(
            name=msg.sender_name[:200], language=_language(msg.language)
        )
        created = True
    for channel, address in keys:
        if (channel, address) not in found:
            await ContactPoint.create(customer=customer, channel=channel, address=address)
    if not customer.name and msg.sender_name:
        customer.name = msg.sender_name[:200]
        await customer.save(update_fields=["name", "updated_at"])
    return customer, created


def _language(code: str) -> str:
    # Telegram's rule for the desk: Russian for ru, English for anyone else who said a language.
    return "ru" if not code or code.lower().startswith("ru") else "en"
