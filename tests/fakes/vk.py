"""A fake VK API for tests: an aiohttp server that answers like api.vk.ru for a community token.

Point vkbottle at it::

    async with FakeVk() as fake:
        api = fake.make_api()                    # API(token, http_client=AiohttpClient())
        bot = fake.make_bot(api, wait=1)         # Bot(api=api, polling=BotPolling(...))
        ...
        await api.http_client.close()

It speaks the real protocol: ``POST|GET {url}/method/{name}`` with ``access_token`` and ``v`` in
the query string or the form, answering ``{"response": ...}`` or VK's error object
``{"error": {"error_code", "error_msg", "request_params"}}`` (HTTP 200 either way); the Bots Long
Poll server ``{url}/whp/{group_id}?act=a_check&key=&ts=&wait=`` that ``groups.getLongPollServer``
hands out; upload servers for ``photos.getMessagesUploadServer`` / ``docs.getMessagesUploadServer``;
and ``GET {url}/files/...`` for every file the fake hands out (photo sizes, doc urls, voice links,
sticker images). Everything stays inspectable: ``requests``, ``sent``, ``messages``,
``event_answers``, ``updates``, ``callback_attempts``.

Choices where VK is vague, so tests can rely on them:

* One community (``group_id``), any non-empty token is its token (``revoke_token`` makes one
  answer error 5). A missing ``v`` answers error 8, as VK does since 5.0 became mandatory.
* ``messages.send`` needs ``random_id`` (error 100 without it, as VK since 5.90). A non-zero
  ``random_id`` seen before for the same peer answers the first message's ids and sends nothing.
  With ``peer_ids``/``user_ids`` the answer is a list of ``{peer_id, message_id,
  conversation_message_id}``, and a peer the community may not write to gets an item
  ``{peer_id, error: {code, description}}`` without ids (as VK does) instead of failing the call;
  with ``peer_id``/``user_id`` the call fails with that error. Users who never wrote and were not
  added with ``add_user`` count as not allowing messages (901), as do ``deny_messages`` users.
* Message ids are global to the community, ``conversation_message_id`` counts per peer; user
  messages take ids from the same counters.
* ``messages.edit`` without ``keyboard`` drops the message's keyboard; only the community's own
  messages younger than 24 h can be edited (15 / 909).
* A limit of ``rate_limit`` (20) method calls per token in any second of ``clock`` answers error 6;
  refused calls do not count. Long poll and upload requests are free.
* Injected faults: ``fail_next`` answers a VK error without running the call; ``http_error_next``
  answers an HTML 5xx page, before running the call or (``executed=True``) after it, the case
  where a retry without ``random_id`` duplicates a message.
* Long poll ``ts`` counts events; a poll with a ``ts`` ahead of the server answers ``failed: 1``.
  ``expire_key`` makes the current key answer ``failed: 2``; ``long_poll_fail_next`` queues any
  ``failed`` answer (``3`` also drops what happened before: the new server's ts is current).
* Callback API: one server. ``set_callback`` (or ``groups.addCallbackServer``) first POSTs
  ``{"type": "confirmation", "group_id"}`` and wants the code as the body; then each event (with
  ``secret``) in order, wanting ``ok``. A failed POST is retried ``callback_max_attempts`` times
  in all, ``callback_retry_delay`` apart, then dropped into ``callback_dropped``. Servers added
  through the API start with no event types enabled (``groups.setCallbackSettings`` enables
  them); ``set_callback`` enables all unless ``events`` is given.
* Uploaded photos and docs and what users attach resolve in sent messages by their attachment
  string (``photo-1_2``, ``doc-1_3``, with or without access key); other well-formed strings are
  recorded in ``sent`` but carry no object. Voice ``link_mp3`` serves the same bytes as
  ``link_ogg`` (no transcoding).
* Errors of the fake's own test helpers (unknown message in ``button_press`` and so on) are
  ``ValueError``; only API calls answer with VK errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import itertools
import json
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from vkbottle import API, Bot, BotPolling
from vkbottle.api.request_rescheduler import BlockingRequestRescheduler
from vkbottle.http import AiohttpClient
from vkbottle_types.events import GroupEventType

JsonDict = dict[str, Any]

DEFAULT_TOKEN = "vk1.a.FakeCommunityToken0123456789"
DEFAULT_GROUP_ID = 227000001
GROUP_NAME = "Appeal Desk"
GROUP_SCREEN_NAME = "appeal_desk"
API_VERSION = "5.199"
TEXT_LIMIT = 4096
ATTACHMENT_LIMIT = 10
CHAT_PEER_BASE = 2_000_000_000
LONG_POLL_MAX_WAIT = 90
EDIT_WINDOW_S = 24 * 3600
SNACKBAR_LIMIT = 90
PAYLOAD_LIMIT = 255
CLIENT_INFO: JsonDict = {
    "button_actions": [
        "text",
        "vkpay",
        "open_app",
        "location",
        "open_link",
        "callback",
        "intent_subscribe",
        "intent_unsubscribe",
    ],
    "keyboard": True,
    "inline_keyboard": True,
    "carousel": True,
    "lang_id": 0,
}

ERROR_TEXT = {
    1: "Unknown error occurred",
    3: "Unknown method passed",
    5: "User authorization failed",
    6: "Too many requests per second",
    7: "Permission to perform this action is denied",
    8: "Invalid request",
    9: "Flood control",
    10: "Internal server error",
    15: "Access denied",
    100: "One of the parameters specified was missing or invalid",
    113: "Invalid user id",
    118: "Invalid server",
    121: "Invalid hash",
    900: "Can't send messages for users from blacklist",
    901: "Can't send messages for users without permission",
    902: "Can't send messages to this user due to their privacy settings",
    909: "Can't edit this message, because it's too old",
    911: "Keyboard format is invalid",
    914: "Message is too long",
    917: "You don't have access to this chat",
    932: "Your community can't interact with this peer",
    2000: "Servers number limit is reached",
}
# Errors about one recipient: with peer_ids they land in that peer's item, not on the call.
_PEER_ERRORS = frozenset({900, 901, 902, 917, 932})
_STATUS_TEXT = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
_EVENT_TYPES = frozenset(e.value for e in GroupEventType) - {"confirmation", "NOT_SUPPORTED"}
_ATTACHMENT_RE = re.compile(
    r"^(photo|video|audio|doc|wall|market|poll|audio_message|graffiti|story|sticker|link)"
    r"(-?\d+)_(\d+)(?:_([A-Za-z0-9]+))?$"
)
_BUTTON_TYPES = frozenset(
    {"text", "open_link", "location", "vkpay", "open_app", "callback", "intent_subscribe"}
)
_DOC_TYPES = {
    **dict.fromkeys(("txt", "doc", "docx", "pdf", "odt", "rtf", "xls", "xlsx", "csv"), 1),
    **dict.fromkeys(("zip", "rar", "7z", "tar", "gz"), 2),
    "gif": 3,
    **dict.fromkeys(("jpg", "jpeg", "png", "webp", "bmp", "heic"), 4),
    **dict.fromkeys(("mp3", "ogg", "wav", "m4a", "flac"), 5),
    **dict.fromkeys(("mp4", "avi", "mov", "mkv", "webm"), 6),
    **dict.fromkeys(("epub", "fb2", "djvu", "mobi"), 7),
}
_MIME = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
}
# The smallest valid PNG (1x1): what sticker images and photo previews of nothing serve.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
_PHOTO_SIZES = (("s", 75), ("m", 130), ("x", 604), ("y", 807))


class VkError(Exception):
    """An error answer of the VK API: code and message ("<standard text>[: <detail>]")."""

    def __init__(self, code: int, detail: str | None = None, *, msg: str | None = None) -> None:
        base = msg or ERROR_TEXT.get(code, "Unknown error occurred")
        self.code = code
        self.msg = f"{base}: {detail}" if detail and msg is None else base
        super().__init__(self.msg)

    @classmethod
    def param(cls, detail: str) -> VkError:
        """Error 100 with VK's "<param> ..." detail."""
        return cls(100, detail)

    def payload(self, method: str, params: JsonDict, version: str | None) -> JsonDict:
        """The JSON body VK answers with (request_params echo the call, minus the token)."""
        echo = [{"key": "method", "value": method}, {"key": "oauth", "value": "1"}]
        if version is not None:
            echo.append({"key": "v", "value": version})
        echo += [{"key": k, "value": str(v)} for k, v in params.items()]
        return {"error": {"error_code": self.code, "error_msg": self.msg, "request_params": echo}}


def _hex_id(*parts: object, length: int = 40) -> str:
    digest = hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()
    return digest[:length]


def _ext(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG (from IHDR); 800x600 for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return 800, 600


# --------------------------------------------------------------------------- records


@dataclass
class FakeUser:
    """A VK user the community knows."""

    id: int
    first_name: str
    last_name: str
    phone: str | None = None
    screen_name: str | None = None
    allows_messages: bool = True

    def to_json(self, fields: Iterable[str] = ()) -> JsonDict:
        data: JsonDict = {
            "id": self.id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "can_access_closed": True,
            "is_closed": False,
        }
        wanted = set(fields)
        if wanted & {"contacts", "mobile_phone", "home_phone"}:
            data["mobile_phone"] = self.phone or ""
            data["home_phone"] = ""
        if wanted & {"screen_name", "domain"}:
            name = self.screen_name or f"id{self.id}"
            data.update(screen_name=name, domain=name)
        for size in (50, 100, 200):
            if f"photo_{size}" in wanted:
                data[f"photo_{size}"] = f"https://vk.com/images/camera_{size}.png"
        if "sex" in wanted:
            data["sex"] = 0
        return data


@dataclass
class StoredFile:
    """Bytes the fake serves at ``path`` (under its url)."""

    key: str
    content: bytes
    name: str
    content_type: str

    @property
    def path(self) -> str:
        return f"/files/{self.key}/{quote(self.name, safe='')}"  # a name like ../x stays one


@dataclass
class SentMessage:
    """A message the community sent (``messages.send``) or edited (``messages.edit``)."""

    method: str
    peer_id: int
    message_id: int
    conversation_message_id: int
    random_id: int
    date: int
    text: str = ""
    attachment: str | None = None
    attachments: list[str] = field(default_factory=list)
    keyboard: JsonDict | None = None
    sticker_id: int | None = None
    reply_to: int | None = None
    payload: str | None = None
    message: JsonDict = field(default_factory=dict)


@dataclass
class RecordedRequest:
    """One API call: parameters as received (minus token and version), and the answer."""

    method: str
    params: JsonDict
    token: str | None
    version: str | None
    http_status: int = 200
    response: JsonDict = field(default_factory=dict)


@dataclass
class EventAnswer:
    """A messages.sendMessageEventAnswer call."""

    event_id: str
    user_id: int
    peer_id: int
    event_data: JsonDict | None


@dataclass
class CallbackServer:
    """The community's Callback API server."""

    id: int
    url: str
    title: str
    secret_key: str | None
    events: set[str] | None  # None: every event type
    status: str = "unconfigured"  # "ok" once confirmed, "failed" when confirmation failed

    @property
    def confirmed(self) -> bool:
        return self.status == "ok"

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events

    def to_json(self) -> JsonDict:
        return {
            "id": self.id,
            "title": self.title,
            "creator_id": 0,
            "url": self.url,
            "secret_key": self.secret_key or "",
            "status": self.status,
        }


@dataclass
class CallbackAttempt:
    """One POST to the callback server."""

    type: str
    event_id: str | None
    attempt: int
    status: int | None = None
    body: str | None = None
    error: str | None = None
    ok: bool = False


# --------------------------------------------------------------------------- request parameters


class Params:
    """A call's parameters as VK gets them: strings."""

    def __init__(self, values: JsonDict) -> None:
        self.values = values

    def has(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        return None if value is None else str(value)

    def integer(self, name: str) -> int | None:
        if not self.has(name):
            return None
        try:
            return int(str(self.values[name]).strip())
        except ValueError:
            raise VkError.param(f"{name} not integer") from None

    def need_int(self, name: str) -> int:
        value = self.integer(name)
        if value is None:
            raise VkError.param(f"{name} is a required parameter")
        return value

    def ints(self, name: str) -> list[int]:
        raw = self.text(name) or ""
        try:
            return [int(part) for part in raw.split(",") if part.strip()]
        except ValueError:
            raise VkError.param(f"{name} not integer") from None

    def words(self, name: str) -> list[str]:
        return [part.strip() for part in (self.text(name) or "").split(",") if part.strip()]

    def flag(self, name: str) -> bool:
        return (self.text(name) or "").lower() in ("1", "true")

    def json(self, name: str, code: int = 100) -> Any:
        raw = self.text(name)
        if raw is None or raw == "":
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise VkError(code, f"{name} is not a valid JSON") from None


@dataclass
class _Call:
    method: str
    token: str
    params: Params


# --------------------------------------------------------------------------- limits and faults


class _RateLimiter:
    """At most `per_second` calls per token within any second."""

    def __init__(self) -> None:
        self._calls: defaultdict[str, deque[float]] = defaultdict(deque)

    def acquire(self, token: str, now: float, per_second: int) -> bool:
        calls = self._calls[token]
        while calls and calls[0] + 1.0 <= now:
            calls.popleft()
        if len(calls) >= per_second:
            return False
        calls.append(now)
        return True


@dataclass(frozen=True)
class _HttpFault:
    status: int
    executed: bool


class _Faults:
    """Failures queued by tests, per method (case-insensitive, "*" = any)."""

    def __init__(self) -> None:
        self.errors: defaultdict[str, deque[VkError]] = defaultdict(deque)
        self.http: defaultdict[str, deque[_HttpFault]] = defaultdict(deque)

    @staticmethod
    def _pop(queues: defaultdict[str, deque[Any]], method: str) -> Any:
        for key in (method.lower(), "*"):
            if queues.get(key):
                return queues[key].popleft()
        return None

    def error_for(self, method: str) -> VkError | None:
        return self._pop(self.errors, method)

    def http_for(self, method: str) -> _HttpFault | None:
        return self._pop(self.http, method)


# --------------------------------------------------------------------------- the server


class FakeVk:
    """A VK API server in this process for one community: real HTTP, VK's answers and limits."""

    def __init__(
        self,
        *,
        group_id: int = DEFAULT_GROUP_ID,
        group_name: str = GROUP_NAME,
        confirmation_code: str = "a1b2c3d4",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.group_id = group_id
        self.group_name = group_name
        self.confirmation_code = confirmation_code
        self.clock = clock
        self.wall_clock = wall_clock
        self.limits_enabled = True
        self.rate_limit = 20
        self.users: dict[int, FakeUser] = {}
        self.revoked_tokens: set[str] = set()
        self.requests: list[RecordedRequest] = []
        self.sent: list[SentMessage] = []
        self.messages: dict[int, JsonDict] = {}
        self.event_answers: list[EventAnswer] = []
        self.updates: list[JsonDict] = []
        self.long_poll_requests: list[JsonDict] = []
        self.files: dict[str, StoredFile] = {}
        self.callback: CallbackServer | None = None
        self.callback_attempts: list[CallbackAttempt] = []
        self.callback_dropped: list[JsonDict] = []
        self.callback_max_attempts = 3
        self.callback_retry_delay = 0.05
        self.callback_timeout = 5.0
        self._limiter = _RateLimiter()
        self._faults = _Faults()
        self._media: dict[str, JsonDict] = {}
        self._uploads: dict[str, JsonDict] = {}
        self._random_ids: dict[tuple[int, int], JsonDict] = {}
        self._cmids: dict[tuple[int, int], int] = {}
        self._peer_counters: defaultdict[int, int] = defaultdict(int)
        self._events: dict[str, tuple[int, int]] = {}
        self._message_ids = itertools.count(1)
        self._versions = itertools.count(10_000_001)
        self._media_ids = itertools.count(457_239_017)
        self._file_ids = itertools.count(1)
        self._event_ids = itertools.count(1)
        self._server_ids = itertools.count(1)
        self._lp_history: list[tuple[int, JsonDict]] = []
        self._lp_next_ts = 1
        self._lp_keys = itertools.count(1)
        self._lp_key = self._new_key()
        self._lp_failures: deque[int] = deque()
        self._lp_wake = asyncio.Event()
        self._lp_waiting = 0
        self._lp_parks = 0
        self._cb_queue: deque[JsonDict] = deque()
        self._cb_wake = asyncio.Event()
        self._closing = False
        self._methods = self._method_table()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._cb_task: asyncio.Task[None] | None = None
        self._url: str | None = None

    # ---- lifecycle

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port and start the callback sender."""
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_route("*", "/method/{method}", self._handle_method)
        app.router.add_route("*", "/whp/{group_id}", self._handle_long_poll)
        app.router.add_post("/upload/{kind}", self._handle_upload)
        app.router.add_get("/files/{key}/{name}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._http = aiohttp.ClientSession()
        self._cb_task = asyncio.create_task(self._callback_loop())

    async def close(self) -> None:
        """Answer waiting long polls, stop the callback sender and the server."""
        self._closing = True
        self._wake_long_polls()
        if self._cb_task is not None:
            self._cb_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cb_task
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeVk:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """Base URL; the API lives under ``url + "/method/"``."""
        if self._url is None:
            raise RuntimeError("FakeVk is not started")
        return self._url

    @property
    def api_url(self) -> str:
        """What to put in ``API.API_URL``."""
        return self.url + "/method/"

    @property
    def long_poll_server(self) -> str:
        """The Bots Long Poll server URL groups.getLongPollServer hands out."""
        return f"{self.url}/whp/{self.group_id}"

    def make_api(
        self, token: str = DEFAULT_TOKEN, *, reschedule_delay: int = 0, **kwargs: Any
    ) -> API:
        """A vkbottle API talking to this fake with its own AiohttpClient (close it when done).

        ``reschedule_delay`` is the BlockingRequestRescheduler's step: vkbottle retries an
        answer that is not JSON (a 5xx page) forever, sleeping step x attempt seconds.
        """
        kwargs.setdefault("request_rescheduler", BlockingRequestRescheduler(reschedule_delay))
        api = API(token, http_client=AiohttpClient(), **kwargs)
        api.API_URL = self.api_url
        return api

    def make_bot(self, api: API | None = None, *, wait: int = 1, **kwargs: Any) -> Bot:
        """A vkbottle Bot long-polling this fake (BotPolling writes ./.vkbottle/ in the cwd)."""
        api = api or self.make_api()
        polling = BotPolling(api, group_id=self.group_id, wait=wait)
        return Bot(api=api, polling=polling, **kwargs)

    # ---- the world

    def add_user(
        self,
        user_id: int,
        first_name: str,
        last_name: str = "",
        phone: str | None = None,
        *,
        screen_name: str | None = None,
    ) -> FakeUser:
        """Register (or replace) a user who allows the community's messages."""
        if not 0 < user_id < CHAT_PEER_BASE:
            raise ValueError(f"a user id is between 1 and {CHAT_PEER_BASE - 1}")
        old = self.users.get(user_id)
        allows = old.allows_messages if old is not None else True
        user = FakeUser(user_id, first_name, last_name, phone, screen_name, allows)
        self.users[user_id] = user
        return user

    def deny_messages(self, user_id: int) -> None:
        """The user forbids the community's messages: messages.send to them answers 901."""
        self._user(user_id).allows_messages = False

    def allow_messages(self, user_id: int) -> None:
        self._user(user_id).allows_messages = True

    def revoke_token(self, token: str) -> None:
        """Calls with this token answer error 5."""
        self.revoked_tokens.add(token)

    def sent_to(self, peer_id: int) -> list[SentMessage]:
        """What the community sent to (or edited in) a peer, in order."""
        return [s for s in self.sent if s.peer_id == peer_id]

    def messages_in(self, peer_id: int) -> list[JsonDict]:
        """The peer's messages as they are now, oldest first."""
        return [copy.deepcopy(m) for m in self.messages.values() if m["peer_id"] == peer_id]

    def calls(self, method: str) -> list[RecordedRequest]:
        """The recorded calls of one method (case-insensitive)."""
        return [r for r in self.requests if r.method.lower() == method.lower()]

    def file(self, url: str) -> StoredFile | None:
        """The stored file an URL handed out by the fake points to."""
        key = url.split("/files/", 1)[-1].split("/", 1)[0]
        return self.files.get(key)

    # ---- faults

    def fail_next(self, method: str, code: int, msg: str | None = None, count: int = 1) -> None:
        """The next `count` calls of `method` ("*" = any) answer VK error `code`."""
        error = VkError(code, msg=msg)
        self._faults.errors[method.lower()].extend([error] * count)

    def http_error_next(
        self, method: str, status: int = 502, count: int = 1, *, executed: bool = False
    ) -> None:
        """The next `count` calls of `method` answer an HTML page with HTTP `status`.

        With ``executed`` the call runs first (VK did it, the client never saw the answer).
        `method` may also be "longpoll" or "upload" for those endpoints.
        """
        self._faults.http[method.lower()].extend([_HttpFault(status, executed)] * count)

    def expire_key(self) -> None:
        """The long poll key expires: polls with it answer ``failed: 2``."""
        self._lp_key = self._new_key()
        self._wake_long_polls()

    def long_poll_fail_next(self, failed: int, count: int = 1) -> None:
        """The next `count` long polls answer ``{"failed": failed}`` (1 carries the current ts)."""
        self._lp_failures.extend([failed] * count)
        self._wake_long_polls()

    # ---- what users do

    def user_message(
        self,
        user_id: int,
        text: str | None = None,
        *,
        photo: bytes | None = None,
        doc: bytes | None = None,
        doc_name: str = "document.pdf",
        voice: bytes | None = None,
        voice_duration: int = 3,
        sticker_id: int | None = None,
        payload: JsonDict | None = None,
        reply_to: int | None = None,
    ) -> JsonDict:
        """The user writes to the community; returns the message_new update."""
        user = self._user(user_id)
        attachments: list[JsonDict] = []
        if photo is not None:
            attachments.append(self._new_photo(user.id, photo, "photo.jpg"))
        if doc is not None:
            attachments.append(self._new_doc(user.id, doc, doc_name))
        if voice is not None:
            attachments.append(self._new_voice(user.id, voice, voice_duration))
        if sticker_id is not None:
            attachments.append(self._sticker(sticker_id))
        if text is None and not attachments:
            raise ValueError("a message needs text or an attachment")
        message = self._store_message(
            peer_id=user.id,
            from_id=user.id,
            text=text or "",
            attachments=attachments,
            random_id=0,
        )
        if payload is not None:
            message["payload"] = json.dumps(payload, ensure_ascii=False)
        if reply_to is not None:
            replied = self.messages.get(reply_to)
            if replied is None or replied["peer_id"] != user.id:
                raise ValueError(f"no message {reply_to} in the dialog with {user.id}")
            message["reply_message"] = {
                k: replied[k]
                for k in ("date", "from_id", "text", "attachments", "conversation_message_id")
            } | {"id": replied["id"], "peer_id": replied["peer_id"]}
        return self._push(
            "message_new", {"message": copy.deepcopy(message), "client_info": CLIENT_INFO}
        )

    def button_press(
        self,
        user_id: int,
        payload: JsonDict | None,
        conversation_message_id: int,
        *,
        peer_id: int | None = None,
    ) -> JsonDict:
        """The user presses a callback button under a community message: a message_event."""
        user = self._user(user_id)
        peer = user.id if peer_id is None else peer_id
        if (peer, conversation_message_id) not in self._cmids:
            raise ValueError(f"no message {conversation_message_id} in peer {peer}")
        event_id = _hex_id("event", next(self._event_ids), length=12)
        self._events[event_id] = (user.id, peer)
        obj: JsonDict = {
            "user_id": user.id,
            "peer_id": peer,
            "event_id": event_id,
            "payload": payload,
            "conversation_message_id": conversation_message_id,
        }
        return self._push("message_event", obj)

    def push_event(self, event_type: str, obj: JsonDict) -> JsonDict:
        """Any other community event (message_allow, group_join, ...), shaped by the caller."""
        if event_type not in _EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}")
        return self._push(event_type, obj)

    def redeliver(self, update: JsonDict) -> JsonDict:
        """Deliver the same update (same event_id) again, as VK sometimes does."""
        again = copy.deepcopy(update)
        self._queue_update(again)
        return again

    # ---- updates, long poll, callback queue

    def _push(self, event_type: str, obj: JsonDict) -> JsonDict:
        update = {
            "group_id": self.group_id,
            "type": event_type,
            "event_id": _hex_id("update", self.group_id, next(self._event_ids)),
            "v": API_VERSION,
            "object": obj,
        }
        self.updates.append(update)
        self._queue_update(copy.deepcopy(update))
        return update

    def _queue_update(self, update: JsonDict) -> None:
        self._lp_history.append((self._lp_next_ts, update))
        self._lp_next_ts += 1
        if self.callback is not None and self.callback.wants(update["type"]):
            self._cb_queue.append(update)
            self._cb_wake.set()
        self._wake_long_polls()

    @property
    def long_poll_waiting(self) -> int:
        """How many long polls are parked on the server, waiting for events."""
        return self._lp_waiting

    async def wait_polling(self, timeout: float = 5.0, *, fresh: bool = False) -> None:
        """Wait until a long poll is parked on the server (with `fresh`, one parked after now).

        Like VK, the fake gives a new long poll server the current ts: events pushed before the
        poller asked for its server are never delivered to it. Call this after starting a bot.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        parks = self._lp_parks
        while not self._lp_waiting or (fresh and self._lp_parks == parks):
            if loop.time() > deadline:
                raise TimeoutError("nobody is long-polling the fake")
            await asyncio.sleep(0.005)

    def _wake_long_polls(self) -> None:
        wake, self._lp_wake = self._lp_wake, asyncio.Event()
        wake.set()

    def _new_key(self) -> str:
        return _hex_id("key", self.group_id, next(self._lp_keys))

    async def _handle_long_poll(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        if request.method == "POST" and request.body_exists:
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        self.long_poll_requests.append(params)
        fault = self._faults.http_for("longpoll")
        if fault is not None:
            return _html_error(fault.status)
        return web.json_response(await self._long_poll(params, request.match_info["group_id"]))

    async def _long_poll(self, params: dict[str, str], group: str) -> JsonDict:
        if params.get("act") != "a_check" or group != str(self.group_id):
            return {"failed": 2}
        if self._lp_failures:
            failed = self._lp_failures.popleft()
            if failed == 3:
                self._lp_key = self._new_key()
            return (
                {"failed": failed, "ts": str(self._lp_next_ts)}
                if failed == 1
                else {"failed": failed}
            )
        if params.get("key") != self._lp_key:
            return {"failed": 2}
        try:
            ts = int(params.get("ts", ""))
            wait = min(max(int(params.get("wait", "25")), 0), LONG_POLL_MAX_WAIT)
        except ValueError:
            return {"failed": 1, "ts": str(self._lp_next_ts)}
        if ts > self._lp_next_ts:
            return {"failed": 1, "ts": str(self._lp_next_ts)}
        if ts == self._lp_next_ts and wait and not self._closing:
            wake = self._lp_wake
            self._lp_waiting += 1
            self._lp_parks += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), wait)
            finally:
                self._lp_waiting -= 1
            if self._lp_failures or params.get("key") != self._lp_key:
                return await self._long_poll(params, group)
        updates = [copy.deepcopy(u) for n, u in self._lp_history if n >= ts]
        return {"ts": str(self._lp_next_ts), "updates": updates}

    # ---- Callback API

    def set_callback(
        self,
        url: str,
        secret: str | None = None,
        confirmation_code: str | None = None,
        *,
        events: Iterable[str] | None = None,
        title: str = "desk",
    ) -> CallbackServer:
        """Send events to `url`: confirm first, then POST every event of `events` (None = all)."""
        if confirmation_code is not None:
            self.confirmation_code = confirmation_code
        wanted = None if events is None else self._event_set(events)
        server_id = self.callback.id if self.callback else next(self._server_ids)
        self.callback = CallbackServer(server_id, url, title, secret, wanted)
        self._cb_wake.set()
        return self.callback

    def remove_callback(self) -> None:
        self.callback = None
        self._cb_queue.clear()

    async def wait_callback_idle(self, timeout: float = 5.0) -> None:
        """Wait until everything queued for the callback server was delivered or dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._callback_idle():
            if loop.time() > deadline:
                raise TimeoutError("callback deliveries still pending")
            await asyncio.sleep(0.01)

    def _callback_idle(self) -> bool:
        server = self.callback
        if server is None or server.status == "failed":
            return True
        return server.confirmed and not self._cb_queue

    @staticmethod
    def _event_set(events: Iterable[str]) -> set[str]:
        wanted = set(events)
        unknown = wanted - _EVENT_TYPES
        if unknown:
            raise ValueError(f"unknown event types {sorted(unknown)}")
        return wanted

    async def _callback_loop(self) -> None:
        while True:
            server = self.callback
            if (
                server is None
                or server.status == "failed"
                or (server.confirmed and not self._cb_queue)
            ):
                self._cb_wake.clear()
                await self._cb_wake.wait()
                continue
            if not server.confirmed:
                await self._confirm(server)
                continue
            update = self._cb_queue[0]
            body = dict(update)
            if server.secret_key:
                body["secret"] = server.secret_key
            delivered = await self._post_callback(server, body, update["type"], "ok")
            if self._cb_queue and self._cb_queue[0] is update:
                self._cb_queue.popleft()
            if not delivered:
                self.callback_dropped.append(update)

    async def _confirm(self, server: CallbackServer) -> None:
        body = {"type": "confirmation", "group_id": self.group_id}
        ok = await self._post_callback(server, body, "confirmation", self.confirmation_code)
        if self.callback is server:
            server.status = "ok" if ok else "failed"

    async def _post_callback(
        self, server: CallbackServer, body: JsonDict, kind: str, expected: str
    ) -> bool:
        assert self._http is not None
        timeout = aiohttp.ClientTimeout(total=self.callback_timeout)
        for attempt_no in range(1, self.callback_max_attempts + 1):
            if self.callback is not server:
                return False
            attempt = CallbackAttempt(kind, body.get("event_id"), attempt_no)
            self.callback_attempts.append(attempt)
            try:
                async with self._http.post(server.url, json=body, timeout=timeout) as resp:
                    attempt.status = resp.status
                    attempt.body = (await resp.text())[:200]
            except (aiohttp.ClientError, TimeoutError) as exc:
                attempt.error = type(exc).__name__
            attempt.ok = attempt.status == 200 and (attempt.body or "").strip() == expected
            if attempt.ok:
                return True
            if attempt_no < self.callback_max_attempts:
                await asyncio.sleep(self.callback_retry_delay)
        return False

    # ---- HTTP

    async def _read_params(self, request: web.Request) -> tuple[JsonDict, dict[str, web.FileField]]:
        params: JsonDict = dict(request.query)
        files: dict[str, web.FileField] = {}
        if request.method == "POST" and request.body_exists:
            for key, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    files[key] = value
                else:
                    params[key] = value
        return params, files

    async def _handle_method(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        raw, _ = await self._read_params(request)
        token = raw.pop("access_token", None)
        version = raw.pop("v", None)
        record = RecordedRequest(method, dict(raw), token, version)
        self.requests.append(record)
        fault = self._faults.http_for(method)
        if fault is not None and not fault.executed:
            record.http_status = fault.status
            return _html_error(fault.status)
        try:
            result = self._execute(method, token, version, raw)
            body: JsonDict = {"response": result}
        except VkError as exc:
            body = exc.payload(method, raw, version)
        record.response = body
        if fault is not None:
            record.http_status = fault.status
            return _html_error(fault.status)
        return web.json_response(body)

    def _execute(self, method: str, token: str | None, version: str | None, raw: JsonDict) -> Any:
        handler = self._methods.get(method.lower())
        if not token:
            raise VkError(5, "no access_token passed.")
        if token in self.revoked_tokens:
            raise VkError(5, "invalid access_token (4).")
        if handler is None:
            raise VkError(3)
        if not version:
            raise VkError(8, "v (version) is required")
        if self.limits_enabled and not self._limiter.acquire(token, self.clock(), self.rate_limit):
            raise VkError(6)
        injected = self._faults.error_for(method)
        if injected is not None:
            raise injected
        return handler(_Call(method, token, Params(raw)))

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        stored = self.files.get(request.match_info["key"])
        if stored is None or stored.name != request.match_info["name"]:
            return web.Response(status=404, text="404 Not Found")
        return web.Response(body=stored.content, content_type=stored.content_type)

    async def _handle_unknown(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text="404 Not Found")

    def _method_table(self) -> dict[str, Callable[[_Call], Any]]:
        table: dict[str, Callable[[_Call], Any]] = {
            "groups.getById": self._groups_get_by_id,
            "groups.getLongPollServer": self._groups_get_long_poll_server,
            "groups.getCallbackConfirmationCode": self._groups_get_confirmation_code,
            "groups.getCallbackServers": self._groups_get_callback_servers,
            "groups.addCallbackServer": self._groups_add_callback_server,
            "groups.editCallbackServer": self._groups_edit_callback_server,
            "groups.deleteCallbackServer": self._groups_delete_callback_server,
            "groups.setCallbackSettings": self._groups_set_callback_settings,
            "groups.getCallbackSettings": self._groups_get_callback_settings,
            "users.get": self._users_get,
            "messages.send": self._messages_send,
            "messages.edit": self._messages_edit,
            "messages.getById": self._messages_get_by_id,
            "messages.getByConversationMessageId": self._messages_get_by_cmid,
            "messages.sendMessageEventAnswer": self._messages_send_event_answer,
            "messages.setActivity": lambda call: 1,
            "messages.markAsRead": lambda call: 1,
            "photos.getMessagesUploadServer": self._photos_get_upload_server,
            "photos.saveMessagesPhoto": self._photos_save_messages_photo,
            "docs.getMessagesUploadServer": self._docs_get_upload_server,
            "docs.save": self._docs_save,
        }
        return {name.lower(): handler for name, handler in table.items()}

    # ---- methods: groups

    def _group_json(self) -> JsonDict:
        return {
            "id": self.group_id,
            "name": self.group_name,
            "screen_name": GROUP_SCREEN_NAME,
            "is_closed": 0,
            "type": "group",
            "photo_50": "https://vk.com/images/community_50.png",
            "photo_100": "https://vk.com/images/community_100.png",
            "photo_200": "https://vk.com/images/community_200.png",
        }

    def _check_group(self, params: Params, required: bool = True) -> None:
        group_id = params.integer("group_id")
        if group_id is None:
            if required:
                raise VkError.param("group_id is undefined")
            return
        if abs(group_id) != self.group_id:
            raise VkError(15, "no access to call this method")

    def _groups_get_by_id(self, call: _Call) -> JsonDict:
        ids = call.params.words("group_ids") or call.params.words("group_id")
        for value in ids:
            if value not in (str(self.group_id), GROUP_SCREEN_NAME, f"club{self.group_id}"):
                raise VkError.param("group_ids is undefined")
        return {"groups": [self._group_json()], "profiles": []}

    def _groups_get_long_poll_server(self, call: _Call) -> JsonDict:
        self._check_group(call.params)
        return {"key": self._lp_key, "server": self.long_poll_server, "ts": str(self._lp_next_ts)}

    def _groups_get_confirmation_code(self, call: _Call) -> JsonDict:
        self._check_group(call.params)
        return {"code": self.confirmation_code}

    def _groups_get_callback_servers(self, call: _Call) -> JsonDict:
        self._check_group(call.params)
        wanted = set(call.params.ints("server_ids"))
        items = [
            s.to_json() for s in [self.callback] if s is not None and (not wanted or s.id in wanted)
        ]
        return {"count": len(items), "items": items}

    def _callback_server(self, params: Params) -> CallbackServer:
        self._check_group(params)
        server_id = params.need_int("server_id")
        if self.callback is None or self.callback.id != server_id:
            raise VkError.param("server_id is invalid")
        return self.callback

    def _groups_add_callback_server(self, call: _Call) -> JsonDict:
        params = call.params
        self._check_group(params)
        if self.callback is not None:
            raise VkError(2000)
        url = params.text("url") or ""
        if not url.startswith(("http://", "https://")):
            raise VkError.param("url is invalid")
        server = self.set_callback(
            url, params.text("secret_key") or None, events=(), title=params.text("title") or ""
        )
        return {"server_id": server.id}

    def _groups_edit_callback_server(self, call: _Call) -> int:
        params = call.params
        server = self._callback_server(params)
        url = params.text("url") or server.url
        secret = params.text("secret_key") if params.has("secret_key") else server.secret_key
        title = params.text("title") or server.title
        self.set_callback(url, secret, events=server.events, title=title)
        return 1

    def _groups_delete_callback_server(self, call: _Call) -> int:
        self._callback_server(call.params)
        self.remove_callback()
        return 1

    def _groups_set_callback_settings(self, call: _Call) -> int:
        params = call.params
        server = self._callback_server(params)
        events = set(server.events) if server.events is not None else set(_EVENT_TYPES)
        for name in _EVENT_TYPES & params.values.keys():
            if params.flag(name):
                events.add(name)
            else:
                events.discard(name)
        server.events = events
        return 1

    def _groups_get_callback_settings(self, call: _Call) -> JsonDict:
        server = self._callback_server(call.params)
        events = {name: int(server.wants(name)) for name in sorted(_EVENT_TYPES)}
        return {"api_version": API_VERSION, "events": events}

    # ---- methods: users

    def _users_get(self, call: _Call) -> list[JsonDict]:
        fields = call.params.words("fields")
        found = []
        for value in call.params.words("user_ids") or call.params.words("user_id"):
            user = self._find_user(value)
            if user is None:
                if not value.isdigit():
                    raise VkError(113)
                found.append(
                    {
                        "id": int(value),
                        "first_name": "DELETED",
                        "last_name": "",
                        "deactivated": "deleted",
                    }
                )
            else:
                found.append(user.to_json(fields))
        return found

    def _find_user(self, value: str) -> FakeUser | None:
        if value.isdigit():
            return self.users.get(int(value))
        name = value.removeprefix("id") if value.startswith("id") else None
        if name and name.isdigit():
            return self.users.get(int(name))
        return next((u for u in self.users.values() if u.screen_name == value), None)

    # ---- methods: messages

    def _messages_send(self, call: _Call) -> Any:
        params = call.params
        if not params.has("random_id"):
            raise VkError.param("random_id is a required parameter")
        random_id = params.need_int("random_id")
        peers, many = self._recipients(params)
        content = self._outgoing(params)
        results = []
        for peer in peers:
            try:
                results.append(self._send_one(call, peer, random_id, content))
            except VkError as exc:
                if not many or exc.code not in _PEER_ERRORS:
                    raise
                results.append(
                    {"peer_id": peer, "error": {"code": exc.code, "description": exc.msg}}
                )
        return results if many else results[0]["message_id"]

    def _recipients(self, params: Params) -> tuple[list[int], bool]:
        for name in ("peer_ids", "user_ids"):
            if params.has(name):
                peers = params.ints(name)
                if not 1 <= len(peers) <= 100:
                    raise VkError.param(f"{name} is invalid")
                return peers, True
        for name in ("peer_id", "user_id"):
            if params.has(name):
                return [params.need_int(name)], False
        if params.has("chat_id"):
            return [CHAT_PEER_BASE + params.need_int("chat_id")], False
        raise VkError.param(
            "you should specify peer_id, user_id, domain, chat_id or user_ids param"
        )

    def _outgoing(self, params: Params) -> JsonDict:
        """Text, attachments, keyboard and the rest of a send/edit, checked like VK does."""
        text = params.text("message") or ""
        if len(text) > TEXT_LIMIT:
            raise VkError(914)
        strings = params.words("attachment")
        if len(strings) > ATTACHMENT_LIMIT:
            raise VkError.param("too many attachments")
        objects = []
        for value in strings:
            match = _ATTACHMENT_RE.match(value)
            if match is None:
                raise VkError.param(f"attachment {value!r} is invalid")
            known = self._media.get(f"{match[1]}{match[2]}_{match[3]}")
            if known is not None:
                objects.append(copy.deepcopy(known))
        sticker_id = params.integer("sticker_id")
        if sticker_id is not None:
            objects.append(self._sticker(sticker_id))
        keyboard = _check_keyboard(params.json("keyboard", code=911))
        if not text.strip() and not strings and sticker_id is None:
            raise VkError.param("message is empty or invalid")
        return {
            "text": text,
            "attachment": params.text("attachment"),
            "attachments": strings,
            "objects": objects,
            "keyboard": keyboard,
            "sticker_id": sticker_id,
            "reply_to": params.integer("reply_to"),
            "payload": params.text("payload"),
        }

    def _writable(self, peer: int) -> None:
        if peer >= CHAT_PEER_BASE:
            raise VkError(917)
        if peer <= 0:
            raise VkError(932)
        user = self.users.get(peer)
        if user is None or not user.allows_messages:
            raise VkError(901)

    def _send_one(self, call: _Call, peer: int, random_id: int, content: JsonDict) -> JsonDict:
        self._writable(peer)
        if random_id and (peer, random_id) in self._random_ids:
            return dict(self._random_ids[(peer, random_id)])
        message = self._store_message(
            peer_id=peer,
            from_id=-self.group_id,
            text=content["text"],
            attachments=content["objects"],
            random_id=random_id,
        )
        if content["keyboard"] is not None:
            message["keyboard"] = {**content["keyboard"], "author_id": -self.group_id}
        if content["payload"]:
            message["payload"] = content["payload"]
        self._record(call.method, message, content)
        item = {
            "peer_id": peer,
            "message_id": message["id"],
            "conversation_message_id": message["conversation_message_id"],
        }
        if random_id:
            self._random_ids[(peer, random_id)] = item
        return dict(item)

    def _record(self, method: str, message: JsonDict, content: JsonDict) -> None:
        self.sent.append(
            SentMessage(
                method=method,
                peer_id=message["peer_id"],
                message_id=message["id"],
                conversation_message_id=message["conversation_message_id"],
                random_id=message["random_id"],
                date=message["date"],
                text=content["text"],
                attachment=content["attachment"],
                attachments=list(content["attachments"]),
                keyboard=content["keyboard"],
                sticker_id=content["sticker_id"],
                reply_to=content["reply_to"],
                payload=content["payload"],
                message=copy.deepcopy(message),
            )
        )

    def _find_message(self, params: Params) -> JsonDict:
        peer = params.need_int("peer_id")
        if params.has("conversation_message_id"):
            message_id = self._cmids.get((peer, params.need_int("conversation_message_id")))
        else:
            message_id = params.need_int("message_id")
        message = self.messages.get(message_id) if message_id is not None else None
        if message is None or message["peer_id"] != peer:
            raise VkError.param("message_id is undefined")
        return message

    def _messages_edit(self, call: _Call) -> int:
        params = call.params
        message = self._find_message(params)
        if message["from_id"] != -self.group_id:
            raise VkError(15, "you can edit only community messages")
        if self._now() - message["date"] > EDIT_WINDOW_S:
            raise VkError(909)
        content = self._outgoing(params)
        message.update(
            text=content["text"],
            attachments=content["objects"],
            update_time=self._now(),
            version=next(self._versions),
        )
        message.pop("keyboard", None)
        if content["keyboard"] is not None:
            message["keyboard"] = {**content["keyboard"], "author_id": -self.group_id}
        self._record(call.method, message, content)
        return 1

    def _messages_get_by_id(self, call: _Call) -> JsonDict:
        ids = call.params.ints("message_ids")
        items = [copy.deepcopy(self.messages[i]) for i in ids if i in self.messages]
        return {"count": len(items), "items": items}

    def _messages_get_by_cmid(self, call: _Call) -> JsonDict:
        peer = call.params.need_int("peer_id")
        items = []
        for cmid in call.params.ints("conversation_message_ids"):
            message_id = self._cmids.get((peer, cmid))
            if message_id is not None:
                items.append(copy.deepcopy(self.messages[message_id]))
        return {"count": len(items), "items": items}

    def _messages_send_event_answer(self, call: _Call) -> int:
        params = call.params
        event_id = params.text("event_id") or ""
        user_id, peer_id = params.need_int("user_id"), params.need_int("peer_id")
        if self._events.get(event_id) != (user_id, peer_id):
            raise VkError.param("event_id is invalid")
        data = params.json("event_data")
        if data is not None:
            kind = data.get("type") if isinstance(data, dict) else None
            if kind not in ("show_snackbar", "open_link", "open_app"):
                raise VkError.param("event_data is invalid")
            if kind == "show_snackbar" and not 1 <= len(data.get("text") or "") <= SNACKBAR_LIMIT:
                raise VkError.param("event_data.text is invalid")
        self.event_answers.append(EventAnswer(event_id, user_id, peer_id, data))
        return 1

    # ---- methods: uploads

    def _upload_url(self, kind: str, **query: Any) -> str:
        pairs = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{self.url}/upload/{kind}?{pairs}"

    def _photos_get_upload_server(self, call: _Call) -> JsonDict:
        self._check_group(call.params, required=False)
        return {
            "album_id": -3,
            "upload_url": self._upload_url("photo", server=self.group_id % 1000),
            "user_id": 0,
            "group_id": self.group_id,
        }

    def _photos_save_messages_photo(self, call: _Call) -> list[JsonDict]:
        params = call.params
        try:
            described = json.loads(params.text("photo") or "[]")
        except ValueError:
            described = []
        token = described[0].get("photo") if described and isinstance(described[0], dict) else None
        upload = self._uploads.get(token or "")
        if upload is None or upload["kind"] != "photo":
            raise VkError.param("photo is undefined")
        if params.integer("server") != upload["server"]:
            raise VkError(118)
        if params.text("hash") != upload["hash"]:
            raise VkError(121)
        if "saved" not in upload:
            upload["saved"] = self._new_photo(-self.group_id, upload["content"], upload["name"])
        return [copy.deepcopy(upload["saved"]["photo"])]

    def _docs_get_upload_server(self, call: _Call) -> JsonDict:
        kind = call.params.text("type") or "doc"
        if kind not in ("doc", "audio_message", "graffiti"):
            raise VkError.param("type is invalid")
        return {"upload_url": self._upload_url("doc", type=kind)}

    def _docs_save(self, call: _Call) -> JsonDict:
        params = call.params
        upload = self._uploads.get(params.text("file") or "")
        if upload is None or upload["kind"] != "doc":
            raise VkError.param("file is invalid")
        if "saved" not in upload:
            owner = -self.group_id
            if upload["type"] == "audio_message":
                upload["saved"] = self._new_voice(owner, upload["content"], 3)
            else:
                title = params.text("title") or upload["name"]
                upload["saved"] = self._new_doc(owner, upload["content"], title)
        return copy.deepcopy(upload["saved"])

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        fault = self._faults.http_for("upload")
        if fault is not None:
            return _html_error(fault.status)
        _, files = await self._read_params(request)
        field_name = "photo" if kind == "photo" else "file"
        part = files.get(field_name) or (files.get("file") if kind == "photo" else None)
        if part is None:
            if kind == "photo":
                return web.json_response({"server": 0, "photo": "[]", "hash": ""})
            return web.json_response({"error": "no file"})
        content = part.file.read()
        token = _hex_id("upload", next(self._file_ids), length=32)
        upload: JsonDict = {"kind": kind, "content": content, "name": part.filename or "file"}
        self._uploads[token] = upload
        if kind == "photo":
            upload["server"] = int(request.query.get("server", "0"))
            upload["hash"] = _hex_id("hash", token, length=32)
            described = [{"photo": token, "sizes": [], "kid": _hex_id("kid", token, length=32)}]
            return web.json_response(
                {"server": upload["server"], "photo": json.dumps(described), "hash": upload["hash"]}
            )
        upload["type"] = request.query.get("type", "doc")
        return web.json_response({"file": token})

    # ---- media objects

    def _store_file(self, content: bytes, name: str) -> StoredFile:
        key = _hex_id("file", next(self._file_ids), length=16)
        content_type = _MIME.get(_ext(name), "application/octet-stream")
        stored = StoredFile(key, content, name, content_type)
        self.files[key] = stored
        return stored

    def _file_url(self, stored: StoredFile, size: str | None = None) -> str:
        return f"{self.url}{stored.path}" + (f"?size={size}" if size else "")

    def _remember(self, kind: str, obj: JsonDict) -> JsonDict:
        attachment = {"type": kind, kind: obj}
        self._media[f"{kind}{obj['owner_id']}_{obj['id']}"] = attachment
        return attachment

    def _new_photo(self, owner_id: int, content: bytes, name: str) -> JsonDict:
        stored = self._store_file(content, name)
        width, height = _image_size(content)
        sizes = []
        for letter, limit in _PHOTO_SIZES:
            scale = min(1.0, limit / max(width, height))
            sizes.append(
                {
                    "type": letter,
                    "width": max(1, round(width * scale)),
                    "height": max(1, round(height * scale)),
                    "url": self._file_url(stored, letter),
                }
            )
        media_id = next(self._media_ids)
        photo = {
            "album_id": -3,
            "date": self._now(),
            "id": media_id,
            "owner_id": owner_id,
            "access_key": _hex_id("photo", media_id, length=18),
            "sizes": sizes,
            "orig_photo": {
                "type": "base",
                "width": width,
                "height": height,
                "url": self._file_url(stored),
            },
            "text": "",
            "has_tags": False,
        }
        return self._remember("photo", photo)

    def _new_doc(self, owner_id: int, content: bytes, title: str) -> JsonDict:
        stored = self._store_file(content, title)
        media_id = next(self._media_ids)
        ext = _ext(title)
        doc = {
            "id": media_id,
            "owner_id": owner_id,
            "title": title,
            "size": len(content),
            "ext": ext,
            "date": self._now(),
            "type": _DOC_TYPES.get(ext, 8),
            "url": self._file_url(stored),
            "access_key": _hex_id("doc", media_id, length=18),
        }
        return self._remember("doc", doc)

    def _new_voice(self, owner_id: int, content: bytes, duration: int) -> JsonDict:
        ogg = self._store_file(content, "voice.ogg")
        mp3 = self._store_file(content, "voice.mp3")
        media_id = next(self._media_ids)
        voice = {
            "id": media_id,
            "owner_id": owner_id,
            "duration": duration,
            "waveform": [0, 5, 12, 20, 12, 5, 0] * 4,
            "link_ogg": self._file_url(ogg),
            "link_mp3": self._file_url(mp3),
            "access_key": _hex_id("voice", media_id, length=18),
        }
        return self._remember("audio_message", voice)

    def _sticker(self, sticker_id: int) -> JsonDict:
        stored = self._store_file(TINY_PNG, f"sticker{sticker_id}.png")
        images = [
            {"url": self._file_url(stored, str(side)), "width": side, "height": side}
            for side in (64, 128, 256, 352, 512)
        ]
        sticker = {
            "product_id": 1,
            "sticker_id": sticker_id,
            "images": images,
            "images_with_background": copy.deepcopy(images),
            "inner_type": "base_sticker_new",
            "is_allowed": True,
        }
        return {"type": "sticker", "sticker": sticker}

    # ---- messages

    def _now(self) -> int:
        return int(self.wall_clock())

    def _user(self, user_id: int) -> FakeUser:
        return self.users.get(user_id) or self.add_user(user_id, "User", str(user_id))

    def _store_message(
        self,
        *,
        peer_id: int,
        from_id: int,
        text: str,
        attachments: list[JsonDict],
        random_id: int,
    ) -> JsonDict:
        self._peer_counters[peer_id] += 1
        cmid = self._peer_counters[peer_id]
        message: JsonDict = {
            "date": self._now(),
            "from_id": from_id,
            "id": next(self._message_ids),
            "version": next(self._versions),
            "out": int(from_id == -self.group_id),
            "important": False,
            "is_hidden": False,
            "attachments": attachments,
            "conversation_message_id": cmid,
            "fwd_messages": [],
            "text": text,
            "peer_id": peer_id,
            "random_id": random_id,
        }
        self.messages[message["id"]] = message
        self._cmids[(peer_id, cmid)] = message["id"]
        return message


def _check_keyboard(keyboard: Any) -> JsonDict | None:
    """VK's keyboard rules: rows of buttons with known actions; inline ones at most 10 buttons."""
    if keyboard is None:
        return None
    if not isinstance(keyboard, dict) or not isinstance(keyboard.get("buttons"), list):
        raise VkError(911, "buttons is required")
    rows = keyboard["buttons"]
    inline = bool(keyboard.get("inline"))
    max_rows, max_buttons = (6, 10) if inline else (10, 40)
    if len(rows) > max_rows:
        raise VkError(911, f"keyboard.buttons should be at most {max_rows} rows")
    total = 0
    for row in rows:
        if not isinstance(row, list) or len(row) > 5:
            raise VkError(911, "a row should be an array of at most 5 buttons")
        for button in row:
            total += 1
            action = button.get("action") if isinstance(button, dict) else None
            if not isinstance(action, dict) or action.get("type") not in _BUTTON_TYPES:
                raise VkError(911, "button.action.type is invalid")
            payload = action.get("payload")
            if payload is not None:
                size = len(payload if isinstance(payload, str) else json.dumps(payload))
                if size > PAYLOAD_LIMIT:
                    raise VkError(911, "button.action.payload is too long")
            if action["type"] in ("text", "callback") and not action.get("label"):
                raise VkError(911, "button.action.label is required")
    if total > max_buttons:
        raise VkError(911, f"keyboard should have at most {max_buttons} buttons")
    return keyboard


def _html_error(status: int) -> web.Response:
    reason = _STATUS_TEXT.get(status, "Error")
    page = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=page, content_type="text/html")
