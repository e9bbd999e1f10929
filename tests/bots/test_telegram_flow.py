"""A customer writes to the bot; the appeal appears as a topic with its card; agents answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench.fakes.telegram import FakeTelegram
from models import Appeal, AppealStatus, ContactPoint, Message
from tests.conftest import Desk
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)


@pytest.fixture
async def tdesk(fake: FakeTelegram, start_desk: Callable[..., Any]) -> Desk:
    desk: Desk = await start_desk(**telegram_settings(fake))
    return desk


async def test_customer_message_opens_topic_with_card_and_is_acknowledged(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    fake.add_private_chat(501, "Ирина", language_code="ru")
    fake.user_message(501, "Хочу вернуть заказ 123, пришёл не тот размер")

    appeal = await eventually(lambda: Appeal.filter(staff_thread__isnull=False).first())
    thread = int(appeal.staff_thread)
    posts = await eventually(
        lambda: len(fake.sent_to(STAFF_CHAT, thread)) >= 2 and fake.sent_to(STAFF_CHAT, thread)
    )
    card, relay = posts[0], posts[1]
    assert appeal.number in (card.text or "")
    assert "Ирина" in (card.text or "")
    buttons = [b["text"] for row in card.reply_markup["inline_keyboard"] for b in row]
    assert any("Взять" in b for b in buttons) and any("Важно" in b for b in buttons)
    assert "Хочу вернуть заказ 123" in (relay.text or "")
    topic = fake.chat(STAFF_CHAT).topics[thread]
    assert topic.name == f"{appeal.number} · Ирина · Возврат и обмен"  # the router placed it
    ack = await eventually(lambda: fake.sent_to(501))
    assert appeal.number in (ack[0].text or "")
    assert "через 1 час" in (ack[0].text or "")  # returns are «high»: 60 minutes


async def test_agent_reply_in_topic_reaches_customer_signed(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    fake.add_private_chat(502, "Пётр")
    fake.user_message(502, "Где мой заказ?")
    appeal = await eventually(lambda: Appeal.filter(staff_thread__isnull=False).first())
    await eventually(lambda: len(fake.sent_to(STAFF_CHAT, int(appeal.staff_thread))) >= 2)

    fake.group_message(
        STAFF_CHAT, AGENT_ID, "Заказ уже в пути, будет завтра.", int(appeal.staff_thread)
    )

    answer = await eventually(lambda: [s for s in fake.sent_to(502) if "в пути" in (s.text or "")])
    assert answer[0].text.endswith("— Ирина")
    fresh = await Appeal.get(id=appeal.id)
    assert fresh.status is AppealStatus.OPEN and fresh.first_response_at is not None
    out = await Message.filter(appeal_id=appeal.id, direction="out").first()
    assert out is not None and out.text == "Заказ уже в пути, будет завтра."


async def test_start_greets_in_the_customers_language_with_the_menu(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    fake.add_private_chat(510, "John", language_code="en")
    fake.user_message(510, "/start")
    fake.add_private_chat(511, "Анна", language_code="ru")
    fake.user_message(511, "/start")
    en = await eventually(lambda: fake.sent_to(510))
    ru = await eventually(lambda: fake.sent_to(511))
    assert "Hello" in (en[0].text or "") and "Здравствуйте" in (ru[0].text or "")
    labels = [b["text"] for row in ru[0].reply_markup["keyboard"] for b in row]
    assert labels == [
        "📝 Новое обращение",
        "📋 Мои обращения",
        "📦 Мои заказы",
        "📱 Поделиться телефоном",
    ]
    assert ru[0].reply_markup["keyboard"][1][1]["request_contact"] is True
    assert not await Appeal.all().exists()


async def test_my_appeals_and_new_appeal_buttons(tdesk: Desk, fake: FakeTelegram) -> None:
    first = await open_appeal(fake, 512, "Где мой заказ 77?")
    fake.user_message(512, "📝 Новое обращение")
    await eventually(lambda: any("Опишите" in t for t in texts_in(fake, 512)))
    fake.user_message(512, "Хочу оптовую скидку")
    second = await eventually(lambda: Appeal.filter(subject="Хочу оптовую скидку").first())
    assert second.id != first.id
    fake.user_message(512, "📋 Мои обращения")
    listing = await eventually(lambda: [t for t in texts_in(fake, 512) if "Ваши обращения" in t])
    assert first.number in listing[0] and second.number in listing[0]


async def test_shared_phone_links_chat_to_existing_customer(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    status, body = await tdesk.post(
        "/api/v1/appeals",
        {"name": "Мария", "phone": "+7 916 123-45-67", "text": "Вопрос с сайта"},
    )
    assert status in (201, 202), body
    web_appeal = await eventually(lambda: Appeal.filter(channel="web").first())
    fake.add_private_chat(513, "Маша")
    fake.user_message(513, "Привет")
    await eventually(lambda: ContactPoint.filter(channel="telegram", address="513").exists())
    fake.user_contact(513, "79161234567")
    await eventually(lambda: any("Телефон сохранён" in t for t in texts_in(fake, 513)))
    point = await ContactPoint.get(channel="telegram", address="513")
    assert point.customer_id == web_appeal.customer_id
    assert await Appeal.filter(customer_id=web_appeal.customer_id).count() == 2


async def test_media_from_customer_is_copied_by_file_id_and_downloadable(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    fake.add_private_chat(520, "Олеся")
    fake.user_message(520, photo=b"\x89PNG fake photo", caption="Вот так пришло")
    appeal = await eventually(lambda: Appeal.filter(staff_thread__isnull=False).first())
    posts = await eventually(
        lambda: [s for s in fake.sent_to(STAFF_CHAT, int(appeal.staff_thread)) if s.media_type]
    )
    stored = await Message.get(appeal_id=appeal.id, direction="in")
    assert stored.text == "Вот так пришло" and stored.attachments[0]["kind"] == "photo"
    assert posts[0].file_id == stored.attachments[0]["ref"]  # sent by id, not uploaded
    assert "Вот так пришло" in (posts[0].caption or "")
    assert not any(r.files for r in fake.calls("sendPhoto"))
    async with tdesk.http.get(
        f"{tdesk.base}/api/v1/appeals/{appeal.number}/messages/{stored.id}/attachments/0",
        headers=tdesk.auth,
    ) as resp:
        assert resp.status == 200
        assert await resp.read() == b"\x89PNG fake photo"


async def test_album_arrives_as_one_message(tdesk: Desk, fake: FakeTelegram) -> None:
    fake.add_private_chat(521, "Игорь")
    for i in range(3):
        fake.user_message(
            521,
            photo=f"photo-{i}".encode(),
            caption="Брак" if i == 0 else None,
            media_group_id="g1",
        )
    appeal = await eventually(lambda: Appeal.filter(staff_thread__isnull=False).first())
    await eventually(
        lambda: [s for s in fake.sent_to(STAFF_CHAT, int(appeal.staff_thread)) if s.media_group_id]
    )
    messages = await Message.filter(appeal_id=appeal.id, direction="in")
    assert len(messages) == 1 and len(messages[0].attachments) == 3
    await eventually(
        lambda: (
            len([s for s in fake.sent_to(STAFF_CHAT, int(appeal.staff_thread)) if s.media_group_id])
            == 3
        )
    )
    assert len(fake.calls("sendMediaGroup")) == 1


async def test_agent_photo_and_document_reach_the_customer(tdesk: Desk, fake: FakeTelegram) -> None:
    appeal = await open_appeal(fake, 522, "Пришлите инструкцию")
    thread = int(appeal.staff_thread)
    fake.group_message(
        STAFF_CHAT,
        AGENT_ID,
        None,
        thread,
        document=b"%PDF manual",
        caption="Инструкция",
        file_name="manual.pdf",
    )
    fake.group_message(STAFF_CHAT, AGENT_ID, None, thread, photo=b"\x89PNG scheme")
    sent = await eventually(
        lambda: len([s for s in fake.sent_to(522) if s.media_type]) >= 2 and fake.sent_to(522)
    )
    kinds = [s.media_type for s in sent if s.media_type]
    assert kinds == ["document", "photo"]
    assert any("Инструкция" in (s.caption or "") for s in sent)


async def test_customer_edit_reaches_topic_as_edit_note(tdesk: Desk, fake: FakeTelegram) -> None:
    fake.add_private_chat(523, "Вера")
    update = fake.user_message(523, "Заказ 100")
    appeal = await open_appeal(fake, 523, "Заказ 100")
    fake.user_edit(523, update["message"]["message_id"], "Заказ 1001")
    note = await eventually(
        lambda: [t for t in texts_in(fake, STAFF_CHAT, int(appeal.staff_thread)) if "изменил" in t]
    )
    assert "Заказ 100" in note[0] and "Заказ 1001" in note[0]
    stored = await Message.filter(appeal_id=appeal.id).order_by("id").first()
    assert stored is not None and stored.text == "Заказ 1001" and stored.edited_at is not None


async def test_same_update_twice_is_stored_once(tdesk: Desk, fake: FakeTelegram) -> None:
    appeal = await open_appeal(fake, 524, "Дубль?")
    update = fake.user_message(524, "Второе сообщение")
    fake.redeliver(update)
    fake.redeliver(update)
    await eventually(
        lambda: any("Второе" in t for t in texts_in(fake, STAFF_CHAT, int(appeal.staff_thread)))
    )
    fake.user_message(524, "Третье")
    await eventually(lambda: Message.filter(text="Третье").exists())
    assert await Message.filter(text="Второе сообщение").count() == 1
    await eventually(
        lambda: any("Третье" in t for t in texts_in(fake, STAFF_CHAT, int(appeal.staff_thread)))
    )
    relayed = " ".join(texts_in(fake, STAFF_CHAT, int(appeal.staff_thread)))
    assert relayed.count("Второе сообщение") == 1


async def test_long_answer_is_split_at_boundaries_never_cut(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 525, "Расскажите подробно")
    paragraph = "Это предложение ответа. " * 60
    long = "\n\n".join(f"{i}. {paragraph.strip()}" for i in range(5))
    status, _ = await tdesk.post(f"/api/v1/appeals/{appeal.number}/messages", {"text": long})
    assert status == 201

    def answer_parts() -> list[str]:
        return [t for t in texts_in(fake, 525) if "предложение" in t]

    # The parts go out one by one (the per-chat limit): wait for the last paragraph.
    parts = await eventually(lambda: any("4. Это" in t for t in answer_parts()) and answer_parts())
    assert len(parts) >= 2 and all(len(p) <= 4096 for p in parts)
    assert "".join(parts).replace("\n", "").replace(" ", "") == long.replace("\n", "").replace(
        " ", ""
    )


async def test_429_is_honoured_and_the_answer_still_arrives_once(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 526, "Срочно")
    fake.fail_next("sendMessage", 429, retry_after=1)
    fake.fail_next("sendMessage", 502)
    status, _ = await tdesk.post(
        f"/api/v1/appeals/{appeal.number}/messages", {"text": "Уже смотрим"}
    )
    assert status == 201
    await eventually(lambda: any("Уже смотрим" in t for t in texts_in(fake, 526)), timeout=15)
    assert sum("Уже смотрим" in t for t in texts_in(fake, 526)) == 1


async def test_update_whose_handling_failed_is_fetched_again_and_stored_once(
    tdesk: Desk, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = tdesk.service.ctx.stream  # type: ignore[union-attr]
    real = stream.publish
    failures = []

    async def flaky(message: Any) -> str:
        if not failures:
            failures.append(message.external_id)
            raise ConnectionError("the stream is down")
        return await real(message)

    monkeypatch.setattr(stream, "publish", flaky)
    fake.add_private_chat(530, "Тимур")
    fake.user_message(530, "Не потеряйте меня")
    stored = await eventually(lambda: Message.filter(text="Не потеряйте меня").all(), timeout=15)
    assert failures and len(stored) == 1
    appeal = await eventually(lambda: Appeal.filter(staff_card_ref__isnull=False).first())
    await eventually(
        lambda: any(
            "Не потеряйте" in t for t in texts_in(fake, STAFF_CHAT, int(appeal.staff_thread))
        )
    )


async def test_the_bot_keeps_nothing_in_memory_per_customer(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    # A desk runs for months and hears from ever new customers: what it keeps of them is in
    # the database, not in the process (aiogram's in-memory FSM kept a record for each).
    for user in range(900, 960):
        fake.add_private_chat(user, f"Клиент {user}")
        fake.user_message(user, "Здравствуйте, где мой заказ?")
    await eventually(lambda: _count_in(60), timeout=60, what="every message stored")
    bot = tdesk.service.ctx.desks["telegram"]  # type: ignore[union-attr]
    assert len(bot.dispatcher.fsm.storage.storage) == 0


async def _count_in(count: int) -> bool:
    return await Message.filter(direction="in").count() >= count


async def test_a_fetch_from_many_chats_keeps_each_chat_s_order_and_a_failed_chat_waits(
    fake: FakeTelegram, start_desk: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One getUpdates answer holds several customers' messages: their chats are handled side by
    # side (one group commit), each chat's messages in order. One chat's first message fails
    # to be stored once: that chat's second message must not overtake it.
    desk: Desk = await start_desk(**telegram_settings(fake))
    stream = desk.service.ctx.stream  # type: ignore[union-attr]
    real = stream.publish
    failed: list[str] = []

    async def flaky(message: Any) -> str:
        if message.address == "542" and not failed:
            failed.append(message.text)
            raise ConnectionError("the stream is down")
        return await real(message)

    monkeypatch.setattr(stream, "publish", flaky)
    for user in range(540, 546):
        fake.add_private_chat(user, f"Клиент {user}")
    for n in range(3):
        for user in range(540, 546):
            fake.user_message(user, f"Клиент {user}, сообщение {n}")

    await eventually(lambda: _count_in(18), timeout=30, what="every message stored")
    assert failed == ["Клиент 542, сообщение 0"]
    for user in range(540, 546):
        rows = await Message.filter(address=str(user), direction="in").order_by("id")
        assert [m.text for m in rows] == [f"Клиент {user}, сообщение {n}" for n in range(3)]
