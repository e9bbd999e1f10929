"""The SLA clock in the running desk: working hours, a pending pause, warning, breach, alert."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.fakes.telegram import FakeTelegram
from models import Appeal, Priority
from tests.telegram_world import (
    AGENT_ID,
    MANAGERS_CHAT,
    STAFF_CHAT,
    MovableClock,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)


async def test_working_hours_pause_warning_and_breach(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    # Friday 17:30 in Moscow; returns are «high»: a first answer within 60 working minutes.
    clock = MovableClock(datetime(2026, 11, 27, 14, 30, tzinfo=UTC))
    settings = telegram_settings(fake, telegram={"managers_chat_id": MANAGERS_CHAT})
    settings["sla"] = {}  # the shipped calendar: Monday to Friday, 9 to 18, Moscow
    settings["workers"] = {**settings["workers"], "sla_scan_s": 0.1}
    await start_desk(clock=clock, **settings)

    appeal = await open_appeal(fake, 451, "Хочу вернуть куртку, не подошёл размер")
    assert appeal.priority is Priority.HIGH
    due = datetime(2026, 11, 30, 6, 30, tzinfo=UTC)  # Monday 09:30 Moscow: 30 min Fri + 30 Mon
    assert appeal.first_response_due == due
    ack = await eventually(lambda: fake.sent_to(451))
    assert "до 09:30 30.11" in (ack[0].text or "")
    thread = int(appeal.staff_thread)

    clock.now = datetime(2026, 11, 30, 6, 20, tzinfo=UTC)  # 50 of 60 minutes gone
    await eventually(lambda: any("⏰" in t for t in texts_in(fake, STAFF_CHAT, thread)))

    fake.group_message(STAFF_CHAT, AGENT_ID, "/postpone ждём фото от клиента", thread)
    await eventually(lambda: Appeal.filter(id=appeal.id, status="pending").exists())
    clock.now = datetime(2026, 11, 30, 7, 30, tzinfo=UTC)  # an hour later: paused, no breach
    fake.group_message(STAFF_CHAT, AGENT_ID, "/reopen", thread)
    reopened = await eventually(lambda: Appeal.filter(id=appeal.id, status="open").first())
    assert reopened.first_response_due == due + timedelta(hours=1, minutes=10)
    assert not fake.sent_to(MANAGERS_CHAT)

    clock.now = datetime(2026, 11, 30, 7, 45, tzinfo=UTC)  # past the shifted due
    alert = await eventually(lambda: fake.sent_to(MANAGERS_CHAT))
    assert appeal.number in (alert[0].text or "")
    breached = await eventually(
        lambda: Appeal.filter(id=appeal.id, priority=Priority.URGENT).first()
    )
    assert breached.sla_state["first_response"]["breached"] is True
    await eventually(lambda: any("🔴" in t for t in texts_in(fake, STAFF_CHAT, thread)))


async def test_next_answer_has_its_own_clock_and_the_assignee_is_called(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock = MovableClock(datetime(2026, 11, 30, 7, 0, tzinfo=UTC))  # Monday 10:00 Moscow
    settings = telegram_settings(fake)
    settings["sla"] = {}
    settings["workers"] = {**settings["workers"], "sla_scan_s": 0.1}
    await start_desk(clock=clock, **settings)
    appeal = await open_appeal(fake, 452, "Где мой заказ 7788?")  # normal: next answer in 240 min
    thread = int(appeal.staff_thread)
    fake.group_message(STAFF_CHAT, AGENT_ID, "/take", thread)
    fake.group_message(STAFF_CHAT, AGENT_ID, "Заказ в пути, завтра будет.", thread)
    await eventually(lambda: Appeal.filter(id=appeal.id, first_response_at__isnull=False).exists())
    met = await eventually(lambda: Appeal.filter(id=appeal.id).first())
    assert met.sla_state["first_response"]["met"] is True

    fake.user_message(452, "А можно к вечеру сегодня?")
    await eventually(lambda: Appeal.filter(id=appeal.id, waiting_since__isnull=False).exists())
    clock.now += timedelta(minutes=190)  # over 75% of 240 working minutes
    warning = await eventually(
        lambda: [s for s in fake.sent_to(STAFF_CHAT, thread) if "следующий ответ" in (s.body or "")]
    )
    assert "tg://user?id=1001" in str(warning[0].message.get("entities"))
