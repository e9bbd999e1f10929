"""The SMS channel in the running desk, through the real client pointed at a fake SMS Aero:
a customer with only a phone hears of the appeal, its resolution, an order's stage and the
rating link by SMS; gateway failures are retried or become call tasks; the day's cap stops SMS
and the staff hear of it once; quiet hours hold an SMS; delivery reports are recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from bench.fakes.telegram import FakeTelegram
from channels.sms.segments import count
from desk.config.settings import Settings
from desk.runtime.service import channel_report
from models import Appeal, ContactPoint, Event, OutboxItem, OutboxStatus, Task
from tests.conftest import Desk
from tests.fakes.smsaero import FakeSms, FakeSmsAero
from tests.telegram_world import (
    STAFF_CHAT,
    MovableClock,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)

NOON = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # 12:00 in Moscow
LATE = datetime(2026, 11, 24, 20, 10, tzinfo=UTC)  # 23:10 in Moscow
PHONE, DIGITS = "+7 912 000-11-22", "79120001122"


@pytest.fixture
async def gateway() -> AsyncIterator[FakeSmsAero]:
    async with FakeSmsAero(signs=("Shop",)) as fake:
        yield fake


async def web_appeal(desk: Desk, phone: str = PHONE, name: str = "Пётр") -> Appeal:
    """A customer leaves an appeal in the web form's API with a phone and nothing else."""
    status, body = await desk.post(
        "/api/v1/appeals",
        {"name": name, "phone": phone, "text": "Перезвоните по заказу 77"},
        auth=False,
    )
    assert status == 201, body
    return await Appeal.get(number=body["number"])


async def delivered(
    desk: Desk, clock: MovableClock, check: Callable[[], Any], what: str = ""
) -> Any:
    """``check`` once the delivery worker has had its chances, the clock moving a minute a
    poll (retries and a 429's wait pass)."""

    def moved() -> Any:
        clock.now += timedelta(seconds=60)
        desk.service.ctx.outbox.wake()  # type: ignore[union-attr]
        return check()

    return await eventually(moved, what=what)


async def sent_row(appeal: Appeal) -> OutboxItem:
    """The appeal's SMS row once recorded as sent (the gateway has the SMS a moment before the
    delivery worker's record of it commits)."""
    row: OutboxItem = await eventually(
        lambda: OutboxItem.filter(
            appeal_id=appeal.id, channel="sms", status=OutboxStatus.SENT
        ).first(),
        what="the SMS recorded as sent",
    )
    return row


async def resolve(desk: Desk, appeal: Appeal) -> None:
    status, body = await desk.post(
        f"/api/v1/appeals/{appeal.number}/status", {"status": "resolved"}
    )
    assert status == 200, body


async def history(desk: Desk, appeal: Appeal) -> list[dict[str, Any]]:
    status, body = await desk.get(f"/api/v1/appeals/{appeal.number}")
    assert status == 200, body
    return list(body["history"])


async def test_a_phone_only_customer_hears_of_the_appeal_its_end_and_the_rating_link_by_sms(
    gateway: FakeSmsAero, start_desk: Callable[..., Any]
) -> None:
    clock = MovableClock(NOON)
    desk: Desk = await start_desk(clock=clock, sms=gateway.settings())
    appeal = await web_appeal(desk)

    ack = (await eventually(lambda: gateway.to(DIGITS), what="the acknowledgement"))[0]
    assert ack.sign == "Shop" and ack.parts == 1
    assert ack.text.startswith(f"Обращение {appeal.number} принято. Ответим")
    row = await sent_row(appeal)
    assert row.external_id == str(ack.id)
    fired = await Event.filter(appeal_id=appeal.id, kind="automation.fired").first()
    assert fired is not None
    assert fired.data["outcomes"][0] == {
        "action": "notify_customer",
        "result": "queued",
        "channel": "sms",
        "outbox_id": row.id,
    }

    # The operator reports it delivered: on the row and in the appeal's history.
    gateway.report(ack.id, 1)
    await eventually(
        lambda: OutboxItem.filter(id=row.id, receipt="delivered").exists(), what="the report"
    )
    receipts = [h for h in await history(desk, appeal) if h["kind"] == "delivery.receipt"]
    assert [(h["data"]["receipt"], h["data"]["external_id"]) for h in receipts] == [
        ("delivered", str(ack.id))
    ]

    await resolve(desk, appeal)
    texts = await eventually(
        lambda: [m.text for m in gateway.to(DIGITS)][1:] if len(gateway.to(DIGITS)) == 3 else [],
        what="the resolution and the rating request",
    )
    assert texts[0].startswith(f"Обращение {appeal.number} решено")
    prompt, _, link = texts[1].rpartition("\n")
    assert prompt == f"Оцените обращение {appeal.number} от 1 до 5:"
    assert "/feedback/" in link and "?score" not in link  # one page with all five scores
    assert all(m.parts <= 3 for m in gateway.to(DIGITS))
    async with desk.http.get(link) as page:
        assert page.status == 200
        assert appeal.number in await page.text()
    assert not await Task.filter(appeal_id=appeal.id).exists()


async def test_a_stage_notice_waits_for_the_morning_and_is_cut_to_the_parts_cap(
    gateway: FakeSmsAero, start_desk: Callable[..., Any]
) -> None:
    clock = MovableClock(LATE)
    desk: Desk = await start_desk(clock=clock, sms=gateway.settings(max_parts=1))
    order = {
        "external_id": "3001",
        "stage": "assembled",  # a stage the customer does not hear of
        "customer": {"name": "Марина", "phone": "+7 913 111-22-33"},
    }
    status, body = await desk.post("/api/v1/orders", order)
    assert status == 201, body
    status, body = await desk.post("/api/v1/orders/3001/stage", {"stage": "shipped"})
    assert status == 200, body

    held = await eventually(
        lambda: OutboxItem.filter(channel="sms", status=OutboxStatus.PENDING).first(),
        what="the held notice",
    )
    assert held.next_attempt_at == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 09:00 Moscow
    assert held.appeal_id is None and held.address == "+79131112233"
    desk.service.ctx.outbox.wake()  # type: ignore[union-attr]
    assert not gateway.sent

    clock.now = datetime(2026, 11, 25, 6, 0, 5, tzinfo=UTC)
    desk.service.ctx.outbox.wake()  # type: ignore[union-attr]
    sms = (await eventually(lambda: gateway.to("79131112233"), what="the notice"))[0]
    # «Заказ № 3001: Заказ передан в доставку. Если нужна сборка…» is two parts: cut to one.
    assert sms.parts == 1 and count(sms.text).parts == 1
    assert sms.text.startswith("Заказ № 3001: Заказ передан в доставку.")
    assert sms.text.endswith("…")


async def test_a_5xx_and_a_429_are_retried_and_the_sms_goes_once(
    gateway: FakeSmsAero, start_desk: Callable[..., Any]
) -> None:
    clock = MovableClock(NOON)
    desk: Desk = await start_desk(clock=clock, sms=gateway.settings())
    gateway.fail_next(1, 503)
    gateway.limit_next(1, retry_after=5)
    appeal = await web_appeal(desk)
    await delivered(desk, clock, lambda: gateway.to(DIGITS), what="the acknowledgement")
    assert [status for method, status in gateway.calls if method == "sms/send"] == [503, 429, 200]
    assert len(gateway.sent) == 1
    row = await sent_row(appeal)
    assert row.external_id == str(gateway.sent[0].id)
    assert not await Task.filter(appeal_id=appeal.id).exists()


async def test_no_money_on_the_account_makes_a_call_task_and_rests_sms(
    gateway: FakeSmsAero, start_desk: Callable[..., Any]
) -> None:
    gateway.balance = 1.0  # less than a part
    clock = MovableClock(NOON)
    desk: Desk = await start_desk(clock=clock, sms=gateway.settings())
    appeal = await web_appeal(desk)

    task = await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").first())
    assert DIGITS in task.text.replace(" ", "") and "принято" in task.text
    kinds = [h["kind"] for h in await history(desk, appeal)]
    assert "delivery.failed" in kinds
    stopped = await Event.filter(kind="channel.stopped").values_list("data", flat=True)
    assert [(d["channel"], d["reason"]) for d in stopped] == [("sms", "no_money")]
    assert not gateway.sent

    # Resting: the next customer's resolution is a call task at once, the gateway not asked.
    calls = len(gateway.calls)
    other = await web_appeal(desk, phone="+7 914 000-00-01", name="Анна")
    await resolve(desk, other)
    await eventually(lambda: Task.filter(appeal_id=other.id, kind="call").first())
    assert len(gateway.calls) == calls
    assert await Event.filter(kind="channel.stopped").count() == 1


@pytest.mark.parametrize(
    ("overrides", "status", "reason"),
    [
        ({"api_key": "Wrong-key-0123456789abcdef"}, 401, "credentials"),
        ({"sender": "Unapproved"}, 400, "sender"),
    ],
)
async def test_refused_credentials_or_sender_make_a_call_task(
    gateway: FakeSmsAero,
    start_desk: Callable[..., Any],
    overrides: dict[str, str],
    status: int,
    reason: str,
) -> None:
    desk: Desk = await start_desk(clock=MovableClock(NOON), sms=gateway.settings(**overrides))
    appeal = await web_appeal(desk)
    task = await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").first())
    assert "принято" in task.text
    assert [answer for _, answer in gateway.calls] == [status]
    stopped = await Event.filter(kind="channel.stopped").first()
    assert stopped is not None and stopped.data["reason"] == reason
    assert not gateway.sent


async def test_a_number_the_gateway_refuses_becomes_a_call_task(
    gateway: FakeSmsAero, start_desk: Callable[..., Any]
) -> None:
    gateway.bad_numbers.add(DIGITS)
    desk: Desk = await start_desk(clock=MovableClock(NOON), sms=gateway.settings())
    appeal = await web_appeal(desk)
    task = await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").first())
    assert "принято" in task.text
    failed = await Event.filter(appeal_id=appeal.id, kind="delivery.failed").first()
    assert failed is not None and "number refused" in failed.data["reason"]
    assert not await Event.filter(kind="channel.stopped").exists()  # other numbers still go


async def test_an_sms_reported_undelivered_becomes_a_call_task(
    gateway: FakeSmsAero, start_desk: Callable[..., Any]
) -> None:
    desk: Desk = await start_desk(clock=MovableClock(NOON), sms=gateway.settings())
    appeal = await web_appeal(desk)
    ack: FakeSms = (await eventually(lambda: gateway.to(DIGITS)))[0]
    gateway.report(ack.id, 2)
    task = await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").first())
    assert "принято" in task.text and "не дошёл" in task.text
    row = await OutboxItem.get(appeal_id=appeal.id, channel="sms")
    assert row.receipt == "failed"
    receipts = [h["data"] for h in await history(desk, appeal) if h["kind"] == "delivery.receipt"]
    assert [(r["receipt"], r["detail"]) for r in receipts] == [("failed", "error")]


async def test_the_days_cap_stops_sms_calls_instead_and_tells_the_staff_once(
    gateway: FakeSmsAero, fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock = MovableClock(NOON)
    desk: Desk = await start_desk(
        clock=clock, sms=gateway.settings(daily_parts=2), **telegram_settings(fake)
    )
    for i in range(2):
        await web_appeal(desk, phone=f"+7 915 000-00-0{i}")
        await eventually(lambda i=i: gateway.to(f"7915000000{i}"), what=f"SMS {i}")
    await eventually(lambda: _sent_rows(2), what="both SMS recorded as sent")

    third = await web_appeal(desk, phone="+7 915 000-00-09")
    await resolve(desk, third)
    task = await eventually(lambda: Task.filter(appeal_id=third.id, kind="call").first())
    assert "решено" in task.text
    told = await eventually(
        lambda: [t for t in texts_in(fake, STAFF_CHAT) if "SMS остановлены" in t],
        what="the staff notice",
    )
    assert "дневной лимит (2 частей)" in told[0]
    fourth = await web_appeal(desk, phone="+7 915 000-00-08")
    await resolve(desk, fourth)
    await eventually(lambda: Task.filter(appeal_id=fourth.id, kind="call").first())
    assert len(gateway.sent) == 2
    assert await Event.filter(kind="channel.stopped").count() == 1
    assert len([t for t in texts_in(fake, STAFF_CHAT) if "SMS остановлены" in t]) == 1

    # The next day SMS go again.
    clock.now += timedelta(days=1)
    fifth = await web_appeal(desk, phone="+7 915 000-00-07")
    await eventually(lambda: gateway.to("79150000007"), what="the next day's SMS")
    assert fifth.number in gateway.to("79150000007")[0].text


async def _sent_rows(n: int) -> bool:
    return await OutboxItem.filter(channel="sms", status=OutboxStatus.SENT).count() >= n


def test_sms_settings_are_checked_and_the_channel_is_off_without_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for bad, words in (
        ({"login": "shop"}, "email address"),
        ({"sender": "Очень длинная подпись"}, "2-11 Latin letters"),
        ({"api_key": "short"}, "16-64 letters"),
        ({"base_url": "gate.smsaero.ru/v2"}, "https://"),
        ({"max_parts": 0}, "greater than or equal to 1"),
    ):
        with pytest.raises(ValidationError, match=words):
            Settings(sms=bad)
    report = channel_report(Settings())
    assert report.disabled["sms"] == "DESK_SMS__LOGIN and DESK_SMS__API_KEY are not set"
    monkeypatch.setenv("DESK_SMS__LOGIN", "shop@example.com")
    assert channel_report(Settings()).disabled["sms"] == "DESK_SMS__API_KEY is not set"
    monkeypatch.setenv("DESK_SMS__API_KEY", "Aero-test-key-0123456789abcdef")
    assert "DESK_SMS__SENDER" in channel_report(Settings()).disabled["sms"]
    monkeypatch.setenv("DESK_SMS__SENDER", "Shop")
    monkeypatch.setenv("DESK_SMS__DAILY_PARTS", "100")
    settings = Settings()
    assert "sms" in channel_report(settings).enabled and settings.sms.daily_parts == 100
    assert "Aero-test-key" not in repr(settings.sms)


async def test_an_appeal_taken_by_phone_for_a_phone_only_customer_is_acknowledged_by_sms(
    gateway: FakeSmsAero, start_desk: Callable[..., Any]
) -> None:
    # Seed 000 with seed 003: a customer phones, the agent takes the appeal down, the customer
    # (no chat, no mail) hears by SMS that it is registered.
    desk: Desk = await start_desk(clock=MovableClock(NOON), sms=gateway.settings())
    status, body = await desk.post(
        "/api/v1/taken-appeals",
        {"channel": "phone", "name": "Пётр", "phone": PHONE, "text": "Не пришёл заказ 77"},
    )
    assert status in (201, 202), body
    ack = (await eventually(lambda: gateway.to(DIGITS), what="the acknowledgement"))[0]
    appeal = await Appeal.get(channel="phone")
    assert ack.text.startswith(f"Обращение {appeal.number} принято")
    await sent_row(appeal)
    assert not await Task.filter(appeal_id=appeal.id).exists()  # no call task for it


async def test_an_answer_to_a_customer_who_blocked_the_bot_goes_to_their_phone_by_sms(
    gateway: FakeSmsAero, fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    # The customer wrote in Telegram and shared their phone with the bot's contact button, then
    # blocked the bot: the agent's answer reaches them by SMS, and nobody has to call.
    desk: Desk = await start_desk(
        clock=MovableClock(NOON), sms=gateway.settings(), **telegram_settings(fake)
    )
    appeal = await open_appeal(fake, 931, "Где заказ 31?", name="Нина")
    fake.user_contact(931, PHONE)
    await eventually(
        lambda: ContactPoint.filter(customer_id=appeal.customer_id, channel="phone").exists(),
        what="the shared phone",
    )
    fake.block_user(931)
    status, body = await desk.post(
        f"/api/v1/appeals/{appeal.number}/messages", {"text": "Заказ 31 у курьера"}
    )
    assert status == 201, body
    sms = (await eventually(lambda: gateway.to(DIGITS), what="the answer by SMS"))[-1]
    assert "Заказ 31 у курьера" in sms.text
    rerouted = await eventually(
        lambda: Event.filter(appeal_id=appeal.id, kind="delivery.rerouted").first(),
        what="the reroute in the history",
    )
    assert (rerouted.data["before"], rerouted.data["after"]) == ("telegram", "sms")
    assert not await Task.filter(appeal_id=appeal.id, kind="call").exists()
