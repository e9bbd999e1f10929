"""The router in the running desk: categories, the one-tap question, alerts for managers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench.fakes.telegram import FakeTelegram
from models import (
    Agent,
    Appeal,
    AppealStatus,
    Customer,
    Event,
    LabelledExample,
    Priority,
    Warmth,
)
from tests.conftest import Desk
from tests.telegram_world import (
    AGENT_ID,
    MANAGERS_CHAT,
    STAFF_CHAT,
    SUPERVISOR_ID,
    eventually,
    open_appeal,
    telegram_settings,
)


@pytest.fixture
async def tdesk(fake: FakeTelegram, start_desk: Callable[..., Any]) -> Desk:
    desk: Desk = await start_desk(
        **telegram_settings(fake, telegram={"managers_chat_id": MANAGERS_CHAT})
    )
    return desk


async def test_clear_appeals_get_category_team_and_priority(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    returns = await open_appeal(fake, 401, "Хочу вернуть кроссовки, не подошёл размер")
    documents = await open_appeal(fake, 402, "Пришлите пожалуйста акт сверки и счёт-фактуру за май")
    assert (returns.category, returns.team, returns.priority) == (
        "returns",
        "support",
        Priority.HIGH,
    )
    assert (documents.category, documents.team) == ("documents", "accounting")
    assert returns.status is AppealStatus.OPEN
    topic = fake.chat(STAFF_CHAT).topics[int(documents.staff_thread)]
    await eventually(lambda: topic.name.endswith("Документы"))
    assert (await Customer.get(id=returns.customer_id)).warmth is Warmth.WARM


async def test_a_complaint_makes_the_customer_cold(tdesk: Desk, fake: FakeTelegram) -> None:
    appeal = await open_appeal(
        fake, 405, "Хочу пожаловаться на курьера: нахамил и бросил коробку у двери"
    )
    assert appeal.category == "complaint"
    customer = await eventually(
        lambda: Customer.filter(id=appeal.customer_id, warmth=Warmth.COLD).first()
    )
    change = await Event.get(customer_id=customer.id, kind="customer.state_changed")
    assert change.data == {
        "field": "warmth",
        "before": "warm",
        "after": "cold",
        "reason": "rule 'complaint cools the customer'",
    }


async def test_unsure_appeal_waits_for_one_tap_and_the_choice_is_learnt(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 403, "Помогите пожалуйста")
    assert appeal.status is AppealStatus.NEW and appeal.category is None
    question = await eventually(
        lambda: [s for s in fake.sent_to(STAFF_CHAT) if (s.body or "").startswith("❓")]
    )
    assert question[0].message_thread_id is None  # in General
    buttons = [b for row in question[0].reply_markup["inline_keyboard"] for b in row]
    documents = next(b for b in buttons if b["text"] == "Документы")
    fake.callback(AGENT_ID, STAFF_CHAT, question[0].message_id, documents["callback_data"])

    await eventually(lambda: Appeal.filter(id=appeal.id, category="documents").exists())
    placed = await Appeal.get(id=appeal.id)
    assert placed.status is AppealStatus.OPEN and placed.team == "accounting"
    example = await LabelledExample.get(appeal_id=appeal.id)
    assert example.category == "documents" and "Помогите" in example.text
    model = tdesk.service.ctx.routing.model  # type: ignore[union-attr]
    assert len(model.examples) == 1 and model.seeds


async def test_a_retrain_learns_another_process_s_choices_and_nothing_when_none_is_new(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    routing = tdesk.service.ctx.routing
    assert routing is not None
    started = routing.model
    await routing.retrain()
    kept = routing.model is started
    assert kept, "trained again with nothing new (a thread's work, and memory kept by its heap)"

    # A worker remembered an agent's choice: its row is all this process sees of it.
    text = "Помогите пожалуйста"
    appeal = await open_appeal(fake, 409, text)
    await LabelledExample.create(text=text, category="documents", appeal_id=appeal.id)
    await routing.retrain()
    assert routing.model is not started, "another process's choice not learnt"
    assert routing.model.examples == [(text, "documents")]

    # The choice changed back and forth: a new row each time, so learnt afresh.
    learnt = routing.model
    await LabelledExample.filter(appeal_id=appeal.id).delete()
    await LabelledExample.create(text=text, category="returns", appeal_id=appeal.id)
    await routing.retrain()
    assert routing.model is not learnt, "a changed choice not learnt"
    assert routing.model.examples == [(text, "returns")]


async def test_a_new_desk_places_what_only_the_shipped_examples_know(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    text = "Вы работаете в воскресенье?"
    assert not tdesk.service.ctx.routing.classifier.rule_hits(text)[0]  # type: ignore[union-attr]
    appeal = await open_appeal(fake, 407, text)
    assert (appeal.category, appeal.status) == ("general", AppealStatus.OPEN)


async def test_without_the_shipped_examples_a_new_desk_asks_a_person(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    await start_desk(**telegram_settings(fake, router={"seed_examples": False}))
    appeal = await open_appeal(fake, 408, "Вы работаете в воскресенье?")
    assert appeal.status is AppealStatus.NEW and appeal.category is None


async def test_customer_who_may_be_lost_alerts_managers_who_can_take_it(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(
        fake, 404, "Третий раз пишу! Верните деньги за заказ, иначе жалоба в Роспотребнадзор"
    )
    assert "Важно" in appeal.tags and appeal.priority in (Priority.HIGH, Priority.URGENT)
    alert = await eventually(lambda: fake.sent_to(MANAGERS_CHAT))
    assert appeal.number in (alert[0].text or "") and "Роспотребнадзор" in (alert[0].text or "")
    take = alert[0].reply_markup["inline_keyboard"][0][0]["callback_data"]
    fake.callback(SUPERVISOR_ID, MANAGERS_CHAT, alert[0].message_id, take)
    oleg = await Agent.get(telegram_id=SUPERVISOR_ID)
    await eventually(lambda: Appeal.filter(id=appeal.id, assignee_id=oleg.id).exists())


async def test_new_appeals_go_to_an_agent_on_duty_and_come_back_when_they_leave(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    irina = await Agent.get(telegram_id=AGENT_ID)
    oleg = await Agent.get(telegram_id=SUPERVISOR_ID)
    fake.group_message(STAFF_CHAT, SUPERVISOR_ID, "/duty off")
    await eventually(lambda: Agent.filter(id=oleg.id, on_duty=False).exists())
    first = await open_appeal(fake, 405, "Где мой заказ 1001?")
    second = await open_appeal(fake, 406, "Где мой заказ 1002?")
    assert first.assignee_id == irina.id and second.assignee_id == irina.id
    history = await Event.filter(appeal_id=first.id, kind="appeal.assigned").first()
    assert history is not None and history.actor == "router" and history.data["reason"]

    fake.group_message(STAFF_CHAT, AGENT_ID, "/duty off")
    offer = await eventually(
        lambda: [s for s in fake.sent_to(STAFF_CHAT) if "Ждут исполнителя" in (s.body or "")]
    )
    assert first.number in (offer[0].body or "") and second.number in (offer[0].body or "")
    assert not await Appeal.filter(assignee_id=irina.id).exists()
    button = offer[0].reply_markup["inline_keyboard"][0][0]["callback_data"]
    fake.group_message(STAFF_CHAT, SUPERVISOR_ID, "/duty on")
    await eventually(lambda: Agent.filter(id=oleg.id, on_duty=True).exists())
    fake.callback(SUPERVISOR_ID, STAFF_CHAT, offer[0].message_id, button)
    await eventually(lambda: Appeal.filter(id=first.id, assignee_id=oleg.id).exists())
