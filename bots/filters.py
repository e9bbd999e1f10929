"""Filters checked in the event loop.

aiogram calls a filter that is not a coroutine function through ``asyncio.to_thread``, and a
magic filter (``F.…``) is one: every update would take a trip to a worker thread and back for
each of them (three for a customer's text message). ``inline(F.…)`` resolves it in place.
"""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import TelegramObject
from aiogram.utils.magic_filter import MagicFilter


class Inline(Filter):
    """A magic filter resolved in the event loop; its value passes on as aiogram's would
    (``.as_(name)`` hands the handler ``name``)."""

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: TelegramObject) -> Any:
        return self.magic.resolve(event)


def inline(magic: MagicFilter) -> Inline:
    """``magic`` as a filter checked without a thread."""
    return Inline(magic)
