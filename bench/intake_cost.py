"""What one intake batch costs: CPU per new appeal and per follow-up, and the loop's stretches.

Run by hand (not a test):  .venv/bin/python -m bench.intake_cost [--batch 100] [--rounds 8]

A service on a fresh SQLite file (the embedded default, no channels) takes batches of
``Lifecycle.ingest_batch`` straight, no stream and no webhook:

* the event loop thread's CPU per message, for messages that each open a new appeal (a new
  customer) and for follow-ups of open appeals: the least of ``--rounds`` rounds of three
  batches, since the machine's noise only ever adds;
* the longest stretches the loop went without a turn while ten batches ran (a probe task takes
  every turn it is given), with where the loop was in the longest ones: a webhook's answer
  waits that long behind a batch.

Compare two builds by running it from each checkout back to back (``PYTHONPATH=<checkout>``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import os
import sys
import tempfile
import threading
import time
import traceback

from bench import terminable
from channels.base import ChannelKind, InboundMessage
from desk.config.settings import Settings
from desk.runtime.service import Service

FOLLOWED = 300  # customers whose open appeals the follow-ups continue
STRETCH_S = 0.007  # stretches longer than this are located


class Batches:
    """Batches of unique messages: from new customers, or following up the first FOLLOWED."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0

    def __call__(self, new: bool) -> list[InboundMessage]:
        out = []
        for i in range(self.size):
            self.sent += 1
            user = 100_000 + (self.sent if new else 1 + self.sent % FOLLOWED)
            out.append(
                InboundMessage(
                    channel=ChannelKind.TELEGRAM,
                    external_id=f"bench:{self.sent}",
                    address=str(user),
                    text=f"Где мой заказ номер {i}? Уже неделю жду доставку",
                    sender_name=f"Клиент {user}",
                )
            )
        return out


class Stretches:
    """The loop's turns as a probe task sees them, and where the loop was in the long ones."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.places: collections.Counter[str] = collections.Counter()
        self._tick = time.perf_counter()
        self._stop = False
        self._loop_thread = threading.get_ident()

    async def probe(self) -> None:
        threading.Thread(target=self._watch, daemon=True).start()
        while not self._stop:
            await asyncio.sleep(0)
            now = time.perf_counter()
            self.gaps.append(now - self._tick)
            self._tick = now

    def stop(self) -> None:
        self._stop = True

    def _watch(self) -> None:
        seen = None
        while not self._stop:
            time.sleep(0.002)
            tick = self._tick
            if time.perf_counter() - tick > STRETCH_S and seen != tick:
                seen = tick
                frame = sys._current_frames().get(self._loop_thread)
                if frame is not None:
                    stack = traceback.extract_stack(frame)[-8:]
                    where = " <- ".join(f"{os.path.basename(f.filename)}:{f.name}" for f in stack)
                    self.places[where] += 1


async def run(size: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite://{tmp}/bench.db",
            http={"port": 0},
            secret_key="bench-ygp9L_LFHUhmfLFYNw6yB-RUJwZo91AD",
        )
        service = Service(settings, "serve", io.StringIO())
        await service.start()
        assert service.ctx is not None
        lifecycle = service.ctx.lifecycle
        batches = Batches(size)
        for _ in range(max(1, FOLLOWED // size)):  # the customers the follow-ups continue
            await lifecycle.ingest_batch(batches(new=True))
        cpu: dict[str, float] = {}
        for kind, new in (("new appeal", True), ("follow-up", False)):
            least = float("inf")
            for _ in range(rounds):
                round_ = [batches(new) for _ in range(3)]
                started = time.thread_time()
                for batch in round_:
                    await lifecycle.ingest_batch(batch)
                least = min(least, (time.thread_time() - started) / (3 * size))
            cpu[kind] = least
        stretches = Stretches()
        probe = asyncio.create_task(stretches.probe())
        for n in range(10):
            await lifecycle.ingest_batch(batches(new=n % 2 == 0))
        stretches.stop()
        await probe
        await service.stop()
    print(f"SQLite, batches of {size}: the loop thread's CPU a message, least of {rounds} rounds")
    for kind, seconds in cpu.items():
        print(f"  {kind:<12} {seconds * 1000:7.3f} ms")
    gaps = sorted(stretches.gaps)
    longest = ", ".join(f"{g * 1000:.1f}" for g in gaps[-5:])
    print(f"  loop without a turn, 10 batches: p99 {gaps[int(len(gaps) * 0.99)] * 1000:.2f} ms,")
    print(f"    longest {longest} ms")
    for where, count in stretches.places.most_common(5):
        print(f"    {count} × over {STRETCH_S * 1000:.0f} ms in {where}")


def main() -> None:
    """Parse the arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    terminable.run(run(args.batch, args.rounds))


if __name__ == "__main__":
    main()
