"""Web channel: the web form and status page in, answers shown on the status page out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from channels.base import (
    PHONE_CHANNEL,
    ChannelKind,
    InboundMessage,
    OutboundMessage,
    contact_hints,
)


@dataclass(frozen=True, slots=True)
class WebAppeal:
    """A validated web form submission."""

    name: str
    text: str
    email: str | None = None
    phone: str | None = None
    subject: str = ""
    language: str = ""


RECEIPT_PREFIX = "w-"  # a web message's external id: random, nothing personal


def new_receipt() -> str:
    """A fresh external id for a web message; it also names the status page of its appeal."""
    return RECEIPT_PREFIX + uuid.uuid4().hex


def appeal_inbound(form: WebAppeal, receipt: str) -> InboundMessage:
    """The stream entry of a web form submission: always a new appeal."""
    contacts = contact_hints((ChannelKind.EMAIL.value, form.email), (PHONE_CHANNEL, form.phone))
    return InboundMessage(
        channel=ChannelKind.WEB,
        external_id=receipt,
        address=form.email or form.phone or "",
        text=form.text,
        sender_name=form.name,
        language=form.language,
        subject=form.subject,
        contacts=contacts,
        new_appeal=True,
    )


def reply_inbound(number: str, text: str, receipt: str, language: str = "") -> InboundMessage:
    """The stream entry of a customer's reply on the status page of appeal ``number``."""
    return InboundMessage(
        channel=ChannelKind.WEB,
        external_id=receipt,
        address=number,
        text=text,
        language=language,
        appeal_number=number,
    )


class WebAdapter:
    """Delivers to the status page: an answer is visible there once its row exists."""

    kind: str = ChannelKind.WEB

    async def deliver(self, out: OutboundMessage) -> str:
        """Nothing to send over a network: the status page reads the stored message."""
        return f"web-{out.outbox_id}"
