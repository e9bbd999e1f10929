"""Boundary types between channels and the desk: messages in, messages out, delivery errors."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from models import storable

MAX_FILE_NAME = 255


class ChannelKind(enum.StrEnum):
    """The channels an appeal comes from: those a customer writes from, and the two where the
    staff take it down for them (a call, a visit to the office)."""

    WEB = "web"
    TELEGRAM = "telegram"
    VK = "vk"
    EMAIL = "email"
    PHONE = "phone"
    VISIT = "visit"


# A phone number is a contact point too (given in a form, shared in a chat, said on a call):
# it is called, and it links a customer's chats into one customer.
PHONE_CHANNEL = ChannelKind.PHONE.value
# Appeals an agent registers for a customer who phoned or came in: nothing is written from an
# address of these channels, so answers go to the customer's contact points (or the status
# page), as for the web form.
TAKEN_CHANNELS = frozenset({ChannelKind.PHONE, ChannelKind.VISIT})
# Where a message comes from no address a reply could go back to: the web form (its address is
# a receipt) and what the staff took down. The customer is found by the contacts it carries.
NO_REPLY_ADDRESS = frozenset({ChannelKind.WEB, *TAKEN_CHANNELS})
# Posts in the staff group: an outbox channel of their own (the Telegram desk delivers them).
STAFF_CHANNEL = "staff"
# Mail to the desk's own people (the managers' alerts): an outbox channel of its own, sent by
# the email channel's SMTP as a plain mail, never threaded into a customer's conversation.
STAFF_MAIL_CHANNEL = "staff_mail"
# Text messages to a phone contact point, through a gateway (channels/sms/): outbound only.
SMS_CHANNEL = "sms"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file kept by reference: a platform file id, or a URL/path the desk stored."""

    kind: str  # photo, document, voice, video, sticker, location, file
    ref: str
    name: str = ""
    mime: str = ""
    size: int = 0


def file_name(name: str) -> str:
    """A file name a sender gave, made harmless: the last part of any path, no control
    characters, storable, at most 255 characters (the extension kept); "" when nothing is left."""
    name = storable(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = " ".join("".join(ch for ch in name if ch >= " " and ch != "\x7f").split())
    if not name.strip("."):
        return ""
    if len(name) > MAX_FILE_NAME:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and stem and len(ext) <= 16 else ""
        keep = MAX_FILE_NAME - len(ext) - 1 if ext else MAX_FILE_NAME
        name = name[:keep].rstrip() + ("." + ext if ext else "")
    return name


@dataclass(frozen=True, slots=True)
class ContactHint:
    """Another way to reach the same customer, offered by the message itself (web form, email).

    ``channel`` is a ``ChannelKind`` value or ``"phone"``.
    """

    channel: str
    address: str


def contact_hints(*given: tuple[str, str | None]) -> tuple[ContactHint, ...]:
    """The ``(channel, address)`` pairs a form gave, in the order given, without the empty ones."""
    return tuple(ContactHint(channel, address) for channel, address in given if address)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One customer message, normalised by its channel adapter; the unit of the appeal stream.

    ``external_id`` is unique per channel and is the idempotency key of the whole pipeline.
    """

    channel: ChannelKind
    external_id: str
    address: str  # where a reply goes: chat id, VK peer id, email address, web receipt
    text: str
    sender_name: str = ""
    language: str = ""
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    subject: str = ""
    attachments: tuple[Attachment, ...] = ()
    contacts: tuple[ContactHint, ...] = ()
    appeal_number: str = ""  # the customer named the appeal (status page reply, email subject)
    new_appeal: bool = False  # the customer asked for a new appeal explicitly
    group_id: str = ""  # parts with one group id are one message (a Telegram album)
    edit_of: str = ""  # external id of the message this one edits
    # External ids of the messages it answers, newest first (a mail's In-Reply-To, then its
    # References): intake threads it into the appeal of the first one the desk knows.
    replies_to: tuple[str, ...] = ()
    # Who took the appeal down for the customer (a ``TAKEN_CHANNELS`` message): the agent or
    # API caller as the history names them, and where they did it (``telegram``, ``api``).
    taken_by: str = ""
    taken_via: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_json`` reads it back."""
        # By hand, not asdict: its deep copy of every field cost as much as the rest of a
        # webhook's stream append.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["channel"] = self.channel.value
        data["sent_at"] = self.sent_at.isoformat()
        data["attachments"] = tuple(asdict(a) for a in self.attachments)
        data["contacts"] = [{"channel": c.channel, "address": c.address} for c in self.contacts]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InboundMessage:
        """Rebuild a message written by ``to_json``; malformed data raises ``BadInbound``."""
        try:
            return cls(
                channel=ChannelKind(data["channel"]),
                external_id=str(data["external_id"]),
                address=str(data["address"]),
                text=str(data.get("text", "")),
                sender_name=str(data.get("sender_name", "")),
                language=str(data.get("language", "")),
                sent_at=datetime.fromisoformat(data["sent_at"]),
                subject=str(data.get("subject", "")),
                attachments=tuple(Attachment(**a) for a in data.get("attachments", ())),
                contacts=tuple(
                    ContactHint(str(c["channel"]), str(c["address"]))
                    for c in data.get("contacts", ())
                ),
                appeal_number=str(data.get("appeal_number", "")),
                new_appeal=bool(data.get("new_appeal", False)),
                group_id=str(data.get("group_id", "")),
                edit_of=str(data.get("edit_of", "")),
                replies_to=tuple(str(r) for r in data.get("replies_to", ())),
                taken_by=str(data.get("taken_by", "")),
                taken_via=str(data.get("taken_via", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInbound(f"malformed stream entry: {exc}") from exc


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to deliver, read from an outbox row."""

    outbox_id: int
    channel: str  # a ChannelKind value, or "staff" for posts in the staff group
    address: str
    text: str
    subject: str = ""
    attachments: tuple[Attachment, ...] = ()
    fmt: str = "plain"  # plain | html
    extra: dict[str, Any] = field(default_factory=dict)
    appeal_id: int | None = None
    # What the desk knows of the conversation, for adapters that show it (a mail's subject and
    # threading headers): filled for an adapter whose ``wants_conversation`` is true.
    appeal_number: str = ""
    appeal_subject: str = ""
    language: str = ""  # the customer's
    thread: tuple[str, ...] = ()  # the appeal's message ids in this channel so far, oldest first


class BadInbound(ValueError):
    """Input from a channel that cannot become an InboundMessage."""


class DeliveryError(Exception):
    """Base of the errors a channel adapter raises from ``deliver``."""


class DeliveryFailed(DeliveryError):
    """A transient failure (5xx, timeout, connection): retry with backoff."""

    def __init__(self, channel: ChannelKind | str, reason: str) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason


class RateLimited(DeliveryError):
    """The platform asked to wait ``retry_after`` seconds before the next call."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after:g}s")
        self.retry_after = retry_after


class Unreachable(DeliveryError):
    """The address will never accept this message (blocked bot, unknown user, bad address)."""

    def __init__(self, channel: ChannelKind | str, reason: str) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason


class Rejected(DeliveryError):
    """The platform refused this message for good (malformed, too big): do not retry it."""

    def __init__(self, channel: ChannelKind | str, reason: str) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason


class Unavailable(DeliveryError):
    """The channel can send nothing now, whatever the address (its account is out of money,
    its credentials were refused, its daily cap is spent): this message goes another way at
    once instead of waiting for retries."""

    def __init__(self, channel: ChannelKind | str, reason: str) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason


class ChannelAdapter(Protocol):
    """What the delivery worker needs of a channel."""

    kind: str  # a ChannelKind value, or "staff"

    async def deliver(self, out: OutboundMessage) -> str:
        """Send one message; returns the platform's id for it. Raises a ``DeliveryError``."""
        ...


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stop`` is set meanwhile (loops of long-lived tasks)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
