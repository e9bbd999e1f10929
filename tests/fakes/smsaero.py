"""A fake SMS Aero gateway for tests: an aiohttp server that answers like API v2
(https://gate.smsaero.ru/v2/) for one account.

Point the desk at it with ``DESK_SMS__BASE_URL`` = ``fake.url``::

    async with FakeSmsAero() as gateway:
        settings = {"sms": gateway.settings(sender="Shop")}
        ...
        assert gateway.sent[0].text == "…"

What it speaks, as the API's documentation and SMS Aero's own clients show it:

* ``POST|GET {url}/sms/send``, ``{url}/sms/status``, ``{url}/balance`` with HTTP basic auth
  (login = the account's email, password = its API key); parameters as a JSON body, a form or
  the query string. Every answer is ``{"success": bool, "data": …, "message": str | null}``.
* Wrong credentials: HTTP 401, ``message`` "Your request was made with invalid credentials."
* A bad parameter: HTTP 400, ``message`` "Validation error.", ``data`` the fields with their
  problems (``{"number": ["incorrect"]}``). A number is 10–15 digits; numbers in
  ``bad_numbers`` are refused as the operator's unknown numbers are. The sender (``sign``)
  must be one of ``signs``; the text 1–… characters.
* ``sms/send`` answers the message: ``id``, ``from``, ``number``, ``text``, ``status`` 0,
  ``extendStatus`` "queue", ``channel``, ``cost`` (``price`` a part), ``dateCreate``,
  ``dateSend``. ``sms/status`` answers the same with the status now. Status codes: 0 queue,
  1 delivery, 2 error, 3 transfer, 4 waiting status, 6 reject, 8 moderation; tests move a
  message on with ``report(id, code)``.
* Money: each part costs ``price`` from ``balance``; a send the balance cannot pay is refused
  with HTTP 402 and ``message`` "Not enough money on the account." (the documentation we could
  read does not spell this answer out; the desk's client also knows it by its words).
* Injected faults: ``fail_next(n, status)`` answers an HTML error page (a proxy's 502/503);
  ``limit_next(n, retry_after)`` answers 429 with ``Retry-After``. Neither sends anything.

Parts are counted here on their own (not with the desk's code): a text of 7-bit ASCII takes
160 characters in one part, 153 in each of several; any other text 70, 67 each.
"""

from __future__ import annotations

import base64
import itertools
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

LOGIN = "shop@example.com"
API_KEY = "Aero-test-key-0123456789abcdef"
STATUS_WORDS = {
    0: "queue",
    1: "delivery",
    2: "error",
    3: "transfer",
    4: "waiting status",
    6: "reject",
    8: "moderation",
}


def parts_of(text: str) -> int:
    """Parts as an operator bills them (ASCII: 160/153, otherwise UCS-2: 70/67)."""
    single, each = (160, 153) if text.isascii() else (70, 67)
    length = len(text.encode("utf-16-le")) // 2 if not text.isascii() else len(text)
    return 1 if length <= single else -(-length // each)


@dataclass
class FakeSms:
    """One message the gateway took."""

    id: int
    number: str
    sign: str
    text: str
    parts: int
    cost: float
    status: int = 0
    created: int = field(default_factory=lambda: int(time.time()))

    def answer(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sign,
            "number": self.number,
            "text": self.text,
            "status": self.status,
            "extendStatus": STATUS_WORDS.get(self.status, "queue"),
            "channel": "DIRECT",
            "cost": round(self.cost, 2),
            "dateCreate": self.created,
            "dateSend": self.created,
        }


class FakeSmsAero:
    """The gateway: one account, its balance, the messages it took."""

    def __init__(
        self,
        *,
        login: str = LOGIN,
        api_key: str = API_KEY,
        signs: tuple[str, ...] = ("Shop",),
        balance: float = 1000.0,
        price: float = 4.35,
    ) -> None:
        self.login = login
        self.api_key = api_key
        self.signs = set(signs)
        self.balance = balance
        self.price = price
        self.bad_numbers: set[str] = set()
        self.sent: list[FakeSms] = []
        self.calls: list[tuple[str, int]] = []  # (method, HTTP status answered)
        self._ids = itertools.count(9001)
        self._faults: list[tuple[int, str]] = []  # (status, Retry-After)
        self._runner: web.AppRunner | None = None
        self._url = ""

    @property
    def url(self) -> str:
        """The base URL, like https://gate.smsaero.ru/v2."""
        return self._url

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The desk's ``sms`` section for this gateway."""
        return {
            "login": self.login,
            "api_key": self.api_key,
            "sender": next(iter(sorted(self.signs))),
            "base_url": self.url,
            "status_poll_s": 1,
            **overrides,
        }

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """The next ``count`` calls answer an HTML error page with ``status``."""
        self._faults += [(status, "")] * count

    def limit_next(self, count: int = 1, retry_after: int = 1) -> None:
        """The next ``count`` calls answer 429 with ``Retry-After``."""
        self._faults += [(429, str(retry_after))] * count

    def report(self, sms_id: int | str, code: int) -> None:
        """The operator's report moves message ``sms_id`` to status ``code``."""
        found = next((m for m in self.sent if m.id == int(sms_id)), None)
        if found is None:
            raise ValueError(f"no message {sms_id}")
        found.status = code

    def to(self, number: str) -> list[FakeSms]:
        """The messages sent to ``number`` (digits), oldest first."""
        return [m for m in self.sent if m.number == number]

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application()
        app.router.add_route("*", "/v2/{method:.+}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v2"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeSmsAero:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the API ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"].strip("/")
        response = await self._answer(request, method)
        self.calls.append((method, response.status))
        return response

    async def _answer(self, request: web.Request, method: str) -> web.StreamResponse:
        if self._faults:
            status, retry_after = self._faults.pop(0)
            if status == 429:
                return _json(429, False, None, "Too many requests.", {"Retry-After": retry_after})
            return web.Response(
                status=status, text=f"<html><h1>{status}</h1></html>", content_type="text/html"
            )
        if not self._authorised(request.headers.get("Authorization", "")):
            return _json(401, False, None, "Your request was made with invalid credentials.")
        params = await _params(request)
        if method == "balance":
            return _json(200, True, {"balance": round(self.balance, 2)})
        if method == "sms/send":
            return self._send(params)
        if method == "sms/status":
            found = next((m for m in self.sent if str(m.id) == str(params.get("id"))), None)
            if found is None:
                return _json(400, False, {"id": ["not found"]}, "Validation error.")
            return _json(200, True, found.answer())
        return _json(404, False, None, "Not found.")

    def _authorised(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            login, _, key = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return login == self.login and key == self.api_key

    def _send(self, params: dict[str, Any]) -> web.Response:
        number = str(params.get("number", ""))
        text = str(params.get("text", ""))
        sign = str(params.get("sign", ""))
        problems: dict[str, list[str]] = {}
        if not number.isdigit() or not 10 <= len(number) <= 15 or number in self.bad_numbers:
            problems["number"] = ["incorrect"]
        if not text:
            problems["text"] = ["required"]
        if sign not in self.signs:
            problems["sign"] = ["not approved"]
        if problems:
            return _json(400, False, problems, "Validation error.")
        parts = parts_of(text)
        cost = parts * self.price
        if cost > self.balance:
            return _json(402, False, None, "Not enough money on the account.")
        self.balance -= cost
        sms = FakeSms(next(self._ids), number, sign, text, parts, cost)
        self.sent.append(sms)
        return _json(200, True, sms.answer())


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        else:
            params.update(dict(await request.post()))
    return params


def _json(
    status: int,
    success: bool,
    data: Any,
    message: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"success": success, "data": data, "message": message}
    return web.json_response(body, status=status, headers=headers)
