"""Agents at work in the staff group: answers, notes, commands, buttons, joining, refusals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench.fakes.telegram import FakeTelegram
from models import Agent, Appeal, AppealStatus, Direction, Message, Priority
from tests.conftest import Desk
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    STRANGER_ID,
    SUPERVISOR_ID,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)


@pytest.fixture
async def tdesk(fake: FakeTelegram, start_desk: Callable[..., Any]) -> Desk:
    desk: Desk = await start_desk(**telegram_settings(fake))
    return desk


async def test_internal_note_is_kept_and_never_relayed(tdesk: Desk, fake: FakeTelegram) -> None:
    appeal = await open_appeal(fake, 601, "Нужен акт сверки")
    thread = int(appeal.staff_thread)
    fake.group_message(STAFF_CHAT, AGENT_ID, "// клиент должен нам за май", thread)
    fake.group_message(STAFF_CHAT, AGENT_ID, "Подготовим акт сегодня", thread)

    await eventually(lambda: any("Подготовим" in t for t in texts_in(fake, 601)))
    note = await eventually(
        lambda: Message.filter(appeal_id=appeal.id, direction=Direction.NOTE).first()
    )
    assert note.text.strip() == "клиент должен нам за май"
    assert not any("должен" in t for t in texts_in(fake, 601))


async def test_stranger_in_a_topic_is_told_privately_once_and_nothing_relayed(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    fake.add_private_chat(STRANGER_ID, "Гость")  # the stranger has started the bot
    appeal = await open_appeal(fake, 602, "Вопрос по доставке")
    thread = int(appeal.staff_thread)
    fake.group_message(STAFF_CHAT, STRANGER_ID, "Я тоже отвечу клиенту", thread)

    told = await eventually(lambda: texts_in(fake, STRANGER_ID), what="the private refusal")
    assert "/join" in told[0] and "Поддержка" in told[0]
    fake.group_message(STAFF_CHAT, STRANGER_ID, "И ещё раз", thread)
    fake.group_message(STAFF_CHAT, AGENT_ID, "Отвечаю клиенту", thread)
    await eventually(lambda: any("Отвечаю клиенту" in t for t in texts_in(fake, 602)))
    assert not any("отвечу" in t or "ещё раз" in t for t in texts_in(fake, 602))
    assert (
        not await Message.filter(appeal_id=appeal.id, direction=Direction.OUT)
        .exclude(text__contains="Отвечаю")
        .exists()
    )
    assert len(texts_in(fake, STRANGER_ID)) == 1  # once, not once per message
    group_posts = texts_in(fake, STAFF_CHAT)
    assert not any("/join" in t for t in group_posts), "the refusal was shown to every agent"


async def test_stranger_the_bot_cannot_write_to_is_named_in_general_not_in_the_topic(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 604, "Вопрос по оплате")
    thread = int(appeal.staff_thread)
    fake.group_message(STAFF_CHAT, STRANGER_ID, "Я тоже отвечу клиенту", thread)

    refusal = await eventually(
        lambda: [s for s in fake.sent_to(STAFF_CHAT) if "/join" in (s.body or "")]
    )
    assert refusal[0].message_thread_id is None  # General, not the appeal's topic
    assert f"tg://user?id={STRANGER_ID}" in str(refusal[0].message.get("entities"))
    assert not any("/join" in t for t in texts_in(fake, STAFF_CHAT, thread))
    assert not any("отвечу" in t for t in texts_in(fake, 604))


async def test_join_request_approved_by_supervisor_makes_an_agent(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    fake.group_message(STAFF_CHAT, STRANGER_ID, "/join")
    request = await eventually(
        lambda: [
            s
            for s in fake.sent_to(STAFF_CHAT)
            if (s.reply_markup or {}).get("inline_keyboard") and "Гость" in (s.body or "")
        ]
    )
    approve = request[0].reply_markup["inline_keyboard"][0][0]["callback_data"]
    fake.callback(AGENT_ID, STAFF_CHAT, request[0].message_id, approve)  # not a supervisor
    fake.callback(SUPERVISOR_ID, STAFF_CHAT, request[0].message_id, approve)

    agent = await eventually(lambda: Agent.filter(telegram_id=STRANGER_ID, active=True).first())
    assert agent.name == "Гость"
    answers = await eventually(lambda: len(fake.callback_answers) >= 2 and fake.callback_answers)
    assert any("руководитель" in (a.get("text") or "") for a in answers.values())


async def test_commands_change_the_appeal_and_its_card(tdesk: Desk, fake: FakeTelegram) -> None:
    appeal = await open_appeal(fake, 603, "Не работает личный кабинет")
    thread = int(appeal.staff_thread)

    async def run(command: str) -> Appeal:
        sent = fake.group_message(STAFF_CHAT, AGENT_ID, command, thread)
        command_id = sent["message"]["message_id"]
        await eventually(
            lambda: any(s.reply_to_message_id == command_id for s in fake.sent_to(STAFF_CHAT)),
            what=command,
        )
        return await Appeal.get(id=appeal.id)

    assert (await run("/take")).assignee_id is not None
    assert "Важно" in (await run("/tag Важно")).tags
    assert (await run("/priority urgent")).priority is Priority.URGENT
    assert (await run("/postpone ждём ответа бухгалтерии")).status is AppealStatus.PENDING
    assert (await run("/reopen")).status is AppealStatus.OPEN
    assert (await run("/assign Олег")).assignee_id == (
        await Agent.get(telegram_id=SUPERVISOR_ID)
    ).id
    await run("/note проверить логи")
    assert await Message.filter(
        appeal_id=appeal.id, direction=Direction.NOTE, text="проверить логи"
    ).exists()
    history = await run("/customer")
    assert any(history.number in t and "Обращений" in t for t in texts_in(fake, STAFF_CHAT, thread))
    await run("/help")
    assert any("/transfer" in t for t in texts_in(fake, STAFF_CHAT, thread))
    resolved = await run("/close")
    assert resolved.status is AppealStatus.RESOLVED

    topic = fake.chat(STAFF_CHAT).topics[thread]
    await eventually(lambda: topic.closed, what="topic closed")
    assert topic.name.startswith("✅ ")
    card = fake.chat(STAFF_CHAT).messages[int(appeal.staff_card_ref)]
    assert "Олег" in card["text"] and "срочный" in card["text"]


async def test_card_buttons_take_mark_important_postpone_and_resolve(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 604, "Есть ли в наличии синий чайник?")
    card_id = int(appeal.staff_card_ref)

    def press(action: str, who: int = AGENT_ID) -> None:
        card = fake.chat(STAFF_CHAT).messages[card_id]
        data = [
            b["callback_data"]
            for row in card["reply_markup"]["inline_keyboard"]
            for b in row
            if b["callback_data"].startswith(f"ap:{action}:")
        ]
        fake.callback(who, STAFF_CHAT, card_id, data[0])

    press("take")
    await eventually(lambda: Appeal.filter(id=appeal.id, assignee_id__isnull=False).exists())
    press("imp")
    await eventually(lambda: Appeal.filter(id=appeal.id, priority=Priority.HIGH).exists())
    await eventually(lambda: "❗" in fake.chat(STAFF_CHAT).topics[int(appeal.staff_thread)].name)
    press("later")
    await eventually(lambda: Appeal.filter(id=appeal.id, status=AppealStatus.PENDING).exists())
    press("take", who=STRANGER_ID)  # refused with a notice, nothing changes
    press("done")
    await eventually(lambda: Appeal.filter(id=appeal.id, status=AppealStatus.RESOLVED).exists())
    assert (await Appeal.get(id=appeal.id)).assignee_id == (
        await Agent.get(telegram_id=AGENT_ID)
    ).id
    await eventually(lambda: fake.chat(STAFF_CHAT).topics[int(appeal.staff_thread)].closed)
    notices = [a.get("text") or "" for a in fake.callback_answers.values()]
    assert any("Только сотрудники" in n for n in notices)


async def test_pass_button_offers_colleagues_and_hands_over(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 605, "Прошу счёт на оплату")
    card = fake.chat(STAFF_CHAT).messages[int(appeal.staff_card_ref)]
    data = [b["callback_data"] for row in card["reply_markup"]["inline_keyboard"] for b in row]
    fake.callback(
        AGENT_ID,
        STAFF_CHAT,
        int(appeal.staff_card_ref),
        next(d for d in data if d.startswith("ap:pass:")),
    )
    picker = await eventually(
        lambda: [
            s
            for s in fake.sent_to(STAFF_CHAT, int(appeal.staff_thread))
            if "Кому передать" in (s.body or "")
        ]
    )
    choice = picker[0].reply_markup["inline_keyboard"][0][0]
    assert choice["text"] == "Олег"
    fake.callback(AGENT_ID, STAFF_CHAT, picker[0].message_id, choice["callback_data"])
    oleg = await Agent.get(telegram_id=SUPERVISOR_ID)
    await eventually(lambda: Appeal.filter(id=appeal.id, assignee_id=oleg.id).exists())


async def test_customer_writing_after_resolution_reopens_topic(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 606, "Сломалась ручка")
    thread = int(appeal.staff_thread)
    fake.group_message(STAFF_CHAT, AGENT_ID, "/close", thread)
    topic = fake.chat(STAFF_CHAT).topics[thread]
    await eventually(lambda: topic.closed)
    fake.user_message(606, "Ручка опять сломалась!")
    await eventually(lambda: any("опять" in t for t in texts_in(fake, STAFF_CHAT, thread)))
    assert not topic.closed
    assert (await Appeal.get(id=appeal.id)).status is AppealStatus.OPEN


async def test_agent_correcting_an_answer_edits_the_customers_copy(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 607, "Какой у вас адрес?")
    thread = int(appeal.staff_thread)
    sent = fake.group_message(STAFF_CHAT, AGENT_ID, "Мы на Лесной, 5", thread)
    delivered = await eventually(
        lambda: [s for s in fake.sent_to(607) if "Лесной" in (s.text or "")]
    )
    fake.user_edit(AGENT_ID, sent["message"]["message_id"], "Мы на Лесной, 15", chat_id=STAFF_CHAT)

    def customer_sees() -> str:
        return str(fake.chat(607).messages[delivered[0].message_id].get("text", ""))

    await eventually(lambda: "Лесной, 15" in customer_sees(), what="the customer's copy edited")
    assert customer_sees().endswith("— Ирина")
    stored = await Message.get(appeal_id=appeal.id, direction=Direction.OUT)
    assert stored.text == "Мы на Лесной, 15" and stored.edited_at is not None
    assert (
        len(
            [
                s
                for s in fake.sent_to(607)
                if "Лесной" in (s.text or "") and s.method == "sendMessage"
            ]
        )
        == 1
    )


async def test_command_without_its_argument_explains_how_it_is_written(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 608, "Вопрос про счёт")
    sent = fake.group_message(STAFF_CHAT, AGENT_ID, "/assign", int(appeal.staff_thread))
    answer = await eventually(
        lambda: [
            s
            for s in fake.sent_to(STAFF_CHAT)
            if s.reply_to_message_id == sent["message"]["message_id"]
        ]
    )
    assert answer[0].body == "Использование: /assign имя"
