"""A sliding window of calls to an API, counted the way the server counts them.

The server counts a call when it arrives, which is some time between our sending it and its
answer coming back. So a call counts here from the moment it is sent, as if it had arrived at
once, for as long as it is in flight, and then from the moment of its answer: every call the
server counts in any second of its own is counted here in the same second, however slow the
network or the event loop. (Counted at the send alone, calls held up for half a second and the
next second's calls reach the server together, and it answers 429.)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

MARGIN_S = 0.01  # added to a computed wait, so the window has moved on when we look again


class Call:
    """One call (or several sent as one batch) counted in a window."""

    __slots__ = ("at", "weight")

    def __init__(self, weight: float) -> None:
        self.at = math.inf  # in flight: counts until it ends
        self.weight = weight


class CallWindow:
    """At most ``capacity`` weight of calls in any ``period`` seconds."""

    def __init__(
        self, capacity: float, period: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.period = period
        self._clock = clock
        self._calls: list[Call] = []

    def wait(self, weight: float = 1.0) -> float:
        """Seconds until ``weight`` more fits in the window (0 when it fits now). A call heavier
        than the whole window fits once the window is empty."""
        now = self._clock()
        self._calls = [c for c in self._calls if c.at > now - self.period]
        used = sum(c.weight for c in self._calls)
        if used + weight <= self.capacity or not self._calls:
            return 0.0
        freed = 0.0
        for call in sorted(self._calls, key=lambda c: c.at):
            if math.isinf(call.at):  # the rest are in flight: a period after their answer
                break
            freed += call.weight
            if used - freed + weight <= self.capacity:
                return call.at + self.period - now + MARGIN_S
        return self.period + MARGIN_S

    @asynccontextmanager
    async def calling(self, weight: float = 1.0) -> AsyncIterator[None]:
        """Wait until ``weight`` fits, then count the calls made inside the block: in flight
        until it ends, then for one period."""
        while True:
            wait = self.wait(weight)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        call = self.start(weight)
        try:
            yield
        finally:
            self.end(call)

    def start(self, weight: float = 1.0) -> Call:
        """Count a call as sent now; ``end`` it when its answer (or failure) comes."""
        call = Call(weight)
        self._calls.append(call)
        return call

    def end(self, call: Call) -> None:
        """The call's answer came (or it failed): it counts from now on, for one period."""
        call.at = self._clock()
