"""Drill 4: Telegram delivers every webhook update twice, right away and again after a delay;
then the audit: each message stored once, each answer and notice sent once.

    .venv/bin/python -m bench.drills.duplicates --messages 2000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import terminable
from bench.drills.audit import AuditReport, audit
from bench.drills.inprocess import running_desk
from bench.drills.traffic import Agents, Customers, caught_up
from bench.fakes.telegram import FakeTelegram


async def duplicates_drill(
    workdir: Path,
    *,
    messages: int,
    customers: int = 50,
    delay_s: float = 2.0,
    say: Callable[[str], None] = print,
    database_url: str | None = None,
    redis_url: str | None = None,
) -> AuditReport:
    """Run the drill; returns the audit."""
    started = time.perf_counter()
    async with (
        FakeTelegram() as fake,
        running_desk(fake, workdir, database_url=database_url, redis_url=redis_url) as service,
    ):
        fake.limits_enabled = False
        people = Customers(fake, customers)
        agents = Agents(lambda: f"http://127.0.0.1:{service.bound_port}")
        updates = []
        for update in people.write(messages):
            fake.redeliver(update)  # at once, right behind the first copy
            updates.append(update)
        await agents.answer_some(customers)
        await caught_up(people, 60 + messages / 20, say)
        await asyncio.sleep(delay_s)
        for update in updates:  # and once more, long after they were handled
            fake.redeliver(update)
        await agents.answer_some(customers)
        done = await caught_up(people, 60 + messages / 20, say)
        report = await audit(people.written, fake.sent)
        if not done:
            say("  the desk did not catch up in time")
        posts = len(fake.webhook_attempts)
    say(
        f"duplicates: {messages} messages posted {posts} times in all, {agents.replies} "
        f"answers; {time.perf_counter() - started:.0f} s"
    )
    say(report.summary())
    return report


def main() -> None:
    """Parse the arguments and run the drill."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drill-dup-") as tmp:
        report = terminable.run(
            duplicates_drill(Path(tmp), messages=args.messages, customers=args.customers)
        )
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
