"""What the service logs while it handles appeals: every line about an appeal names it and its
channel; no line carries what customers wrote, their names, emails or phones, or a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench.fakes.telegram import DEFAULT_TOKEN, FakeTelegram
from desk.config.settings import Settings
from desk.ops.log_context import ContextFilter, about, log_scope, redact
from desk.ops.logs import NOISY_LOGGERS, setup_logging
from models import Appeal, ContactPoint, OutboxItem, OutboxStatus
from tests.conftest import API_TOKEN, SECRET_KEY, Desk, free_port
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    WEBHOOK_SECRET,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)

pytestmark = pytest.mark.backend_agnostic

CUSTOMER_TEXT = "Здравствуйте, посылка с курткой так и не пришла"
CUSTOMER_EMAIL = "ivan.petrov@example.ru"
CUSTOMER_PHONE = "+79161234567"
ANSWER = "Иван, курьер привезёт куртку завтра до обеда"
WEB_TEXT = "Нужен счёт на оплату для бухгалтерии"
WEB_EMAIL = "buh.kozlova@example.org"
WEB_PHONE = "8 (903) 765-43-21"


@pytest.fixture(autouse=True)
def root_logger_restored() -> Iterator[None]:
    """setup_logging replaces the root logger's handlers and level (as the CLI wants): the
    tests after these must not go on writing every record into a buffer nobody reads."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in noisy.items():
        logging.getLogger(name).setLevel(was)


async def all_out() -> bool:
    waiting = [OutboxStatus.PENDING, OutboxStatus.SENDING]
    return not await OutboxItem.filter(status__in=waiting).exists()


def lines_of(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_a_day_of_appeals_logs_numbers_and_ids_but_no_personal_data_or_secrets(
    fake: FakeTelegram, start_desk: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    buffer = io.StringIO()
    setup_logging(make_settings(log_format="json", log_level="DEBUG"), buffer)
    desk: Desk = await start_desk(**telegram_settings(fake))

    # Telegram: a customer writes (with their email and phone in the text), shares a contact,
    # an answer meets a 502 and is retried, the agent postpones the appeal.
    fake.add_private_chat(901, "Иван Петрович")
    appeal = await open_appeal(
        fake, 901, f"{CUSTOMER_TEXT}. Почта {CUSTOMER_EMAIL}, тел. {CUSTOMER_PHONE}"
    )
    fake.user_contact(901, CUSTOMER_PHONE)
    await eventually(lambda: ContactPoint.filter(channel="phone").exists())
    await eventually(all_out)
    thread = int(appeal.staff_thread)
    fake.fail_next("sendMessage", 502)
    fake.group_message(STAFF_CHAT, AGENT_ID, ANSWER, thread)
    await eventually(lambda: any(ANSWER in t for t in texts_in(fake, 901)), 15)
    fake.group_message(STAFF_CHAT, AGENT_ID, "/postpone ждём ответа курьера", thread)
    await eventually(lambda: Appeal.filter(id=appeal.id, status="pending").exists())

    # The web form, with a name, an email and a phone.
    async with desk.http.post(
        desk.base + "/appeal",
        data={"name": "Анна Козлова", "email": WEB_EMAIL, "phone": WEB_PHONE, "text": WEB_TEXT},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303
    web = await eventually(lambda: Appeal.filter(channel="web").first())

    await eventually(all_out)
    rows = {row.id: row for row in await OutboxItem.filter(appeal_id__isnull=False)}
    numbers = {a.id: a.number for a in await Appeal.all()}
    lines = lines_of(buffer)
    text = buffer.getvalue()

    secrets = [DEFAULT_TOKEN, DEFAULT_TOKEN.partition(":")[2], API_TOKEN, SECRET_KEY]
    personal = [
        CUSTOMER_TEXT[:30],
        ANSWER[:30],
        WEB_TEXT[:25],
        "Петрович",
        "Козлова",
        CUSTOMER_EMAIL,
        WEB_EMAIL,
        CUSTOMER_PHONE,
        CUSTOMER_PHONE[2:],
        "765-43-21",
        "ждём ответа курьера",
    ]
    for needle in secrets + personal:
        assert needle not in text, needle

    about_appeals = [line for line in lines if line.get("appeal")]
    assert {line["appeal"] for line in about_appeals} >= {appeal.number, web.number}
    stored = [line for line in lines if line["message"] == "message stored"]
    assert {(line["appeal"], line["channel"]) for line in stored} >= {
        (appeal.number, "telegram"),
        (web.number, "web"),
    }
    delivered = [line for line in lines if line["message"] in ("delivered", "delivery postponed")]
    assert delivered
    for line in delivered:
        row = rows.get(line["outbox_id"])
        if row is not None:
            number = numbers[row.appeal_id]
            assert line["appeal"] == number and line["channel"] == row.channel, line
    postponed = [line for line in lines if line["message"] == "delivery postponed"]
    assert postponed and postponed[0]["appeal"] == appeal.number


async def test_an_unreadable_webhook_update_is_logged_without_what_it_says(
    fake: FakeTelegram, start_desk: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    buffer = io.StringIO()
    setup_logging(make_settings(log_format="json"), buffer)
    port = free_port()
    desk: Desk = await start_desk(
        **telegram_settings(fake, telegram={"mode": "webhook", "webhook_secret": WEBHOOK_SECRET}),
        http={"host": "127.0.0.1", "port": port},
        public_url=f"http://127.0.0.1:{port}",
    )
    broken = {
        "update_id": "not a number",
        "message": {"message_id": 1, "date": "yesterday", "text": CUSTOMER_TEXT},
    }
    async with desk.http.post(
        f"{desk.base}/telegram/webhook",
        json=broken,
        headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
    ) as resp:
        assert resp.status == 400
    [line] = [x for x in lines_of(buffer) if x["message"] == "unreadable telegram update"]
    assert "update_id" in line["reason"] and CUSTOMER_TEXT[:20] not in buffer.getvalue()


def test_scopes_add_the_appeal_and_keep_the_channel_and_end_with_their_block() -> None:
    record = logging.LogRecord("desk", logging.INFO, "", 0, "x", None, None)

    def fields() -> dict[str, Any]:
        copy = logging.makeLogRecord(dict(record.__dict__))
        ContextFilter().filter(copy)
        return {k: getattr(copy, k) for k in ("appeal", "channel") if hasattr(copy, k)}

    assert fields() == {}
    with about(appeal="A-000007", channel="vk"):  # outside a scope: for the block only
        assert fields() == {"appeal": "A-000007", "channel": "vk"}
    assert fields() == {}
    with log_scope(channel="telegram"):
        with about(appeal="A-000001", channel="email"):
            pass
        # Bound to the open scope: the lines after the event still name the appeal; the
        # scope's own channel stays.
        assert fields() == {"appeal": "A-000001", "channel": "telegram"}
    assert fields() == {}


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("mail to ivan.petrov@example.ru bounced", "mail to <email> bounced"),
        ("call +7 916 123-45-67 or +79161234567", "call <phone> or <phone>"),
        ("call 8 (903) 765-43-21 now", "call <phone> now"),
        (
            "chat -1001234567890, entry 1700000000000-0",
            "chat -1001234567890, entry 1700000000000-0",
        ),
        (
            "for http://127.0.0.1:1/bot123456789:AAFakeTelegramTestToken/getUpdates",
            "for http://127.0.0.1:1/bot<token>/getUpdates",
        ),
        ("token 1234567890:AAFakeTelegramTestTokenForLogs_01", "token <token>"),
        ("redis://desk:s3cr3t@redis:6379/0", "redis://desk:***@redis:6379/0"),
        ("Authorization: Bearer abcdef0123456789", "Authorization: Bearer <token>"),
        ("b'desk_4fQz-Lr9_pXc2WvM8tYb1kHn...'", "b'desk_<token>...'"),
        ("desk_log_fields", "desk_log_fields"),
        (
            "url='https://api.vk.com/method/x?access_token=vk1.a.Zz9_-&v=5.199'",
            "url='https://api.vk.com/method/x?access_token=<secret>&v=5.199'",
        ),
        ("GET /whp/1?act=a_check&key=abc123&ts=7", "GET /whp/1?act=a_check&key=<secret>&ts=7"),
        # Short, or without a digit: still looked at.
        ("a@b.ru", "<email>"),
        ("Bearer abcdefghijkl", "Bearer <token>"),
        ("key " + "abcdef" * 14 + "a", "key <token>"),
        # Nothing to mask: as it was.
        ("message stored", "message stored"),
        ("A-000123", "A-000123"),
    ],
)
def test_personal_data_and_secrets_are_masked_in_log_text(line: str, masked: str) -> None:
    assert redact(line) == masked


async def test_a_header_too_long_for_aiohttp_logs_no_token(
    start_desk: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    import asyncio

    from desk.config.keys import create_token

    buffer = io.StringIO()
    setup_logging(make_settings(log_format="json"), buffer)
    desk: Desk = await start_desk()
    made = await create_token("crm", "agent")
    port = desk.service.bound_port
    padding = "x" * 9000
    lines = [
        f"X-Api-Key: {made}{padding}",  # a bare desk_ token
        f"X-Api-Key: {API_TOKEN} {padding}",  # a token of the config, any shape
        f"Authorization: Bearer {made}{padding}",
    ]
    for line in lines:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /api/v1/appeals HTTP/1.1\r\nHost: desk\r\n{line}\r\n\r\n".encode())
        await writer.drain()
        assert (await reader.read(100)).startswith(b"HTTP/1.0 400")
        writer.close()
    # An exception as an argument, and in a traceback, from any library's logger.
    logging.getLogger("aiohttp.web").error("refused: %s", ValueError(f"bad key {made}"))
    try:
        raise RuntimeError(f"token {API_TOKEN} and {SECRET_KEY} in an error")
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")

    text = buffer.getvalue()
    lines_logged = [x for x in text.splitlines() if "aiohttp.server" in x]
    assert len(lines_logged) >= 3 and "LineTooLong" in text, text[:2000]
    for secret in (made, made[5:25], API_TOKEN, SECRET_KEY):
        assert secret not in text, secret
    assert "desk_<token>" in text and "<secret>" in text and "refused: bad key" in text
