"""The HTTP side of a graceful stop: whether this process takes new requests, and how many it
is still answering."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class WorkGate:
    """Open while the process takes work; closed on SIGTERM, when requests in flight may finish
    and new ones are turned away (Telegram and VK send a refused update again later)."""

    def __init__(self) -> None:
        self.closed = False
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def close(self) -> None:
        """Take no new requests from now on."""
        self.closed = True

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Count one request in flight while the block runs."""
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def idle(self, timeout: float) -> bool:
        """Wait until no request is in flight, at most ``timeout`` seconds; whether it is so."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), max(timeout, 0.0))
        return self._idle.is_set()
