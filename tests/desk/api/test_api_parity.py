"""What an agent does in the staff group, done over the HTTP API: the category (learnt by the
router), priority and tags, postponing until a time, transfers, an order's detail, lost
customers, «do not contact»; the same history and the same card in the staff group."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from bench.fakes.telegram import FakeTelegram
from desk.appeals.tasks import create_task
from models import (
    Appeal,
    AppealStatus,
    Customer,
    Event,
    LabelledExample,
    Lifecycle,
    Order,
    Priority,
    RatingRequest,
    Task,
    TaskStatus,
)
from tests.conftest import Desk
from tests.desk.api.test_api import send_appeal
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    MovableClock,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)

TEAMS = [{"id": "accounting", "title": "Бухгалтерия"}, {"id": "logistics", "title": "Доставка"}]


async def call(desk: Desk, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
    """Any method with a JSON body, as the staff API's token."""
    async with desk.http.request(method, desk.base + path, json=payload, headers=desk.auth) as resp:
        return resp.status, await resp.json()


def card_text(fake: FakeTelegram, appeal: Appeal) -> str:
    """The appeal's card in its topic as it reads now (after any edits)."""
    message = fake.chat(STAFF_CHAT).messages[int(appeal.staff_card_ref or 0)]
    return str(message.get("text", ""))


@pytest.fixture
async def tdesk(fake: FakeTelegram, start_desk: Callable[..., Any]) -> Desk:
    desk: Desk = await start_desk(**telegram_settings(fake, teams=TEAMS))
    return desk


async def test_category_priority_and_tags_over_http_reach_the_card_and_the_router(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 601, "Помогите пожалуйста")
    number = appeal.number
    status, body = await call(
        tdesk,
        "PATCH",
        f"/api/v1/appeals/{number}",
        {"category": "documents", "priority": "urgent", "tags": ["  vip   клиент ", "Важно"]},
    )
    assert status == 200, body
    assert (body["category"], body["team"], body["priority"]) == (
        "documents",
        "accounting",
        "urgent",
    )
    stored = await Appeal.get(id=appeal.id)
    assert stored.tags == ["vip клиент", "Важно"] and stored.priority is Priority.URGENT
    # The category counts as an agent's choice: an example the router learns from.
    example = await LabelledExample.get(appeal_id=appeal.id)
    assert example.category == "documents" and "Помогите" in example.text
    kinds = [e.kind for e in await Event.filter(appeal_id=appeal.id).order_by("id")]
    assert {"appeal.categorised", "appeal.tagged", "appeal.priority_changed"} <= set(kinds)
    tagged = await Event.filter(appeal_id=appeal.id, kind="appeal.tagged").order_by("id")
    assert [(e.actor, e.data["tag"], e.data["added"]) for e in tagged][-2:] == [
        ("api:tests", "vip клиент", True),
        ("api:tests", "Важно", True),
    ]
    # The staff group sees what the API did, on the appeal's card.
    await eventually(
        lambda: (
            "Категория: Документы" in card_text(fake, stored)
            and "Приоритет: срочный" in card_text(fake, stored)
            and "vip клиент" in card_text(fake, stored)
        ),
        what="the card redrawn with the API's changes",
    )

    # The whole set of tags: what is left out is removed, one event each.
    status, body = await call(tdesk, "PATCH", f"/api/v1/appeals/{number}", {"tags": ["Важно"]})
    assert status == 200 and body["tags"] == ["Важно"] and body["priority"] == "urgent"
    removed = await Event.filter(appeal_id=appeal.id, kind="appeal.tagged").order_by("-id").first()
    assert removed is not None and removed.data == {"tag": "vip клиент", "added": False}


async def test_bad_values_are_422_naming_the_valid_ones_and_an_unknown_appeal_404(
    desk: Desk,
) -> None:
    number = (await send_appeal(desk))["number"]
    status, body = await call(desk, "PATCH", f"/api/v1/appeals/{number}", {"category": "misc"})
    assert status == 422 and body["error"]["fields"][0]["field"] == "category"
    assert "documents" in body["error"]["message"] and "returns" in body["error"]["message"]
    status, body = await call(desk, "PATCH", f"/api/v1/appeals/{number}", {"priority": "asap"})
    assert status == 422 and "'urgent'" in body["error"]["message"]
    status, body = await call(desk, "PATCH", f"/api/v1/appeals/{number}", {"tags": ["  "]})
    assert status == 422
    status, body = await call(desk, "PATCH", "/api/v1/appeals/A-999999", {"priority": "low"})
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await call(desk, "POST", "/api/v1/appeals/A-999999/postpone", {"reason": "x"})
    assert status == 404
    status, body = await call(desk, "POST", f"/api/v1/appeals/{number}/transfer", {"team": "x"})
    assert status == 422 and "known:" in body["error"]["message"]
    stored = await Appeal.get(number=number)
    assert stored.priority is not Priority.LOW and stored.tags == []
    assert not await LabelledExample.filter(appeal_id=stored.id).exists()


async def test_postponed_for_a_span_the_appeal_comes_back_in_work_when_it_is_over(
    start_desk: Callable[..., Any],
) -> None:
    clock = MovableClock(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))
    desk: Desk = await start_desk(clock=clock)
    number = (await send_appeal(desk))["number"]
    path = f"/api/v1/appeals/{number}/postpone"
    status, body = await call(desk, "POST", path, {"until": "2026-11-22T10:00:00+03:00"})
    assert status == 422 and body["error"]["code"] == "bad_time"
    both = {"until": "2026-11-24T10:00:00+03:00", "duration": "2h"}
    assert (await call(desk, "POST", path, both))[0] == 422
    assert (await call(desk, "POST", path, {"duration": "2 hours"}))[0] == 422

    status, body = await call(desk, "POST", path, {"duration": "2h", "reason": "ждём склад"})
    assert status == 200 and body["status"] == "pending", body
    appeal = await Appeal.get(number=number)
    assert appeal.pending_until == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    moved = await Event.filter(appeal_id=appeal.id, kind="appeal.status_changed").order_by("-id")
    assert moved[0].data == {"before": "open", "after": "pending", "reason": "ждём склад"}
    postponed = await Event.get(appeal_id=appeal.id, kind="appeal.postponed")
    assert postponed.data == {"until": "2026-11-23T09:00:00+00:00", "reason": "ждём склад"}
    # Postponed already: a second postponement is a conflict, as in the chat.
    assert (await call(desk, "POST", path, {"reason": "ещё"}))[0] == 409

    life = desk.service.ctx.lifecycle  # type: ignore[union-attr]
    assert await life.wake_postponed(clock.now + timedelta(hours=1)) == 0
    assert await life.wake_postponed(clock.now + timedelta(hours=2)) == 1
    back = await Appeal.get(id=appeal.id)
    assert back.status is AppealStatus.OPEN and back.pending_until is None
    last = await Event.filter(appeal_id=appeal.id, kind="appeal.status_changed").order_by("-id")
    assert last[0].actor == "scheduler" and last[0].data["after"] == "open"


async def test_the_chat_postpones_until_a_time_as_the_api_does(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 602, "Где мой заказ 77?")
    thread = int(appeal.staff_thread)
    fake.group_message(STAFF_CHAT, AGENT_ID, "/postpone 3д ждём поставку", thread)
    pending = await eventually(
        lambda: Appeal.filter(id=appeal.id, status=AppealStatus.PENDING).first()
    )
    assert pending.pending_until is not None
    ahead = pending.pending_until - datetime.now(UTC)
    assert timedelta(days=2, hours=23) < ahead <= timedelta(days=3)
    event = await Event.get(appeal_id=appeal.id, kind="appeal.postponed")
    assert event.actor == "Ирина" and event.data["reason"] == "ждём поставку"
    said = await eventually(
        lambda: [t for t in texts_in(fake, STAFF_CHAT, thread) if "отложено до" in t]
    )
    assert "ждём поставку" in said[0]
    await eventually(lambda: "Отложено до:" in card_text(fake, pending), what="card shows it")


async def test_transfer_to_a_team_frees_the_assignee_and_writes_the_chat_s_event(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 603, "Хочу вернуть заказ 123, пришёл не тот размер")
    await call(tdesk, "POST", f"/api/v1/appeals/{appeal.number}/assign", {"agent": "Ирина"})
    status, body = await call(
        tdesk, "POST", f"/api/v1/appeals/{appeal.number}/transfer", {"team": "logistics"}
    )
    assert status == 200 and body["team"] == "logistics" and body["assignee"] is None, body
    moved = await Event.get(appeal_id=appeal.id, kind="appeal.transferred")
    assert moved.actor == "api:tests"
    assert moved.data == {
        "before": {"category": "returns", "team": "support"},
        "after": {"category": "returns", "team": "logistics"},
    }
    stored = await Appeal.get(id=appeal.id)
    await eventually(lambda: "команда logistics" in card_text(fake, stored))
    # To a category: its team follows, and the router learns the choice (as /transfer).
    status, body = await call(
        tdesk, "POST", f"/api/v1/appeals/{appeal.number}/transfer", {"category": "documents"}
    )
    assert status == 200 and (body["category"], body["team"]) == ("documents", "accounting")
    assert (await LabelledExample.get(appeal_id=appeal.id)).category == "documents"


async def test_an_order_with_its_stage_customer_and_stages(desk: Desk) -> None:
    body = {"external_id": "Z-1", "customer": {"name": "Марина", "email": "m@example.com"}}
    assert (await desk.post("/api/v1/orders", {**body, "amount": "1990.50"}))[0] == 201
    assert (await desk.post("/api/v1/orders/Z-1/stage", {"stage": "shipped", "note": "СДЭК"}))[
        0
    ] == 200
    status, order = await desk.get("/api/v1/orders/Z-1")
    assert status == 200, order
    assert (order["stage"], order["stage_title"], order["amount"]) == (
        "shipped",
        "Заказ передан в доставку",
        "1990.50",
    )
    assert order["customer"]["name"] == "Марина" and order["customer"]["lifecycle"] == "active"
    assert [(h["kind"], h["stage"]) for h in order["history"]] == [
        ("stage", "new"),
        ("stage", "shipped"),
    ]
    assert order["history"][1]["note"] == "СДЭК"
    status, missing = await desk.get("/api/v1/orders/nope")
    assert status == 404 and missing["error"]["code"] == "not_found"


async def test_lost_customers_are_listed_with_warmth_reason_and_last_purchase(
    start_desk: Callable[..., Any],
) -> None:
    clock = MovableClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    desk: Desk = await start_desk(clock=clock)
    for external_id, email in (("L-1", "a@example.com"), ("L-2", "b@example.com")):
        order = {"external_id": external_id, "customer": {"name": email, "email": email}}
        assert (await desk.post("/api/v1/orders", {**order, "amount": 500}))[0] == 201
    clock.now += timedelta(days=60)
    stays = {"external_id": "L-3", "customer": {"name": "b", "email": "b@example.com"}}
    assert (await desk.post("/api/v1/orders", stays))[0] == 201
    clock.now += timedelta(days=40)
    await desk.service.ctx.winback.scan()  # type: ignore[union-attr]

    status, page = await desk.get("/api/v1/customers?state=lost")
    assert status == 200 and page["total"] == 1, page
    lost = page["items"][0]
    assert (lost["name"], lost["lifecycle"], lost["warmth"]) == ("a@example.com", "lost", "warm")
    assert lost["state_reason"] == "no order for 100 days (limit 90)"
    assert lost["last_order"]["external_id"] == "L-1" and lost["last_order"]["amount"] == "500.00"
    status, active = await desk.get("/api/v1/customers?state=active&per_page=1")
    assert (
        status == 200
        and active["total"] == 1
        and active["items"][0]["last_order"]["external_id"] == "L-3"
    )
    status, bad = await desk.get("/api/v1/customers?state=gone")
    assert status == 400 and "lost" in bad["error"]["message"]


async def test_do_not_contact_stops_notices_ratings_and_win_back_but_not_answers(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    # Midday in Moscow: a stage notice is held in the night (the stages' quiet hours).
    midday = MovableClock(datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0))
    desk: Desk = await start_desk(clock=midday, **telegram_settings(fake))
    quiet = await open_appeal(fake, 611, "Где мой заказ 11?", name="Тихон")
    other = await open_appeal(fake, 612, "Где мой заказ 12?", name="Глеб")
    customer_id = quiet.customer_id
    before = len(fake.sent_to(611))
    status, body = await call(
        desk, "PUT", f"/api/v1/customers/{customer_id}/contact", {"do_not_contact": True}
    )
    assert status == 200 and body["do_not_contact"] is True, body
    flagged = await Event.get(customer_id=customer_id, kind="customer.state_changed")
    assert flagged.data == {
        "field": "do_not_contact",
        "before": "no",
        "after": "yes",
        "reason": "api",
    }

    # A stage notice: the other customer gets theirs, the flagged one nothing.
    for user, external_id in ((611, "N-11"), (612, "N-12")):
        order = {"external_id": external_id, "customer": {"name": "x", "telegram_id": user}}
        assert (await desk.post("/api/v1/orders", order))[0] == 201
    await eventually(lambda: [t for t in texts_in(fake, 612) if "N-12" in t])
    # A rating prompt on resolving: asked of the other, not of the flagged one.
    for appeal in (quiet, other):
        status, _ = await desk.post(
            f"/api/v1/appeals/{appeal.number}/status", {"status": "resolved"}
        )
        assert status == 200
    assert await RatingRequest.filter(appeal_id=other.id).exists()
    assert not await RatingRequest.filter(appeal_id=quiet.id).exists()
    # An agent's own answer still goes.
    status, _ = await desk.post(
        f"/api/v1/appeals/{quiet.number}/messages", {"text": "Заказ 11 у курьера"}
    )
    assert status == 201
    await eventually(lambda: [t for t in texts_in(fake, 611) if "Заказ 11 у курьера" in t])
    later = fake.sent_to(611)[before:]
    assert not [m for m in later if "N-11" in (m.text or "")]
    assert not [m for m in later if "rt:" in json.dumps(m.reply_markup or {})]
    # Lost, both: the win-back scan calls the other only.
    await Customer.filter(id__in=[customer_id, other.customer_id]).update(lifecycle=Lifecycle.LOST)
    await desk.service.ctx.winback.scan()  # type: ignore[union-attr]
    assert await Task.filter(customer_id=other.customer_id, kind="winback").exists()
    assert not await Task.filter(customer_id=customer_id, kind="winback").exists()
    # Nothing erased: the customer, the appeal and its history stay.
    kept = await Customer.get(id=customer_id)
    assert kept.name == "Тихон" and kept.do_not_contact
    assert await Event.filter(appeal_id=quiet.id, kind="appeal.created").exists()
    assert await Order.filter(external_id="N-11", customer_id=customer_id).exists()


async def test_the_flag_cancels_open_win_back_calls_and_the_chat_sets_it(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    desk: Desk = await start_desk(**telegram_settings(fake))
    appeal = await open_appeal(fake, 621, "Хочу заказать снова", name="Лев")
    await Customer.filter(id=appeal.customer_id).update(lifecycle=Lifecycle.LOST)
    await desk.service.ctx.winback.scan()  # type: ignore[union-attr]
    call_task = await Task.get(customer_id=appeal.customer_id, kind="winback")
    fake.group_message(STAFF_CHAT, AGENT_ID, "/contact выкл", int(appeal.staff_thread))
    await eventually(lambda: Customer.filter(id=appeal.customer_id, do_not_contact=True).exists())
    cancelled = await Task.get(id=call_task.id)
    assert cancelled.status is TaskStatus.CANCELLED and cancelled.result == "cancelled"
    said = await eventually(
        lambda: [
            t
            for t in texts_in(fake, STAFF_CHAT, int(appeal.staff_thread))
            if "ничего не отправ" in t
        ]
    )
    assert said
    event = await Event.get(customer_id=appeal.customer_id, kind="customer.state_changed")
    assert event.actor == "Ирина" and event.data["after"] == "yes"
    # Lifted over HTTP: the next scan may call again.
    status, body = await call(
        desk, "PUT", f"/api/v1/customers/{appeal.customer_id}/contact", {"do_not_contact": False}
    )
    assert status == 200 and body["do_not_contact"] is False
    status, _ = await call(
        desk, "PUT", "/api/v1/customers/999999/contact", {"do_not_contact": True}
    )
    assert status == 404


async def test_reports_and_tasks_name_categories_teams_agents_and_appeals(
    start_desk: Callable[..., Any],
) -> None:
    teams = [{"id": "support", "title": "Первая линия"}, *TEAMS]
    desk: Desk = await start_desk(teams=teams)
    text = "Хочу вернуть заказ 123, пришёл не тот размер"
    number = (await send_appeal(desk, {"name": "Ольга", "email": "o@example.com", "text": text}))[
        "number"
    ]
    await desk.post(f"/api/v1/appeals/{number}/assign", {"agent": "Ирина"})
    await desk.post(f"/api/v1/appeals/{number}/messages", {"text": "Оформим возврат"})
    status, report = await desk.get("/api/v1/reports/appeals?period=today")
    assert status == 200, report
    assert [(x["key"], x["name"]) for x in report["by_category"]] == [
        ("returns", "Возврат и обмен")
    ]
    assert [(x["key"], x["name"]) for x in report["by_team"]] == [("support", "Первая линия")]
    assert [x["name"] for x in report["by_agent"]] == ["Ирина"]
    status, sla = await desk.get("/api/v1/reports/sla?period=today")
    assert status == 200 and [(t["key"], t["name"]) for t in sla["by_team"]] == [
        ("support", "Первая линия")
    ]
    status, top = await desk.get("/api/v1/reports/top?period=today")
    assert status == 200 and [(c["key"], c["shown"]) for c in top["categories"]] == [
        ("returns", "Возврат и обмен")
    ]

    ctx = desk.service.ctx
    assert ctx is not None
    appeal = await Appeal.get(number=number)
    async with in_transaction():
        await create_task(
            ctx.lifecycle.events,
            kind="call",
            text="Перезвонить",
            due_at=ctx.clock() + timedelta(hours=2),
            actor="tests",
            appeal=appeal,
            customer=await Customer.get(id=appeal.customer_id),
        )
    status, tasks = await desk.get("/api/v1/tasks")
    assert status == 200, tasks
    task = tasks["items"][0]
    assert (task["appeal_id"], task["appeal_number"]) == (appeal.id, number)
    assert (task["customer_id"], task["customer_name"]) == (appeal.customer_id, "Ольга")
    assert task["assignee_id"] == appeal.assignee_id and task["assignee"] == "Ирина"
