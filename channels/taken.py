"""Appeals the staff take down for a customer who phoned or came to the office: the agent (or
the staff API's caller) is the transport, and the result is an ``InboundMessage`` of channel
``phone`` or ``visit`` on the appeal stream, like any other customer message."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from channels.base import (
    PHONE_CHANNEL,
    TAKEN_CHANNELS,
    ChannelKind,
    InboundMessage,
    contact_hints,
)

TAKEN_PREFIX = "t-"  # the external id of an appeal taken through the API: random


@dataclass(frozen=True, slots=True)
class TakenAppeal:
    """An appeal as the agent took it down: already validated (a normalised email and/or
    phone, a text), with who took it."""

    channel: ChannelKind  # one of TAKEN_CHANNELS
    text: str
    taken_by: str  # the agent's name, or the API caller as the history names it (api:crm)
    taken_via: str  # telegram | api
    name: str = ""
    email: str | None = None
    phone: str | None = None
    subject: str = ""
    language: str = ""

    def __post_init__(self) -> None:
        if self.channel not in TAKEN_CHANNELS:
            raise ValueError(f"{self.channel} is not a channel the staff take appeals on")


def new_taken_id() -> str:
    """A fresh external id for an appeal taken through the API."""
    return TAKEN_PREFIX + uuid.uuid4().hex


def taken_inbound(form: TakenAppeal, external_id: str) -> InboundMessage:
    """The stream entry of an appeal taken by phone or at the office: always a new appeal,
    the customer found by the phone and email given."""
    contacts = contact_hints((PHONE_CHANNEL, form.phone), (ChannelKind.EMAIL.value, form.email))
    return InboundMessage(
        channel=form.channel,
        external_id=external_id,
        address=form.phone or form.email or "",
        text=form.text,
        sender_name=form.name,
        language=form.language,
        subject=form.subject,
        contacts=contacts,
        new_appeal=True,
        taken_by=form.taken_by,
        taken_via=form.taken_via,
    )
