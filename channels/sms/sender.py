"""The SMS channel's adapter: an outbox row to a phone number, through the configured
provider, from the configured sender name, at most ``max_parts`` parts."""

from __future__ import annotations

import logging

from channels.base import SMS_CHANNEL, OutboundMessage, Unreachable
from channels.settings import SmsSettings
from channels.sms.provider import SentSms, SmsProvider
from channels.sms.segments import count, fit
from channels.sms.smsaero import SmsAero

log = logging.getLogger(__name__)


def phone_digits(address: str) -> str:
    """A contact point's phone (``+79120001122``) as gateways want it: digits only."""
    digits = "".join(ch for ch in address if ch.isdigit())
    if not 10 <= len(digits) <= 15:
        raise Unreachable(SMS_CHANNEL, "not a phone number")
    return digits


class SmsSender:
    """Delivers outbox rows of the ``sms`` channel."""

    kind = SMS_CHANNEL

    def __init__(self, settings: SmsSettings, provider: SmsProvider) -> None:
        self._settings = settings
        self.provider = provider

    def prepare(self, text: str) -> str:
        """The text as it will go: shortened to the configured parts (links kept)."""
        return fit(text, self._settings.max_parts)

    async def send(self, out: OutboundMessage) -> SentSms:
        """Send one row; the gateway's answer (id, receipt, cost)."""
        text = self.prepare(out.text)
        sent = await self.provider.send(phone_digits(out.address), text, self._settings.sender)
        log.info(
            "sms sent",
            extra={"outbox_id": out.outbox_id, "parts": count(text).parts, "sms_id": sent.id},
        )
        return sent

    async def deliver(self, out: OutboundMessage) -> str:
        """Send one row; returns the gateway's message id."""
        return (await self.send(out)).id


def make_provider(settings: SmsSettings) -> SmsProvider:
    """The provider ``settings.provider`` names (another gateway adds its case here)."""
    key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    match settings.provider:
        case "smsaero":
            return SmsAero(settings.login, key, settings.base_url, settings.timeout_s)
