"""A fake Telegram Bot API for tests: an aiohttp server that answers like api.telegram.org.

Point aiogram at it::

    async with FakeTelegram() as fake:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=fake.api_server))

It speaks the real HTTP protocol: ``POST|GET {url}/bot{token}/{method}`` with form, multipart or
JSON bodies (nested objects such as ``reply_markup`` as JSON strings, uploads as
``photo=attach://<name>`` plus a part of that name) and ``GET {url}/file/bot{token}/{file_path}``
for downloads. Answers are ``{"ok": true, "result": ...}`` or Telegram's error objects with the
descriptions of the real Bot API server (tdlib/telegram-bot-api), so aiogram raises the same
exceptions it raises against Telegram. Everything stays inspectable: ``requests``, ``sent``,
``chats`` with their current messages, the update queue, webhook attempts.

Choices where Telegram is vague, so tests can rely on them:

* One bot world: every token ``<digits>:<text>`` is accepted (``revoke_token`` makes one answer
  401); chats, files and the update queue are shared, and the bot's identity (``getMe``, the
  ``from`` of its messages) follows the token of the latest request.
* Flood limits: a private chat has a token bucket (1 message/s, bursts of 3); a group has a
  sliding 60 s window of 20 messages shared by all its topics; the bot has a sliding 1 s window
  of 30 messages. An album counts as one message. Edits cost ``Limits.edit_weight`` (1/3 by
  default, 0 exempts them). Deletes, callback answers, topic management, pins, chat actions and
  reads are free; rejected calls cost nothing. Time comes from ``fake.clock``.
* ``parse_mode=HTML`` is parsed like Telegram does (tags, entities, errors with byte offsets);
  Markdown modes are accepted unparsed. Length limits apply to the parsed text.
* A closed forum topic refuses the bot's messages with ``TOPIC_CLOSED`` unless the bot created
  the topic or may manage topics, as on Telegram (admins and creators still write there).
* ``timeout_next`` runs the call and then holds the answer back: Telegram did send the message,
  the client never saw the answer (the case that makes retries send duplicates).
  ``arrive_late_next`` holds the call back before it runs: it reaches Telegram late (a slow
  network) and counts against the limits only then.
* Webhook updates are posted one at a time in queue order; a failed delivery is retried after a
  doubling delay (``webhook_retry_delay`` up to ``webhook_retry_max_delay``, seconds to a minute
  on Telegram) or the webhook's ``Retry-After``, and holds back later updates meanwhile.
* Errors of the fake's own test helpers (unknown chat in ``group_message`` and so on) are
  ``ValueError``; only API calls answer with Telegram errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import inspect
import itertools
import json
import math
import mimetypes
import random
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

JsonDict = dict[str, Any]
T = TypeVar("T")

DEFAULT_TOKEN = "123456789:AAFakeTelegramTestToken"  # noqa: S105 (the fake's own token)
BOT_USERNAME = "desk_test_bot"
BOT_FIRST_NAME = "Desk Test Bot"
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64
ALBUM_LIMIT = 10
UPLOAD_LIMIT = 50 * 1024 * 1024
DOWNLOAD_LIMIT = 20 * 1024 * 1024
LONG_POLL_MAX_TIMEOUT = 50
GENERAL_TOPIC_ID = 1
TOPIC_COLORS = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)

WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
OTHER_GET_UPDATES = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
SET_WEBHOOK_ABORT = "Conflict: terminated by setWebhook request"
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
BAD_FILE = "wrong file identifier/HTTP URL specified"
BLOCKED = "Forbidden: bot was blocked by the user"

_TOKEN_RE = re.compile(r"^(\d+):(\S+)$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]*$")
_COMMAND_RE = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_HTML_ENTITY_RE = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z]+);")
_TAG_NAME_RE = re.compile(r"[^\s>]*")
_ATTR_NAME_RE = re.compile(r"[^\s=>]+")
_NAME_TOKEN_RE = re.compile(r"[A-Za-z0-9.\-]*")

_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_ENTITIES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "reply_parameters",
        "media",
        "entities",
        "caption_entities",
        "allowed_updates",
        "link_preview_options",
        "commands",
        "scope",
    }
)
_SEND_METHODS = frozenset(
    {
        "sendmessage",
        "sendphoto",
        "senddocument",
        "sendvoice",
        "sendvideo",
        "sendsticker",
        "sendlocation",
        "sendmediagroup",
        "copymessage",
        "forwardmessage",
    }
)
_WEBHOOK_REPLY_FORBIDDEN = frozenset({"setwebhook", "deletewebhook", "close", "logout"})
_OFF_BY_DEFAULT_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_MEDIA_KINDS = ("photo", "document", "voice", "video", "sticker")
_CONTENT_KEYS = frozenset(
    {"text", "entities", "caption", "caption_entities", "location", "contact", *_MEDIA_KINDS}
)
_BUTTON_ACTIONS = frozenset(
    {
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    }
)
_FILE_FOLDERS = {
    "photo": ("photos", ".jpg"),
    "document": ("documents", ""),
    "voice": ("voice", ".oga"),
    "video": ("videos", ".mp4"),
    "sticker": ("stickers", ".webp"),
}
_STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_EPS = 1e-9


class ApiError(Exception):
    """An error answer of the Bot API: HTTP status, description, optional retry_after."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    @classmethod
    def bad(cls, reason: str) -> ApiError:
        """A 400 "Bad Request: <reason>"."""
        return cls(400, f"Bad Request: {reason}")

    @classmethod
    def too_many(cls, retry_after: int) -> ApiError:
        """A 429 flood-control answer."""
        return cls(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    def payload(self) -> JsonDict:
        """The JSON body Telegram answers with."""
        body: JsonDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


# --------------------------------------------------------------------------- text and entities


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: the unit of Telegram's entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _decode_html_entity(body: str) -> str | None:
    if not body.startswith("#"):
        return _NAMED_ENTITIES.get(body)
    code = int(body[2:], 16) if body[1:2] in ("x", "X") else int(body[1:])
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def _decode_html_entities(text: str) -> str:
    return _HTML_ENTITY_RE.sub(lambda m: _decode_html_entity(m.group(1)) or m.group(0), text)


@dataclass
class _OpenTag:
    name: str
    attrs: dict[str, str]
    start: int
    language: str | None = None


class _HtmlParser:
    """Telegram's HTML subset into plain text and entities, failing where Telegram fails."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0
        self.out: list[str] = []
        self.offset = 0
        self.stack: list[_OpenTag] = []
        self.entities: list[JsonDict] = []

    def parse(self) -> tuple[str, list[JsonDict]]:
        while self.pos < len(self.src):
            char = self.src[self.pos]
            if char == "&" and self._entity():
                continue
            if char != "<":
                self._emit(char)
                self.pos += 1
            elif self.src.startswith("</", self.pos):
                self._end_tag()
            else:
                self._start_tag()
        if self.stack:
            self._fail(f'Can\'t find end tag corresponding to start tag "{self.stack[-1].name}"')
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.out), self.entities

    def _fail(self, reason: str) -> None:
        raise ApiError.bad(f"can't parse entities: {reason}")

    def _byte(self, index: int) -> int:
        return len(self.src[:index].encode())

    def _emit(self, char: str) -> None:
        self.out.append(char)
        self.offset += 2 if ord(char) > 0xFFFF else 1

    def _skip_spaces(self, index: int) -> int:
        while index < len(self.src) and self.src[index].isspace():
            index += 1
        return index

    def _entity(self) -> bool:
        match = _HTML_ENTITY_RE.match(self.src, self.pos)
        decoded = _decode_html_entity(match.group(1)) if match else None
        if match is None or decoded is None:
            return False
        self._emit(decoded)
        self.pos = match.end()
        return True

    def _start_tag(self) -> None:
        begin = self.pos
        name_end = _TAG_NAME_RE.match(self.src, begin + 1)
        assert name_end is not None
        if name_end.end() >= len(self.src):
            self._fail(f"Unclosed start tag at byte offset {self._byte(begin)}")
        name = name_end.group().lower()
        if name not in _TAG_ENTITIES:
            self._fail(f'Unsupported start tag "{name}" at byte offset {self._byte(begin)}')
        attrs = self._attributes(name_end.end(), name, begin)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            self._fail(
                f'Tag "span" must have class "tg-spoiler" at byte offset {self._byte(begin)}'
            )
        self.stack.append(_OpenTag(name, attrs, self.offset))

    def _attributes(self, index: int, tag: str, begin: int) -> dict[str, str]:
        attrs: dict[str, str] = {}
        while True:
            index = self._skip_spaces(index)
            if index >= len(self.src):
                self._fail(f"Unclosed start tag at byte offset {self._byte(begin)}")
            if self.src[index] == ">":
                self.pos = index + 1
                return attrs
            name_match = _ATTR_NAME_RE.match(self.src, index)
            if name_match is None:
                self._fail(
                    f'Empty attribute name in the tag "{tag}" at byte offset {self._byte(begin)}'
                )
            assert name_match is not None
            name = name_match.group().lower()
            index = self._skip_spaces(name_match.end())
            if index < len(self.src) and self.src[index] != "=":
                if tag == "blockquote" and name == "expandable":
                    attrs[name] = ""
                    continue
                self._fail(
                    f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                    f"at byte offset {self._byte(begin)}"
                )
            index = self._skip_spaces(index + 1)
            if index >= len(self.src):
                self._fail(f"Unclosed start tag at byte offset {self._byte(begin)}")
            attrs[name], index = self._attribute_value(index, begin)

    def _attribute_value(self, index: int, begin: int) -> tuple[str, int]:
        quote = self.src[index]
        if quote in "\"'":
            end = self.src.find(quote, index + 1)
            if end < 0:
                self._fail(f"Unclosed start tag at byte offset {self._byte(begin)}")
            return _decode_html_entities(self.src[index + 1 : end]), end + 1
        token = _NAME_TOKEN_RE.match(self.src, index)
        assert token is not None
        end = token.end()
        if end < len(self.src) and not self.src[end].isspace() and self.src[end] != ">":
            self._fail(f"Unexpected end of name token at byte offset {self._byte(index)}")
        return token.group().lower(), end

    def _end_tag(self) -> None:
        begin = self.pos
        if not self.stack:
            self._fail(f"Unexpected end tag at byte offset {self._byte(begin)}")
        name_match = _TAG_NAME_RE.match(self.src, begin + 2)
        assert name_match is not None
        end = self._skip_spaces(name_match.end())
        if end >= len(self.src) or self.src[end] != ">":
            self._fail(f"Unclosed end tag at byte offset {self._byte(begin)}")
        tag = self.stack.pop()
        found = name_match.group()
        if found and found.lower() != tag.name:
            self._fail(
                f'Unmatched end tag at byte offset {self._byte(begin)}, expected "</{tag.name}>", '
                f'found "</{found}>"'
            )
        self.pos = end + 1
        self._close(tag)

    def _close(self, tag: _OpenTag) -> None:
        length = self.offset - tag.start
        if tag.name == "code" and self.stack and self.stack[-1].name == "pre":
            language = tag.attrs.get("class", "")
            if language.startswith("language-"):
                self.stack[-1].language = language.removeprefix("language-")
            return
        if length == 0 or (tag.name == "a" and not tag.attrs.get("href")):
            return
        entity: JsonDict = {"type": _TAG_ENTITIES[tag.name], "offset": tag.start, "length": length}
        if tag.name == "a":
            entity["url"] = tag.attrs["href"]
        elif tag.name == "pre" and tag.language:
            entity["language"] = tag.language
        elif tag.name == "blockquote" and "expandable" in tag.attrs:
            entity["type"] = "expandable_blockquote"
        elif tag.name == "tg-emoji":
            entity["custom_emoji_id"] = tag.attrs.get("emoji-id", "")
        self.entities.append(entity)


def parse_html(text: str) -> tuple[str, list[JsonDict]]:
    """Plain text and entities of an HTML-formatted text; ApiError 400 where Telegram refuses."""
    return _HtmlParser(text).parse()


def command_entities(text: str) -> list[JsonDict]:
    """The bot_command entities Telegram detects in a user's text."""
    return [
        {"type": "bot_command", "offset": utf16_len(text[: m.start()]), "length": utf16_len(m[0])}
        for m in _COMMAND_RE.finditer(text)
    ]


def _render(raw: str, parse_mode: str | None, entities: Any) -> tuple[str, list[JsonDict]]:
    mode = (parse_mode or "").lower()
    if mode == "html":
        return parse_html(raw)
    if mode in ("", "markdown", "markdownv2"):
        return raw, list(entities or [])
    raise ApiError.bad(f"unsupported parse_mode {parse_mode!r}")


def _formatted(key: str, text: str, entities_key: str, entities: list[JsonDict]) -> JsonDict:
    return {key: text, entities_key: entities} if entities else {key: text}


def _without_reply(message: JsonDict) -> JsonDict:
    return {k: v for k, v in message.items() if k != "reply_to_message"}


def _media_of(message: JsonDict) -> tuple[str | None, str | None]:
    for kind in _MEDIA_KINDS:
        if kind in message:
            media = message[kind]
            return kind, (media[-1] if isinstance(media, list) else media)["file_id"]
    if "location" in message:
        return "location", None
    return None, None


def _same_content(a: JsonDict, b: JsonDict) -> bool:
    return {k: v for k, v in a.items() if k != "edit_date"} == {
        k: v for k, v in b.items() if k != "edit_date"
    }


# --------------------------------------------------------------------------- flood limits


@dataclass
class Limits:
    """Telegram's flood limits as the fake enforces them (defaults: the Bot FAQ's numbers)."""

    private_per_second: float = 1.0
    private_burst: float = 3.0
    group_messages: float = 20.0
    group_window_s: float = 60.0
    bot_per_second: float = 30.0
    edit_weight: float = 1 / 3


class _SlidingWindow:
    """At most `capacity` weight within any `period` seconds."""

    def __init__(self, capacity: float, period: float) -> None:
        self.capacity = capacity
        self.period = period
        self._events: deque[tuple[float, float]] = deque()

    def wait(self, now: float, weight: float) -> float:
        while self._events and self._events[0][0] + self.period <= now:
            self._events.popleft()
        excess = sum(w for _, w in self._events) + weight - self.capacity
        if excess <= _EPS:
            return 0.0
        for at, w in self._events:
            excess -= w
            if excess <= _EPS:
                return at + self.period - now
        return self.period

    def spend(self, now: float, weight: float) -> None:
        self._events.append((now, weight))


class _TokenBucket:
    """`rate` per second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at: float | None = None

    def _refill(self, now: float) -> None:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait(self, now: float, weight: float) -> float:
        self._refill(now)
        missing = weight - self._tokens
        return 0.0 if missing <= _EPS else missing / self.rate

    def spend(self, now: float, weight: float) -> None:
        self._refill(now)
        self._tokens -= weight


class RateLimiter:
    """Per-chat and per-bot budgets; a call over any of them is refused with its retry_after."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._bot = _SlidingWindow(limits.bot_per_second, 1.0)
        self._chats: dict[int, _SlidingWindow | _TokenBucket] = {}

    def acquire(self, now: float, chat_id: int, private: bool, weight: float) -> None:
        """Spend `weight` in the chat's and the bot's budget, or raise a 429 ApiError."""
        if weight <= 0:
            return
        budgets = (self._bot, self._chat_budget(chat_id, private))
        wait = max(budget.wait(now, weight) for budget in budgets)
        if wait > 0:
            raise ApiError.too_many(max(1, math.ceil(wait - _EPS)))
        for budget in budgets:
            budget.spend(now, weight)

    def _chat_budget(self, chat_id: int, private: bool) -> _SlidingWindow | _TokenBucket:
        if chat_id not in self._chats:
            limits = self.limits
            self._chats[chat_id] = (
                _TokenBucket(limits.private_per_second, limits.private_burst)
                if private
                else _SlidingWindow(limits.group_messages, limits.group_window_s)
            )
        return self._chats[chat_id]


# --------------------------------------------------------------------------- injected faults


@dataclass(frozen=True)
class _Failure:
    status: int
    description: str
    retry_after: int | None

    def error(self) -> ApiError:
        return ApiError(self.status, self.description, self.retry_after)


def _pop_for(queues: Mapping[str, deque[T]], method: str) -> T | None:
    for key in (method, "*"):
        queue = queues.get(key)
        if queue:
            return queue.popleft()
    return None


class FaultPlan:
    """Failures and slow answers queued by tests, per method (case-insensitive, "*" = any)."""

    def __init__(self) -> None:
        self._failures: defaultdict[str, deque[_Failure]] = defaultdict(deque)
        self._delays: defaultdict[str, deque[float]] = defaultdict(deque)
        self._transit: defaultdict[str, deque[float]] = defaultdict(deque)
        self._rate = 0.0
        self._rng = random.Random(0)

    def fail(self, method: str, failure: _Failure, count: int) -> None:
        self._failures[method.lower()].extend([failure] * count)

    def delay(self, method: str, seconds: float, count: int) -> None:
        self._delays[method.lower()].extend([seconds] * count)

    def transit(self, method: str, seconds: float, count: int) -> None:
        self._transit[method.lower()].extend([seconds] * count)

    def set_rate(self, share: float, seed: int) -> None:
        self._rate = share
        self._rng = random.Random(seed)

    def error_for(self, method: str) -> ApiError | None:
        """The injected error for this call of `method`, if any (consumes it)."""
        failure = _pop_for(self._failures, method.lower())
        if failure is not None:
            return failure.error()
        if self._rate and method.lower() in _SEND_METHODS and self._rng.random() < self._rate:
            status = self._rng.choice((500, 502))
            return ApiError(status, _STATUS_TEXT[status])
        return None

    def delay_for(self, method: str) -> float:
        """Seconds to hold this call's answer back (consumes the entry)."""
        return _pop_for(self._delays, method.lower()) or 0.0

    def transit_for(self, method: str) -> float:
        """Seconds this call takes to reach Telegram (consumes the entry)."""
        return _pop_for(self._transit, method.lower()) or 0.0


# --------------------------------------------------------------------------- world state


@dataclass
class FakeUser:
    """A Telegram user (or the bot itself)."""

    id: int
    first_name: str
    is_bot: bool = False
    username: str | None = None
    last_name: str | None = None
    language_code: str | None = None

    def to_json(self) -> JsonDict:
        data: JsonDict = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if (value := getattr(self, key)) is not None:
                data[key] = value
        return data


@dataclass
class FakeTopic:
    """A forum topic; its id is the id of its forum_topic_created service message."""

    message_thread_id: int
    name: str
    icon_color: int
    icon_custom_emoji_id: str | None = None
    closed: bool = False
    creator_id: int = 0

    def to_json(self) -> JsonDict:
        data: JsonDict = {
            "message_thread_id": self.message_thread_id,
            "name": self.name,
            "icon_color": self.icon_color,
        }
        if self.icon_custom_emoji_id:
            data["icon_custom_emoji_id"] = self.icon_custom_emoji_id
        return data


@dataclass
class FakeChat:
    """A private chat or a supergroup, with its messages as they currently are."""

    id: int
    type: str
    title: str | None = None
    user: FakeUser | None = None
    username: str | None = None
    is_forum: bool = False
    members: set[int] = field(default_factory=set)
    bot_is_admin: bool = True
    bot_can_manage_topics: bool = True
    topics: dict[int, FakeTopic] = field(default_factory=dict)
    messages: dict[int, JsonDict] = field(default_factory=dict)
    pinned: list[int] = field(default_factory=list)
    next_message_id: int = 1

    @property
    def is_private(self) -> bool:
        return self.type == "private"

    def take_message_id(self) -> int:
        """The next message id of this chat (Telegram counts per chat)."""
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id

    def to_json(self) -> JsonDict:
        if self.user is not None:
            data = self.user.to_json()
            data.pop("is_bot")
            data.pop("language_code", None)
            return {
                "id": self.id,
                "type": self.type,
                **{k: v for k, v in data.items() if k != "id"},
            }
        data = {"id": self.id, "type": self.type, "title": self.title}
        if self.username:
            data["username"] = self.username
        if self.is_forum:
            data["is_forum"] = True
        return data


@dataclass
class FakeFile:
    """A stored file: downloadable at `file_path` after getFile."""

    file_id: str
    file_unique_id: str
    content: bytes
    kind: str
    file_path: str
    file_name: str | None = None
    mime_type: str | None = None
    duration: int = 1

    def to_json(self) -> JsonDict:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.content),
        }


@dataclass(frozen=True)
class Upload:
    """A multipart file part of a request."""

    filename: str | None
    content_type: str | None
    data: bytes


class FileStore:
    """Files by id and by download path, and their Telegram JSON shapes."""

    def __init__(self) -> None:
        self._by_id: dict[str, FakeFile] = {}
        self._by_path: dict[str, FakeFile] = {}
        self._numbers = itertools.count(1)
        self._fresh_ids = itertools.count(1)

    def add(
        self,
        file_id: str,
        content: bytes,
        kind: str = "document",
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
    ) -> FakeFile:
        """Register a file under a given id."""
        number = next(self._numbers)
        folder, ext = _FILE_FOLDERS.get(kind, ("documents", ""))
        if file_name and not ext:
            ext = "." + file_name.rsplit(".", 1)[-1] if "." in file_name else ""
        file = FakeFile(
            file_id=file_id,
            file_unique_id=f"AgAD{number:08d}",
            content=content,
            kind=kind,
            file_path=f"{folder}/file_{number}{ext}",
            file_name=file_name,
            mime_type=mime_type or (mimetypes.guess_type(file_name)[0] if file_name else None),
        )
        self._by_id[file_id] = file
        self._by_path[file.file_path] = file
        return file

    def new(self, kind: str, content: bytes, **details: Any) -> FakeFile:
        """Register a file under a fresh id, as Telegram does for an upload."""
        return self.add(f"fake-{kind}-{next(self._fresh_ids):06d}", content, kind, **details)

    def upload(self, kind: str, upload: Upload) -> FakeFile:
        mime = upload.content_type if upload.content_type != "application/octet-stream" else None
        return self.new(kind, upload.data, file_name=upload.filename, mime_type=mime)

    def get(self, file_id: str) -> FakeFile | None:
        return self._by_id.get(file_id)

    def by_path(self, path: str) -> FakeFile | None:
        return self._by_path.get(path)

    def media_json(self, file: FakeFile, kind: str) -> Any:
        """The object a Message carries for this file sent as `kind`."""
        base = file.to_json()
        if kind == "photo":
            thumb = self.get(f"{file.file_id}-s") or self.add(
                f"{file.file_id}-s", file.content, "photo"
            )
            return [
                {**thumb.to_json(), "width": 90, "height": 68},
                {**base, "width": 800, "height": 600},
            ]
        if kind == "document":
            extra = {"file_name": file.file_name, "mime_type": file.mime_type}
            return {**base, **{k: v for k, v in extra.items() if v is not None}}
        if kind == "voice":
            return {**base, "duration": file.duration, "mime_type": file.mime_type or "audio/ogg"}
        if kind == "video":
            return {
                **base,
                "width": 640,
                "height": 360,
                "duration": file.duration,
                "mime_type": "video/mp4",
            }
        if kind == "sticker":
            return {
                **base,
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            }
        raise ApiError.bad(f'unsupported media type "{kind}"')


# --------------------------------------------------------------------------- records


@dataclass
class SentMessage:
    """A message the bot sent, copied, forwarded or edited, as the fake recorded it."""

    method: str
    chat_id: int
    message_id: int
    date: int
    message_thread_id: int | None = None
    text: str | None = None
    caption: str | None = None
    parse_mode: str | None = None
    reply_markup: JsonDict | None = None
    reply_to_message_id: int | None = None
    media_type: str | None = None
    file_id: str | None = None
    media_group_id: str | None = None
    message: JsonDict = field(default_factory=dict)

    @property
    def body(self) -> str | None:
        """The text, or the caption of a media message, as the bot sent it."""
        return self.text if self.text is not None else self.caption


@dataclass
class RecordedRequest:
    """One API call: parameters as received (JSON fields decoded), files, and the answer."""

    method: str
    params: JsonDict
    files: dict[str, bytes]
    token: str
    via_webhook: bool = False
    status: int = 0
    response: JsonDict = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


@dataclass
class WebhookState:
    """The webhook set by setWebhook."""

    url: str
    token: str
    secret_token: str | None = None
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class WebhookAttempt:
    """One POST of an update to the webhook."""

    update_id: int
    url: str
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None


# --------------------------------------------------------------------------- update queue


@dataclass(eq=False)
class _Pending:
    update: JsonDict
    redelivered: bool = False
    served: bool = False


@dataclass
class _LongPoll:
    future: asyncio.Future[None]
    conflict: str | None = None


class UpdateQueue:
    """The bot's update queue: increasing ids, offset confirmation, long polling, filtering."""

    def __init__(self) -> None:
        self.history: list[JsonDict] = []
        self.allowed_updates: list[str] | None = None
        self.changed = asyncio.Event()
        self._pending: list[_Pending] = []
        self._ids = itertools.count(1)
        self._poll: _LongPoll | None = None

    def push(self, kind: str, payload: JsonDict) -> JsonDict:
        update = {"update_id": next(self._ids), kind: payload}
        self.history.append(update)
        self._pending.append(_Pending(update))
        self._wake()
        return update

    def redeliver(self, update: JsonDict) -> JsonDict:
        again = copy.deepcopy(update)
        self._pending.append(_Pending(again, redelivered=True))
        self._wake()
        return again

    @property
    def pending(self) -> list[JsonDict]:
        return [p.update for p in self._pending if self._allowed(p.update)]

    def confirm(self, offset: int) -> None:
        """Forget what `offset` confirms; a redelivered update survives until served once."""
        if offset < 0:
            self._pending = self._pending[max(0, len(self._pending) + offset) :]
        elif offset > 0:
            self._pending = [
                p
                for p in self._pending
                if p.update["update_id"] >= offset or (p.redelivered and not p.served)
            ]

    def take(self, limit: int) -> list[JsonDict]:
        self._drop_disallowed()
        batch = self._pending[:limit]
        for pending in batch:
            pending.served = True
        return [p.update for p in batch]

    def first(self) -> _Pending | None:
        self._drop_disallowed()
        return self._pending[0] if self._pending else None

    def remove(self, entry: _Pending) -> None:
        self._pending = [p for p in self._pending if p is not entry]

    def clear(self) -> None:
        self._pending.clear()

    async def wait(self, timeout: float) -> None:
        """Block until an update arrives or `timeout`; 409 if another request takes over."""
        self.abort_poll(OTHER_GET_UPDATES)
        poll = _LongPoll(asyncio.get_running_loop().create_future())
        self._poll = poll
        try:
            await asyncio.wait_for(poll.future, timeout)
        except TimeoutError:
            pass
        finally:
            if self._poll is poll:
                self._poll = None
        if poll.conflict:
            raise ApiError(409, poll.conflict)

    def abort_poll(self, conflict: str | None) -> None:
        """End the waiting getUpdates: with a 409 `conflict`, or empty when None."""
        poll = self._poll
        if poll is not None and not poll.future.done():
            poll.conflict = conflict
            poll.future.set_result(None)

    def _wake(self) -> None:
        self.changed.set()
        self.abort_poll(None)

    def _drop_disallowed(self) -> None:
        self._pending = [p for p in self._pending if self._allowed(p.update)]

    def _allowed(self, update: JsonDict) -> bool:
        kind = next(key for key in update if key != "update_id")
        if self.allowed_updates:
            return kind in self.allowed_updates
        return kind not in _OFF_BY_DEFAULT_UPDATES


# --------------------------------------------------------------------------- request parameters


def _decode_json_field(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        what = "reply keyboard markup" if name == "reply_markup" else name
        raise ApiError.bad(f"can't parse {what} JSON object") from None


class Params:
    """A call's parameters: plain fields as sent (strings on the wire), JSON objects decoded."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.values: JsonDict = {
            name: _decode_json_field(name, value) if name in _JSON_FIELDS else value
            for name, value in raw.items()
        }

    def has(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        return None if value is None else str(value)

    def obj(self, name: str) -> Any:
        return self.values.get(name)

    def need(self, name: str) -> Any:
        if not self.has(name):
            raise ApiError.bad(f"{name} is empty")
        return self.values[name]

    def integer(self, name: str) -> int | None:
        if not self.has(name):
            return None
        try:
            return int(self.values[name])
        except (TypeError, ValueError):
            raise ApiError.bad(f"invalid {name} specified") from None

    def need_int(self, name: str) -> int:
        self.need(name)
        value = self.integer(name)
        assert value is not None
        return value

    def number(self, name: str) -> float:
        try:
            return float(self.need(name))
        except (TypeError, ValueError):
            raise ApiError.bad(f"invalid {name} specified") from None

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        if isinstance(value, bool):
            return value
        return str(value).lower() in ("true", "1", "yes")


@dataclass
class _Call:
    method: str
    token: str
    params: Params
    files: dict[str, Upload]


@dataclass
class _Target:
    chat: FakeChat
    thread_id: int | None
    reply_to: JsonDict | None
    markup: JsonDict | None


Handler = Callable[[_Call], Any]


async def _read_params(request: web.Request) -> tuple[JsonDict, dict[str, Upload]]:
    params: JsonDict = dict(request.query)
    files: dict[str, Upload] = {}
    if request.method != "POST" or not request.body_exists:
        return params, files
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError.bad("can't parse JSON encoded request body")
        params.update(body)
        return params, files
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "Request Entity Too Large") from None
    for key, value in form.items():
        if isinstance(value, web.FileField):
            files[key] = Upload(value.filename, value.content_type, value.file.read())
        else:
            params[key] = value
    return params, files


async def _read_webhook_reply(
    resp: aiohttp.ClientResponse,
) -> tuple[str | None, JsonDict, dict[str, Upload]]:
    """A method call the webhook answered with (JSON or multipart), as Telegram accepts it."""
    params: JsonDict = {}
    files: dict[str, Upload] = {}
    if resp.content_type == "application/json":
        with contextlib.suppress(ValueError, aiohttp.ContentTypeError):
            body = await resp.json()
            if isinstance(body, dict):
                params = body
    elif resp.content_type.startswith("multipart/"):
        async for part in aiohttp.MultipartReader(resp.headers, resp.content):
            if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                continue
            if part.filename:
                content_type = part.headers.get(aiohttp.hdrs.CONTENT_TYPE)
                files[part.name] = Upload(part.filename, content_type, bytes(await part.read()))
            else:
                params[part.name] = await part.text()
    method = params.pop("method", None)
    return (str(method) if method else None), params, files


# --------------------------------------------------------------------------- the server


class FakeTelegram:
    """A Telegram Bot API server in this process: real HTTP, Telegram's answers and limits."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.wall_clock = wall_clock
        self.limits_enabled = True
        self.limiter = RateLimiter(limits or Limits())
        self.faults = FaultPlan()
        self.files = FileStore()
        self.updates = UpdateQueue()
        self.users: dict[int, FakeUser] = {}
        self.chats: dict[int, FakeChat] = {}
        self.blocked: set[int] = set()
        self.revoked_tokens: set[str] = set()
        self.requests: list[RecordedRequest] = []
        self.sent: list[SentMessage] = []
        self.deleted: list[tuple[int, int]] = []
        self.callback_answers: dict[str, JsonDict] = {}
        self.commands: list[JsonDict] = []
        self.webhook: WebhookState | None = None
        self.webhook_attempts: list[WebhookAttempt] = []
        self.webhook_retry_delay = 0.05
        self.webhook_retry_max_delay = 1.0
        self.webhook_timeout = 10.0
        self.bot = self._bot_user(token)
        self._callbacks: dict[str, bool] = {}
        self._callback_ids = itertools.count(4_000_000_000_000_001)
        self._album_ids = itertools.count(13_000_000_000_000_001)
        self._methods = self._method_table()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._url: str | None = None

    # ---- lifecycle

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port and start the webhook sender."""
        app = web.Application(client_max_size=UPLOAD_LIMIT + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._url = f"http://127.0.0.1:{port}"
        self._http = aiohttp.ClientSession()
        self._webhook_task = asyncio.create_task(self._webhook_loop())

    async def close(self) -> None:
        """Answer what is waiting, stop the webhook sender and the server."""
        self._closing.set()
        self.updates.abort_poll(None)
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeTelegram:
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
        """Base URL, for TelegramAPIServer.from_base."""
        if self._url is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._url

    @property
    def api_server(self) -> TelegramAPIServer:
        """aiogram's server description pointing at this fake."""
        return TelegramAPIServer.from_base(self.url)

    def make_bot(self, token: str = DEFAULT_TOKEN, **kwargs: Any) -> Bot:
        """An aiogram Bot talking to this fake (close its session when done)."""
        return Bot(token, session=AiohttpSession(api=self.api_server), **kwargs)

    @property
    def limits(self) -> Limits:
        return self.limiter.limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        self.limiter = RateLimiter(limits)

    # ---- the world

    def add_user(
        self,
        user_id: int,
        first_name: str,
        *,
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = "ru",
    ) -> FakeUser:
        """Register (or replace) a user."""
        user = FakeUser(user_id, first_name, False, username, last_name, language_code)
        self.users[user_id] = user
        return user

    def add_private_chat(
        self,
        user_id: int,
        first_name: str,
        language_code: str | None = "ru",
        username: str | None = None,
    ) -> FakeChat:
        """A user who has started the bot: their private chat exists."""
        user = self.add_user(user_id, first_name, username=username, language_code=language_code)
        chat = self.chats.get(user_id) or FakeChat(id=user_id, type="private")
        chat.user = user
        self.chats[user_id] = chat
        return chat

    def add_group(
        self,
        chat_id: int,
        title: str,
        forum: bool = True,
        members: Iterable[int] = (),
        *,
        bot_is_admin: bool = True,
        can_manage_topics: bool = True,
        username: str | None = None,
    ) -> FakeChat:
        """A supergroup (a forum by default) where the bot is an admin unless told otherwise."""
        # Message 1 of a supergroup is its creation; it is also General's id in a forum.
        chat = FakeChat(
            id=chat_id,
            type="supergroup",
            title=title,
            username=username,
            is_forum=forum,
            bot_is_admin=bot_is_admin,
            bot_can_manage_topics=can_manage_topics,
            next_message_id=GENERAL_TOPIC_ID + 1,
        )
        chat.members.update(self._user(member).id for member in members)
        self.chats[chat_id] = chat
        return chat

    def set_bot_rights(
        self, chat_id: int, *, admin: bool, can_manage_topics: bool | None = None
    ) -> None:
        """Promote or demote the bot in a group."""
        chat = self.chat(chat_id)
        chat.bot_is_admin = admin
        chat.bot_can_manage_topics = admin if can_manage_topics is None else can_manage_topics

    def add_topic(
        self,
        chat_id: int,
        name: str,
        *,
        creator_id: int | None = None,
        icon_color: int = TOPIC_COLORS[0],
    ) -> FakeTopic:
        """A topic that already exists (made by the bot, or by the user `creator_id`)."""
        chat = self.chat(chat_id)
        if not chat.is_forum:
            raise ValueError(f"chat {chat_id} is not a forum")
        creator = self.bot if creator_id is None else self._user(creator_id)
        return self._create_topic(chat, name, icon_color, None, creator)

    def add_file(
        self,
        file_id: str,
        content: bytes,
        *,
        kind: str = "document",
        file_name: str | None = None,
        mime_type: str | None = None,
    ) -> FakeFile:
        """A file known to Telegram under `file_id`: sendable by id, downloadable after getFile."""
        return self.files.add(file_id, content, kind, file_name=file_name, mime_type=mime_type)

    def chat(self, chat_id: int) -> FakeChat:
        """A known chat; ValueError otherwise."""
        if chat_id not in self.chats:
            raise ValueError(f"unknown chat {chat_id}: add it with add_private_chat/add_group")
        return self.chats[chat_id]

    def messages_in(self, chat_id: int, message_thread_id: int | None = None) -> list[JsonDict]:
        """The chat's messages as they are now (edited, minus deleted), oldest first."""
        messages = [copy.deepcopy(m) for _, m in sorted(self.chat(chat_id).messages.items())]
        if message_thread_id is None:
            return messages
        return [m for m in messages if m.get("message_thread_id") == message_thread_id]

    def trail(self, last: int = 60) -> str:
        """The last API calls, one line each (seconds since the first, method, status, what
        was asked and answered, shortened): what a failed test shows of the bot's side."""
        if not self.requests:
            return "(no requests)"
        start = self.requests[0].at
        lines = []
        for r in self.requests[-last:]:
            asked = {k: v for k, v in r.params.items() if k not in ("reply_markup", "entities")}
            answer = r.response.get("result", r.response.get("description", ""))
            if isinstance(answer, list):  # getUpdates: the update ids only
                answer = [u.get("update_id") for u in answer if isinstance(u, dict)]
            when = f"+{r.at - start:7.3f}s"
            lines.append(f"{when} {r.method} {r.status} {str(asked)[:160]} -> {str(answer)[:160]}")
        return "\n".join(lines)

    def sent_to(self, chat_id: int, message_thread_id: int | None = None) -> list[SentMessage]:
        """What the bot sent to a chat (and topic), in order."""
        return [
            s
            for s in self.sent
            if s.chat_id == chat_id
            and (message_thread_id is None or s.message_thread_id == message_thread_id)
        ]

    def calls(self, method: str) -> list[RecordedRequest]:
        """The recorded calls of one method (case-insensitive)."""
        return [r for r in self.requests if r.method.lower() == method.lower()]

    # ---- faults

    def block_user(self, user_id: int) -> None:
        """The user blocked the bot: sends to their chat answer 403."""
        self.blocked.add(user_id)

    def unblock_user(self, user_id: int) -> None:
        self.blocked.discard(user_id)

    def revoke_token(self, token: str) -> None:
        """Calls with this token answer 401 Unauthorized."""
        self.revoked_tokens.add(token)

    def fail_next(
        self,
        method: str,
        status: int = 500,
        count: int = 1,
        *,
        description: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next `count` calls of `method` ("*" = any) fail with `status`."""
        if status == 429:
            retry_after = retry_after or 1
            description = description or f"Too Many Requests: retry after {retry_after}"
        text = description or _STATUS_TEXT.get(status, "Error")
        self.faults.fail(method, _Failure(status, text, retry_after), count)

    def timeout_next(self, method: str, seconds: float, count: int = 1) -> None:
        """The next `count` calls of `method` run, but their answers come `seconds` late."""
        self.faults.delay(method, seconds, count)

    def arrive_late_next(self, method: str, seconds: float, count: int = 1) -> None:
        """The next `count` calls of `method` reach Telegram `seconds` after they were made (a
        slow network): Telegram counts them against its limits only then."""
        self.faults.transit(method, seconds, count)

    def fail_rate(self, p: float, seed: int = 0) -> None:
        """Answer a share `p` of send calls with 500/502, deterministically for a seed."""
        self.faults.set_rate(p, seed)

    # ---- incoming updates (what users do)

    def user_message(
        self,
        user_id: int,
        text: str | None = None,
        *,
        photo: bytes | str | None = None,
        document: bytes | str | None = None,
        caption: str | None = None,
        file_name: str | None = None,
        media_group_id: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> JsonDict:
        """A user writes to the bot privately; media as bytes (a new file) or a file_id."""
        chat = self._private_chat_of(user_id)
        content = self._user_content(text, photo, document, caption, file_name)
        return self._incoming(
            chat,
            self._user(user_id),
            content,
            reply_to_message_id=reply_to_message_id,
            media_group_id=media_group_id,
        )

    def group_message(
        self,
        chat_id: int,
        from_user_id: int,
        text: str | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        *,
        photo: bytes | str | None = None,
        document: bytes | str | None = None,
        caption: str | None = None,
        file_name: str | None = None,
    ) -> JsonDict:
        """A member writes in a group: in a topic if `message_thread_id`, else in General."""
        chat = self.chat(chat_id)
        user = self._user(from_user_id)
        chat.members.add(user.id)
        if message_thread_id is not None and message_thread_id not in (
            chat.topics if chat.is_forum else chat.messages
        ):
            raise ValueError(f"no thread {message_thread_id} in chat {chat_id}")
        content = self._user_content(text, photo, document, caption, file_name)
        return self._incoming(
            chat,
            user,
            content,
            thread_id=message_thread_id,
            reply_to_message_id=reply_to_message_id,
        )

    def user_edit(
        self,
        user_id: int,
        message_id: int,
        text: str | None = None,
        *,
        caption: str | None = None,
        chat_id: int | None = None,
    ) -> JsonDict:
        """The user edits one of their messages (private chat unless `chat_id`)."""
        chat = self.chat(user_id if chat_id is None else chat_id)
        message = chat.messages.get(message_id)
        if message is None or message["from"]["id"] != user_id:
            raise ValueError(f"user {user_id} has no message {message_id} in chat {chat.id}")
        if text is not None:
            message.pop("entities", None)
            message.update(_formatted("text", text, "entities", command_entities(text)))
        if caption is not None:
            message["caption"] = caption
        message["edit_date"] = self._now()
        return self.updates.push("edited_message", copy.deepcopy(message))

    def user_contact(self, user_id: int, phone: str, *, first_name: str | None = None) -> JsonDict:
        """The user shares their own contact (the request_contact button)."""
        user = self._user(user_id)
        contact = {
            "phone_number": phone,
            "first_name": first_name or user.first_name,
            "user_id": user_id,
        }
        return self._from_user(user_id, {"contact": contact})

    def user_location(self, user_id: int, latitude: float, longitude: float) -> JsonDict:
        """The user shares a location."""
        return self._from_user(
            user_id, {"location": {"latitude": latitude, "longitude": longitude}}
        )

    def user_sticker(
        self, user_id: int, *, emoji: str = "👍", file_id: str | None = None
    ) -> JsonDict:
        """The user sends a sticker."""
        file = self._user_file(file_id or b"RIFF\x00\x00\x00\x00WEBPVP8 ", "sticker")
        return self._from_user(
            user_id, {"sticker": {**self.files.media_json(file, "sticker"), "emoji": emoji}}
        )

    def user_voice(
        self, user_id: int, content: bytes = b"OggS\x00fake-voice", *, duration: int = 2
    ) -> JsonDict:
        """The user sends a voice message."""
        file = self.files.new("voice", content, mime_type="audio/ogg")
        file.duration = duration
        return self._from_user(user_id, {"voice": self.files.media_json(file, "voice")})

    def callback(self, user_id: int, chat_id: int, message_id: int, data: str) -> JsonDict:
        """The user presses an inline button with `data` under a bot message."""
        chat = self.chat(chat_id)
        message = chat.messages.get(message_id)
        if message is None:
            raise ValueError(f"no message {message_id} in chat {chat_id}")
        query_id = str(next(self._callback_ids))
        self._callbacks[query_id] = False
        query = {
            "id": query_id,
            "from": self._user(user_id).to_json(),
            "message": copy.deepcopy(message),
            "chat_instance": str(abs(chat_id) * 7 + 3),
            "data": data,
        }
        return self.updates.push("callback_query", query)

    def redeliver(self, update: JsonDict) -> JsonDict:
        """Queue the same update again: Telegram's duplicate delivery."""
        return self.updates.redeliver(update)

    def _from_user(self, user_id: int, content: JsonDict) -> JsonDict:
        return self._incoming(self._private_chat_of(user_id), self._user(user_id), content)

    def _incoming(
        self,
        chat: FakeChat,
        user: FakeUser,
        content: JsonDict,
        *,
        thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        media_group_id: str | None = None,
    ) -> JsonDict:
        reply_to = None
        if reply_to_message_id is not None:
            reply_to = chat.messages.get(reply_to_message_id)
            if reply_to is None:
                raise ValueError(f"no message {reply_to_message_id} in chat {chat.id}")
        message = self._new_message(chat, user, content, thread_id=thread_id, reply_to=reply_to)
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        return self.updates.push("message", copy.deepcopy(message))

    def _user_content(
        self,
        text: str | None,
        photo: bytes | str | None,
        document: bytes | str | None,
        caption: str | None,
        file_name: str | None,
    ) -> JsonDict:
        content: JsonDict = {}
        if text is not None:
            content.update(_formatted("text", text, "entities", command_entities(text)))
        if photo is not None:
            content["photo"] = self.files.media_json(self._user_file(photo, "photo"), "photo")
        if document is not None:
            file = self._user_file(document, "document", file_name or "document.bin")
            content["document"] = self.files.media_json(file, "document")
        if caption is not None:
            content["caption"] = caption
        if not content:
            raise ValueError("a message needs text or media")
        return content

    def _user_file(self, value: bytes | str, kind: str, file_name: str | None = None) -> FakeFile:
        if isinstance(value, bytes):
            return self.files.new(kind, value, file_name=file_name)
        return self.files.get(value) or self.files.add(value, b"", kind, file_name=file_name)

    def _private_chat_of(self, user_id: int) -> FakeChat:
        if user_id in self.chats:
            return self.chats[user_id]
        user = self._user(user_id)
        return self.add_private_chat(user_id, user.first_name, user.language_code, user.username)

    def _user(self, user_id: int) -> FakeUser:
        return self.users.get(user_id) or self.add_user(user_id, f"User {user_id}")

    def _bot_user(self, token: str) -> FakeUser:
        match = _TOKEN_RE.match(token)
        if match is None:
            raise ValueError("a bot token looks like <digits>:<text>")
        return FakeUser(int(match[1]), BOT_FIRST_NAME, is_bot=True, username=BOT_USERNAME)

    # ---- messages

    def _now(self) -> int:
        return int(self.wall_clock())

    def _new_message(
        self,
        chat: FakeChat,
        sender: FakeUser,
        content: JsonDict,
        *,
        thread_id: int | None = None,
        reply_to: JsonDict | None = None,
        markup: JsonDict | None = None,
    ) -> JsonDict:
        message: JsonDict = {
            "message_id": chat.take_message_id(),
            "from": sender.to_json(),
            "chat": chat.to_json(),
            "date": self._now(),
        }
        placement, reply_to = self._placement(chat, thread_id, reply_to)
        message.update(placement)
        message.update(content)
        if reply_to is not None:
            message["reply_to_message"] = _without_reply(reply_to)
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        chat.messages[message["message_id"]] = message
        return message

    def _placement(
        self, chat: FakeChat, thread_id: int | None, reply_to: JsonDict | None
    ) -> tuple[JsonDict, JsonDict | None]:
        """Thread fields and the (possibly implicit) reply, the way the Bot API reports them.

        A reply joins the thread of the message it answers. In a forum topic every message
        carries is_topic_message and, unless it replies to something else, replies to the
        topic's forum_topic_created message; General messages carry no thread at all. In a
        plain supergroup a reply carries the id of its thread's root, without is_topic_message.
        """
        if thread_id is None and reply_to is not None and not chat.is_private:
            thread_id = reply_to.get("message_thread_id")
            if thread_id is None and not chat.is_forum:
                thread_id = reply_to["message_id"]
        if thread_id is None or chat.is_private:
            return {}, reply_to
        fields: JsonDict = {"message_thread_id": thread_id}
        if chat.is_forum:
            fields["is_topic_message"] = True
        return fields, reply_to if reply_to is not None else chat.messages.get(thread_id)

    def _record_sent(
        self, call: _Call, chat: FakeChat, message: JsonDict, **overrides: Any
    ) -> SentMessage:
        params = call.params
        media_type, file_id = _media_of(message)
        sent = SentMessage(
            method=call.method,
            chat_id=chat.id,
            message_id=message["message_id"],
            date=message["date"],
            message_thread_id=message.get("message_thread_id"),
            text=params.text("text") if params.has("text") else message.get("text"),
            caption=params.text("caption") if params.has("caption") else message.get("caption"),
            parse_mode=params.text("parse_mode"),
            reply_markup=params.obj("reply_markup"),
            media_type=media_type,
            file_id=file_id,
            media_group_id=message.get("media_group_id"),
            message=copy.deepcopy(message),
        )
        sent = replace(sent, **overrides)
        self.sent.append(sent)
        return sent

    def _spend(self, chat: FakeChat, weight: float) -> None:
        if self.limits_enabled:
            self.limiter.acquire(self.clock(), chat.id, chat.is_private, weight)

    # ---- HTTP

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            raw, files = await _read_params(request)
        except ApiError as exc:
            return web.json_response(exc.payload(), status=exc.status)
        if transit := self.faults.transit_for(method):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), transit)
        status, body = await self._execute(request.match_info["token"], method, raw, files)
        if delay := self.faults.delay_for(method):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
        return web.json_response(body, status=status)

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if not _TOKEN_RE.match(request.match_info["token"]):
            return web.json_response(ApiError(401, "Unauthorized").payload(), status=401)
        file = self.files.by_path(request.match_info["path"])
        if file is None:
            return web.json_response(ApiError(404, "Not Found").payload(), status=404)
        return web.Response(
            body=file.content, content_type=file.mime_type or "application/octet-stream"
        )

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return web.json_response(ApiError(404, "Not Found").payload(), status=404)

    async def _execute(
        self,
        token: str,
        method: str,
        raw: JsonDict,
        files: dict[str, Upload],
        *,
        via_webhook: bool = False,
    ) -> tuple[int, JsonDict]:
        name, handler = self._methods.get(method.lower(), (method, None))
        record = RecordedRequest(
            method=name,
            params=dict(raw),
            files={key: upload.data for key, upload in files.items()},
            token=token,
            via_webhook=via_webhook,
        )
        self.requests.append(record)
        try:
            self._authorize(token)
            params = Params(raw)
            record.params = params.values
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            if injected := self.faults.error_for(name):
                raise injected
            result = handler(_Call(name, token, params, files))
            if inspect.isawaitable(result):
                result = await result
            status, body = 200, {"ok": True, "result": result}
        except ApiError as exc:
            status, body = exc.status, exc.payload()
        record.status, record.response = status, body
        return status, body

    def _authorize(self, token: str) -> None:
        if token in self.revoked_tokens or not _TOKEN_RE.match(token):
            raise ApiError(401, "Unauthorized")
        bot = self._bot_user(token)
        if bot.id != self.bot.id:
            self.bot = bot

    def _method_table(self) -> dict[str, tuple[str, Handler]]:
        handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "sendPhoto": functools.partial(self._send_media, "photo"),
            "sendDocument": functools.partial(self._send_media, "document"),
            "sendVoice": functools.partial(self._send_media, "voice"),
            "sendVideo": functools.partial(self._send_media, "video"),
            "sendSticker": functools.partial(self._send_media, "sticker"),
            "sendLocation": self._send_location,
            "sendMediaGroup": self._send_media_group,
            "copyMessage": self._copy_message,
            "forwardMessage": self._forward_message,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "createForumTopic": self._create_forum_topic,
            "editForumTopic": self._edit_forum_topic,
            "closeForumTopic": functools.partial(self._set_topic_closed, True),
            "reopenForumTopic": functools.partial(self._set_topic_closed, False),
            "pinChatMessage": self._pin_chat_message,
            "unpinChatMessage": self._unpin_chat_message,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "getFile": self._get_file,
            "sendChatAction": self._send_chat_action,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": lambda call: self.commands,
            "deleteMyCommands": self._delete_my_commands,
        }
        return {name.lower(): (name, handler) for name, handler in handlers.items()}

    # ---- methods: bot, updates, webhook

    def _get_me(self, call: _Call) -> JsonDict:
        return {
            **self.bot.to_json(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, call: _Call) -> list[JsonDict]:
        params = call.params
        if self.webhook is not None:
            raise ApiError(409, WEBHOOK_ACTIVE)
        limit = min(max(params.integer("limit") or 100, 1), 100)
        timeout = min(max(params.integer("timeout") or 0, 0), LONG_POLL_MAX_TIMEOUT)
        if params.has("allowed_updates"):
            self.updates.allowed_updates = list(params.obj("allowed_updates"))
        self.updates.confirm(params.integer("offset") or 0)
        batch = self.updates.take(limit)
        if not batch and timeout and not self._closing.is_set():
            await self.updates.wait(timeout)
            batch = self.updates.take(limit)
        return batch

    def _set_webhook(self, call: _Call) -> bool:
        params = call.params
        if params.flag("drop_pending_updates"):
            self.updates.clear()
        url = params.text("url") or ""
        if not url:
            self.webhook = None
            return True
        # Telegram demands https; the fake takes http too, for local test servers.
        if not url.startswith(("http://", "https://")):
            raise ApiError.bad("invalid webhook URL specified")
        secret = params.text("secret_token") or ""
        if len(secret) > 256:
            raise ApiError.bad("secret token is too long")
        if not _SECRET_RE.match(secret):
            raise ApiError.bad("secret token contains unallowed characters")
        if params.has("allowed_updates"):
            self.updates.allowed_updates = list(params.obj("allowed_updates"))
        self.updates.abort_poll(SET_WEBHOOK_ABORT)
        self.webhook = WebhookState(
            url=url,
            token=call.token,
            secret_token=secret or None,
            max_connections=params.integer("max_connections") or 40,
        )
        self.updates.changed.set()
        return True

    def _delete_webhook(self, call: _Call) -> bool:
        if call.params.flag("drop_pending_updates"):
            self.updates.clear()
        self.webhook = None
        return True

    def _get_webhook_info(self, call: _Call) -> JsonDict:
        info: JsonDict = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates.pending),
        }
        hook = self.webhook
        if hook is None:
            return info
        info.update(url=hook.url, max_connections=hook.max_connections)
        if self.updates.allowed_updates:
            info["allowed_updates"] = self.updates.allowed_updates
        if hook.last_error_date is not None:
            info.update(
                last_error_date=hook.last_error_date, last_error_message=hook.last_error_message
            )
        return info

    async def _webhook_loop(self) -> None:
        delay = self.webhook_retry_delay
        while True:
            self.updates.changed.clear()
            hook = self.webhook
            entry = self.updates.first() if hook is not None else None
            if hook is None or entry is None:
                await self.updates.changed.wait()
                continue
            retry_after = await self._post_update(hook, entry)
            if retry_after is None:
                delay = self.webhook_retry_delay
                continue
            await asyncio.sleep(retry_after or delay)
            delay = min(delay * 2, self.webhook_retry_max_delay)

    async def _post_update(self, hook: WebhookState, entry: _Pending) -> float | None:
        """POST one update; None when delivered, else the seconds the webhook asked to wait."""
        assert self._http is not None
        headers = {SECRET_HEADER: hook.secret_token} if hook.secret_token else {}
        attempt = WebhookAttempt(entry.update["update_id"], hook.url, headers)
        self.webhook_attempts.append(attempt)
        timeout = aiohttp.ClientTimeout(total=self.webhook_timeout)
        reply: tuple[str | None, JsonDict, dict[str, Upload]] = (None, {}, {})
        retry_after = ""
        try:
            async with self._http.post(
                hook.url, json=entry.update, headers=headers, timeout=timeout
            ) as resp:
                attempt.status = resp.status
                if 200 <= resp.status < 300:
                    reply = await _read_webhook_reply(resp)
                else:
                    attempt.error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
                    retry_after = resp.headers.get("Retry-After", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            attempt.error = f"Connection failed: {type(exc).__name__}"
        if attempt.error is not None:
            hook.last_error_date, hook.last_error_message = self._now(), attempt.error
            return float(retry_after) if retry_after.isdigit() else 0.0
        self.updates.remove(entry)
        await self._run_webhook_reply(hook, *reply)
        return None

    async def _run_webhook_reply(
        self, hook: WebhookState, method: str | None, params: JsonDict, files: dict[str, Upload]
    ) -> None:
        if method is None:
            return
        lowered = method.lower()
        if lowered.startswith("get") or lowered in _WEBHOOK_REPLY_FORBIDDEN:
            return
        await self._execute(hook.token, method, params, files, via_webhook=True)

    # ---- methods: sending

    def _target(self, call: _Call) -> _Target:
        params = call.params
        chat = self._writable_chat(params)
        thread_id = self._thread(chat, params.integer("message_thread_id"))
        return _Target(
            chat, thread_id, self._reply_target(chat, params), self._reply_markup(params)
        )

    def _post(self, call: _Call, content: JsonDict) -> JsonDict:
        target = self._target(call)
        self._spend(target.chat, 1.0)
        message = self._new_message(
            target.chat,
            self.bot,
            content,
            thread_id=target.thread_id,
            reply_to=target.reply_to,
            markup=target.markup,
        )
        self._record_sent(call, target.chat, message, reply_to_message_id=self._reply_id(target))
        return message

    @staticmethod
    def _reply_id(target: _Target) -> int | None:
        return None if target.reply_to is None else int(target.reply_to["message_id"])

    def _find_chat(self, chat_id: Any) -> FakeChat:
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self.chats.values():
                if chat.username and f"@{chat.username}".lower() == chat_id.lower():
                    return chat
            raise ApiError.bad("chat not found")
        try:
            chat = self.chats.get(int(chat_id))
        except (TypeError, ValueError):
            chat = None
        if chat is None:
            raise ApiError.bad("chat not found")
        return chat

    def _writable_chat(self, params: Params) -> FakeChat:
        chat = self._find_chat(params.need("chat_id"))
        if chat.is_private and chat.id in self.blocked:
            raise ApiError(403, BLOCKED)
        return chat

    def _thread(self, chat: FakeChat, thread_id: int | None) -> int | None:
        if thread_id is None:
            return None
        if chat.is_forum:
            topic = chat.topics.get(thread_id)
            if topic is None:
                raise ApiError.bad("message thread not found")
            # A closed topic still takes messages from its creator and from admins with
            # can_manage_topics (TDLib's can_send_message_to_forum_topic).
            may_write_closed = self._can_manage_topics(chat) or topic.creator_id == self.bot.id
            if topic.closed and not may_write_closed:
                raise ApiError.bad("TOPIC_CLOSED")
        elif chat.is_private or thread_id not in chat.messages:
            raise ApiError.bad("message thread not found")
        return thread_id

    def _reply_target(self, chat: FakeChat, params: Params) -> JsonDict | None:
        reply = params.obj("reply_parameters") or {}
        message_id = reply.get("message_id") or params.integer("reply_to_message_id")
        if not message_id:
            return None
        target = chat.messages.get(int(message_id))
        if target is not None:
            return target
        if reply.get("allow_sending_without_reply") or params.flag("allow_sending_without_reply"):
            return None
        raise ApiError.bad("message to be replied not found")

    def _reply_markup(self, params: Params) -> JsonDict | None:
        markup = params.obj("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise ApiError.bad("can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard", []):
            for button in row:
                _check_inline_button(button)
        return markup

    def _text_content(self, params: Params) -> JsonDict:
        raw = params.text("text")
        if not raw:
            raise ApiError.bad("message text is empty")
        text, entities = _render(raw, params.text("parse_mode"), params.obj("entities"))
        if not text.strip():
            raise ApiError.bad("message text is empty")
        if len(text) > TEXT_LIMIT:
            raise ApiError.bad("message is too long")
        return _formatted("text", text, "entities", entities)

    @staticmethod
    def _caption_content(caption: str | None, parse_mode: str | None, entities: Any) -> JsonDict:
        if not caption:
            return {}
        text, parsed = _render(caption, parse_mode, entities)
        if len(text) > CAPTION_LIMIT:
            raise ApiError.bad("message caption is too long")
        return _formatted("caption", text, "caption_entities", parsed)

    def _input_file(self, call: _Call, value: str | None, kind: str) -> FakeFile:
        if value and value.startswith("attach://"):
            upload = call.files.get(value.removeprefix("attach://"))
            if upload is None:
                raise ApiError.bad(BAD_FILE)
            return self.files.upload(kind, upload)
        if not value:
            raise ApiError.bad(f"there is no {kind} in the request")
        if value.startswith(("http://", "https://")):
            return self.files.new(kind, b"", file_name=value.rsplit("/", 1)[-1] or None)
        file = self.files.get(value)
        if file is None:
            raise ApiError.bad(BAD_FILE)
        return file

    def _send_message(self, call: _Call) -> JsonDict:
        return self._post(call, self._text_content(call.params))

    def _send_media(self, kind: str, call: _Call) -> JsonDict:
        params = call.params
        value = params.text(kind) or (f"attach://{kind}" if kind in call.files else None)
        file = self._input_file(call, value, kind)
        if params.has("duration"):
            file.duration = params.need_int("duration")
        media = self.files.media_json(file, kind)
        if kind == "sticker":
            return self._post(call, {kind: {**media, "emoji": params.text("emoji") or "🙂"}})
        caption = self._caption_content(
            params.text("caption"), params.text("parse_mode"), params.obj("caption_entities")
        )
        return self._post(call, {kind: media, **caption})

    def _send_location(self, call: _Call) -> JsonDict:
        params = call.params
        location = {"latitude": params.number("latitude"), "longitude": params.number("longitude")}
        return self._post(call, {"location": location})

    def _send_media_group(self, call: _Call) -> list[JsonDict]:
        items = call.params.obj("media")
        if not isinstance(items, list) or not items:
            raise ApiError.bad('parameter "media" is required')
        if len(items) > ALBUM_LIMIT:
            raise ApiError.bad("too much messages to send as an album")
        contents = [self._album_item(call, item) for item in items]
        target = self._target(call)
        self._spend(target.chat, 1.0)
        album_id = str(next(self._album_ids))
        messages = []
        for item, content in zip(items, contents, strict=True):
            message = self._new_message(
                target.chat, self.bot, content, thread_id=target.thread_id, reply_to=target.reply_to
            )
            message["media_group_id"] = album_id
            self._record_sent(
                call,
                target.chat,
                message,
                caption=item.get("caption"),
                parse_mode=item.get("parse_mode"),
                reply_to_message_id=self._reply_id(target),
            )
            messages.append(message)
        return messages

    def _album_item(self, call: _Call, item: Any) -> JsonDict:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in ("photo", "video", "document"):
            raise ApiError.bad(f"unsupported media type {kind!r} in the album")
        file = self._input_file(call, item.get("media"), kind)
        caption = self._caption_content(
            item.get("caption"), item.get("parse_mode"), item.get("caption_entities")
        )
        return {kind: self.files.media_json(file, kind), **caption}

    def _source_message(self, params: Params, not_found: str) -> JsonDict:
        chat = self._find_chat(params.need("from_chat_id"))
        message = chat.messages.get(params.need_int("message_id"))
        if message is None:
            raise ApiError.bad(not_found)
        return message

    def _copy_message(self, call: _Call) -> JsonDict:
        params = call.params
        source = self._source_message(params, "message to copy not found")
        content = {k: v for k, v in source.items() if k in _CONTENT_KEYS}
        if not content:
            raise ApiError.bad("message can't be copied")
        if params.has("caption") and _media_of(content)[0] not in (None, "location"):
            content.pop("caption_entities", None)
            content.update(
                self._caption_content(
                    params.text("caption"),
                    params.text("parse_mode"),
                    params.obj("caption_entities"),
                )
            )
        return {"message_id": self._post(call, content)["message_id"]}

    def _forward_message(self, call: _Call) -> JsonDict:
        source = self._source_message(call.params, "message to forward not found")
        content = {k: v for k, v in source.items() if k in _CONTENT_KEYS}
        if not content:
            raise ApiError.bad("message can't be forwarded")
        sender, date = source["from"], source["date"]
        origin = source.get("forward_origin") or {
            "type": "user",
            "sender_user": sender,
            "date": date,
        }
        forwarded = {"forward_origin": origin, "forward_from": sender, "forward_date": date}
        return self._post(call, {**forwarded, **content})

    # ---- methods: editing and deleting

    def _editable(self, params: Params) -> tuple[FakeChat, JsonDict]:
        if params.has("inline_message_id"):
            raise ApiError.bad("inline messages are not supported by the fake")
        chat = self._writable_chat(params)
        message = chat.messages.get(params.need_int("message_id"))
        if message is None:
            raise ApiError.bad("message to edit not found")
        if message["from"]["id"] != self.bot.id:
            raise ApiError.bad("message can't be edited")
        return chat, message

    def _edit_message_text(self, call: _Call) -> JsonDict:
        chat, message = self._editable(call.params)
        if "text" not in message:
            raise ApiError.bad("there is no text in the message to edit")
        content = self._text_content(call.params)
        return self._apply_edit(call, chat, message, content, ("text", "entities"))

    def _edit_message_caption(self, call: _Call) -> JsonDict:
        params = call.params
        chat, message = self._editable(params)
        if _media_of(message)[0] in (None, "location", "sticker"):
            raise ApiError.bad("there is no caption in the message to edit")
        content = self._caption_content(
            params.text("caption"), params.text("parse_mode"), params.obj("caption_entities")
        )
        return self._apply_edit(call, chat, message, content, ("caption", "caption_entities"))

    def _edit_message_reply_markup(self, call: _Call) -> JsonDict:
        chat, message = self._editable(call.params)
        return self._apply_edit(call, chat, message, {}, ())

    def _apply_edit(
        self,
        call: _Call,
        chat: FakeChat,
        message: JsonDict,
        content: JsonDict,
        replaced: tuple[str, ...],
    ) -> JsonDict:
        # Like Telegram, an edit without reply_markup removes the inline keyboard.
        markup = self._reply_markup(call.params)
        edited = {k: v for k, v in message.items() if k not in replaced and k != "reply_markup"}
        edited.update(content)
        if markup and "inline_keyboard" in markup:
            edited["reply_markup"] = markup
        if _same_content(edited, message):
            raise ApiError.bad(NOT_MODIFIED)
        self._spend(chat, self.limits.edit_weight)
        edited["edit_date"] = self._now()
        chat.messages[edited["message_id"]] = edited
        self._record_sent(call, chat, edited)
        return edited

    def _delete_message(self, call: _Call) -> bool:
        params = call.params
        chat = self._find_chat(params.need("chat_id"))
        message_id = params.need_int("message_id")
        message = chat.messages.get(message_id)
        if message is None:
            raise ApiError.bad("message to delete not found")
        own = message["from"]["id"] == self.bot.id
        if not (own or chat.is_private or chat.bot_is_admin):
            raise ApiError.bad("message can't be deleted")
        del chat.messages[message_id]
        self.deleted.append((chat.id, message_id))
        return True

    def _answer_callback_query(self, call: _Call) -> bool:
        query_id = call.params.text("callback_query_id") or ""
        # Unknown and already answered queries get the same answer from Telegram.
        if self._callbacks.get(query_id) is not False:
            raise ApiError.bad(QUERY_INVALID)
        self._callbacks[query_id] = True
        self.callback_answers[query_id] = dict(call.params.values)
        return True

    # ---- methods: forum topics

    def _forum(self, params: Params) -> FakeChat:
        chat = self._find_chat(params.need("chat_id"))
        if not chat.is_forum:
            raise ApiError.bad("the chat is not a forum")
        return chat

    @staticmethod
    def _can_manage_topics(chat: FakeChat) -> bool:
        return chat.bot_is_admin and chat.bot_can_manage_topics

    def _create_forum_topic(self, call: _Call) -> JsonDict:
        params = call.params
        chat = self._forum(params)
        if not self._can_manage_topics(chat):
            raise ApiError.bad("not enough rights to create a topic")
        name = (params.text("name") or "").strip()
        if not name:
            raise ApiError.bad("title must be non-empty")
        color = params.integer("icon_color") or TOPIC_COLORS[0]
        if color not in TOPIC_COLORS:
            raise ApiError.bad("invalid icon color specified")
        emoji_id = params.text("icon_custom_emoji_id")
        self._spend(chat, 1.0)  # Telegram counts topic calls in the group's 20 a minute
        return self._create_topic(chat, name[:128], color, emoji_id, self.bot).to_json()

    def _create_topic(
        self,
        chat: FakeChat,
        name: str,
        color: int,
        emoji_id: str | None,
        creator: FakeUser,
    ) -> FakeTopic:
        topic = FakeTopic(chat.next_message_id, name, color, emoji_id, creator_id=creator.id)
        chat.topics[topic.message_thread_id] = topic
        created: JsonDict = {"name": name, "icon_color": color}
        if emoji_id:
            created["icon_custom_emoji_id"] = emoji_id
        self._new_message(
            chat, creator, {"forum_topic_created": created}, thread_id=topic.message_thread_id
        )
        return topic

    def _managed_topic(self, chat: FakeChat, params: Params, refusal: str) -> FakeTopic:
        topic = chat.topics.get(params.need_int("message_thread_id"))
        if topic is None:
            raise ApiError.bad("TOPIC_ID_INVALID")
        # Without can_manage_topics a bot may still manage the topics it created itself.
        if not self._can_manage_topics(chat) and topic.creator_id != self.bot.id:
            raise ApiError.bad(refusal)
        return topic

    def _edit_forum_topic(self, call: _Call) -> bool:
        params = call.params
        chat = self._forum(params)
        topic = self._managed_topic(chat, params, "not enough rights to edit the topic")
        changes: JsonDict = {}
        if params.has("name"):
            changes["name"] = (params.text("name") or "").strip()[:128]
        if "icon_custom_emoji_id" in params.values:
            changes["icon_custom_emoji_id"] = params.text("icon_custom_emoji_id") or None
        if not changes:
            return True
        if all(getattr(topic, key) == value for key, value in changes.items()):
            raise ApiError.bad("TOPIC_NOT_MODIFIED")
        for key, value in changes.items():
            setattr(topic, key, value)
        edited = {k: v if v is not None else "" for k, v in changes.items()}
        self._topic_service_message(chat, topic, {"forum_topic_edited": edited})
        return True

    def _set_topic_closed(self, closed: bool, call: _Call) -> bool:
        chat = self._forum(call.params)
        topic = self._managed_topic(
            chat, call.params, "not enough rights to close or open the topic"
        )
        if topic.closed == closed:
            raise ApiError.bad("TOPIC_NOT_MODIFIED")
        topic.closed = closed
        event = "forum_topic_closed" if closed else "forum_topic_reopened"
        self._topic_service_message(chat, topic, {event: {}})
        return True

    def _topic_service_message(self, chat: FakeChat, topic: FakeTopic, content: JsonDict) -> None:
        self._new_message(chat, self.bot, content, thread_id=topic.message_thread_id)

    # ---- methods: chats, members, pins, files, misc

    def _pinnable(self, params: Params) -> FakeChat:
        chat = self._find_chat(params.need("chat_id"))
        if not (chat.is_private or chat.bot_is_admin):
            raise ApiError.bad("not enough rights to manage pinned messages in the chat")
        return chat

    def _pin_chat_message(self, call: _Call) -> bool:
        chat = self._pinnable(call.params)
        message_id = call.params.need_int("message_id")
        if message_id not in chat.messages:
            raise ApiError.bad("message to pin not found")
        if message_id in chat.pinned:
            chat.pinned.remove(message_id)
        chat.pinned.append(message_id)
        return True

    def _unpin_chat_message(self, call: _Call) -> bool:
        chat = self._pinnable(call.params)
        message_id = call.params.integer("message_id")
        if message_id is None:
            if chat.pinned:
                chat.pinned.pop()
            return True
        if message_id not in chat.messages:
            raise ApiError.bad("message to unpin not found")
        if message_id in chat.pinned:
            chat.pinned.remove(message_id)
        return True

    def _get_chat(self, call: _Call) -> JsonDict:
        chat = self._find_chat(call.params.need("chat_id"))
        gifts = ("unlimited_gifts", "limited_gifts", "unique_gifts", "premium_subscription")
        info: JsonDict = {
            **chat.to_json(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": dict.fromkeys((*gifts, "gifts_from_channels"), False),
        }
        if chat.pinned and chat.pinned[-1] in chat.messages:
            info["pinned_message"] = chat.messages[chat.pinned[-1]]
        return info

    def _get_chat_member(self, call: _Call) -> JsonDict:
        params = call.params
        chat = self._find_chat(params.need("chat_id"))
        user_id = params.need_int("user_id")
        if user_id == self.bot.id:
            return self._bot_membership(chat)
        user = self.users.get(user_id)
        if user is None:
            raise ApiError.bad("user not found")
        member = user_id == chat.id if chat.is_private else user_id in chat.members
        return {"status": "member" if member else "left", "user": user.to_json()}

    def _bot_membership(self, chat: FakeChat) -> JsonDict:
        if chat.is_private or not chat.bot_is_admin:
            return {"status": "member", "user": self.bot.to_json()}
        granted = (
            "can_manage_chat",
            "can_delete_messages",
            "can_manage_video_chats",
            "can_restrict_members",
            "can_change_info",
            "can_invite_users",
            "can_pin_messages",
        )
        withheld = (
            "can_be_edited",
            "is_anonymous",
            "can_promote_members",
            "can_post_stories",
            "can_edit_stories",
            "can_delete_stories",
            "can_send_welcome_messages",
        )
        return {
            "status": "administrator",
            "user": self.bot.to_json(),
            **dict.fromkeys(granted, True),
            **dict.fromkeys(withheld, False),
            "can_manage_topics": chat.bot_can_manage_topics,
        }

    def _get_file(self, call: _Call) -> JsonDict:
        file = self.files.get(call.params.text("file_id") or "")
        if file is None:
            raise ApiError.bad("invalid file_id")
        if len(file.content) > DOWNLOAD_LIMIT:
            raise ApiError.bad("file is too big")
        return {**file.to_json(), "file_path": file.file_path}

    def _send_chat_action(self, call: _Call) -> bool:
        self._writable_chat(call.params)
        return True

    def _set_my_commands(self, call: _Call) -> bool:
        self.commands = list(call.params.obj("commands") or [])
        return True

    def _delete_my_commands(self, call: _Call) -> bool:
        self.commands = []
        return True


def _check_inline_button(button: Any) -> None:
    if not isinstance(button, dict) or not button.get("text"):
        raise ApiError.bad("can't parse inline keyboard button: Text is not specified")
    data = button.get("callback_data")
    if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_LIMIT:
        raise ApiError.bad("BUTTON_DATA_INVALID")
    if not _BUTTON_ACTIONS & button.keys():
        raise ApiError.bad(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
