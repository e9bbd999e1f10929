"""Telegram's hard edges: blocked users, webhooks, flood limits, plain groups, the feed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bench.fakes.telegram import FakeTelegram, Limits
from channels.base import RateLimited
from channels.telegram.send import PRUNE_AT, TelegramLimiter, TelegramSender
from models import Appeal, ContactPoint, Event, Message, OutboxItem, Task
from tests.conftest import Desk, free_port
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    WEBHOOK_SECRET,
    FastClock,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)


async def test_blocked_customer_gets_a_call_task_and_the_topic_is_told(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    await start_desk(**telegram_settings(fake))
    appeal = await open_appeal(fake, 701, "Перезвоните мне")
    fake.block_user(701)
    fake.group_message(STAFF_CHAT, AGENT_ID, "Сейчас перезвоним", int(appeal.staff_thread))

    task = await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").first())
    assert appeal.number in task.text
    point = await ContactPoint.get(channel="telegram", address="701")
    assert point.reachable is False
    kinds = await Event.filter(appeal_id=appeal.id).values_list("kind", flat=True)
    assert "delivery.failed" in kinds and "task.created" in kinds
    await eventually(
        lambda: any("позвонить" in t for t in texts_in(fake, STAFF_CHAT, int(appeal.staff_thread)))
    )


async def test_a_blocked_chat_is_not_tried_again_until_the_customer_writes_from_it(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    await start_desk(**telegram_settings(fake))
    appeal = await open_appeal(fake, 703, "Перезвоните мне")
    thread = int(appeal.staff_thread)
    fake.block_user(703)
    fake.group_message(STAFF_CHAT, AGENT_ID, "Сейчас перезвоним", thread)
    await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").exists())

    def tries() -> int:
        return sum(str(c.params.get("chat_id")) == "703" for c in fake.calls("sendMessage"))

    before = tries()
    fake.group_message(STAFF_CHAT, AGENT_ID, "Или пришлите номер телефона", thread)
    await eventually(
        lambda: Message.filter(text="Или пришлите номер телефона", delivery_state="failed").exists()
    )
    assert tries() == before  # the blocked chat is not asked again
    tasks = await Task.filter(appeal_id=appeal.id, kind="call")
    assert len(tasks) == 1  # one open call task for the appeal, with both texts to pass on
    assert "«Сейчас перезвоним" in tasks[0].text
    assert "«Или пришлите номер телефона" in tasks[0].text

    # The customer unblocks the bot and writes: the chat is reachable again.
    fake.unblock_user(703)
    fake.user_message(703, "Я снова здесь")
    await eventually(
        lambda: ContactPoint.filter(channel="telegram", address="703", reachable=True).exists()
    )
    fake.group_message(STAFF_CHAT, AGENT_ID, "Отлично, звоним", thread)
    await eventually(lambda: any("Отлично, звоним" in t for t in texts_in(fake, 703)))


async def test_blocked_customer_with_another_chat_gets_the_message_there(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    await start_desk(**telegram_settings(fake))
    appeal = await open_appeal(fake, 702, "Вопрос")
    fake.add_private_chat(703, "Второй аккаунт")
    fake.user_message(703, "Это я же")
    await eventually(lambda: ContactPoint.filter(address="703").exists())
    # The same person: both chats shared the same phone, the first chat first (two chats'
    # updates are handled side by side, so the order between them is the test's to set).
    fake.user_contact(702, "+79990001122")
    await eventually(
        lambda: ContactPoint.filter(channel="phone", customer_id=appeal.customer_id).exists()
    )
    fake.user_contact(703, "+79990001122")
    await eventually(
        lambda: ContactPoint.filter(address="703", customer_id=appeal.customer_id).exists()
    )
    fake.block_user(702)
    fake.group_message(STAFF_CHAT, AGENT_ID, "Ответ по вопросу", int(appeal.staff_thread))
    await eventually(lambda: any("Ответ по вопросу" in t for t in texts_in(fake, 703)))
    assert "delivery.rerouted" in await Event.filter(appeal_id=appeal.id).values_list(
        "kind", flat=True
    )


async def test_webhook_checks_the_secret_and_stores_an_update_once(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    port = free_port()
    desk: Desk = await start_desk(
        **telegram_settings(fake, telegram={"mode": "webhook", "webhook_secret": WEBHOOK_SECRET}),
        http={"host": "127.0.0.1", "port": port},
        public_url=f"http://127.0.0.1:{port}",
    )
    assert fake.webhook is not None and fake.webhook.url.endswith("/telegram/webhook")
    fake.add_private_chat(710, "Лена")
    update = fake.user_message(710, "Через вебхук")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{desk.base}/telegram/webhook",
            json=update,
            headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"},
        ) as resp:
            assert resp.status == 401
        async with http.post(f"{desk.base}/telegram/webhook", json=update) as resp:
            assert resp.status == 401
        async with http.post(
            f"{desk.base}/telegram/webhook",
            data=b"{not json",
            headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
        ) as resp:
            assert resp.status == 400
    await eventually(lambda: Message.filter(text="Через вебхук").exists())
    fake.redeliver(update)
    await eventually(lambda: len(fake.webhook_attempts) >= 2)
    await eventually(lambda: any("Через вебхук" in t for t in texts_in(fake, STAFF_CHAT)))
    assert await Message.filter(text="Через вебхук").count() == 1


@pytest.fixture
async def plain_fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as tg:
        tg.add_group(STAFF_CHAT, "Поддержка", forum=False, members=[AGENT_ID])
        tg.add_user(AGENT_ID, "Ирина")
        yield tg


@pytest.fixture
def fast_clock() -> FastClock:
    return FastClock(speed=60.0)


@pytest.fixture
async def fast_fake(fast_clock: FastClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=fast_clock.monotonic) as tg:
        tg.limits = Limits()  # Telegram's: 20 per minute in the group, 1/s per private chat
        tg.add_group(STAFF_CHAT, "Поддержка", members=[AGENT_ID])
        yield tg


async def test_plain_group_threads_by_replies_to_the_card(
    plain_fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    fake = plain_fake
    await start_desk(**telegram_settings(fake))
    fake.add_private_chat(720, "Денис")
    fake.user_message(720, "Без тем")
    appeal = await eventually(lambda: Appeal.filter(staff_card_ref__isnull=False).first())
    relay = await eventually(
        lambda: [
            s
            for s in fake.sent_to(STAFF_CHAT)
            if (s.body or "").startswith("👤") and "Без тем" in (s.body or "")
        ]
    )
    assert relay[0].message["reply_to_message"]["message_id"] == int(appeal.staff_card_ref)
    fake.group_message(
        STAFF_CHAT, AGENT_ID, "Отвечаю реплаем", reply_to_message_id=relay[0].message_id
    )
    await eventually(lambda: any("Отвечаю реплаем" in t for t in texts_in(fake, 720)))
    fake.group_message(STAFF_CHAT, AGENT_ID, "Просто болтаю")
    # Updates are handled in order: once a later reply has arrived, the chatter was handled too.
    fake.group_message(
        STAFF_CHAT, AGENT_ID, "Второй ответ", reply_to_message_id=relay[0].message_id
    )
    await eventually(lambda: any("Второй ответ" in t for t in texts_in(fake, 720)))
    assert not any("болтаю" in t for t in texts_in(fake, 720))


async def test_feed_is_pinned_and_empties_when_everyone_is_answered(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    await start_desk(**telegram_settings(fake))
    appeal = await open_appeal(fake, 730, "Жду ответа")
    chat = fake.chat(STAFF_CHAT)

    def feed_text() -> str:
        return chat.messages[chat.pinned[-1]]["text"] if chat.pinned else ""

    await eventually(lambda: appeal.number in feed_text(), what="appeal in the feed")
    fake.group_message(STAFF_CHAT, AGENT_ID, "Ответили", int(appeal.staff_thread))
    await eventually(lambda: "Лента пуста" in feed_text(), what="empty feed")
    assert len(chat.pinned) == 1  # edited, not re-posted


async def test_300_messages_from_30_customers_reach_their_topics_in_order_once(
    fast_clock: FastClock, fast_fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock, fake = fast_clock, fast_fake
    await start_desk(clock=clock.now, **telegram_settings(fake, telegram={"feed_interval_s": 30}))
    for user in range(800, 830):
        fake.add_private_chat(user, f"Клиент {user}")
    for i in range(10):
        for user in range(800, 830):
            fake.user_message(user, f"m-{user}-{i:02d}")

    async def all_relayed() -> bool:
        return (
            await Message.filter(direction="in").count() == 300
            and not await OutboxItem.filter(channel="staff", status__in=["pending", "sending"])
            .exclude(queue_key="staff:feed")
            .exists()
        )

    await eventually(all_relayed, timeout=60, what="every message relayed")
    for user in range(800, 830):
        appeal = await Appeal.get(customer__contact_points__address=str(user))
        seen = [
            token
            for text in texts_in(fake, STAFF_CHAT, int(appeal.staff_thread))
            for token in text.split()
            if token.startswith(f"m-{user}-")
        ]
        assert seen == [f"m-{user}-{i:02d}" for i in range(10)], user
    posts = [s for s in fake.sent if s.chat_id == STAFF_CHAT and s.method != "editMessageText"]
    assert len(posts) < 30 * 11  # merged, not one post per message


async def test_webhook_answers_500_when_storing_fails_and_telegram_sends_again(
    fake: FakeTelegram, start_desk: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    desk: Desk = await start_desk(
        **telegram_settings(fake, telegram={"mode": "webhook", "webhook_secret": WEBHOOK_SECRET}),
        http={"host": "127.0.0.1", "port": port},
        public_url=f"http://127.0.0.1:{port}",
    )
    stream = desk.service.ctx.stream  # type: ignore[union-attr]
    real = stream.publish
    calls: list[str] = []

    async def flaky(message: Any) -> str:
        calls.append(message.external_id)
        if len(calls) == 1:
            raise ConnectionError("the database is restarting")
        return await real(message)

    monkeypatch.setattr(stream, "publish", flaky)
    fake.add_private_chat(740, "Зоя")
    fake.user_message(740, "Дойду со второго раза")
    await eventually(lambda: Message.filter(text="Дойду со второго раза").exists())
    statuses = [a.status for a in fake.webhook_attempts]
    assert 500 in statuses and statuses[-1] == 200
    assert await Message.filter(text="Дойду со второго раза").count() == 1


async def test_answers_with_the_same_telegram_message_id_in_two_chats_are_both_recorded(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    # Telegram numbers messages per chat: two customers' chats reach the same ids, and an
    # answer's record must not collide with the other chat's (else it is sent again and again).
    desk: Desk = await start_desk(**telegram_settings(fake))
    first = await open_appeal(fake, 721, "Где заказ?")
    second = await open_appeal(fake, 722, "Где заказ?")
    for appeal in (first, second):
        status, _ = await desk.post(f"/api/v1/appeals/{appeal.number}/messages", {"text": "Едет"})
        assert status == 201

    async def both_sent() -> bool:
        sent = Message.filter(direction="out", delivery_state="sent", text="Едет")
        return await sent.count() == 2

    await eventually(both_sent, what="both answers recorded as sent")
    answers = await Message.filter(direction="out", text="Едет").order_by("id")
    assert [m.delivery_state.value for m in answers] == ["sent", "sent"]
    assert answers[0].external_id != answers[1].external_id
    for user in (721, 722):
        assert len([s for s in fake.sent_to(user) if "Едет" in (s.text or "")]) == 1


async def test_the_limiter_forgets_chats_at_rest_and_still_holds_the_busy_ones() -> None:
    # A long-running desk writes to ever new customers: what the limiter keeps must follow the
    # chats written to in the last seconds, not every chat it ever saw.
    now = [0.0]
    limiter = TelegramLimiter(lambda: now[0], bot_per_second=1_000_000)
    for chat in range(1, 20_001):
        now[0] += 0.01
        async with limiter.sending(chat):
            pass
    async with limiter.sending(20_000, 2):  # its burst of 3, one already spent
        pass
    with pytest.raises(RateLimited):
        async with limiter.sending(20_000):
            pass
    with pytest.raises(RateLimited):
        async with limiter.sending(19_990, 3):  # written to 0.1 s ago: its bucket is not full
            pass
    assert len(limiter._buckets) < 2 * PRUNE_AT


async def test_a_busy_second_for_the_bot_holds_back_no_customer(fake: FakeTelegram) -> None:
    # Seventy customers answered at once: more than the bot's 30 messages a second. That limit
    # is every chat's, and frees up within a second: the sends wait for it instead of telling
    # forty customers' chats to wait (the delivery worker once held each of them, and past a
    # few hundred held chats its passes failed). Telegram's own limits stay on in the fake.
    sender = TelegramSender(fake.make_bot(), TelegramLimiter())
    chats = [fake.add_private_chat(31_000 + i, f"Клиент {i}") for i in range(70)]
    await asyncio.gather(*(sender.send(chat.id, "Ваше обращение принято") for chat in chats))
    assert all(len(fake.sent_to(chat.id)) == 1 for chat in chats)
    await sender.bot.session.close()


async def test_sends_slow_to_reach_telegram_count_in_the_second_they_arrive(
    fake: FakeTelegram,
) -> None:
    # On a busy machine or a slow network a send reaches Telegram well after it was made, and
    # Telegram counts it only then. Thirty answers that arrive 0.8 s late and the next thirty
    # must not meet in Telegram's second: the desk once counted a send when it was made, and
    # the second thirty went out at 1.0 s and were refused with 429.
    sender = TelegramSender(fake.make_bot(), TelegramLimiter())
    chats = [fake.add_private_chat(32_000 + i, f"Клиент {i}") for i in range(60)]
    fake.arrive_late_next("sendMessage", 0.8, count=30)
    await asyncio.gather(*(sender.send(chat.id, "Ваше обращение принято") for chat in chats))
    assert all(len(fake.sent_to(chat.id)) == 1 for chat in chats)
    await sender.bot.session.close()


async def test_a_send_held_back_by_the_flood_limit_is_not_remembered(fake: FakeTelegram) -> None:
    sender = TelegramSender(fake.make_bot(), TelegramLimiter(group_messages=1))
    await sender.send(STAFF_CHAT, "первое", key=1)
    for key in range(2, 500):
        with pytest.raises(RateLimited):
            await sender.send(STAFF_CHAT, "следующее", key=key)
    assert sender._progress == {}  # only a row cut half-way keeps its sent parts
    await sender.bot.session.close()


@pytest.mark.parametrize(("per_minute", "sent"), [(None, 20), (40, 40)])
async def test_the_group_s_flood_limit_is_a_setting(
    start_desk: Callable[..., Any], per_minute: int | None, sent: int
) -> None:
    # A local Bot API server, or a benchmark's fake, may allow more than Telegram: the desk
    # keeps to what the settings say, Telegram's 20 posts a minute by default.
    async with FakeTelegram(limits=Limits(group_messages=50)) as tg:
        tg.add_group(STAFF_CHAT, "Поддержка", forum=True, members=[1001])
        limits = {"limits": {"group_per_minute": per_minute}} if per_minute else {}
        desk = await start_desk(**telegram_settings(tg, telegram=limits))
        sender = desk.service.ctx.desks["telegram"].sender
        for key in range(50):
            with contextlib.suppress(RateLimited):
                await sender.send(STAFF_CHAT, f"пост {key}", key=key)
        # The desk's own calls (the feed's post and its pin) count too: the group got the
        # limit's worth (the pin may still be on its way), and no more.

        def posted() -> int:
            return len(tg.sent_to(STAFF_CHAT)) + len(tg.calls("pinChatMessage"))

        await eventually(lambda: posted() >= sent, what=f"{sent} group calls")
        await asyncio.sleep(0.3)
        assert posted() == sent


def test_the_bot_api_answer_classes_are_built_once() -> None:
    # aiogram asks pydantic for Response[T] on every call; pydantic's cache of parametrised
    # classes is weak, so without a holder every garbage collection made the next call build
    # the class and its schema again (a fifth of the desk's CPU on the staff-group path).
    import gc

    from aiogram.methods.base import Response
    from aiogram.types import ForumTopic, Message

    from channels.telegram.updates import RESPONSE_TYPES

    gc.collect()
    assert Response[Message] in RESPONSE_TYPES
    assert Response[ForumTopic] in RESPONSE_TYPES
    assert Response[list[Message]] in RESPONSE_TYPES


async def test_topic_calls_count_in_the_group_s_budget_so_a_burst_meets_no_429(
    start_desk: Callable[..., Any],
) -> None:
    # Twelve customers write at once: twelve topics and twelve cards (and the feed) are more
    # than the group's 20 a minute. Telegram counts the topic calls too: the desk must hold the
    # rest back itself rather than be refused (it once met 314 refusals on topic creation).
    async with FakeTelegram() as tg:
        tg.add_group(STAFF_CHAT, "Поддержка", forum=True, members=[AGENT_ID])
        await start_desk(**telegram_settings(tg))
        for user in range(34_000, 34_012):
            tg.add_private_chat(user, f"Клиент {user}")
            tg.user_message(user, "Здравствуйте, где мой заказ?")
        await eventually(lambda: len(tg.calls("createForumTopic")) >= 8, timeout=20)
        await asyncio.sleep(3)  # the desk keeps delivering what fits
        group_calls = [
            r
            for r in tg.requests
            if str(r.params.get("chat_id")) == str(STAFF_CHAT) and r.method != "getChat"
        ]
        refused = [r.method for r in group_calls if r.status == 429]
        assert refused == []
        assert len([r for r in group_calls if r.status == 200]) <= 20


async def test_late_answers_are_waited_for_while_other_customers_go_on(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    # Telegram takes each call at once but answers late, past the desk's ordinary timeout: the
    # topic and the posts are in the group. Trying again would make a second topic for the
    # appeal and post its messages twice; the desk waits for the answers instead, and the
    # other customers' topics go on meanwhile.
    late_s = 3.0
    await start_desk(**telegram_settings(fake, telegram={"timeout_s": 0.5, "answer_wait_s": 10}))
    fake.timeout_next("createForumTopic", late_s)
    fake.timeout_next("sendMessage", late_s, count=3)
    fake.add_private_chat(761, "Первый")
    fake.user_message(761, "Где мой заказ?")
    await eventually(lambda: fake.calls("createForumTopic"), what="the first topic asked for")
    fake.add_private_chat(762, "Второй")
    fake.user_message(762, "Нужен счёт")

    second = await eventually(
        lambda: [t for t in texts_in(fake, STAFF_CHAT) if "Нужен счёт" in t], what="second post"
    )
    first_topic_at = fake.calls("createForumTopic")[0].at
    second_post = next(
        r for r in fake.calls("sendMessage") if "Нужен счёт" in str(r.params.get("text"))
    )
    assert second and second_post.at < first_topic_at + late_s, "held behind a late answer"

    async def settled() -> bool:
        return (
            not await OutboxItem.filter(status__in=["pending", "sending"])
            .exclude(queue_key="staff:feed")
            .exists()
        )

    await eventually(settled, timeout=20, what="every row sent")
    assert len(fake.calls("createForumTopic")) == 2  # one topic per appeal
    relayed = [t for t in texts_in(fake, STAFF_CHAT) if t.startswith("👤")]
    for question in ("Где мой заказ?", "Нужен счёт"):
        assert len([t for t in relayed if question in t]) == 1, relayed
    for user in (761, 762):
        answers = texts_in(fake, user)
        assert answers and len(answers) == len(set(answers)), answers


async def test_a_failed_merged_post_is_sent_again_with_the_same_messages_only(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    # A post that failed may have reached the group after all (Telegram answered 5xx or late):
    # its retry carries what it carried, and what the customer wrote since follows apart.
    await start_desk(**telegram_settings(fake))
    appeal = await open_appeal(fake, 763, "Начало разговора")
    thread = int(appeal.staff_thread)

    def relays() -> list[str]:
        return [t for t in texts_in(fake, STAFF_CHAT, thread) if t.startswith("👤")]

    await eventually(relays, what="the first message relayed")
    fake.fail_next("sendMessage", 502)
    for text in ("первое", "второе", "третье"):
        fake.user_message(763, text)
    await eventually(
        lambda: any(r.status == 502 for r in fake.calls("sendMessage")), what="a failed post"
    )
    for text in ("четвёртое", "пятое"):
        fake.user_message(763, text)
    words = ("первое", "второе", "третье", "четвёртое", "пятое")
    await eventually(
        lambda: all(any(w in t for t in relays()) for w in words), timeout=20, what="all relayed"
    )
    failed = next(r for r in fake.calls("sendMessage") if r.status == 502)
    assert relays()[1] == failed.params["text"]  # sent again as it was, nothing added
    assert "четвёртое" not in relays()[1]
    for word in words:
        assert len([t for t in relays() if word in t]) == 1, relays()
