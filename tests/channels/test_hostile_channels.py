"""Hostile input to the channel normalisers: arbitrary and malformed Telegram updates, VK
messages and mails become a normalised InboundMessage / ParsedMail or the channel's own clear
rejection (BadInbound, MailParseError); no other exception escapes (hypothesis)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiogram import Bot
from hypothesis import event, given
from hypothesis import strategies as st

from channels.base import BadInbound, InboundMessage
from channels.email.parse import MailParseError, ParsedMail, parse_mail
from channels.settings import VkSettings
from channels.telegram.updates import customer_inbound, parse_update
from channels.vk.channel import VkChannel
from models import storable
from tests.conftest import free_port

pytestmark = pytest.mark.backend_agnostic

# -- shared shapes ----------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
HUGE = st.sampled_from(["x" * 5000, "я" * 2000 + "\u200b" * 3000, "\u202e" * 300])
TEXTS = st.text(max_size=60) | HUGE | st.just("")


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], odds: int = 10) -> Any:
    """``usual`` about ``odds`` times in ``odds + 1``, else ``odd``."""
    return st.integers(min_value=0, max_value=odds).flatmap(lambda i: usual if i else odd)


INTS = mostly(
    st.integers(min_value=1, max_value=2_000_000_000),
    st.integers(min_value=-(2**64), max_value=2**64)
    | st.sampled_from([0, -1, 2**31, 2**63, 2**64, 10**30, "12", "-5", "9" * 5000, "１２"]),
    odds=15,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right shape, now and then any JSON at all in its place."""
    return mostly(strategy, ANY_JSON, odds=25)


def assert_normalised(inbound: InboundMessage) -> None:
    """What every channel promises of a message it accepted."""
    assert isinstance(inbound, InboundMessage)
    assert inbound.text or inbound.attachments
    assert inbound.external_id and inbound.address
    for value in (inbound.text, inbound.sender_name, inbound.external_id, inbound.address):
        assert storable(value) == value, f"not storable: {value[:80]!r}"
    # It travels through the appeal stream as JSON and comes back the same.
    assert InboundMessage.from_json(json.loads(json.dumps(inbound.to_json()))) == inbound


# -- Telegram ---------------------------------------------------------------------------------

TG_USER = st.fixed_dictionaries(
    {"id": maybe(INTS), "is_bot": maybe(st.booleans()), "first_name": maybe(TEXTS)},
    optional={"last_name": maybe(TEXTS), "language_code": maybe(st.text(max_size=12))},
)
TG_CHAT = st.fixed_dictionaries(
    {"id": maybe(INTS), "type": maybe(st.sampled_from(["private", "group", "supergroup"]))}
)
TG_FILE = st.fixed_dictionaries(
    {"file_id": maybe(TEXTS), "file_unique_id": maybe(TEXTS)},
    optional={
        "file_size": maybe(INTS),
        "file_name": maybe(TEXTS),
        "mime_type": maybe(TEXTS),
        "width": maybe(INTS),
        "height": maybe(INTS),
        "duration": maybe(INTS),
    },
)
TG_MESSAGE = st.fixed_dictionaries(
    {"message_id": maybe(INTS), "date": maybe(INTS), "chat": maybe(TG_CHAT)},
    optional={
        "from": maybe(TG_USER),
        "text": maybe(TEXTS),
        "caption": maybe(TEXTS),
        "photo": maybe(st.lists(TG_FILE, max_size=3)),
        "document": maybe(TG_FILE),
        "voice": maybe(TG_FILE),
        "video_note": maybe(TG_FILE),
        "sticker": maybe(TG_FILE),
        "location": maybe(
            st.fixed_dictionaries({"latitude": maybe(st.floats()), "longitude": maybe(st.floats())})
        ),
        "media_group_id": maybe(TEXTS),
        "edit_date": maybe(INTS),
    },
)
TG_UPDATE = st.fixed_dictionaries(
    {"update_id": maybe(INTS), "message": maybe(TG_MESSAGE)},
    optional={"edited_message": maybe(TG_MESSAGE)},
)
TG_RAW = mostly(
    TG_UPDATE.map(lambda u: json.dumps(u).encode()),
    ANY_JSON.map(lambda u: json.dumps(u).encode())
    | st.binary(max_size=200)  # not JSON, not UTF-8
    | st.sampled_from(
        [
            b"",
            b"\xff\xfe{}",
            b'{"update_id": 1, "message": {"message_id": 1, "date": 1, '
            b'"chat": {"id": 5, "type": "private"}, "text": "\\ud800 \\u0000"}}',
            b"[" * 100_000,  # deeper than any parser should follow
            b'{"update_id": 1e999}',
        ]
    ),
    odds=3,
)
BOT = Bot("123456:hostile-input-token")


@given(raw=TG_RAW)
def test_any_telegram_update_becomes_a_message_or_bad_inbound(raw: bytes) -> None:
    try:
        update = parse_update(raw, BOT)
    except BadInbound:
        event("update rejected")
        return
    for message in (update.message, update.edited_message):
        if message is None:
            continue
        try:
            inbound = customer_inbound(message)
        except BadInbound:
            event("message rejected")
            continue
        event("message normalised")
        assert_normalised(inbound)


# -- VK ---------------------------------------------------------------------------------------

DEAD_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens: every download fails fast
URLS = st.sampled_from([f"{DEAD_URL}/f.jpg", "", "not a url", "http://[::1", "ftp://x/y", "//"])
VK_ATTACHMENT = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("photo"),
            "photo": maybe(
                st.fixed_dictionaries(
                    {
                        "sizes": maybe(
                            st.lists(
                                st.fixed_dictionaries(
                                    {
                                        "url": maybe(URLS),
                                        "width": maybe(INTS),
                                        "height": maybe(INTS),
                                    }
                                ),
                                max_size=3,
                            )
                        )
                    }
                )
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("doc"),
            "doc": maybe(
                st.fixed_dictionaries(
                    {"url": maybe(URLS), "title": maybe(TEXTS), "ext": maybe(TEXTS)}
                )
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["audio_message", "sticker", "wall", "link"]),
            "audio_message": maybe(st.fixed_dictionaries({"link_ogg": maybe(URLS)})),
            "sticker": maybe(
                st.fixed_dictionaries(
                    {"images": maybe(st.lists(st.fixed_dictionaries({"url": maybe(URLS)})))}
                )
            ),
        }
    ),
    ANY_JSON,
)
VK_MESSAGE = st.fixed_dictionaries(
    {"peer_id": maybe(INTS)},
    optional={
        "id": maybe(INTS),
        "conversation_message_id": maybe(INTS),
        "from_id": maybe(INTS),
        "date": maybe(INTS),
        "update_time": maybe(INTS),
        "text": maybe(TEXTS),
        "attachments": maybe(st.lists(VK_ATTACHMENT, max_size=3)),
    },
)


@pytest.fixture(scope="module")
def vk_loop() -> Iterator[tuple[asyncio.AbstractEventLoop, VkChannel]]:
    """A VK channel whose API and file links lead nowhere (names fall back to ids), and the
    loop it runs in."""
    loop = asyncio.new_event_loop()
    channel = VkChannel(VkSettings(token="vk-token", group_id=1, api_url=DEAD_URL, timeout_s=2))
    yield loop, channel
    loop.run_until_complete(channel.close())
    loop.close()


@given(message=mostly(VK_MESSAGE, ANY_JSON, odds=4), edited=st.booleans())
def test_any_vk_message_becomes_a_message_or_bad_inbound(
    vk_loop: tuple[asyncio.AbstractEventLoop, VkChannel], message: Any, edited: bool
) -> None:
    loop, channel = vk_loop
    try:
        inbound = loop.run_until_complete(channel.inbound(message, edited=edited))
    except BadInbound:
        event("rejected")
        return
    event("normalised")
    assert_normalised(inbound)


# -- mail -------------------------------------------------------------------------------------

HEADER_NAMES = st.sampled_from(
    ["From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To",
     "References", "Received", "Content-Type", "Content-Transfer-Encoding",
     "Content-Disposition", "Auto-Submitted", "Precedence", "X-Junk"]
)  # fmt: skip
HEADER_VALUES = st.one_of(
    st.text(max_size=60).map(lambda t: t.replace("\r", " ").replace("\n", " ")),
    st.sampled_from(
        [
            "=?utf-8?B?0J/RgNC40LLQtdGC?=",
            "=?koi8-r?Q?=F0=D2=C9=D7=C5=D4?=",
            "=?x-unknown?B?!!!?=",
            "=?utf-8?B?0J/RgNC4",
            '"Иван" <ivan@example.com>, <<>>, @, "unterminated',
            "Mon, 32 Foo 99999 25:61:61 +9999",
            'text/plain; charset="x-no-such-charset"',
            "text/plain; charset=utf-7",
            'multipart/mixed; boundary="b"',
            "multipart/mixed",
            "multipart/alternative; boundary=",
            "message/rfc822",
            "base64",
            "quoted-printable",
            "x-uuencode",
            "attachment; filename*=utf-8''..%2F..%2Fetc%2Fpasswd%00.txt",
            'attachment; filename="C:\\\\Windows\\\\win.ini"',
        ]
    ),
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8")),
    st.sampled_from(
        [
            b"0J/RgNC4!!!===\n====",  # broken base64
            b"=D0=9F=D1=80=\n=ZZ=\n=",  # broken quoted-printable
            b"--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: text/html\n\n<p>x",
            b"--b\n\n--b--\n--b--\n--c\n",
            b"From: inner@example.com\nSubject: inner\n\nforwarded body",
            b"\x00" * 50 + b"\xff\xfe\xfd",
            b"<html><meta charset=x-evil><script>alert(1)</script>" + b"<b>" * 2000,
        ]
    ),
)


MULTIPART_KINDS = st.sampled_from(["mixed", "alternative", "related", "report", "encrypted"])


@st.composite
def mails(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A mail: random headers, then a body or (nested) parts with random boundaries."""
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8))
    head = b"".join(f"{name}: {value}\n".encode() for name, value in headers)
    if depth < 3 and draw(st.booleans()):
        boundary = draw(st.sampled_from(["b", "c", "", "a b", "=_x"]))
        kind = draw(MULTIPART_KINDS)
        head += f'Content-Type: multipart/{kind}; boundary="{boundary}"\n'.encode()
        parts = draw(st.lists(mails(depth + 1), max_size=3))
        body = b"".join(b"--" + boundary.encode() + b"\n" + p for p in parts)
        if draw(st.booleans()):  # the closing boundary, often missing in the wild
            body += b"--" + boundary.encode() + b"--\n"
    else:
        body = draw(BODIES)
    separator = draw(st.sampled_from([b"\n", b"\r\n", b""]))
    return head + separator + body


@given(raw=st.one_of(mails(), st.binary(max_size=500)))
def test_any_mail_is_parsed_or_rejected_clearly(raw: bytes) -> None:
    try:
        parsed = parse_mail(raw, max_attachment_bytes=1000)
    except MailParseError:
        event("rejected")
        return
    event("parsed")
    assert isinstance(parsed, ParsedMail)
    for value in (parsed.text, parsed.body, parsed.subject, parsed.from_name, parsed.from_address):
        assert storable(value) == value, f"not storable: {value[:80]!r}"
    for item in parsed.attachments:
        assert "/" not in item.name and "\\" not in item.name and "\x00" not in item.name
        if item.skipped:  # over the cap: named and sized, never held in memory twice
            assert item.content == b"" and item.size > 1000
        else:
            assert len(item.content) == item.size <= 1000
