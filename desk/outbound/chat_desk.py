"""A chat platform's side of the service, as the runtime sees it.

``bots/`` build one for each platform that hosts conversations (Telegram, VK) and name their
factories in the package's entry points (group ``appeal_desk.chat_desks`` in pyproject.toml).
The runtime loads them there, so ``desk/`` starts, serves and stops the bots without importing
``bots/``: the bots hear the desk through its events and the outbox, the desk hears nothing back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from desk.ops.scheduler import Daily
from desk.outbound.staff_group import StaffGroup

if TYPE_CHECKING:
    from desk.context import AppContext

DESKS_GROUP = "appeal_desk.chat_desks"


class ChatDesk(Protocol):
    """One platform's bots: customers' dialogs in, and (Telegram) the staff group."""

    @property
    def name(self) -> str:
        """The customer channel it serves: "telegram", "vk"."""

    @property
    def staff(self) -> StaffGroup | None:
        """The staff group, when this platform hosts it."""

    @property
    def timeout_s(self) -> float:
        """How long a call to the platform may take."""

    async def whoami(self) -> str:
        """Who we are on the platform ("@desk_bot"), asked at start so a wrong token shows."""

    def add_routes(self, app: web.Application) -> None:
        """Routes on the service's HTTP server (a webhook) when the platform pushes updates."""

    async def open(self, public_url: str) -> None:
        """Start-up calls to the platform in the serving process (Telegram's setWebhook)."""

    def loops(self, stop: asyncio.Event) -> dict[str, Coroutine[Any, Any, None]]:
        """The serving process's long-running tasks by name (polling, tickers)."""

    def daily_jobs(self) -> list[Daily]:
        """Jobs run once a day by whichever process claims the day."""

    async def download(self, ref: str) -> bytes:
        """A customer's file kept by the platform's reference."""

    async def close(self) -> None:
        """Close the platform's HTTP sessions."""


ChatDeskFactory = Callable[["AppContext"], ChatDesk | None]


def chat_desk_factories() -> dict[str, ChatDeskFactory]:
    """The installed platforms' factories by name; each returns None when its settings leave it
    off (no token)."""
    return {ep.name: ep.load() for ep in entry_points(group=DESKS_GROUP)}
