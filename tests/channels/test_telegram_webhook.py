"""A customer's updates through the webhook: plain messages go straight to the stream, the rest
through the routers, and both answer as before."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bench.fakes.telegram import FakeTelegram
from channels.stream import local_entries
from models import Appeal, Message
from tests.conftest import Desk, free_port
from tests.telegram_world import STAFF_CHAT, WEBHOOK_SECRET, eventually, telegram_settings, texts_in

# The webhook path is the same on every backend, and ``kept`` reads the local stream's table:
# on CI it runs in the SQLite pass (the Redis stream's own durability:
# tests/channels/test_stream.py).
pytestmark = pytest.mark.backend_agnostic

CUSTOMER = 760
_update_ids = itertools.count(900_000)


@pytest.fixture
async def hook(fake: FakeTelegram, start_desk: Callable[..., Any]) -> Desk:
    port = free_port()
    desk: Desk = await start_desk(
        **telegram_settings(fake, telegram={"mode": "webhook", "webhook_secret": WEBHOOK_SECRET}),
        http={"host": "127.0.0.1", "port": port},
        public_url=f"http://127.0.0.1:{port}",
        lifecycle={"max_text_chars": 100},
    )
    fake.add_private_chat(CUSTOMER, "Вера", language_code="ru")
    return desk


async def post(desk: Desk, fake: FakeTelegram, kind: str = "message", **content: Any) -> int:
    """POST an update of the customer's as Telegram would; the webhook's status."""
    chat = fake.chat(CUSTOMER)
    assert chat.user is not None
    message = {
        "message_id": content.pop("message_id", None) or chat.take_message_id(),
        "from": chat.user.to_json(),
        "chat": chat.to_json(),
        "date": int(time.time()),
        **content,
    }
    update = {"update_id": next(_update_ids), kind: message}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{desk.base}/telegram/webhook",
            json=update,
            headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
        ) as resp,
    ):
        return resp.status


async def kept(external_id: str) -> bool:
    """Whether the message is in the stream or stored (the stream first: intake acks an entry
    only after storing it)."""
    for entry in await local_entries():
        if external_id in str(entry.payload):
            return True
    return await Message.filter(external_id=external_id).exists()


async def test_a_plain_text_is_in_the_stream_before_its_200_and_reaches_the_staff(
    hook: Desk, fake: FakeTelegram
) -> None:
    for n in range(1, 4):
        assert await post(hook, fake, message_id=n, text=f"Где мой заказ? №{n}") == 200
        assert await kept(f"{CUSTOMER}:{n}")
    appeal = await eventually(lambda: Appeal.filter(staff_thread__isnull=False).first())
    stored = await eventually(
        lambda: Message.filter(appeal_id=appeal.id).order_by("id").values_list("text", flat=True)
    )
    await eventually(lambda: len(stored) == 3 or None)
    assert list(stored) == [f"Где мой заказ? №{n}" for n in range(1, 4)]  # in the chat's order
    await eventually(lambda: any("№3" in t for t in texts_in(fake, STAFF_CHAT)))


async def test_too_long_and_unsupported_messages_are_answered_and_not_stored(
    hook: Desk, fake: FakeTelegram
) -> None:
    assert await post(hook, fake, text="я" * 101) == 200
    assert await post(hook, fake, dice={"emoji": "🎲", "value": 3}) == 200
    answers = await eventually(
        lambda: len(texts_in(fake, CUSTOMER)) >= 2 and texts_in(fake, CUSTOMER)
    )
    assert any("не больше 100 символов" in t for t in answers)
    assert any("Такой тип сообщения мы пока не принимаем" in t for t in answers)
    assert not await Message.exists() and not await local_entries().exists()


async def test_commands_menu_buttons_and_contacts_still_reach_their_handlers(
    hook: Desk, fake: FakeTelegram
) -> None:
    assert await post(hook, fake, text="/start", entities=[_command(6)]) == 200
    await eventually(lambda: any("Здравствуйте" in t for t in texts_in(fake, CUSTOMER)))
    assert await post(hook, fake, text="📋 Мои обращения") == 200
    await eventually(lambda: any("обращени" in t.lower() for t in texts_in(fake, CUSTOMER)[1:]))
    assert await post(hook, fake, photo=_photo(), caption="/start") == 200  # a command too
    await eventually(lambda: sum("Здравствуйте" in t for t in texts_in(fake, CUSTOMER)) == 2)
    contact = {"phone_number": "+79990001122", "first_name": "Вера", "user_id": CUSTOMER}
    assert await post(hook, fake, contact=contact) == 200
    await eventually(lambda: len(texts_in(fake, CUSTOMER)) >= 4)
    assert not await Message.exists() and not await local_entries().exists()


async def test_an_edit_through_the_webhook_reaches_the_topic_as_an_edit_note(
    hook: Desk, fake: FakeTelegram
) -> None:
    assert await post(hook, fake, message_id=1, text="Заказ 41") == 200
    appeal = await eventually(lambda: Appeal.filter(staff_thread__isnull=False).first())
    edit = {"message_id": 1, "text": "Заказ 42", "edit_date": int(time.time()) + 1}
    assert await post(hook, fake, kind="edited_message", **edit) == 200
    # The edit note: what was written and what it says now (not just "42": a card's due time,
    # 21:42, has that too; and a card drawn after the edit may show the new text alone).
    await eventually(
        lambda: [
            t
            for t in texts_in(fake, STAFF_CHAT, int(appeal.staff_thread))
            if "Заказ 41" in t and "Заказ 42" in t
        ]
    )


def _command(length: int) -> dict[str, Any]:
    return {"type": "bot_command", "offset": 0, "length": length}


def _photo() -> list[dict[str, Any]]:
    return [{"file_id": "AgAD-photo", "file_unique_id": "u-photo", "width": 90, "height": 90}]
