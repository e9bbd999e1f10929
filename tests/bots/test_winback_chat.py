"""Win-back calls the way managers meet them in the staff group (seed 002): the task card with
the customer and the script, «Дозвонились» and the reason (picked or typed), «Не дозвонились»
and the retry, «Клиент вернулся», a pressed-twice card, the daily reminder of overdue tasks; then
the customer's time line (API and /customer) and the lost-customer report against the history."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from bench.fakes.telegram import FakeTelegram, SentMessage
from desk.features.orders import Contacts, OrderChange
from desk.features.winback import WINBACK
from desk.ops.scheduler import Daily
from models import Agent, Customer, Event, Lifecycle, Task, TaskStatus, Warmth
from tests.conftest import Desk
from tests.desk.test_ratings_flow import RunningClock, buttons_of, toasts
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    STRANGER_ID,
    eventually,
    open_appeal,
    telegram_settings,
)

MSK = ZoneInfo("Europe/Moscow")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 12:00 in Moscow


async def shop_desk(fake: FakeTelegram, start_desk: Callable[..., Any]) -> tuple[Desk, Any]:
    clock = RunningClock(START)
    settings = telegram_settings(
        fake,
        company={"timezone": "Europe/Moscow"},
        # The service's own daily loop stays out of the way: the test runs the jobs.
        customers={"scan_at": "23:59", "remind_at": "23:59", "winback_team": "sales"},
    )
    settings["agents"] = [{"name": "Ирина", "telegram_id": AGENT_ID, "teams": ["sales"]}]
    settings["teams"] = [{"id": "sales", "title": "Продажи"}]
    desk: Desk = await start_desk(clock=clock, **settings)
    return desk, clock


async def order(desk: Desk, name: str, email: str, external_id: str, placed: datetime, **kw: Any):
    change = OrderChange(
        external_id=external_id,
        contacts=Contacts(name=name, email=email, phone=kw.pop("phone", None)),
        stage="completed",
        placed_at=placed,
        **kw,
    )
    return await desk.service.ctx.orders.upsert(change)


def general(fake: FakeTelegram) -> list[SentMessage]:
    """What the bot posted in the staff group outside any topic (edits included)."""
    return [m for m in fake.sent_to(STAFF_CHAT) if m.message_thread_id is None]


async def card_of(fake: FakeTelegram, task_id: int) -> SentMessage:
    def found() -> list[SentMessage]:
        return [
            m
            for m in general(fake)
            if m.method == "sendMessage" and f"задача №{task_id}" in (m.text or "")
        ]

    return (await eventually(found, what=f"the card of task {task_id}"))[-1]


async def edited(fake: FakeTelegram, message_id: int, words: str) -> SentMessage:
    def found() -> list[SentMessage]:
        return [
            m
            for m in general(fake)
            if m.method == "editMessageText"
            and m.message_id == message_id
            and words in (m.text or "")
        ]

    return (await eventually(found, what=f"message {message_id} edited with «{words}»"))[-1]


async def scan(desk: Desk, clock: RunningClock, when: datetime) -> None:
    clock.jump(when)
    await desk.service.ctx.winback.scan()
    desk.service.ctx.outbox.wake()


async def test_calls_are_answered_in_the_staff_group(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    desk, clock = await shop_desk(fake, start_desk)
    day0 = START - timedelta(days=100)
    await order(desk, "Лена", "lena@example.com", "L1", day0, phone="+79991112233")
    await order(desk, "Лена", "lena@example.com", "L2", day0 + timedelta(days=3), amount=1500)
    await order(desk, "Павел", "pavel@example.com", "P1", day0, amount=Decimal("990.50"))
    await order(desk, "Гоша", "gosha@example.com", "G1", day0)
    await scan(desk, clock, START)
    irina = await Agent.get(telegram_id=AGENT_ID)
    tasks = {
        (await Customer.get(id=t.customer_id)).name: t
        for t in await Task.filter(kind=WINBACK).order_by("id")
    }
    assert set(tasks) == {"Лена", "Павел", "Гоша"}
    assert {t.assignee_id for t in tasks.values()} == {irina.id}  # the win-back team

    # The card: who, how to reach them, what they bought, who calls, the script, three buttons.
    lena = await card_of(fake, tasks["Лена"].id)
    body = lena.text or ""
    assert "Лена" in body and "+79991112233" in body
    assert "Заказов: 2 на 1 500" in body and "последний 25.11.2025" in body
    assert f'href="tg://user?id={AGENT_ID}"' in (lena.message.get("text") or "") or (
        any(e.get("type") == "text_mention" for e in lena.message.get("entities", []))
        or "Ирина" in body
    )
    # The call script, in words that fit any customer and any agent.
    assert "узнайте, почему клиент перестал покупать" in body
    assert not re.search(r"\b(он|она|ушёл|ушла|дозвонился)\b|«Вернулся»", body, re.IGNORECASE)
    assert [b["text"] for b in buttons_of(lena)] == [
        "✅ Дозвонились",
        "📵 Не дозвонились",
        "🛒 Клиент вернулся",
    ]

    # «Дозвонились»: the card shows it and loses its buttons; the reason is asked with a list.
    fake.callback(AGENT_ID, STAFF_CHAT, lena.message_id, buttons_of(lena)[0]["callback_data"])
    done = await edited(fake, lena.message_id, "Дозвонились — Ирина")
    assert not done.reply_markup
    question = await eventually(
        lambda: [
            m for m in general(fake) if "Почему клиент Лена перестал покупать" in (m.text or "")
        ]
    )
    assert question[0].reply_to_message_id == lena.message_id
    reasons = [b["text"] for b in buttons_of(question[0])]
    assert reasons[:2] == ["Дорого", "Покупает у конкурентов"]
    fake.callback(
        AGENT_ID, STAFF_CHAT, question[0].message_id, buttons_of(question[0])[1]["callback_data"]
    )
    await eventually(
        lambda: Task.filter(id=tasks["Лена"].id, reason="Покупает у конкурентов").exists()
    )
    await edited(fake, question[0].message_id, "Причина ухода: Покупает у конкурентов")
    task = await Task.get(id=tasks["Лена"].id)
    assert (task.status, task.result) == (TaskStatus.DONE, "reached")

    # Pressed again on the old card: nothing changes, the agent is told why.
    fake.callback(AGENT_ID, STAFF_CHAT, lena.message_id, buttons_of(lena)[1]["callback_data"])
    await eventually(lambda: "Эта задача уже закрыта." in toasts(fake))
    assert await Task.filter(customer_id=task.customer_id, kind=WINBACK).count() == 1

    # «Не дозвонились»: tried again in two days, with a new card saying so.
    pavel = await card_of(fake, tasks["Павел"].id)
    fake.callback(AGENT_ID, STAFF_CHAT, pavel.message_id, buttons_of(pavel)[1]["callback_data"])
    await edited(fake, pavel.message_id, "Повторный звонок до 04.03")
    retry = await eventually(
        lambda: Task.filter(
            customer_id=tasks["Павел"].customer_id, kind=WINBACK, status=TaskStatus.OPEN
        ).first()
    )
    assert retry.due_at.astimezone(MSK).date().isoformat() == "2026-03-04"
    again = await card_of(fake, retry.id)
    assert "(повторный)" in (again.text or "")
    assert "не дозвонились" in (again.text or "").lower()  # the earlier call on the card

    # «Дозвонились», then the reason in the agent's own words as the next message in General.
    fake.callback(AGENT_ID, STAFF_CHAT, again.message_id, buttons_of(again)[0]["callback_data"])
    await eventually(lambda: [m for m in general(fake) if "Почему клиент Павел" in (m.text or "")])
    await eventually(lambda: Task.filter(id=retry.id, result="reached").exists())
    # Someone who is not an agent talks in General: not the reason.
    fake.group_message(STAFF_CHAT, STRANGER_ID, "всем привет")
    said = fake.group_message(STAFF_CHAT, AGENT_ID, "Нашёл  поставщика дешевле")
    await eventually(lambda: Task.filter(id=retry.id, reason="Нашёл поставщика дешевле").exists())
    saved = await eventually(
        lambda: [m for m in general(fake) if "Причина записана" in (m.text or "")]
    )
    assert saved[0].reply_to_message_id == said["message"]["message_id"]
    # The next talk in General is just talk.
    fake.group_message(STAFF_CHAT, AGENT_ID, "кто на обед?")
    await eventually(lambda: len(fake.calls("sendMessage")) > 0)
    assert (await Task.get(id=retry.id)).reason == "Нашёл поставщика дешевле"

    # «Клиент вернулся»: the customer is active again and is not lost again at tomorrow's scan.
    gosha = await card_of(fake, tasks["Гоша"].id)
    fake.callback(AGENT_ID, STAFF_CHAT, gosha.message_id, buttons_of(gosha)[2]["callback_data"])
    await edited(fake, gosha.message_id, "Клиент вернулся — Ирина")
    customer = await Customer.get(id=tasks["Гоша"].customer_id)
    assert customer.lifecycle is Lifecycle.ACTIVE
    await scan(desk, clock, START + timedelta(days=1))
    assert (await Customer.get(id=customer.id)).lifecycle is Lifecycle.ACTIVE

    # A stranger's press changes nothing.
    task_count = await Task.filter(kind=WINBACK).count()
    fake.callback(STRANGER_ID, STAFF_CHAT, again.message_id, buttons_of(again)[2]["callback_data"])
    await eventually(lambda: any("Только сотрудники" in t for t in toasts(fake)))
    assert await Task.filter(kind=WINBACK).count() == task_count


async def test_overdue_tasks_are_reminded_once_a_day(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    desk, clock = await shop_desk(fake, start_desk)
    day0 = START - timedelta(days=100)
    for n, name in enumerate(("Оля", "Петя")):
        await order(desk, name, f"c{n}@example.com", f"O{n}", day0)
    await scan(desk, clock, START)  # two calls due by the end of today
    board = desk.service.ctx.desks["telegram"].tasks

    def reminders() -> list[SentMessage]:
        return [m for m in general(fake) if "Просроченные задачи" in (m.text or "")]

    async def morning(day: int) -> int:
        clock.jump(START + timedelta(days=day))  # 12:00 Moscow, after 10:00
        jobs = [Daily("overdue-tasks", time(10, 0), MSK, board.remind_overdue) for _ in "ab"]
        return sum([await j.run_if_due(clock()) for j in jobs])

    # Today nothing is overdue yet: the job runs, posts nothing.
    assert await morning(0) == 1
    assert reminders() == []
    # Tomorrow both calls are overdue: one post, by two workers, naming both under Ирина
    # (with every other overdue task: the shop's e-mail notices had no channel, so call tasks).
    assert await morning(1) == 1
    post = (await eventually(reminders, what="the reminder"))[0]
    overdue = await Task.filter(status=TaskStatus.OPEN, due_at__lt=clock()).count()
    assert f"Просроченные задачи: {overdue}" in (post.text or "")
    mine = (post.text or "").split("Ирина</a>:")[1].split("Без ответственного")[0]
    assert mine.count("звонок ушедшему клиенту") == 2
    assert "Оля" in mine and "Петя" in mine
    # One gets done: the next day's reminder names only the other.
    task = await Task.filter(kind=WINBACK).order_by("id").first()
    card = await card_of(fake, task.id)
    fake.callback(AGENT_ID, STAFF_CHAT, card.message_id, buttons_of(card)[2]["callback_data"])
    await eventually(lambda: Task.filter(id=task.id, status=TaskStatus.DONE).exists())
    assert await morning(2) == 1
    await eventually(lambda: len(reminders()) == 2)
    assert f"Просроченные задачи: {overdue - 1}" in (reminders()[-1].text or "")
    assert await morning(2) == 0  # the day is done


async def test_the_time_line_and_the_report_follow_the_history(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    desk, clock = await shop_desk(fake, start_desk)
    # Марина writes to support first, then buys three times over the winter.
    clock.jump(START - timedelta(days=130))
    appeal = await open_appeal(fake, 501, "Сколько стоит доставка в Тверь?", name="Марина")
    point_customer = appeal.customer_id
    clock.jump(START - timedelta(days=99))  # the shop sends its order history
    for n, days in enumerate((120, 110, 100)):
        await order(
            desk,
            "Марина",
            "marina@example.com",
            f"M{n}",
            START - timedelta(days=days),
            amount=1000 * (n + 1),
            phone=None,
        )
    marina = await Customer.get(contact_points__address="marina@example.com")
    # The appeal came from Telegram, the orders from the shop: an agent merges them.
    if marina.id != point_customer:
        status, _ = await desk.post(
            f"/api/v1/customers/{marina.id}/merge", {"customer_id": point_customer}
        )
        assert status == 200
    await scan(desk, clock, START)  # 100 days without an order (limit 90): lost
    task = await Task.get(customer_id=marina.id, kind=WINBACK)
    card = await card_of(fake, task.id)
    fake.callback(AGENT_ID, STAFF_CHAT, card.message_id, buttons_of(card)[0]["callback_data"])
    await eventually(lambda: [m for m in general(fake) if "Почему клиент Марина" in (m.text or "")])
    fake.group_message(STAFF_CHAT, AGENT_ID, "дорого")
    await eventually(lambda: Task.filter(id=task.id, reason="дорого").exists())
    # She comes back a week later with an order of 4 500.
    clock.jump(START + timedelta(days=7))
    await order(desk, "Марина", "marina@example.com", "M3", clock(), amount=4500)
    # The agent warms her up through the API.
    async with desk.http.put(
        f"{desk.base}/api/v1/customers/{marina.id}/warmth",
        json={"warmth": "hot", "reason": "вернулась с заказом"},
        headers=desk.auth,
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["warmth"] == "hot"

    status, line = await desk.get(f"/api/v1/customers/{marina.id}/timeline")
    assert status == 200
    assert line["customer"]["lifecycle"] == "active" and line["customer"]["warmth"] == "hot"
    assert line["customer"]["orders"] == 4 and Decimal(line["customer"]["amount"]) == 10500
    steps = [
        (i["kind"], i["data"].get("after") or i["data"].get("result") or i["data"].get("reason"))
        for i in line["items"]
        if i["kind"] != "task.created"
    ]
    kinds = [k for k, _ in steps]
    assert kinds.index("appeal.created") < kinds.index("order.created")
    assert [s for s in steps if s[0] == "customer.state_changed"] == [
        ("customer.state_changed", "active"),
        ("customer.state_changed", "lost"),
        ("customer.state_changed", "active"),
        ("customer.state_changed", "hot"),
    ]
    assert steps.index(("task.completed", "reached")) < steps.index(("task.reason", "дорого"))
    orders = [i for i in line["items"] if i["kind"] == "order.created"]
    assert [o["data"]["external_id"] for o in orders] == ["M0", "M1", "M2", "M3"]
    times = [i["at"] for i in line["items"]]
    assert times == sorted(times)
    status, _ = await desk.get("/api/v1/customers/99999999/timeline")
    assert status == 404

    # /customer in the appeal's topic shows the same life cycle, in order.
    fake.group_message(
        STAFF_CHAT, AGENT_ID, "/customer", message_thread_id=int(appeal.staff_thread)
    )

    def history() -> str:
        posts = fake.sent_to(STAFF_CHAT, int(appeal.staff_thread))
        return next((p.text or "" for p in posts if "История клиента" in (p.text or "")), "")

    text = await eventually(history, what="/customer")
    assert "покупает · горячий" in text
    lines = [ln for ln in text.splitlines() if re.match(r"\d\d\.\d\d\.\d{4} ", ln)]
    order_lines = [ln for ln in lines if "🛒 заказ" in ln]
    assert [re.search(r"заказ (M\d)", ln).group(1) for ln in order_lines] == [
        "M0",
        "M1",
        "M2",
        "M3",
    ]
    assert any("причина ухода: дорого" in ln for ln in lines)
    assert lines.index(next(ln for ln in lines if "🔄 больше не покупает" in ln)) < lines.index(
        next(ln for ln in lines if "заказ M3" in ln)
    )

    # The report of the month: one lost, one returned with 4 500, the reason, the call on time.
    status, report = await desk.get("/api/v1/reports/customers?from=2026-03-01&to=2026-03-31")
    assert status == 200, report
    assert report["lost"] == 1 and report["now"]["lost"] == 0 and report["now"]["active"] == 1
    assert report["returned"]["count"] == 1
    assert Decimal(report["returned"]["amount"]) == 4500
    assert report["reasons"] == [{"reason": "дорого", "count": 1}]
    assert report["calls"]["due"] == 1 and report["calls"]["on_time"] == 1
    assert report["calls"]["results"] == {"reached": 1}
    days = {d["day"]: d for d in report["daily"]}
    assert days["2026-03-02"]["lost"] == 1 and days["2026-03-09"]["returned"] == 1
    async with desk.http.get(
        f"{desk.base}/api/v1/reports/customers?from=2026-03-01&to=2026-03-31&format=csv",
        headers=desk.auth,
    ) as resp:
        csv_text = await resp.text()
    assert resp.status == 200 and "2026-03-09,0,1,4500" in csv_text
    # Before any of it: nothing lost or returned in that period.
    status, before = await desk.get("/api/v1/reports/customers?from=2025-11-01&to=2025-11-30")
    assert before["lost"] == 0 and before["returned"]["count"] == 0
    assert await Event.filter(kind="task.reason").count() == 1
    assert (await Customer.get(id=marina.id)).warmth is Warmth.HOT
