"""What the desk needs of an SMS gateway, whichever it is: send, ask a message's status, read
the balance. A provider (``channels/sms/smsaero.py``; SMS.ru or SMSC would sit beside it)
speaks its own HTTP API and turns its answers into these types and the delivery errors of
``channels/base.py``:

* ``DeliveryFailed`` — a 5xx, a timeout, a broken answer: retried with backoff;
* ``RateLimited`` — the gateway asked to wait;
* ``Unreachable`` — the number cannot get SMS (malformed, not a mobile number);
* ``Rejected`` — this message is refused for good (the text, the sender name);
* ``Unavailable`` — no SMS can go now (no money, credentials refused): rerouted at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Receipt(enum.StrEnum):
    """Where a sent SMS is, as the gateway reports it."""

    QUEUED = "queued"  # at the gateway (in its queue, on moderation)
    SENT = "sent"  # handed to the operator, no report yet
    DELIVERED = "delivered"  # the phone has it
    FAILED = "failed"  # not delivered, or rejected by the operator

    @property
    def final(self) -> bool:
        """Whether the gateway will report nothing after this."""
        return self in (Receipt.DELIVERED, Receipt.FAILED)


@dataclass(frozen=True, slots=True)
class SentSms:
    """The gateway's answer to a send: its id for the message, where it is, what it cost."""

    id: str
    receipt: Receipt
    cost: float | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """The gateway's answer to a status question."""

    receipt: Receipt
    detail: str = ""  # the gateway's own word for it (``delivery``, ``error``, ``reject`` …)


class SmsProvider(Protocol):
    """One SMS gateway's API."""

    name: str

    async def send(self, phone: str, text: str, sender: str) -> SentSms:
        """Send ``text`` to ``phone`` (digits, country code first) from ``sender``."""
        ...

    async def status(self, message_id: str) -> Status:
        """Where the message with the gateway's id ``message_id`` is now."""
        ...

    async def balance(self) -> float:
        """The account's balance in its currency."""
        ...

    async def close(self) -> None:
        """Close the HTTP session."""
        ...
