"""Shared pieces of the Telegram tests: a fake Bot API, a desk pointed at it, waiting helpers."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.fakes.telegram import DEFAULT_TOKEN, FakeTelegram

STAFF_CHAT = -1001234567890
AGENT_ID = 1001  # Ирина, an agent in the default test settings
SUPERVISOR_ID = 1002  # Олег, a supervisor
MANAGER_ID = 1003  # Вера, a manager where a test's settings name her
STRANGER_ID = 1999  # Гость: in the groups, but no agent
MANAGERS_CHAT = -1009876543210
WEBHOOK_SECRET = "HsuBWAHhMiFEBVNS-FS8wC6t6SRzSHwv"  # X-Telegram-Bot-Api-Secret-Token


def staff_world(tg: FakeTelegram) -> FakeTelegram:
    """The company's side of the fake: the staff group (a forum) and the managers' chat, with
    an agent, a supervisor, a manager and a stranger in both."""
    people = {AGENT_ID: "Ирина", SUPERVISOR_ID: "Олег", MANAGER_ID: "Вера", STRANGER_ID: "Гость"}
    tg.add_group(STAFF_CHAT, "Поддержка", members=list(people))
    tg.add_group(MANAGERS_CHAT, "Руководители", forum=False, members=list(people))
    for user_id, name in people.items():
        tg.add_user(user_id, name)
    return tg


def telegram_settings(fake: FakeTelegram, **overrides: Any) -> dict[str, Any]:
    """Setting overrides for a desk whose Telegram side talks to ``fake``."""
    telegram: dict[str, Any] = {
        "token": DEFAULT_TOKEN,
        "api_url": fake.url,
        "staff_chat_id": STAFF_CHAT,
        "poll_timeout_s": 1,
        "album_wait_s": 0.3,
        "feed_interval_s": 1,
    }
    telegram.update(overrides.pop("telegram", {}))
    return {
        "telegram": telegram,
        "workers": {"claim_idle_s": 2.0, "poll_s": 0.05},
        # Around the clock, so what tests see does not depend on the hour they run at.
        "sla": {"calendar": {"hours": None}},
        "agents": [
            {"name": "Ирина", "telegram_id": AGENT_ID},
            {"name": "Олег", "telegram_id": SUPERVISOR_ID, "role": "supervisor"},
        ],
        **overrides,
    }


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


class MovableClock:
    """The desk's time, moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class FastClock:
    """Time that runs ``speed`` times faster than the wall: minutes of Telegram's flood limits
    pass in seconds, for the fake and the desk alike."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._start = time.monotonic()
        self._wall = time.time()

    def elapsed(self) -> float:
        return (time.monotonic() - self._start) * self.speed

    def monotonic(self) -> float:
        """For the fake's limits."""
        return self._start + self.elapsed()

    def now(self) -> datetime:
        """For the desk."""
        return datetime.fromtimestamp(self._wall + self.elapsed(), UTC)


async def open_appeal(fake: FakeTelegram, user_id: int, text: str, name: str = "Клиент") -> Any:
    """A customer writes; returns the appeal once its topic shows the card and the message."""
    from models import Appeal, ContactPoint

    if user_id not in fake.chats:
        fake.add_private_chat(user_id, name)
    fake.user_message(user_id, text)

    async def ready() -> Any:
        point = await ContactPoint.filter(channel="telegram", address=str(user_id)).first()
        if point is None:
            return None
        appeal = await (
            Appeal.filter(customer_id=point.customer_id, staff_thread__isnull=False)
            .order_by("-id")
            .first()
        )
        if appeal is None:
            return None
        posts = fake.sent_to(STAFF_CHAT, int(appeal.staff_thread))
        return appeal if any(text in (p.body or "") for p in posts) else None

    appeal = await eventually(ready, what=f"appeal of {user_id} in its topic")
    return await eventually(
        lambda: Appeal.filter(id=appeal.id, staff_card_ref__isnull=False).first()
    )


def texts_in(fake: FakeTelegram, chat_id: int, thread: int | None = None) -> list[str]:
    """What the bot sent to a chat (and topic), as text or caption."""
    return [s.body or "" for s in fake.sent_to(chat_id, thread) if s.method != "editMessageText"]
