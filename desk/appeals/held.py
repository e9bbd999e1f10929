"""Rows held for a batch's end: what a batch records is written together, not row by row."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")


@asynccontextmanager
async def holding(
    var: ContextVar[T | None], fresh: T, flush: Callable[[], Awaitable[None]]
) -> AsyncIterator[None]:
    """Inside, ``var`` holds ``fresh`` for the rows recorded; ``flush`` writes them when the
    block ends (and may be called earlier by a reader)."""
    token = var.set(fresh)
    try:
        yield
        await flush()
    finally:
        var.reset(token)
