"""SMS Aero (https://smsaero.ru), API v2: a thin aiohttp client of ``sms/send``,
``sms/status`` and ``balance``.

Every method is a POST of a JSON body to ``{base_url}/{method}`` with HTTP basic auth
(login = the account's email, password = its API key), answered with
``{"success": bool, "data": …, "message": str | null}``. Not SMS Aero's own
``smsaero-api-async`` package: it puts the key into a plain-http URL and logs that URL and the
phone number at DEBUG, and turns every refusal into one exception with no HTTP status, so auth,
validation, money and 5xx cannot be told apart (docs/sms.md).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import aiohttp

from channels.base import (
    SMS_CHANNEL,
    DeliveryFailed,
    RateLimited,
    Rejected,
    Unavailable,
    Unreachable,
)
from channels.sms.provider import Receipt, SentSms, Status

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 60.0
# The status codes of API v2 (``status``/``extendStatus``): 0 queue, 1 delivery, 2 error,
# 3 transferred to the operator, 4 waiting for its report, 6 reject, 8 moderation.
RECEIPTS = {
    0: Receipt.QUEUED,
    1: Receipt.DELIVERED,
    2: Receipt.FAILED,
    3: Receipt.SENT,
    4: Receipt.SENT,
    6: Receipt.FAILED,
    8: Receipt.QUEUED,
}
# The answer for an empty account is not spelled out in the documentation we could read: an
# HTTP 402, or a refusal whose message speaks of money or balance, counts as one.
NO_MONEY = re.compile(r"money|balance|funds|credit|средств|баланс", re.I)
NUMBER_FIELDS = frozenset({"number", "numbers"})


class SmsAero:
    """The SMS Aero provider (``channels/sms/provider.py`` ``SmsProvider``)."""

    name = "smsaero"

    def __init__(self, login: str, api_key: str, base_url: str, timeout_s: float) -> None:
        self._headers = {"Authorization": aiohttp.encode_basic_auth(login, api_key)}
        self._base = base_url.rstrip("/") + "/"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, phone: str, text: str, sender: str) -> SentSms:
        """``sms/send`` to one number; the answer's ``id`` is the message's id."""
        data = await self._call("sms/send", {"number": phone, "sign": sender, "text": text})
        if not isinstance(data, dict) or data.get("id") in (None, ""):
            raise DeliveryFailed(SMS_CHANNEL, "sms/send answered without a message id")
        cost = data.get("cost")
        return SentSms(
            id=str(data["id"]),
            receipt=_receipt(data.get("status")),
            cost=float(cost) if isinstance(cost, int | float | str) and _number(cost) else None,
        )

    async def status(self, message_id: str) -> Status:
        """``sms/status`` of one message."""
        if not message_id.isdigit():
            raise Rejected(SMS_CHANNEL, "not an SMS Aero message id")
        data = await self._call("sms/status", {"id": int(message_id)})
        if not isinstance(data, dict):
            raise DeliveryFailed(SMS_CHANNEL, "sms/status answered without data")
        return Status(_receipt(data.get("status")), str(data.get("extendStatus") or ""))

    async def balance(self) -> float:
        """``balance``: the account's balance in roubles."""
        data = await self._call("balance", {})
        value = data.get("balance") if isinstance(data, dict) else None
        if not isinstance(value, int | float | str) or not _number(value):
            raise DeliveryFailed(SMS_CHANNEL, "balance answered without a balance")
        return float(value)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, body: dict[str, Any]) -> Any:
        """POST one method; its ``data`` on success, else the matching delivery error. Neither
        the key nor the number is ever logged or put into an error's text."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                self._base + method, json=body, headers=self._headers
            ) as r:
                status = r.status
                retry_after = r.headers.get("Retry-After", "")
                try:
                    answer = await r.json(content_type=None)
                except ValueError:  # an HTML error page from a proxy
                    answer = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryFailed(SMS_CHANNEL, f"{method}: {type(exc).__name__}") from None
        if status == 429:
            raise RateLimited(float(retry_after) if _number(retry_after) else DEFAULT_RETRY_AFTER_S)
        if status >= 500 or not isinstance(answer, dict):
            raise DeliveryFailed(SMS_CHANNEL, f"{method}: HTTP {status}")
        message = str(answer.get("message") or "")[:200]
        if status == 200 and answer.get("success") is True:
            return answer.get("data")
        log.warning("sms gateway refused", extra={"method": method, "status": status})
        if status in (401, 403):
            raise Unavailable(SMS_CHANNEL, f"credentials refused ({message or status})")
        if status == 402 or NO_MONEY.search(message):
            raise Unavailable(SMS_CHANNEL, f"no money on the account ({message or status})")
        fields = answer.get("data")
        if isinstance(fields, dict) and NUMBER_FIELDS & set(fields):
            raise Unreachable(SMS_CHANNEL, f"number refused ({message or status})")
        if isinstance(fields, dict) and "sign" in fields:  # not approved: no SMS can go
            raise Unavailable(SMS_CHANNEL, f"sender name refused ({message or status})")
        if 400 <= status < 500 or answer.get("success") is False:
            problems = ", ".join(sorted(fields)) if isinstance(fields, dict) else ""
            what = f"{message or status}" + (f": {problems}" if problems else "")
            raise Rejected(SMS_CHANNEL, what)
        raise DeliveryFailed(SMS_CHANNEL, f"{method}: unexpected answer (HTTP {status})")


def _receipt(code: Any) -> Receipt:
    try:
        return RECEIPTS.get(int(code), Receipt.QUEUED)
    except (TypeError, ValueError):
        return Receipt.QUEUED


def _number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
