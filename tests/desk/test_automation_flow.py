"""Automation rules in the running desk: shipped and configured rules, quiet hours in the
customer's time zone, call tasks when nobody can be reached, signed webhooks with retries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bench.fakes.telegram import FakeTelegram
from models import (
    Agent,
    Appeal,
    Customer,
    Event,
    OutboxItem,
    OutboxStatus,
    Priority,
    ReportStale,
    Task,
)
from tests.conftest import Desk, free_port
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    SUPERVISOR_ID,
    MovableClock,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)

LATE_EVENING = datetime(2026, 11, 23, 20, 10, tzinfo=UTC)  # 23:10 in Moscow
WEBHOOK_SECRET = "hook-2Itzh1bmmigukyIIMLSLutHiEtVHY-2mQTCZ"


async def fired(appeal: Appeal) -> list[dict[str, Any]]:
    rows = await Event.filter(appeal_id=appeal.id, kind="automation.fired").order_by("id")
    return [r.data for r in rows]


async def resolve(desk: Desk, appeal: Appeal) -> None:
    status, body = await desk.post(
        f"/api/v1/appeals/{appeal.number}/status", {"status": "resolved"}
    )
    assert status == 200, body


async def test_resolved_late_in_the_evening_is_told_the_next_morning(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock = MovableClock(LATE_EVENING)
    desk: Desk = await start_desk(clock=clock, **telegram_settings(fake))
    appeal = await open_appeal(fake, 601, "Где мой заказ 5512?", name="Анна")
    # The acknowledgement answers a live conversation: sent at once, even at 23:10.
    await eventually(lambda: any("зарегистрировано" in t for t in texts_in(fake, 601)))
    clock.now += timedelta(minutes=30)  # the conversation has gone quiet

    await resolve(desk, appeal)
    held = await eventually(
        lambda: (
            OutboxItem.filter(appeal_id=appeal.id, channel="telegram", status=OutboxStatus.PENDING)
            .order_by("id")
            .first()
        )
    )
    assert held.next_attempt_at == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 09:00 Moscow
    await asyncio.sleep(0.5)
    assert not any("решено" in t for t in texts_in(fake, 601))

    clock.now = datetime(2026, 11, 24, 6, 0, 5, tzinfo=UTC)
    desk.service.ctx.outbox.wake()  # type: ignore[union-attr]
    told = await eventually(lambda: [t for t in texts_in(fake, 601) if "решено" in t])
    assert appeal.number in told[0] and "Анна" in told[0]

    history = await fired(appeal)
    assert [h["rule"] for h in history] == ["acknowledge", "notify on resolve", "rating request"]
    # The rating request waits for the morning too, and comes after the notice.
    assert history[2]["outcomes"][0]["not_before"] == "2026-11-24T06:00:00+00:00"
    assert history[1]["outcomes"] == [
        {
            "action": "notify_customer",
            "result": "queued",
            "channel": "telegram",
            "not_before": "2026-11-24T06:00:00+00:00",
            "outbox_id": held.id,
        }
    ]


async def test_a_live_conversation_at_night_is_resolved_and_rated_at_once(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    # The customer and the agent are talking at 23:10: the resolution and the rating prompt
    # that follow the answer are part of that conversation, not held until the morning.
    clock = MovableClock(LATE_EVENING)
    desk: Desk = await start_desk(clock=clock, **telegram_settings(fake))
    appeal = await open_appeal(fake, 603, "Где мой заказ 5513?", name="Анна")
    clock.now += timedelta(minutes=5)
    fake.group_message(STAFF_CHAT, AGENT_ID, "Заказ передан курьеру", int(appeal.staff_thread))
    await eventually(lambda: any("курьеру" in t for t in texts_in(fake, 603)))
    clock.now += timedelta(minutes=3)

    await resolve(desk, appeal)
    await eventually(lambda: any("решено" in t for t in texts_in(fake, 603)), what="resolved")

    def rated() -> bool:
        clock.now += timedelta(seconds=1)  # Telegram's pauses between messages to one chat pass
        desk.service.ctx.outbox.wake()  # type: ignore[union-attr]
        return any("оцените" in t for t in texts_in(fake, 603))

    await eventually(rated, what="the rating prompt")
    assert not await OutboxItem.filter(
        appeal_id=appeal.id, channel="telegram", status=OutboxStatus.PENDING
    ).exists()


async def test_quiet_hours_follow_the_customer_time_zone(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    clock = MovableClock(LATE_EVENING)  # 06:10 the next morning in Vladivostok
    desk: Desk = await start_desk(clock=clock, **telegram_settings(fake))
    appeal = await open_appeal(fake, 602, "Подскажите по размеру")
    await Customer.filter(id=appeal.customer_id).update(timezone="Asia/Vladivostok")
    clock.now += timedelta(minutes=30)  # the conversation has gone quiet
    await resolve(desk, appeal)
    held = await eventually(
        lambda: OutboxItem.filter(
            appeal_id=appeal.id, channel="telegram", status=OutboxStatus.PENDING
        ).first()
    )
    assert held.next_attempt_at == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # 09:00 there


async def test_configured_rules_tag_notify_staff_and_stop_at_themselves(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    rules = [
        {
            "name": "urgent → staff",
            "on": "appeal.priority_changed",
            "if": "after == 'urgent' and appeal.channel == 'telegram'",
            "do": [
                {"action": "add_tag", "tag": "Срочно"},
                {"action": "notify_staff", "template": "rule_note"},
                # Its own priority change must not fire it again.
                {"action": "set_priority", "priority": "high"},
                {"action": "set_priority", "priority": "urgent"},
            ],
        }
    ]
    desk: Desk = await start_desk(**telegram_settings(fake, automation={"rules": rules}))
    appeal = await open_appeal(fake, 603, "Подскажите, какой размер взять")
    thread = int(appeal.staff_thread)
    await desk.service.ctx.triage.set_priority(  # type: ignore[union-attr]
        appeal.number, Priority.URGENT, actor="Ирина"
    )
    await eventually(lambda: any("urgent → staff" in t for t in texts_in(fake, STAFF_CHAT, thread)))
    fresh = await Appeal.get(id=appeal.id)
    assert fresh.tags == ["Срочно"] and fresh.priority is Priority.URGENT
    history = [h for h in await fired(appeal) if h["rule"] == "urgent → staff"]
    assert len(history) == 1
    assert [o["result"] for o in history[0]["outcomes"]] == ["done", "posted", "done", "done"]


async def test_a_rule_that_moves_an_appeal_to_a_team_tells_it_like_a_transfer(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    rules = [
        {
            "name": "urgent → duty team",
            "on": "appeal.priority_changed",
            "if": "after == 'urgent'",
            "do": [{"action": "assign", "team": "duty"}],
        }
    ]
    clock = MovableClock(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    desk: Desk = await start_desk(
        clock=clock,
        **telegram_settings(
            fake,
            automation={"rules": rules},
            teams=[{"id": "support"}, {"id": "duty", "title": "Дежурные"}],
            agents=[
                {"name": "Ирина", "telegram_id": AGENT_ID, "teams": ["support"]},
                {"name": "Олег", "telegram_id": AGENT_ID + 1, "teams": ["duty"]},
            ],
        ),
    )
    appeal = await open_appeal(fake, 604, "Не работает касса, срочно")
    clock.now += timedelta(days=1)  # the day it came in is counted; the move changes it
    await ReportStale.all().delete()
    await desk.service.ctx.triage.set_priority(  # type: ignore[union-attr]
        appeal.number, Priority.URGENT, actor="Ирина"
    )
    moved = await eventually(
        lambda: Event.filter(appeal_id=appeal.id, kind="appeal.transferred").first()
    )
    assert moved.actor == "automation"
    assert moved.data["after"]["team"] == "duty" and moved.data["before"]["team"] != "duty"
    fresh = await Appeal.get(id=appeal.id).prefetch_related("assignee")
    assert fresh.team == "duty" and fresh.assignee is not None and fresh.assignee.name == "Олег"
    stale = await ReportStale.all().values_list("day", flat=True)
    assert datetime(2026, 11, 20).date() in stale  # the day's figures are counted again


async def test_nobody_reachable_means_a_call_task_with_the_script(
    desk: Desk,
) -> None:
    status, body = await desk.post(
        "/api/v1/appeals",
        {"name": "Пётр", "phone": "+7 912 000-11-22", "text": "Перезвоните по заказу 77"},
        auth=False,
    )
    assert status == 201, body
    appeal = await Appeal.get(number=body["number"])
    await resolve(desk, appeal)
    task = await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").first())
    assert "+79120001122" in task.text.replace(" ", "") and "решено" in task.text
    assert task.due_at is not None
    outcomes = [h["outcomes"] for h in await fired(appeal) if h["rule"] == "notify on resolve"]
    assert outcomes == [[{"action": "notify_customer", "result": "call_task"}]]


async def test_a_rules_call_task_nobody_owns_goes_to_the_teams_lead(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    rules = [
        {
            "name": "call every new customer",
            "on": "message.received",
            "if": "first",
            "do": [{"action": "create_task", "kind": "call", "template": "low_rating_call"}],
        }
    ]
    settings = telegram_settings(
        fake, automation={"rules": rules}, teams=[{"id": "support", "lead": str(SUPERVISOR_ID)}]
    )
    settings["agents"] = [{**a, "capacity": 0} for a in settings["agents"]]  # nobody is free
    await start_desk(**settings)
    appeal = await open_appeal(fake, 604, "Где мой заказ?")
    assert appeal.assignee_id is None and appeal.team == "support"
    task = await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").first())
    lead = await Agent.get(telegram_id=SUPERVISOR_ID)
    assert task.assignee_id == lead.id


class WebhookReceiver:
    """A partner system: fails first with 503, then accepts; keeps what arrived."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=503)
        self.received.append((dict(request.headers), body))
        return web.Response(status=204)


async def test_webhook_is_signed_and_retried_until_it_lands(
    start_desk: Callable[..., Any],
) -> None:
    receiver = WebhookReceiver(failures=1)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    clock = MovableClock(datetime.now(UTC))
    try:
        rules = [
            {
                "name": "to CRM",
                "on": "appeal.created",
                "do": [{"action": "call_webhook", "url": f"http://127.0.0.1:{port}/hook"}],
            }
        ]
        desk: Desk = await start_desk(
            clock=clock, automation={"rules": rules, "webhook_secret": WEBHOOK_SECRET}
        )
        status, body = await desk.post(
            "/api/v1/appeals", {"name": "Ольга", "email": "olga@example.com", "text": "Счёт"}
        )
        assert status == 201
        row = await eventually(
            lambda: OutboxItem.filter(
                channel="webhook", attempts__gte=1, last_error__not=""
            ).first()
        )
        assert "503" in row.last_error and not receiver.received
        clock.now += timedelta(minutes=1)  # past the backoff
        desk.service.ctx.outbox.wake()  # type: ignore[union-attr]
        await eventually(lambda: receiver.received)
    finally:
        await runner.cleanup()
    headers, raw = receiver.received[0]
    stamp = headers["X-Desk-Timestamp"]
    expected = hmac.new(WEBHOOK_SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256)
    assert headers["X-Desk-Signature"] == "sha256=" + expected.hexdigest()
    payload = json.loads(raw)
    assert payload["event"] == "appeal.created"
    assert payload["appeal"]["number"] == body["number"]
    assert payload["customer"]["name"] == "Ольга"


async def test_rules_chained_inside_an_intake_batch_stop_at_themselves(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    # Rules hear an intake batch's events at its end, and what their actions cause later
    # still: the chain that led to an event travels with it, so these two rules that undo
    # each other stop instead of sinking the batch.
    def flip(name: str, to: str, back: str) -> dict[str, Any]:
        return {
            "name": name,
            "on": "appeal.priority_changed",
            "if": f"after == '{to}'",
            "do": [{"action": "set_priority", "priority": back}],
        }

    rules = [
        {
            "name": "first message → urgent",
            "on": "message.received",
            "if": "first",
            "do": [{"action": "set_priority", "priority": "urgent"}],
        },
        flip("urgent → high", "urgent", "high"),
        flip("high → urgent", "high", "urgent"),
    ]
    await start_desk(**telegram_settings(fake, automation={"rules": rules}))
    appeal = await open_appeal(fake, 604, "Подскажите, какой размер взять")
    ack = await eventually(lambda: fake.sent_to(604))  # the shipped acknowledgement still went
    assert appeal.number in (ack[0].text or "")
    names = [h["rule"] for h in await fired(appeal)]
    assert names.count("first message → urgent") == 1
    assert names.count("urgent → high") == 1 and names.count("high → urgent") == 1
    fresh = await Appeal.get(id=appeal.id)
    assert fresh.priority is Priority.URGENT  # urgent, high, urgent again: there it stops
