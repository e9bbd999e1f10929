"""Orders (seed 003) as a shop would use them: the API, stage notices at decent local hours,
answers by Telegram buttons and by confirmed mail links, call tasks, idempotent retries."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bench.fakes.telegram import FakeTelegram
from models import Agent, Customer, Event, Lifecycle, Order, OutboxItem, OutboxStatus, Task
from tests.conftest import Desk
from tests.fakes.mailserver import MailAccount, SmtpCapture, email_settings
from tests.fakes.vk import DEFAULT_TOKEN as VK_TOKEN
from tests.fakes.vk import FakeVk
from tests.telegram_world import (
    MANAGER_ID,
    MovableClock,
    eventually,
    telegram_settings,
    texts_in,
)

SHOP_MORNING = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 10:00 in Yekaterinburg
SHOP_EVENING = datetime(2026, 11, 23, 17, 30, tzinfo=UTC)  # 22:30 there


@pytest.fixture
def fake(fake: FakeTelegram) -> FakeTelegram:
    fake.add_private_chat(701, "Марина")
    return fake


def shop_settings(fake: FakeTelegram, **overrides: Any) -> dict[str, Any]:
    settings = telegram_settings(fake, **overrides)
    settings["agents"] = [
        *settings["agents"],
        {"name": "Вера", "telegram_id": MANAGER_ID, "role": "manager"},
    ]
    return settings


def order_body(external_id: str, stage: str = "new", **customer: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "stage": stage,
        "customer": {"name": "Марина", "timezone": "Asia/Yekaterinburg", **customer},
    }


async def test_stage_notices_respect_local_hours_and_buttons_answer(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock = MovableClock(SHOP_MORNING)
    desk: Desk = await start_desk(clock=clock, **shop_settings(fake))
    status, body = await desk.post("/api/v1/orders", order_body("1001", telegram_id=701))
    assert status == 201, body
    notice = await eventually(lambda: [t for t in texts_in(fake, 701) if "1001" in t])
    assert "Марина" in notice[0] and "Заказ принят" in notice[0]

    clock.now = SHOP_EVENING
    status, body = await desk.post("/api/v1/orders/1001/stage", {"stage": "ready"})
    assert status == 200 and body["stage"] == "ready"
    order = await Order.get(external_id="1001")
    held = await eventually(lambda: Event.filter(kind="automation.fired").order_by("-id").first())
    assert held.data["rule"] == "order stage: ready"
    assert held.data["outcomes"][0]["not_before"] == "2026-11-24T04:00:00+00:00"  # 09:00 there

    clock.now = datetime(2026, 11, 24, 4, 0, 5, tzinfo=UTC)
    desk.service.ctx.outbox.wake()  # type: ignore[union-attr]
    sent = await eventually(
        lambda: [m for m in fake.sent_to(701) if "время доставки" in (m.text or "")]
    )
    buttons = [b for row in sent[0].reply_markup["inline_keyboard"] for b in row]
    assert [b["text"] for b in buttons] == ["Утром, 9–13", "Вечером, 17–21", "Позвоните мне"]

    # Someone else's chat cannot answer for Марина.
    fake.add_private_chat(702, "Чужой")
    fake.callback(702, 701, sent[0].message_id, buttons[0]["callback_data"])
    fake.callback(701, 701, sent[0].message_id, buttons[2]["callback_data"])
    task = await eventually(lambda: Task.filter(kind="call", customer_id=order.customer_id).first())
    manager = await Agent.get(telegram_id=MANAGER_ID)
    assert task.assignee_id == manager.id and "1001" in task.text and "позвонить" in task.text
    order = await Order.get(external_id="1001")
    answers = [h for h in order.stage_history if h["kind"] == "answer"]
    assert [(a["choice"], a["via"]) for a in answers] == [("call_me", "telegram")]
    toasts = list(fake.callback_answers.values())
    assert any("Записали ваш выбор: Позвоните мне" in (t.get("text") or "") for t in toasts)
    assert any("уже недоступен" in (t.get("text") or "") for t in toasts)


async def test_my_orders_in_the_bot_show_each_current_stage(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    desk: Desk = await start_desk(**shop_settings(fake))
    for external_id, stage in (("2001", "shipped"), ("2002", "completed")):
        status, _ = await desk.post(
            "/api/v1/orders", order_body(external_id, stage, telegram_id=701)
        )
        assert status == 201
    fake.user_message(701, "📦 Мои заказы")
    listing = await eventually(lambda: [t for t in texts_in(fake, 701) if "Ваши заказы" in t])
    assert "2001" in listing[0] and "Заказ передан в доставку" in listing[0]
    assert "2002" in listing[0] and "Заказ выполнен" in listing[0]


async def test_a_notice_held_for_the_night_does_not_hold_up_the_conversation(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    from tests.desk.test_ratings_flow import RunningClock

    # 22:00 in Yekaterinburg, where the customer lives: the stage notice waits for 09:00.
    clock = RunningClock(datetime(2026, 11, 23, 17, 0, tzinfo=UTC))
    desk: Desk = await start_desk(clock=clock, **shop_settings(fake))
    status, _ = await desk.post("/api/v1/orders", order_body("2101", "new", telegram_id=702))
    assert status == 201
    status, _ = await desk.post("/api/v1/orders/2101/stage", {"stage": "shipped"})
    assert status == 200
    # She asks about her orders and is answered at once; the night's notices still wait.
    fake.user_message(702, "📦 Мои заказы")
    listing = await eventually(lambda: [t for t in texts_in(fake, 702) if "Ваши заказы" in t])
    assert "2101" in listing[0]
    assert not [t for t in texts_in(fake, 702) if "передан в доставку" in t and "Ваши" not in t]
    # Morning: the notices arrive, in the order they were made.
    clock.jump(datetime(2026, 11, 24, 4, 1, tzinfo=UTC))
    desk.service.ctx.outbox.wake()
    shipped = await eventually(
        lambda: [
            t for t in texts_in(fake, 702) if "Заказ передан в доставку" in t and "Ваши" not in t
        ]
    )
    assert shipped
    received = [t for t in texts_in(fake, 702) if "Заказ принят" in t and "Ваши" not in t]
    assert received and texts_in(fake, 702).index(received[0]) < texts_in(fake, 702).index(
        shipped[0]
    )


async def test_retries_and_bad_input_change_nothing_twice(desk: Desk) -> None:
    body = order_body("3001", email="marina@example.com")
    assert (await desk.post("/api/v1/orders", body))[0] == 201
    assert (await desk.post("/api/v1/orders", body))[0] == 200  # an update, no new order
    key = {"Idempotency-Key": "stage-3001-shipped"}
    url = "/api/v1/orders/3001/stage"
    for _ in range(2):
        status, out = await desk.post(url, {"stage": "shipped"}, headers=key)
        assert status == 200
    stages = [h["stage"] for h in out["history"] if h["kind"] == "stage"]
    assert stages == ["new", "shipped"]
    status, out = await desk.post(url, {"stage": "delivered"}, headers=key)
    assert status == 422 and out["error"]["code"] == "idempotency_key_reused"
    status, out = await desk.post(url, {"stage": "teleported"})
    assert status == 422 and "unknown stage 'teleported'" in out["error"]["message"]
    status, out = await desk.post("/api/v1/orders/9999/stage", {"stage": "shipped"})
    assert status == 404
    status, out = await desk.post("/api/v1/orders", order_body("3002", email="not-an-address"))
    assert status == 422 and "not an email address" in out["error"]["message"]
    status, out = await desk.post("/api/v1/orders", {"external_id": "3003", "customer": {}})
    assert status == 422 and "at least one contact" in out["error"]["message"]
    status, _ = await desk.post("/api/v1/orders", body, auth=False)
    assert status == 401


async def test_mail_links_need_a_confirming_click(
    fake: FakeTelegram,
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
    start_desk: Callable[..., Any],
) -> None:
    desk: Desk = await start_desk(
        clock=MovableClock(SHOP_MORNING),
        **shop_settings(fake),
        email=email_settings(mailbox, smtp_capture),
    )
    body = order_body("4001", stage="ready", email="olga@example.com")
    body["customer"]["name"] = "Ольга"
    assert (await desk.post("/api/v1/orders", body))[0] == 201
    mails = await smtp_capture.wait_for(1, timeout=10)
    text = mails[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "4001" in text and "Ольга" in text
    links = dict(re.findall(r"^(.+?): (http\S+/c/\S+)$", text, re.MULTILINE))
    assert set(links) == {"Утром, 9–13", "Вечером, 17–21", "Позвоните мне"}
    path = "/c/" + links["Вечером, 17–21"].rsplit("/c/", 1)[1]

    async with aiohttp.ClientSession() as http:
        async with http.get(desk.base + path) as resp:  # a mail scanner following the link
            page = await resp.text()
            assert resp.status == 200 and "Подтвердить" in page
        order = await Order.get(external_id="4001")
        assert not [h for h in order.stage_history if h["kind"] == "answer"]
        async with http.post(desk.base + path) as resp:
            assert resp.status == 200 and "Записали ваш выбор" in await resp.text()
        async with http.post(desk.base + path[:-3] + "xyz") as resp:  # altered token
            assert resp.status == 403
    order = await Order.get(external_id="4001")
    answers = [(h["choice"], h["via"]) for h in order.stage_history if h["kind"] == "answer"]
    assert answers == [("evening", "email")]


async def test_vk_buttons_answer_an_order_question(
    fake: FakeTelegram, start_desk: Callable[..., Any], tmp_path: Any, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # vkbottle may write next to the process
    async with FakeVk() as vk:
        vk.add_user(801, "Ксения", "Петрова")
        desk: Desk = await start_desk(
            clock=MovableClock(SHOP_MORNING),
            **shop_settings(fake),
            vk={"token": VK_TOKEN, "group_id": vk.group_id, "api_url": vk.url, "wait_s": 1},
        )
        await eventually(lambda: vk.long_poll_requests, what="the desk polling VK")
        body = order_body("5001", stage="ready", vk_id=801)
        assert (await desk.post("/api/v1/orders", body))[0] == 201
        sent = await eventually(lambda: [m for m in vk.sent_to(801) if "5001" in m.text])
        assert sent[0].keyboard is not None and sent[0].keyboard["inline"] is True
        labels = [b["action"]["label"] for row in sent[0].keyboard["buttons"] for b in row]
        assert labels == ["Утром, 9–13", "Вечером, 17–21", "Позвоните мне"]
        evening = sent[0].keyboard["buttons"][1][0]["action"]["payload"]
        vk.button_press(801, json.loads(evening), sent[0].conversation_message_id)
        answer = await eventually(lambda: vk.event_answers)
        assert "Вечером, 17–21" in (answer[0].event_data or {}).get("text", "")

        # «Мои заказы» from the VK menu lists the order with its stage.
        vk.user_message(801, "Начать", payload={"command": "start"})
        greeting = await eventually(
            lambda: [m for m in vk.sent_to(801) if m.keyboard and "Здравствуйте" in m.text]
        )
        menu = [row[0]["action"] for row in greeting[0].keyboard["buttons"]]
        orders_button = next(b for b in menu if "orders" in b["payload"])
        vk.button_press(
            801, json.loads(orders_button["payload"]), greeting[0].conversation_message_id
        )
        listing = await eventually(lambda: [m for m in vk.sent_to(801) if "Ваши заказы" in m.text])
        assert "№ 5001" in listing[0].text and "Заказ готов к доставке" in listing[0].text
    order = await Order.get(external_id="5001")
    answers = [(h["choice"], h["via"]) for h in order.stage_history if h["kind"] == "answer"]
    assert answers == [("evening", "vk")]


async def test_status_page_shows_the_customers_orders(desk: Desk) -> None:
    status, appeal = await desk.post(
        "/api/v1/appeals",
        {"name": "Ольга", "email": "olga@example.com", "text": "Когда привезут диван?"},
        auth=False,
    )
    assert status == 201
    body = order_body("6001", stage="shipped", email="OLGA@example.com")
    assert (await desk.post("/api/v1/orders", body))[0] == 201
    async with aiohttp.ClientSession() as http, http.get(appeal["status_url"]) as resp:
        page = await resp.text()
    assert resp.status == 200
    assert "Ваши заказы" in page and "6001" in page and "Заказ передан в доставку" in page


async def test_a_first_order_makes_the_customer_active(desk: Desk) -> None:
    body = order_body("8001", email="nina@example.com")
    assert (await desk.post("/api/v1/orders", body))[0] == 201
    assert (await desk.post("/api/v1/orders", order_body("8002", email="nina@example.com")))[
        0
    ] == 201
    order = await Order.get(external_id="8001")
    customer = await Customer.get(id=order.customer_id)
    assert customer.lifecycle is Lifecycle.ACTIVE
    changes = await Event.filter(customer_id=customer.id, kind="customer.state_changed")
    assert [(e.data["before"], e.data["after"], e.data["reason"]) for e in changes] == [
        ("prospect", "active", "first order")
    ]

    await Customer.filter(id=customer.id).update(lifecycle=Lifecycle.LOST)
    assert (await desk.post("/api/v1/orders", order_body("8003", email="nina@example.com")))[
        0
    ] == 201
    last = (
        await Event.filter(customer_id=customer.id, kind="customer.state_changed")
        .order_by("-id")
        .first()
    )
    assert last is not None and last.data["reason"] == "returned with a new order"


async def test_an_order_resent_without_a_stage_keeps_its_stage_and_mails_nothing_new(
    fake: FakeTelegram,
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
    start_desk: Callable[..., Any],
) -> None:
    desk: Desk = await start_desk(
        clock=MovableClock(SHOP_MORNING),
        **shop_settings(fake),
        email=email_settings(mailbox, smtp_capture),
    )
    body = {
        "external_id": "7001",
        "customer": {
            "name": "Ольга",
            "email": "olga@example.com",
            "timezone": "Asia/Yekaterinburg",
        },
    }
    status, out = await desk.post("/api/v1/orders", body)  # a new order without a stage
    assert status == 201 and out["stage"] == "new"
    accepted = (await smtp_capture.wait_for(1, timeout=10))[0].message
    text = accepted.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Заказ принят" in text and "7001" in text
    # No appeal behind an order's notice: no «Обращение .» without its number.
    assert "Обращение" not in text and "Чтобы ответить, просто ответьте" in text
    html = accepted.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Обращение" not in html

    status, out = await desk.post("/api/v1/orders/7001/stage", {"stage": "shipped"})
    assert status == 200
    await smtp_capture.wait_for(2, timeout=10)
    status, out = await desk.post("/api/v1/orders", body | {"amount": "1500.00"})
    assert status == 200 and out["stage"] == "shipped"
    assert [h["stage"] for h in out["history"] if h["kind"] == "stage"] == ["new", "shipped"]
    assert await OutboxItem.filter(channel="email").count() == 2  # no second «Заказ принят»
    await eventually(_outbox_drained, what="the outbox drained")
    assert len(smtp_capture.messages) == 2


async def _outbox_drained() -> bool:
    busy = [OutboxStatus.PENDING, OutboxStatus.SENDING]
    return not await OutboxItem.filter(status__in=busy).exists()
