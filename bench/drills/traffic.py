"""Traffic for the drills: customers writing to the bot through the fake Telegram's webhook,
agents answering through the HTTP API, and waiting until the desk has caught up."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from bench.fakes.telegram import DEFAULT_TOKEN, FakeTelegram
from models import Appeal, Message, OutboxItem, OutboxStatus

WEBHOOK_SECRET = "drill-9QNqSffK9C_hDJzlEvGj84aV"  # noqa: S105 (a throwaway desk's)
API_TOKEN = "drill-49_yrMijsPl990oIp9ZAB_lI"  # noqa: S105
SECRET_KEY = "drill-l5cqaPqUl-ONQ2HGqMtcffHx5JSZDhH3"  # noqa: S105
FIRST_CUSTOMER = 500_000


def telegram_env(fake: FakeTelegram, port: int) -> dict[str, str]:
    """DESK_ settings of a desk that takes updates from ``fake`` by webhook on ``port``."""
    return {
        "DESK_HTTP__PORT": str(port),
        "DESK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DESK_SECRET_KEY": SECRET_KEY,
        "DESK_API__TOKENS": f'[{{"name": "drill", "token": "{API_TOKEN}"}}]',
        "DESK_TELEGRAM__TOKEN": DEFAULT_TOKEN,
        "DESK_TELEGRAM__API_URL": fake.url,
        "DESK_TELEGRAM__MODE": "webhook",
        "DESK_TELEGRAM__WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DESK_TELEGRAM__TIMEOUT_S": "2",
        "DESK_WORKERS__POLL_S": "0.05",
        "DESK_WORKERS__CLAIM_IDLE_S": "2",
        "DESK_SLA__CALENDAR__HOURS": "null",
    }


@dataclass
class Customers:
    """Customers of the drill writing to the bot; remembers the key of every message written."""

    fake: FakeTelegram
    count: int
    written: list[str] = field(default_factory=list)
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        for uid in self.ids:
            self.fake.add_private_chat(uid, f"Клиент {uid}")

    @property
    def ids(self) -> range:
        return range(FIRST_CUSTOMER, FIRST_CUSTOMER + self.count)

    def write(self, messages: int) -> list[dict[str, object]]:
        """``messages`` more messages, round robin over the customers; returns the updates."""
        updates = []
        for _ in range(messages):
            n = next(self._turn)
            uid = FIRST_CUSTOMER + n % self.count
            update = self.fake.user_message(uid, f"Сообщение {n}: где мой заказ?")
            message = update["message"]
            self.written.append(f"{message['chat']['id']}:{message['message_id']}")
            updates.append(update)
        return updates

    def left(self) -> int:
        """Updates Telegram has not yet got a 200 for."""
        return len(self.fake.updates.pending)


class Agents:
    """Agents answering open appeals through the API, a few replies per appeal."""

    def __init__(self, base: Callable[[], str]) -> None:
        self._base = base
        self.replies = 0
        self.refused = 0

    async def answer_some(self, count: int) -> None:
        """Answer up to ``count`` appeals, the ones with the fewest answers first."""
        appeals = await Appeal.all().order_by("id").limit(count).values_list("number", flat=True)
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            for number in appeals:
                self.replies += 1
                text = f"Ответ {self.replies} по {number}"
                try:
                    async with http.post(
                        f"{self._base()}/api/v1/appeals/{number}/messages", json={"text": text}
                    ) as resp:
                        if resp.status != 201:
                            self.refused += 1
                except (aiohttp.ClientError, TimeoutError):
                    self.refused += 1  # the desk is down: maybe stored, the audit will tell


async def caught_up(customers: Customers, timeout_s: float, say: Callable[[str], None]) -> bool:
    """Wait until every update is acknowledged, stored, and the outbox is empty."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = ""
    while loop.time() < deadline:
        stored = await Message.filter(channel="telegram", direction="in").count()
        waiting = await OutboxItem.filter(
            status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING]
        ).count()
        left = customers.left()
        state = f"updates left {left}, stored {stored}/{len(customers.written)}, outbox {waiting}"
        if state != last:
            say("  " + state)
            last = state
        if left == 0 and stored >= len(customers.written) and waiting == 0:
            return True
        await asyncio.sleep(0.5)
    return False


async def in_flight(holder: str = "") -> list[tuple[str, str]]:
    """The sends a dead process may have made without recording them: the rows it held
    (``holder``: its worker name; empty for any)."""
    rows = await OutboxItem.filter(
        status=OutboxStatus.SENDING, channel="telegram", locked_by__startswith=holder
    )
    return [(r.address, str(r.payload.get("text", ""))) for r in rows]
