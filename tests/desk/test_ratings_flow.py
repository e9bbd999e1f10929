"""Service-quality ratings (seed 004) the way customers and managers meet them: resolve →
request → score → comment → alert or thank-you, on Telegram, VK and email; expiry; one rating
per day; forged and expired links; a link-following mail scanner that records nothing."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bench.fakes.telegram import FakeTelegram, SentMessage
from desk.features.forget import forget_customer
from desk.features.ratings import RatingClosed
from models import (
    Agent,
    Appeal,
    AppealStatus,
    Customer,
    Event,
    Message,
    Order,
    Rating,
    RatingRequest,
    RatingState,
    Task,
    Warmth,
)
from tests.channels.test_email_channel import customer_mail
from tests.conftest import Desk
from tests.fakes.mailserver import MailAccount, SmtpCapture, email_settings
from tests.fakes.vk import DEFAULT_TOKEN as VK_TOKEN
from tests.fakes.vk import FakeVk
from tests.telegram_world import (
    AGENT_ID,
    MANAGER_ID,
    MANAGERS_CHAT,
    STAFF_CHAT,
    MovableClock,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)

NOON = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 12:00 in Moscow: no quiet hours in the way


class RunningClock(MovableClock):
    """Time that runs from ``start`` as the wall clock does (Telegram's per-chat pacing needs
    it to move); ``now = …`` jumps it, and it keeps running from there."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._base = time.monotonic()

    def __call__(self) -> datetime:
        return self.now + timedelta(seconds=time.monotonic() - self._base)

    def jump(self, to: datetime) -> None:
        self.now, self._base = to, time.monotonic()


def desk_settings(fake: FakeTelegram, **overrides: Any) -> dict[str, Any]:
    settings = telegram_settings(fake, telegram={"managers_chat_id": MANAGERS_CHAT}, **overrides)
    settings["agents"] = [
        *settings["agents"],
        {"name": "Вера", "telegram_id": MANAGER_ID, "role": "manager"},
    ]
    return settings


async def resolve(desk: Desk, appeal: Appeal) -> None:
    status, body = await desk.post(
        f"/api/v1/appeals/{appeal.number}/status", {"status": "resolved"}
    )
    assert status == 200, body


async def rating_request_in(fake: FakeTelegram, chat: int, after: int = 0) -> SentMessage:
    """The newest rating request in a customer's chat (the one with five buttons)."""

    def found() -> list[SentMessage]:
        return [
            m
            for m in fake.sent_to(chat)
            if m.message_id > after
            and m.reply_markup
            and len(m.reply_markup["inline_keyboard"][0]) == 5
        ]

    # Behind the answer and the «решено» notice: a private chat gets about one message a second.
    return (await eventually(found, timeout=30, what="a rating request"))[-1]


async def fired_rule(appeal: Appeal, rule: str) -> list[Event]:
    rows = await Event.filter(appeal_id=appeal.id, kind="automation.fired").order_by("id")
    return [r for r in rows if r.data.get("rule") == rule]


def buttons_of(message: SentMessage) -> list[dict[str, Any]]:
    return [b for row in message.reply_markup["inline_keyboard"] for b in row]


def toasts(fake: FakeTelegram) -> list[str]:
    return [t.get("text") or "" for t in fake.callback_answers.values()]


async def test_low_score_in_telegram_alerts_managers_and_takes_a_comment(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock = RunningClock(NOON)
    desk: Desk = await start_desk(clock=clock, **desk_settings(fake))
    appeal = await open_appeal(fake, 901, "Не могу оплатить заказ картой", name="Павел")
    await desk.post(f"/api/v1/appeals/{appeal.number}/assign", {"agent": "Ирина"})
    await resolve(desk, appeal)

    request = await rating_request_in(fake, 901)
    assert appeal.number in (request.text or "") and "от 1" in (request.text or "")
    buttons = buttons_of(request)
    assert [b["text"] for b in buttons] == ["1 😡", "2 😕", "3 😐", "4 🙂", "5 😍"]

    fake.callback(901, 901, request.message_id, buttons[1]["callback_data"])  # 2 😕
    rating = await eventually(lambda: Rating.filter(appeal_id=appeal.id).first())
    ira = await Agent.get(telegram_id=AGENT_ID)
    assert (rating.score, rating.via, rating.agent_id) == (2, "telegram", ira.id)
    assert any("Спасибо за оценку 2" in t for t in toasts(fake))

    # Within seconds the managers chat has the card, the score, the agent and two buttons.
    alert = await eventually(
        lambda: [m for m in fake.sent_to(MANAGERS_CHAT) if "Низкая оценка" in (m.text or "")]
    )
    assert "2 из 5" in alert[0].text and appeal.number in alert[0].text
    assert "Ирина" in alert[0].text
    labels = [b["text"] for b in buttons_of(alert[0])]
    assert labels == ["🙋 Взять", "📞 Перезвонить"]
    manager = await Agent.get(telegram_id=MANAGER_ID)
    follow_up = await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").first())
    assert follow_up.assignee_id == manager.id
    # Seed 002: a rating of 2 or less makes the customer cold.
    assert (await Customer.get(id=appeal.customer_id)).warmth is Warmth.COLD

    # The bot asks for a comment; the next message is it and does not reopen the appeal.
    prompt = await eventually(
        lambda: [
            m
            for m in fake.sent_to(901)
            if "Пропустить" in json.dumps(m.reply_markup or {}, ensure_ascii=False)
        ]
    )
    assert "Спасибо за оценку 2" in (prompt[0].text or "")
    comment = fake.user_message(901, "Оплата не проходила три дня, а ответили только через сутки")
    commented = await eventually(
        lambda: Rating.filter(appeal_id=appeal.id, comment__contains="три дня").first()
    )
    assert commented.id == rating.id
    await eventually(lambda: any("комментарий записан" in t for t in texts_in(fake, 901)))
    follow = await eventually(
        lambda: [
            m for m in fake.sent_to(MANAGERS_CHAT) if "Комментарий к оценке 2" in (m.text or "")
        ]
    )
    assert "три дня" in follow[0].text
    fresh = await Appeal.get(id=appeal.id)
    assert fresh.status is AppealStatus.RESOLVED and fresh.rating_state is RatingState.RATED
    assert await Appeal.filter(customer_id=appeal.customer_id).count() == 1
    thread = int(appeal.staff_thread or 0)
    await eventually(
        lambda: any(
            "Оценка клиента: <b>2 из 5</b>" in t for t in texts_in(fake, STAFF_CHAT, thread)
        )
    )

    # «Взять»: the manager takes the appeal and it is open again; «Перезвонить»: a call task.
    fake.callback(
        MANAGER_ID, MANAGERS_CHAT, alert[0].message_id, buttons_of(alert[0])[0]["callback_data"]
    )
    taken = await eventually(
        lambda: Appeal.filter(
            id=appeal.id, assignee_id=manager.id, status=AppealStatus.OPEN
        ).first()
    )
    assert taken is not None
    fake.callback(
        MANAGER_ID, MANAGERS_CHAT, alert[0].message_id, buttons_of(alert[0])[1]["callback_data"]
    )

    async def two_tasks() -> bool:
        return await Task.filter(appeal_id=appeal.id, kind="call").count() == 2

    await eventually(two_tasks, what="the call-back task")
    call = await Task.filter(appeal_id=appeal.id).order_by("-id").first()
    assert call is not None and call.assignee_id == manager.id and "Павел" in call.text

    # Telegram delivers the comment again: it stays the comment and is no message of the appeal.
    fake.redeliver(comment)
    fake.user_message(901, "Спасибо, жду звонка")
    await eventually(lambda: Message.filter(text="Спасибо, жду звонка").exists())
    assert not await Message.filter(text__contains="три дня").exists()
    assert await Rating.filter(appeal_id=appeal.id).count() == 1


async def test_top_score_thanks_and_skip_ends_the_comment(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    desk: Desk = await start_desk(clock=RunningClock(NOON), **desk_settings(fake))
    appeal = await open_appeal(fake, 902, "Как поменять адрес доставки?", name="Лена")
    await resolve(desk, appeal)
    request = await rating_request_in(fake, 902)
    fake.callback(902, 902, request.message_id, buttons_of(request)[4]["callback_data"])
    await eventually(lambda: any("высокую оценку" in t for t in texts_in(fake, 902)))
    assert not [m for m in fake.sent_to(MANAGERS_CHAT) if "Низкая оценка" in (m.text or "")]

    fake.user_message(902, "пропустить")
    await eventually(
        lambda: RatingRequest.filter(appeal_id=appeal.id, comment_ref__isnull=False).first()
    )
    rating = await Rating.get(appeal_id=appeal.id)
    assert (rating.score, rating.comment) == (5, "")
    assert (await Customer.get(id=appeal.customer_id)).warmth is Warmth.WARM

    # An agent says how warm the relationship is, in the appeal's topic.
    thread = int(appeal.staff_thread or 0)
    fake.group_message(STAFF_CHAT, AGENT_ID, "/warmth горячий", message_thread_id=thread)
    await eventually(lambda: Customer.filter(id=appeal.customer_id, warmth=Warmth.HOT).first())
    change = await Event.filter(kind="customer.state_changed").order_by("-id").first()
    assert change is not None and change.data["reason"] == "agent" and change.actor == "Ирина"
    await eventually(
        lambda: any("Клиент теперь горячий" in t for t in texts_in(fake, STAFF_CHAT, thread))
    )
    # After the comment window a message is an ordinary one again: it reopens the appeal.
    fake.user_message(902, "И ещё вопрос про оплату")
    await eventually(lambda: Appeal.filter(id=appeal.id, status=AppealStatus.OPEN).first())


async def test_one_rating_per_day_and_a_closed_window(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock = RunningClock(NOON)
    desk: Desk = await start_desk(clock=clock, **desk_settings(fake))
    appeal = await open_appeal(fake, 903, "Пришёл не тот размер", name="Ольга")
    await resolve(desk, appeal)
    request = await rating_request_in(fake, 903)
    press = buttons_of(request)

    fake.callback(903, 903, request.message_id, press[2]["callback_data"])  # 3
    await eventually(lambda: Rating.filter(appeal_id=appeal.id, score=3).first())
    fake.callback(903, 903, request.message_id, press[3]["callback_data"])  # 4, same day
    await eventually(lambda: Rating.filter(appeal_id=appeal.id, score=4).first())
    assert await Rating.filter(appeal_id=appeal.id).count() == 1

    clock.jump(NOON + timedelta(days=1))
    fake.callback(903, 903, request.message_id, press[4]["callback_data"])  # 5, the next day
    await eventually(lambda: Rating.filter(appeal_id=appeal.id, score=5).first())
    days = await Rating.filter(appeal_id=appeal.id).order_by("day").values_list("day", "score")
    assert days == [(date(2026, 11, 23), 4), (date(2026, 11, 24), 5)]

    clock.jump(NOON + timedelta(days=7, minutes=5))  # the default window is 7 days
    before = len(fake.callback_answers)
    fake.callback(903, 903, request.message_id, press[0]["callback_data"])
    await eventually(lambda: len(fake.callback_answers) > before)
    assert any("Срок для оценки уже истёк" in t for t in toasts(fake))
    assert await Rating.filter(appeal_id=appeal.id, score=1).count() == 0
    ratings = desk.service.ctx.ratings  # type: ignore[union-attr]
    with pytest.raises(RatingClosed):
        await ratings.rate(int(press[0]["callback_data"].split(":")[1]), 1, via="telegram")


async def test_no_request_for_spam_nor_a_second_open_one(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    desk: Desk = await start_desk(clock=RunningClock(NOON), **desk_settings(fake))
    spam = await open_appeal(fake, 904, "Купите рекламу у нас", name="Бот")
    thread = int(spam.staff_thread or 0)
    fake.group_message(STAFF_CHAT, AGENT_ID, "/tag spam", message_thread_id=thread)

    async def tagged() -> bool:
        return "spam" in (await Appeal.get(id=spam.id)).tags

    await eventually(tagged, what="the spam tag")
    await resolve(desk, spam)
    fired = await eventually(lambda: fired_rule(spam, "rating request"))
    assert fired[0].data["outcomes"][0]["result"] == "skipped"
    assert "spam" in fired[0].data["outcomes"][0]["reason"]

    junk = await open_appeal(fake, 907, "Заработок без вложений!!!", name="Бот-2")
    fake.group_message(STAFF_CHAT, AGENT_ID, "/spam", message_thread_id=int(junk.staff_thread or 0))
    await eventually(lambda: Appeal.filter(id=junk.id, status=AppealStatus.CLOSED).first())
    assert not await RatingRequest.filter(appeal_id__in=[spam.id, junk.id]).exists()
    assert not any("решено" in t for t in texts_in(fake, 907))

    appeal = await open_appeal(fake, 905, "Где чек по заказу?", name="Юля")
    await resolve(desk, appeal)
    await rating_request_in(fake, 905)
    status, _ = await desk.post(f"/api/v1/appeals/{appeal.number}/status", {"status": "open"})
    assert status == 200
    await resolve(desk, appeal)

    async def asked_twice() -> list[Event]:
        return (await fired_rule(appeal, "rating request"))[1:]

    second = await eventually(asked_twice, what="the second resolve's rules")
    assert second[0].data["outcomes"][0]["result"] == "skipped"
    assert "still open" in second[0].data["outcomes"][0]["reason"]
    assert await RatingRequest.filter(appeal_id=appeal.id).count() == 1


async def test_vk_buttons_score_and_comment(
    fake: FakeTelegram, start_desk: Callable[..., Any], tmp_path: Any, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # vkbottle may write next to the process
    async with FakeVk() as vk:
        vk.add_user(811, "Ксения", "Петрова")
        desk: Desk = await start_desk(
            clock=RunningClock(NOON),
            **desk_settings(fake),
            vk={"token": VK_TOKEN, "group_id": vk.group_id, "api_url": vk.url, "wait_s": 1},
        )
        await eventually(lambda: vk.long_poll_requests, what="the desk polling VK")
        vk.user_message(811, "Здравствуйте, не приходит код подтверждения")
        appeal = await eventually(lambda: Appeal.filter(channel="vk").first())
        await resolve(desk, appeal)
        sent = await eventually(
            lambda: [m for m in vk.sent_to(811) if m.keyboard and "от 1" in m.text]
        )
        labels = [b["action"]["label"] for row in sent[0].keyboard["buttons"] for b in row]
        assert labels == ["1 😡", "2 😕", "3 😐", "4 🙂", "5 😍"]
        one = sent[0].keyboard["buttons"][0][0]["action"]["payload"]
        vk.button_press(811, json.loads(one), sent[0].conversation_message_id)
        answer = await eventually(lambda: vk.event_answers)
        assert "Спасибо за оценку 1" in (answer[0].event_data or {}).get("text", "")
        await eventually(
            lambda: [
                m
                for m in vk.sent_to(811)
                if "Пропустить" in m.text
                or (m.keyboard and "Пропустить" in json.dumps(m.keyboard, ensure_ascii=False))
            ]
        )
        vk.user_message(811, "Код так и не пришёл, пришлось звонить")
        rating = await eventually(
            lambda: Rating.filter(appeal_id=appeal.id, comment__contains="звонить").first()
        )
        assert (rating.score, rating.via) == (1, "vk")
        alert = await eventually(
            lambda: [
                m for m in fake.sent_to(MANAGERS_CHAT) if "Низкая оценка: 1 из 5" in (m.text or "")
            ]
        )
        assert appeal.number in alert[0].text
    assert (await Appeal.get(id=appeal.id)).status is AppealStatus.RESOLVED


async def test_mail_links_open_a_page_and_only_the_confirmation_counts(
    fake: FakeTelegram,
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
    start_desk: Callable[..., Any],
) -> None:
    clock = RunningClock(NOON)
    desk: Desk = await start_desk(
        clock=clock, **desk_settings(fake), email=email_settings(mailbox, smtp_capture)
    )
    await mailbox.deliver(customer_mail("Здравствуйте! Не пришёл чек по заказу 4521.\n\nАнна"))
    appeal = await eventually(lambda: Appeal.filter(channel="email").first(), timeout=15)
    await smtp_capture.wait_for(1, timeout=10)  # the acknowledgement
    await resolve(desk, appeal)
    mails = await smtp_capture.wait_for(3, timeout=10)  # + resolved notice, + rating request
    request = next(m for m in mails if "Оцените" in str(m.message["Subject"]))
    assert request.rcpt_tos == ["anna@example.com"]
    text = request.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    links = re.findall(r"^(\d) \S+: (http\S+/feedback/\S+)$", text, re.MULTILINE)
    assert [score for score, _ in links] == ["1", "2", "3", "4", "5"]
    page_part = request.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert page_part.count("/feedback/") == 5 and "3 😐</a>" in page_part
    three = "/feedback/" + links[2][1].split("/feedback/", 1)[1]
    assert three.endswith("?score=3")
    # Each mail about the appeal carries its status page, the rating request too.
    for mail in mails:
        plain = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert re.search(r"^Статус обращения и вся переписка: http\S+/s/\S+$", plain, re.M)

    async with aiohttp.ClientSession() as http:
        # A mail scanner opens every link: pages, no ratings.
        for _, url in links:
            async with http.get(desk.base + "/feedback/" + url.split("/feedback/", 1)[1]) as r:
                assert r.status == 200
        async with http.get(desk.base + three) as r:
            page = await r.text()
        assert 'value="3" checked' in page and "Подтвердить оценку" in page
        assert await Rating.filter(appeal_id=appeal.id).count() == 0

        form = {"score": "3", "comment": "Чек пришёл, но <b>через неделю</b>"}
        async with http.post(desk.base + three, data=form) as r:
            done = await r.text()
        assert r.status == 200 and "записаны" in done
        assert "&lt;b&gt;через неделю&lt;/b&gt;" in done  # escaped, never markup
        rating = await Rating.get(appeal_id=appeal.id)
        assert (rating.score, rating.via) == (3, "email") and "через неделю" in rating.comment

        # Revisit and change: the day keeps one rating, the last one.
        async with http.post(desk.base + three, data={"score": "5", "comment": ""}) as r:
            assert r.status == 200
        assert await Rating.filter(appeal_id=appeal.id).values_list("score", flat=True) == [5]
        # A comment of 2,000 characters as the browser counts them (line breaks sent as CRLF)
        # is kept whole; a longer one is shown again to shorten, not cut unseen.
        typed = "\r\n".join(["ок"] * 667)
        async with http.post(desk.base + three, data={"score": "5", "comment": typed}) as r:
            assert r.status == 200
        rating = await Rating.get(appeal_id=appeal.id)
        assert rating.comment == typed.replace("\r\n", "\n") and len(rating.comment) == 2000
        async with http.post(desk.base + three, data={"score": "5", "comment": "я" * 2001}) as r:
            assert r.status == 422
            shown = await r.text()
        assert "не больше 2000 символов" in shown and "я" * 2001 in shown
        for bad in ("9", "²", "3" * 5000):
            async with http.post(desk.base + three, data={"score": bad}) as r:
                assert r.status == 400 and "от 1 до 5" in await r.text()
        async with http.get(desk.base + three.replace("=3", "=" + "3" * 5000)) as r:
            assert r.status == 200 and 'value="5" checked' in await r.text()  # today's score

        token = three.split("/feedback/", 1)[1].split("?", 1)[0]
        payload, mac = token.split(".")
        forged = f"/feedback/{payload[:-2]}xy.{mac}"
        async with http.post(desk.base + forged, data={"score": "1"}) as r:
            assert r.status == 403 and "повреждена" in await r.text()
        async with http.get(desk.base + "/feedback/garbage") as r:
            assert r.status == 403

        clock.jump(NOON + timedelta(days=8))
        async with http.post(desk.base + three, data={"score": "1"}) as r:
            assert r.status == 410 and "срок истёк" in await r.text()
        assert await Rating.filter(appeal_id=appeal.id).values_list("score", flat=True) == [5]
        alert = "Низкая оценка: 3 из 5"
        low = await eventually(  # the alert goes through the outbox: it may still be on its way
            lambda: [m for m in fake.sent_to(MANAGERS_CHAT) if alert in (m.text or "")]
        )
        assert "через неделю" in low[0].text
        # The manager's call task: the request and the customer's comment each on its own line.
        call = await Task.get(appeal_id=appeal.id, kind="call")
        assert (
            "выясните, что пошло не так, и помогите.\nКомментарий клиента: «Чек пришёл" in call.text
        )

        # A forgotten customer's link (still valid) says so and takes no rating.
        clock.jump(NOON)
        await forget_customer(appeal.customer_id, actor="test", now=clock())
        async with http.post(desk.base + three, data={"score": "1"}) as r:
            assert r.status == 410 and "Ваши данные удалены" in await r.text()
        async with http.get(desk.base + three) as r:
            assert r.status == 410
    assert await Rating.filter(appeal_id=appeal.id).values_list("score", flat=True) == [5]


async def test_a_completed_order_is_rated_too(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    desk: Desk = await start_desk(clock=RunningClock(NOON), **desk_settings(fake))
    fake.add_private_chat(906, "Марина")
    body = {
        "external_id": "7001",
        "stage": "delivered",
        "customer": {"name": "Марина", "telegram_id": 906},
    }
    assert (await desk.post("/api/v1/orders", body))[0] == 201
    status, _ = await desk.post("/api/v1/orders/7001/stage", {"stage": "completed"})
    assert status == 200
    request = await rating_request_in(fake, 906)
    assert "7001" in (request.text or "")
    fake.callback(906, 906, request.message_id, buttons_of(request)[0]["callback_data"])
    order = await Order.get(external_id="7001")
    rating = await eventually(lambda: Rating.filter(order_id=order.id).first())
    assert rating.score == 1 and rating.appeal_id is None
    alert = await eventually(
        lambda: [m for m in fake.sent_to(MANAGERS_CHAT) if "Низкая оценка" in (m.text or "")]
    )
    assert "заказ № 7001" in alert[0].text
    assert [b["text"] for b in buttons_of(alert[0])] == ["📞 Перезвонить"]


async def test_the_call_back_task_comes_due_once(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock = RunningClock(NOON)
    settings = desk_settings(fake)
    settings["workers"] = {**settings["workers"], "sla_scan_s": 0.1}
    settings["automation"] = {
        "rules": [
            {
                "name": "overdue call",
                "on": "task.due",
                "if": "kind == 'call'",
                "do": [{"action": "notify_staff", "template": "rule_note"}],
            }
        ]
    }
    desk: Desk = await start_desk(clock=clock, **settings)
    appeal = await open_appeal(fake, 908, "Курьер нагрубил", name="Игорь")
    await resolve(desk, appeal)
    request = await rating_request_in(fake, 908)
    fake.callback(908, 908, request.message_id, buttons_of(request)[0]["callback_data"])
    task = await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").first())
    assert task.due_at is not None and task.due_at > NOON
    thread = int(appeal.staff_thread or 0)
    await asyncio.sleep(0.3)
    assert not any("Срок задачи наступил" in t for t in texts_in(fake, STAFF_CHAT, thread))

    clock.jump(NOON + timedelta(minutes=61))
    await eventually(
        lambda: any("Срок задачи наступил" in t for t in texts_in(fake, STAFF_CHAT, thread))
    )
    await eventually(lambda: any("overdue call" in t for t in texts_in(fake, STAFF_CHAT, thread)))
    await asyncio.sleep(0.5)  # more scans raise nothing again
    assert await Event.filter(kind="task.due").count() == 1
    assert (await Task.get(id=task.id)).due_raised_at is not None
