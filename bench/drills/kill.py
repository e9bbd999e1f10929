"""Drill 1: SIGKILL in the middle of a run, restart, keep feeding; then the audit.

* ``--backend pg``: PostgreSQL + Redis (servers of the drill's own), ``appeal-desk serve`` (HTTP,
  webhook, intake, delivery) and ``appeal-desk worker`` (intake, delivery); the worker is killed.
* ``--backend sqlite``: the single embedded process (SQLite + the local stream) is killed.

Customers write through the fake Telegram's webhook all along (Telegram keeps retrying while the
desk is down); agents answer through the API while it is up.

    .venv/bin/python -m bench.drills.kill --backend pg --messages 10000 --kills 5
    .venv/bin/python -m bench.drills.kill --backend sqlite --messages 10000 --kills 5
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import terminable
from bench.drills.audit import AuditReport, InDoubt, audit
from bench.drills.processes import DeskProcess, PostgresServer, RedisServer, desk_env, free_port
from bench.drills.traffic import Agents, Customers, caught_up, in_flight, telegram_env
from bench.fakes.telegram import FakeTelegram
from models import db


async def kill_drill(
    workdir: Path,
    *,
    backend: str,
    messages: int,
    kills: int,
    customers: int = 200,
    say: Callable[[str], None] = print,
    pg_url: str | None = None,
    redis_url: str | None = None,
) -> AuditReport:
    """Run the drill in ``workdir``; returns the audit. ``pg_url``/``redis_url`` use existing
    servers instead of starting the drill's own."""
    started = time.perf_counter()
    servers: list[RedisServer | PostgresServer] = []
    procs: list[DeskProcess] = []
    async with FakeTelegram() as fake:
        fake.limits_enabled = False  # the desk's own limiter is tested elsewhere; this is volume
        port = free_port()
        env = telegram_env(fake, port)
        if backend == "pg":
            if pg_url is None:
                pg = PostgresServer()
                await pg.start()
                servers.append(pg)
                pg_url = pg.url
            if redis_url is None:
                redis = RedisServer(workdir)
                await redis.start()
                servers.append(redis)
                redis_url = redis.url
            env |= {"DESK_DATABASE_URL": pg_url, "DESK_REDIS_URL": redis_url}
        else:
            env |= {"DESK_DATABASE_URL": f"sqlite://{workdir}/desk.db"}
        serve = DeskProcess("serve", desk_env(**env), workdir, "serve")
        victim = serve
        procs.append(serve)
        try:
            await serve.start()
            if backend == "pg":
                worker_env = desk_env(**env, DESK_WORKERS__NAME="drill-worker")
                victim = DeskProcess("worker", worker_env, workdir, "worker")
                procs.append(victim)
                await victim.start()
            await db.connect(env["DESK_DATABASE_URL"])
            people = Customers(fake, customers)
            agents = Agents(lambda: serve.base)
            in_doubt = await _run(people, agents, victim, messages, kills, say)
            done = await caught_up(people, 120 + messages / 20, say)
            report = await audit(people.written, fake.sent, in_doubt=in_doubt)
            if not done:
                say("  the desk did not catch up in time")
        finally:
            for proc in procs:
                proc.stop()
            await db.disconnect()
            for server in servers:
                stopped = server.stop()
                if asyncio.iscoroutine(stopped):
                    await stopped
                if isinstance(server, PostgresServer):
                    server.discard()
    say(
        f"{backend}: {messages} messages from {customers} customers, {victim.kills} SIGKILLs of "
        f"{victim.role}, {agents.replies} answers ({agents.refused} refused while down), "
        f"{time.perf_counter() - started:.0f} s"
    )
    say(report.summary())
    return report


async def _run(
    people: Customers,
    agents: Agents,
    victim: DeskProcess,
    messages: int,
    kills: int,
    say: Callable[[str], None],
) -> list[InDoubt]:
    """Feed in ``kills + 1`` waves; kill the victim in the middle of each but the last."""
    in_doubt: list[InDoubt] = []
    waves = kills + 1
    for wave in range(waves):
        size = messages // waves + (1 if wave < messages % waves else 0)
        people.write(size)
        await agents.answer_some(40)
        if wave == waves - 1:
            break
        target = people.left() // 2  # half of this wave acknowledged: mid-stream
        while people.left() > target:
            await asyncio.sleep(0.02)
        victim.kill()
        doubt = await in_flight(victim.env.get("DESK_WORKERS__NAME") or "")
        in_doubt += doubt
        say(f"  SIGKILL {victim.kills}: {people.left()} updates waiting, {len(doubt)} sends held")
        await asyncio.sleep(0.5)
        await victim.start()
    return in_doubt


def main() -> None:
    """Parse the arguments and run the drill."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("pg", "sqlite"), default="sqlite")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--customers", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drill-kill-") as tmp:
        report = terminable.run(
            kill_drill(
                Path(tmp),
                backend=args.backend,
                messages=args.messages,
                kills=args.kills,
                customers=args.customers,
            )
        )
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
