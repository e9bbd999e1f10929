"""Intake per batch: one transaction for many stream entries, order kept, a bad entry isolated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from channels.base import ChannelKind, InboundMessage
from desk.appeals.event_types import MessageReceived
from desk.appeals.events import Stage
from desk.appeals.intake import BatchSize, IntakeWorker
from desk.appeals.lifecycle import Lifecycle, appeal_number
from models import Appeal, AppealStatus, ContactPoint, Customer, Event, Message
from tests.conftest import Desk

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def tg(user: int, n: int, text: str | None = None, at: datetime | None = None) -> InboundMessage:
    """Message ``n`` of Telegram user ``user``."""
    return InboundMessage(
        channel=ChannelKind.TELEGRAM,
        external_id=f"{user}:{n}",
        address=str(user),
        text=text or f"Сообщение {n}: где мой заказ?",
        sender_name=f"Клиент {user}",
        sent_at=at or T0 + timedelta(seconds=n),
    )


@pytest.fixture
async def quiet_desk(start_desk: Callable[..., Any]) -> Desk:
    """A desk whose own intake workers do not run: the test drives intake itself."""
    desk: Desk = await start_desk(workers={"intake": 0, "claim_idle_s": 0.3, "max_deliveries": 2})
    return desk


def parts(desk: Desk) -> tuple[Lifecycle, IntakeWorker]:
    ctx = desk.service.ctx
    assert ctx is not None
    return ctx.lifecycle, IntakeWorker(ctx.stream, ctx.lifecycle, block_ms=200)


async def texts_of(appeal_id: int) -> list[str]:
    rows = await Message.filter(appeal_id=appeal_id, direction="in").order_by("id")
    return [m.text for m in rows]


async def test_a_batch_from_many_customers_is_stored_in_order_and_new_customers_get_one_appeal(
    quiet_desk: Desk,
) -> None:
    _, worker = parts(quiet_desk)
    stream = quiet_desk.service.ctx.stream  # type: ignore[union-attr]
    # Three customers interleaved, two messages of each new customer in the same batch.
    batch = [tg(user, n) for n in range(4) for user in (701, 702, 703)]
    await stream.publish_many(batch)

    items = await stream.read(count=100, block_ms=1000)
    results = await worker.process(items)

    assert len(results) == 12 and not any(r.duplicate for r in results)
    assert sum(r.created for r in results) == 3
    for user in (701, 702, 703):
        appeals = await Appeal.filter(customer__contact_points__address=str(user))
        assert len(appeals) == 1
        assert await texts_of(appeals[0].id) == [f"Сообщение {n}: где мой заказ?" for n in range(4)]
    assert await stream.pending_count() == 0
    # Every change has its history row, written with the batch.
    assert await Event.filter(kind="message.received").count() == 12
    assert await Event.filter(kind="appeal.created").count() == 3


async def test_a_batch_s_new_senders_become_customers_once_each_with_their_contact_points(
    quiet_desk: Desk,
) -> None:
    # New senders are made together before the batch is handled; each is still announced
    # once, by its first message, and a sender known from an earlier batch stays who they were.
    lifecycle, _ = parts(quiet_desk)
    await lifecycle.ingest_batch([tg(713, 0)])
    known = await Customer.get(contact_points__address="713")
    english = replace(tg(712, 0), language="en")
    results = await lifecycle.ingest_batch(
        [tg(711, 1), english, tg(713, 1), tg(711, 2), tg(712, 1)]
    )

    assert [r.created for r in results] == [True, True, False, False, False]
    customers = {
        user: await Customer.get(contact_points__channel="telegram", contact_points__address=user)
        for user in ("711", "712", "713")
    }
    assert customers["713"].id == known.id
    assert len({c.id for c in customers.values()}) == 3
    assert (customers["711"].name, customers["711"].language) == ("Клиент 711", "ru")
    assert (customers["712"].language, customers["712"].preferred_channel) == ("en", "telegram")
    assert customers["711"].created_at is not None
    assert await ContactPoint.filter(customer_id=customers["711"].id).count() == 1
    born = await Event.filter(kind="customer.created").values_list("customer_id", flat=True)
    assert sorted(born) == sorted([known.id, customers["711"].id, customers["712"].id])
    assert results[3].appeal_id == results[0].appeal_id  # 711's second message: their appeal


async def test_a_message_naming_an_appeal_its_batch_created_joins_it(quiet_desk: Desk) -> None:
    # A new appeal's number is written with the batch's other changes to it; a message of the
    # same batch that names it (a web reply by its link) still finds it.
    lifecycle, _ = parts(quiet_desk)
    await lifecycle.ingest_batch([tg(721, 0)])
    number = appeal_number(await Appeal.all().count() + 1)
    reply = InboundMessage(
        channel=ChannelKind.WEB,
        external_id="web:1",
        address="",
        text="Дополнение по обращению",
        sender_name="Клиент 722",
        appeal_number=number,
    )
    first, joined = await lifecycle.ingest_batch([tg(722, 0), reply])

    assert first.created and first.number == number
    assert (joined.appeal_id, joined.created) == (first.appeal_id, False)
    assert (await Appeal.get(id=first.appeal_id)).number == number


async def test_a_repeated_batch_stores_nothing_twice(quiet_desk: Desk) -> None:
    lifecycle, _ = parts(quiet_desk)
    batch = [tg(704, n) for n in range(3)]
    first = await lifecycle.ingest_batch(batch)
    again = await lifecycle.ingest_batch([*batch, tg(704, 3)])

    assert [r.duplicate for r in again] == [True, True, True, False]
    assert {r.appeal_id for r in again} == {first[0].appeal_id}
    assert await Message.filter(direction="in").count() == 4


async def test_a_bad_entry_does_not_sink_its_batch_and_is_dead_lettered_when_it_persists(
    quiet_desk: Desk,
) -> None:
    lifecycle, worker = parts(quiet_desk)
    stream = quiet_desk.service.ctx.stream  # type: ignore[union-attr]

    async def broken_subscriber(event: MessageReceived) -> None:  # a bug met by one message only
        message = await Message.get(id=event.message_id)
        if "💥" in message.text:
            raise RuntimeError("a subscriber's bug")

    lifecycle.events.subscribe(Stage.REPORTS, broken_subscriber, MessageReceived)
    batch = [tg(705, n) for n in range(3)] + [tg(706, 0, "💥 сломанное")] + [tg(707, 0)]
    await stream.publish_many(batch)

    items = await stream.read(count=100, block_ms=1000)
    results = await worker.process(items)

    assert len(results) == 4  # the good ones, around the bad one
    assert await Message.filter(text__contains="💥").count() == 0
    assert await Message.filter(direction="in").count() == 4
    assert await stream.pending_count() == 1  # the bad one comes back after its claim

    for _ in range(2):  # max_deliveries is 2: the third time it is set aside for good
        items = await stream.read(count=100, block_ms=2000)
        await worker.process(items)
    assert await stream.pending_count() == 0
    assert (await stream.stats()).dead == 1


async def test_a_message_written_before_the_new_appeal_press_and_read_after_it_stays_in_the_old(
    quiet_desk: Desk,
) -> None:
    lifecycle, _ = parts(quiet_desk)
    [first] = await lifecycle.ingest_batch([tg(708, 0, at=T0)])
    pressed = T0 + timedelta(seconds=10)
    await lifecycle.ask_new_appeal("telegram", "708", pressed)

    late, fresh, more = await lifecycle.ingest_batch(
        [
            tg(708, 1, "ещё по старому", at=pressed - timedelta(seconds=5)),
            tg(708, 2, "новый вопрос", at=pressed + timedelta(seconds=1)),
            tg(708, 3, "и к нему", at=pressed + timedelta(seconds=2)),
        ]
    )

    assert late.appeal_id == first.appeal_id
    assert fresh.created and fresh.appeal_id != first.appeal_id
    assert more.appeal_id == fresh.appeal_id  # the press is used up by one appeal


def test_batch_size_follows_the_time_a_batch_takes() -> None:
    size = BatchSize(target_s=0.1, low=10, high=500)
    for _ in range(10):
        size.took(size.size, size.size * 0.001)  # 1 ms an entry: 100 fit in 0.1 s
    assert 90 <= size.size <= 100
    for _ in range(10):
        size.took(size.size, size.size * 0.05)  # 50 ms an entry: at least the floor
    assert size.size == 10


async def test_a_batch_s_history_is_read_before_it_is_written(quiet_desk: Desk) -> None:
    # The SLA clock reads an appeal's pauses from its history; inside a batch, the rows of the
    # batch are still held: they count all the same, stored rows first.
    from tortoise.transactions import in_transaction

    from desk.appeals import history
    from desk.decide.sla import pauses_of
    from models import AppealStatus

    lifecycle, _ = parts(quiet_desk)
    [stored] = await lifecycle.ingest_batch([tg(709, 0)])
    appeal = await Appeal.get(id=stored.appeal_id)
    await lifecycle.move(appeal, AppealStatus.PENDING, actor="test", reason="ждём ответа")
    before = await Event.filter(appeal_id=appeal.id, kind="appeal.status_changed").count()
    async with in_transaction(), history.batched():
        await lifecycle.move(appeal, AppealStatus.OPEN, actor="test", reason="ответили")
        pauses = await pauses_of(appeal)
        assert len(pauses) == 1 and pauses[0].end is not None  # the held row closed the pause
        written = await Event.filter(appeal_id=appeal.id, kind="appeal.status_changed").count()
        assert written == before  # the new one is held until the batch ends
    after = await Event.filter(appeal_id=appeal.id, kind="appeal.status_changed").count()
    assert after == before + 1


async def test_new_appeals_of_one_batch_are_spread_by_the_loads_the_batch_made(
    start_desk: Callable[..., Any],
) -> None:
    # The agents and their loads are read once a batch: the batch's own assignments must
    # count, or every new appeal of a batch would go to the same least-loaded agent.
    desk: Desk = await start_desk(
        workers={"intake": 0},
        agents=[{"name": "Ирина", "telegram_id": 1001}, {"name": "Олег", "telegram_id": 1002}],
    )
    lifecycle, _ = parts(desk)
    texts = ["Хочу вернуть товар, он пришёл с браком"] * 4
    results = await lifecycle.ingest_batch([tg(710 + i, 0, text) for i, text in enumerate(texts)])

    assert all(r.created for r in results)
    appeals = await Appeal.filter(id__in=[r.appeal_id for r in results])
    loads: dict[int | None, int] = {}
    for appeal in appeals:
        loads[appeal.assignee_id] = loads.get(appeal.assignee_id, 0) + 1
    assert None not in loads
    assert sorted(loads.values()) == [2, 2]


async def test_a_new_appeal_is_stored_with_all_the_batch_decided_about_it(
    quiet_desk: Desk,
) -> None:
    """Routing, the SLA clock and intake change a new appeal several times in its batch; the
    row holds every change once the batch is stored (written once, at the batch's end), and
    an edit in the same batch finds the appeal as the batch left it."""
    _, worker = parts(quiet_desk)
    stream = quiet_desk.service.ctx.stream  # type: ignore[union-attr]
    edit = replace(tg(901, 1, "Где мой заказ? Номер 4521"), external_id="901:9", edit_of="901:0")
    await stream.publish_many([tg(901, 0), tg(902, 0), tg(901, 1), edit])

    results = await worker.process(await stream.read(count=100, block_ms=1000))

    assert [r.created for r in results] == [True, True, False, False]
    assert results[3].edited and results[3].number == results[0].number
    for result in results[:2]:
        row = await Appeal.get(id=result.appeal_id)  # as stored, not the batch's object
        assert row.number == result.number
        assert row.status is AppealStatus.OPEN and row.category == "order_status"
        assert row.assignee_id is not None and row.team
        assert row.first_response_due is not None and row.resolution_due is not None
        assert row.last_message_at is not None and row.waiting_since is not None
    first = await Appeal.get(id=results[0].appeal_id)
    assert await texts_of(first.id) == ["Где мой заказ? Номер 4521", "Сообщение 1: где мой заказ?"]


async def test_a_mail_goes_to_the_appeal_whose_message_it_answers_not_the_latest(
    quiet_desk: Desk,
) -> None:
    # The email channel passes on what a mail answers (its In-Reply-To and References); intake
    # threads it by the first of those the desk knows, in the same query as its duplicates.
    lifecycle, _ = parts(quiet_desk)

    def mail(n: int, text: str, **kw: Any) -> InboundMessage:
        return InboundMessage(
            channel=ChannelKind.EMAIL,
            external_id=f"<m{n}@example.com>",
            address="anna@example.com",
            text=text,
            sent_at=T0 + timedelta(minutes=n),
            **kw,
        )

    first, second = await lifecycle.ingest_batch(
        [mail(1, "Нужен счёт"), mail(2, "И ещё: верните деньги", new_appeal=True)]
    )
    assert first.created and second.created and first.appeal_id != second.appeal_id
    unknown = "<lost@example.com>"
    answers = await lifecycle.ingest_batch(
        [
            mail(3, "Счёт получила, спасибо", replies_to=(unknown, "<m1@example.com>")),
            mail(4, "А деньги когда?"),  # answers nothing: the latest open appeal
        ]
    )
    assert [a.appeal_id for a in answers] == [first.appeal_id, second.appeal_id]
    assert await texts_of(first.appeal_id) == ["Нужен счёт", "Счёт получила, спасибо"]
