"""Postponed appeals stay in the pinned feed (seed 001: an appeal put off is not done): in a
part of their own with when each comes back, soonest first, back among the waiting when their
time comes; and the feed stays one Telegram message however many there are."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bench.fakes.telegram import FakeTelegram
from bots.feed import FeedBoard, visible_length
from channels.telegram.send import TEXT_LIMIT
from desk.appeals.postpone import postponed_until
from desk.config.errors import InvalidInput
from desk.context import utc_now
from models import Appeal, AppealStatus, Event
from tests.conftest import Desk
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)

ZONE = "Asia/Yekaterinburg"  # not Moscow: the feed's times are the company's


class ShiftedClock:
    """The wall clock, moved forward by the test (the workers keep running meanwhile)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utc_now() + self.offset


def local(moment: datetime | None) -> str:
    assert moment is not None
    return moment.astimezone(ZoneInfo(ZONE)).strftime("%H:%M %d.%m")


def parts(text: str) -> tuple[str, str]:
    """The feed's waiting part and its postponed part."""
    waiting, _, postponed = text.partition("Отложены")
    return waiting, postponed


async def test_postponed_appeals_have_their_part_of_the_feed_until_they_come_back(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock = ShiftedClock()
    workers = {"claim_idle_s": 2.0, "poll_s": 0.05, "sla_scan_s": 0.2}
    settings = telegram_settings(fake, workers=workers, company={"timezone": ZONE})
    await start_desk(clock=clock, **settings)
    chat = fake.chat(STAFF_CHAT)

    def feed() -> str:
        return str(chat.messages[chat.pinned[-1]]["text"]) if chat.pinned else ""

    first = await open_appeal(fake, 621, "Пришлите акт сверки за квартал", name="Ольга")
    second = await open_appeal(fake, 622, "Где мой заказ 5512?", name="Пётр")
    await eventually(lambda: second.number in feed(), what="both in the feed")
    assert "Отложены" not in feed()

    # «Отложить» under the first card: back in a day (lifecycle.postpone_hours).
    card = chat.messages[int(first.staff_card_ref)]
    later = [
        b["callback_data"]
        for row in card["reply_markup"]["inline_keyboard"]
        for b in row
        if b["callback_data"].startswith("ap:later:")
    ]
    fake.callback(AGENT_ID, STAFF_CHAT, card["message_id"], later[0])
    first = await eventually(
        lambda: Appeal.filter(id=first.id, status=AppealStatus.PENDING).first(), what="put off"
    )
    assert first.pending_until is not None
    assert timedelta(hours=23) < first.pending_until - clock() <= timedelta(hours=24)
    # /postpone 1h in the second topic: back sooner, so listed first.
    fake.group_message(STAFF_CHAT, AGENT_ID, "/postpone 1h ждём склад", int(second.staff_thread))
    second = await eventually(
        lambda: Appeal.filter(id=second.id, status=AppealStatus.PENDING).first(), what="/postpone"
    )
    assert second.pending_until is not None
    told = await eventually(
        lambda: [
            t for t in texts_in(fake, STAFF_CHAT, int(second.staff_thread)) if "отложено до" in t
        ]
    )
    assert local(second.pending_until) in told[0] and "ждём склад" in told[0]

    def both_postponed() -> bool:
        _, postponed = parts(feed())
        return first.number in postponed and second.number in postponed

    await eventually(both_postponed, what="the postponed part")
    waiting, postponed = parts(feed())
    assert "Ответа никто не ждёт" in waiting and "Лента пуста" not in feed()
    assert "Отложены: 2" in feed()
    assert f"⏰ {local(second.pending_until)} · {second.number} · Пётр" in postponed
    assert f"⏰ {local(first.pending_until)} · {first.number} · Ольга" in postponed
    assert postponed.index(second.number) < postponed.index(first.number)
    put_off = await Event.filter(appeal_id=second.id, kind="appeal.postponed").order_by("-id")
    assert put_off[0].data == {"until": second.pending_until.isoformat(), "reason": "ждём склад"}
    # «Отложить» gave no time: the lifecycle's default is written to the history all the same.
    defaulted = await Event.get(appeal_id=first.id, kind="appeal.postponed")
    assert defaulted.data == {"until": first.pending_until.isoformat(), "reason": ""}

    # Two hours on: the second's time has come, it waits for an answer again.
    clock.offset = timedelta(hours=2)
    back = await eventually(
        lambda: Appeal.filter(id=second.id, status=AppealStatus.OPEN).first(), what="back"
    )
    # Waiting for an answer since the customer wrote (nobody answered before it was put off).
    assert back.pending_until is None and back.waiting_since == second.waiting_since

    def second_waits() -> bool:
        waiting, postponed = parts(feed())
        return second.number in waiting and second.number not in postponed

    await eventually(second_waits, what="back in the waiting part")
    waiting, postponed = parts(feed())
    assert "Ждут ответа: 1" in waiting and first.number in postponed and "Отложены: 1" in feed()
    returned = await Event.filter(appeal_id=second.id, kind="appeal.status_changed").order_by("-id")
    assert returned[0].actor == "scheduler" and returned[0].data["after"] == "open"
    assert len(chat.pinned) == 1  # edited, never posted again


async def test_the_feed_stays_one_message_with_many_long_rows(
    start_desk: Callable[..., Any],
) -> None:
    limits = {"appeals": {"per_address_burst": 100, "overall_burst": 100}}
    desk: Desk = await start_desk(http={"host": "127.0.0.1", "port": 0, "rate_limits": limits})
    name = "Очень-очень длинное имя клиента " * 6
    for i in range(26):
        status, body = await desk.post(
            "/api/v1/appeals",
            {"name": name, "email": f"c{i}@example.org", "text": f"Вопрос {i} " + "о заказе " * 20},
        )
        assert status in (201, 202), body

    async def registered() -> bool:
        return await Appeal.filter(number__isnull=False).count() == 26

    await eventually(registered, what="all registered")
    numbers = [a.number for a in await Appeal.all().order_by("id")]
    for number in numbers[:13]:
        status, body = await desk.post(f"/api/v1/appeals/{number}/status", {"status": "pending"})
        assert status == 200, body

    ctx = desk.service.ctx
    assert ctx is not None
    board = FeedBoard(None, ctx.settings, ctx.texts, ctx.clock)  # type: ignore[arg-type]
    text, waiting = await board.render()
    assert waiting == 13
    assert visible_length(text) <= TEXT_LIMIT
    assert "Ждут ответа: 13" in text and "Отложены: 13" in text
    shown_waiting = [n for n in numbers[13:] if n in parts(text)[0]]
    shown_later = [n for n in numbers[:13] if n in parts(text)[1]]
    assert shown_waiting == numbers[13 : 13 + len(shown_waiting)]  # oldest first, none skipped
    assert len(shown_later) < 10  # the postponed part gave way first …
    assert f"… и ещё {13 - len(shown_later)}" in parts(text)[1]  # … and says how many more


NOW = datetime(2026, 12, 7, 9, 0, tzinfo=ZoneInfo("UTC"))
MOSCOW = ZoneInfo("Europe/Moscow")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("", (None, "")),  # no time: the lifecycle puts it off for lifecycle.postpone_hours
        ("ждём бухгалтерию", (None, "ждём бухгалтерию")),
        ("2h ждём склад", (NOW + timedelta(hours=2), "ждём склад")),
        ("3д", (NOW + timedelta(days=3), "")),
        ("1н после праздников", (NOW + timedelta(weeks=1), "после праздников")),
        ("2 документа не пришли", (None, "2 документа не пришли")),
        ("5x", (None, "5x")),  # not a time: the reason
        ("15:00 перезвонить", (datetime(2026, 12, 7, 15, 0, tzinfo=MOSCOW), "перезвонить")),
        ("11:00", (datetime(2026, 12, 8, 11, 0, tzinfo=MOSCOW), "")),  # 12:00 in Moscow now
        ("0h", None),  # the moment has passed: refused with the reason
        ("60w", None),  # over a year
    ],
)
def test_postpone_reads_a_time_in_front_of_the_reason(
    args: str, expected: tuple[datetime | None, str] | None
) -> None:
    if expected is None:
        with pytest.raises(InvalidInput):
            postponed_until(args, NOW, MOSCOW)
        return
    assert postponed_until(args, NOW, MOSCOW) == expected
