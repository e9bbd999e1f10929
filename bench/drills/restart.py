"""Drill 2: Redis restarted mid-run, then PostgreSQL restarted mid-run (servers the drill
started on ports of its own); the desk (``serve`` + ``worker``) must reconnect and go on. Then
the audit.

While Redis is down the webhook answers 500 (nothing acknowledged that is not written) and
Telegram retries; while PostgreSQL is down entries wait in the stream and outbox rows wait.
Redis runs with an append-only file synced on every write: the stream is the durable store of
what was acknowledged, so a Redis without persistence would lose it on a restart.

    .venv/bin/python -m bench.drills.restart --messages 3000 --down 5
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import terminable
from bench.drills.audit import AuditReport, audit
from bench.drills.processes import DeskProcess, PostgresServer, RedisServer, desk_env, free_port
from bench.drills.traffic import Agents, Customers, caught_up, telegram_env
from bench.fakes.telegram import FakeTelegram
from models import db


async def restart_drill(
    workdir: Path,
    *,
    messages: int,
    customers: int = 50,
    down_s: float = 3.0,
    say: Callable[[str], None] = print,
) -> AuditReport:
    """Run the drill in ``workdir``; returns the audit."""
    started = time.perf_counter()
    pg, redis = PostgresServer(), RedisServer(workdir)
    await pg.start()
    await redis.start()
    procs: list[DeskProcess] = []
    async with FakeTelegram() as fake:
        fake.limits_enabled = False
        env = telegram_env(fake, free_port()) | {
            "DESK_DATABASE_URL": pg.url,
            "DESK_REDIS_URL": redis.url,
        }
        serve = DeskProcess("serve", desk_env(**env), workdir, "serve")
        worker = DeskProcess("worker", desk_env(**env), workdir, "worker")
        procs += [serve, worker]
        try:
            await serve.start()
            await worker.start()
            await db.connect(pg.url)
            people = Customers(fake, customers)
            agents = Agents(lambda: serve.base)
            third = messages // 3

            async def restart(
                name: str, stop: Callable[[], object], start: Callable[[], Awaitable[None]]
            ) -> None:
                people.write(third)
                await agents.answer_some(customers)
                target = people.left() // 2
                while people.left() > target:
                    await asyncio.sleep(0.02)
                if name == "postgresql":
                    await db.disconnect()  # the drill's own connection would not survive it
                outcome = stop()
                if asyncio.iscoroutine(outcome):
                    await outcome
                say(f"  {name} stopped with {people.left()} updates waiting")
                await asyncio.sleep(down_s)
                await start()
                say(f"  {name} started again after {down_s:.0f} s")
                if name == "postgresql":
                    await db.connect(pg.url)

            await restart("redis", redis.stop, redis.start)
            await restart("postgresql", pg.stop, pg.start)
            people.write(messages - 2 * third)
            await agents.answer_some(customers)
            done = await caught_up(people, 120 + messages / 20, say)
            report = await audit(people.written, fake.sent)
            if not done:
                say("  the desk did not catch up in time")
            alive = [p.name for p in procs if p.proc is not None and p.proc.poll() is None]
        finally:
            for proc in procs:
                proc.stop()
            await db.disconnect()
            redis.stop()
            await pg.stop()
            pg.discard()
    say(
        f"restarts: {messages} messages, {agents.replies} answers, Redis and PostgreSQL each "
        f"down {down_s:.0f} s; still running: {', '.join(alive)}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    say(report.summary())
    return report


def main() -> None:
    """Parse the arguments and run the drill."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--down", type=float, default=5.0, help="seconds each server is down")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drill-restart-") as tmp:
        report = terminable.run(
            restart_drill(
                Path(tmp), messages=args.messages, customers=args.customers, down_s=args.down
            )
        )
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
