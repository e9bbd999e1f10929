"""Polling end to end: a customer's message until it appears in the staff group, desk vs relay.

    .venv/bin/python -m bench.relay
    .venv/bin/python -m bench.relay --customers 10 --each 10
    .venv/bin/python -m bench.relay --sizes 1000:50,10000:500
    .venv/bin/python -m bench.relay --config pg-redis --sizes 10000:500

Two systems take the same burst of customer messages, one after the other, each from a fresh
fake Bot API (bench/fakes/telegram.py, in this process, Telegram's flood limits lifted), both
in long-polling mode:

* **relay**: bench/relay_bot.py, a bare aiogram 3 bot (``dp.start_polling``, a task per
  update) whose one handler copies every private message into the staff group and stores
  nothing: the least a bot can do to bring a message there;
* **desk**: ``appeal-desk serve`` (through bench/querycount.py, which counts its database
  statements) on the embedded default, a fresh SQLite file and no Redis: each message stored,
  its appeal opened or continued, its topic and card made in the forum staff group, the
  message posted in the topic (messages queued behind one another may share a post), the
  customer acknowledged.

For each system: the forum staff group with the agents, the customers' private chats, the
system started and polling (a getUpdates seen; the desk also answers /healthz), ``--warmup``
messages from other customers brought through first (imports, caches, the router's model),
then ``--customers`` × ``--each`` messages queued at once, interleaved by customer, each with
its own marker ``[m<customer>-<n>]`` after one of bench/load.py's texts. The clock starts once
they are queued and stops when the last marker has appeared in the staff group: for the relay
in a copy there, for the desk in a message in a topic (text or caption; edits do not count,
nor does a marker twice). After ``--timeout`` seconds it reports what arrived.

Reported per system: messages/s, the time until half and all had arrived, the posts they came
in, the service process's CPU per message (from /proc), for the desk its database statements
and transactions per message, and the CPU of this process (the fake Bot API) as a check that
the fake was not the bottleneck; then the desk's throughput as a share of the relay's.

``--sizes MESSAGES:CUSTOMERS,…`` runs several sizes in one invocation (customers take turns,
so each writes MESSAGES/CUSTOMERS messages, the first ones one more when it does not divide).
``--config pg-redis`` runs the desk on ``DESK_DATABASE_URL`` (PostgreSQL; its schema is
dropped and created again!) and ``DESK_REDIS_URL`` (flushed!), one serve process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import terminable
from bench.fakes.telegram import DEFAULT_TOKEN, FakeTelegram, Limits
from bench.load import (
    AGENTS,
    STAFF_CHAT,
    TEXTS,
    Proc,
    free_port,
    start_process,
    stop_processes,
    wait_ready,
)

CUSTOMER_BASE = 6_000_000
WARMUP_BASE = 6_900_000
MARKER = re.compile(r"\[[mw]\d+-\d+\]")
SCAN_S = 0.01  # how often the staff group is looked at: the end is known to within this
PROGRESS_S = 10.0
READY_TIMEOUT_S = 120.0
WARMUP_TIMEOUT_S = 180.0
UNLIMITED = 1_000_000
SYSTEMS = ("relay", "desk")


@dataclass(frozen=True)
class Size:
    """One burst: ``messages`` in all, from ``customers`` taking turns."""

    messages: int
    customers: int


@dataclass
class Plan:
    """What to run."""

    sizes: list[Size]
    warmup: int
    timeout_s: float
    config: str = "embedded"
    database_url: str = ""
    redis_url: str | None = None


@dataclass
class Run:
    """The figures of one system for one size."""

    system: str
    size: Size
    arrived: int = 0
    seconds: float = 0.0
    half_s: float = 0.0
    posts: int = 0
    cpu_s: float = 0.0
    bench_cpu_s: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    timed_out: bool = False
    error: str = ""

    @property
    def rate(self) -> float:
        """Messages per second that reached the staff group."""
        return self.arrived / self.seconds if self.seconds > 0 else 0.0


# -- the world ----------------------------------------------------------------------------------


def unlimited_fake() -> FakeTelegram:
    """A fake Bot API whose flood limits let anything through."""
    huge = float(UNLIMITED) ** 2
    fake = FakeTelegram(
        limits=Limits(
            private_per_second=huge, private_burst=huge, group_messages=huge, bot_per_second=huge
        )
    )
    # With huge limits the fake would still keep its books: its sliding windows sum every send
    # of the last minute (group) and second (bot) on each new send, which is quadratic in a
    # burst (~2 s of this process's CPU for 10,000 group posts). Off, it keeps none.
    fake.limits_enabled = False
    return fake


def populate(fake: FakeTelegram, size: Size, warmup: int) -> tuple[list[int], list[int]]:
    """The forum staff group with the agents, the customers' and the warm-up customers'
    private chats; their user ids."""
    for tid, name in AGENTS:
        fake.add_user(tid, name)
    fake.add_group(STAFF_CHAT, "Поддержка", forum=True, members=[tid for tid, _ in AGENTS])
    customers = [CUSTOMER_BASE + i for i in range(size.customers)]
    others = [WARMUP_BASE + i for i in range(warmup)]
    for uid in customers:
        fake.add_private_chat(uid, f"Клиент {uid - CUSTOMER_BASE}", language_code="ru")
    for uid in others:
        fake.add_private_chat(uid, f"Гость {uid - WARMUP_BASE}", language_code="ru")
    return customers, others


def queue_messages(fake: FakeTelegram, users: list[int], count: int, tag: str) -> set[str]:
    """``count`` messages into the update queue, the users taking turns; their markers."""
    markers: set[str] = set()
    for i in range(count):
        c, n = i % len(users), i // len(users)
        marker = f"[{tag}{c}-{n}]"
        fake.user_message(users[c], f"{TEXTS[(c + n) % len(TEXTS)]} {marker}")
        markers.add(marker)
    return markers


class Arrivals:
    """The markers that have appeared in the staff group, each counted once."""

    def __init__(self, fake: FakeTelegram, expected: set[str], *, in_topic: bool) -> None:
        self._fake = fake
        self._cursor = len(fake.sent)
        self._in_topic = in_topic
        self.pending = set(expected)
        self.arrived = 0
        self.posts = 0

    def scan(self) -> int:
        """Look at what the bot sent since the last scan; the number of new arrivals."""
        sent = self._fake.sent
        new = 0
        for record in sent[self._cursor :]:
            if record.chat_id != STAFF_CHAT or record.method.lower().startswith("edit"):
                continue
            if self._in_topic and record.message_thread_id is None:
                continue
            found = 0
            for marker in MARKER.findall(record.body or ""):
                if marker in self.pending:
                    self.pending.discard(marker)
                    found += 1
            if found:
                self.posts += 1
                new += found
        self._cursor = len(sent)
        self.arrived += new
        return new


async def wait_polling(fake: FakeTelegram, procs: list[Proc]) -> None:
    """Until the system has asked the fake for updates."""
    deadline = time.perf_counter() + READY_TIMEOUT_S
    while not fake.calls("getUpdates"):
        for proc in procs:
            if proc.process.returncode is not None:
                raise SystemExit(f"{proc.role} exited early; see {proc.log}")
        if time.perf_counter() > deadline:
            raise SystemExit(f"{procs[0].role} never polled; see {procs[0].log}")
        await asyncio.sleep(0.05)


async def warm_up(fake: FakeTelegram, users: list[int], procs: list[Proc], in_topic: bool) -> None:
    """One message from each warm-up customer, brought through before the measurement."""
    if not users:
        return
    arrivals = Arrivals(fake, set(), in_topic=in_topic)
    arrivals.pending = queue_messages(fake, users, len(users), "w")
    deadline = time.perf_counter() + WARMUP_TIMEOUT_S
    while arrivals.pending:
        await asyncio.sleep(SCAN_S * 5)
        arrivals.scan()
        _check_alive(procs)
        if time.perf_counter() > deadline:
            raise SystemExit(
                f"{procs[0].role}: warm-up messages did not arrive "
                f"({arrivals.arrived} of {len(users)}); see {procs[0].log}"
            )


def _check_alive(procs: list[Proc]) -> None:
    for proc in procs:
        if proc.process.returncode is not None:
            raise SystemExit(f"{proc.role} exited (code {proc.process.returncode}); see {proc.log}")


async def measure(
    plan: Plan,
    fake: FakeTelegram,
    system: str,
    size: Size,
    users: list[int],
    procs: list[Proc],
    *,
    in_topic: bool,
) -> Run:
    """Queue the burst, wait until every marker has reached the staff group (or time out)."""
    run = Run(system, size)
    counters_before = [p.counters() for p in procs]
    cpu_before = sum(p.cpu_s() for p in procs)
    bench_before = time.process_time()
    arrivals = Arrivals(fake, set(), in_topic=in_topic)
    arrivals.pending = queue_messages(fake, users, size.messages, "m")
    t0 = time.perf_counter()
    deadline = t0 + plan.timeout_s
    last_at = t0
    next_progress = t0 + PROGRESS_S
    while arrivals.pending:
        await asyncio.sleep(SCAN_S)
        now = time.perf_counter()
        if arrivals.scan():
            last_at = now
            if not run.half_s and arrivals.arrived * 2 >= size.messages:
                run.half_s = now - t0
        if now >= next_progress:
            print(
                f"  {system}: {arrivals.arrived:,} of {size.messages:,} arrived "
                f"after {now - t0:.0f} s",
                flush=True,
            )
            next_progress += PROGRESS_S
        dead = [p for p in procs if p.process.returncode is not None]
        if dead:
            run.error = f"{dead[0].role} exited (code {dead[0].process.returncode})"
            break
        if now > deadline:
            run.timed_out = True
            break
    run.seconds = (last_at if not arrivals.pending else time.perf_counter()) - t0
    run.arrived, run.posts = arrivals.arrived, arrivals.posts
    run.cpu_s = sum(p.cpu_s() for p in procs) - cpu_before
    run.bench_cpu_s = time.process_time() - bench_before
    for proc, before in zip(procs, counters_before, strict=True):
        for key, value in proc.counters().items():
            run.counters[key] = run.counters.get(key, 0) + value - before.get(key, 0)
    if run.timed_out or run.error:
        what = "timed out" if run.timed_out else run.error
        print(f"  {system}: {what}: {run.arrived:,} of {size.messages:,} arrived", file=sys.stderr)
    return run


# -- the systems --------------------------------------------------------------------------------


async def run_relay(plan: Plan, size: Size, tmp: Path) -> Run:
    """The bare relay bot against a fresh fake."""
    async with unlimited_fake() as fake:
        customers, others = populate(fake, size, plan.warmup)
        log = tmp / "relay.log"
        out = log.open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.relay_bot",
            fake.url,
            DEFAULT_TOKEN,
            str(STAFF_CHAT),
            stdout=out,
            stderr=out,
        )
        out.close()
        procs = [Proc("relay", process, tmp / "relay.stats.json", log)]
        try:
            await wait_polling(fake, procs)
            await warm_up(fake, others, procs, in_topic=False)
            run = await measure(plan, fake, "relay", size, customers, procs, in_topic=False)
        finally:
            await stop_processes(procs)
        if process.returncode != 0:
            print(f"  relay exited with {process.returncode} on SIGTERM", file=sys.stderr)
            _print_logs(tmp)
        return run


def desk_config(plan: Plan, fake: FakeTelegram, port: int) -> dict[str, Any]:
    """The desk's settings: polling the fake, its own flood limits lifted as well."""
    return {
        "database_url": plan.database_url,
        "redis_url": plan.redis_url,
        "secret_key": "bench-ygp9L_LFHUhmfLFYNw6yB-RUJwZo91AD",
        "http": {"host": "127.0.0.1", "port": port},
        "telegram": {
            "token": DEFAULT_TOKEN,
            "api_url": fake.url,
            "mode": "polling",
            "staff_chat_id": STAFF_CHAT,
            "poll_timeout_s": 1,
            "limits": {
                "group_per_minute": UNLIMITED,
                "bot_per_second": UNLIMITED,
                "private_per_second": UNLIMITED,
                "private_burst": UNLIMITED,
            },
        },
        "sla": {"calendar": {"hours": None}},
        "agents": [{"name": name, "telegram_id": tid} for tid, name in AGENTS],
    }


async def reset_pg_redis(plan: Plan) -> None:
    """An empty PostgreSQL schema (serve migrates it) and an empty Redis."""
    import asyncpg
    import redis.asyncio as aioredis

    conn = await asyncpg.connect(plan.database_url.replace("postgres://", "postgresql://"))
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    await conn.close()
    client = aioredis.from_url(plan.redis_url or "")
    await client.flushdb()
    await client.aclose()


async def run_desk(plan: Plan, size: Size, tmp: Path) -> Run:
    """``appeal-desk serve`` against a fresh fake and a fresh database."""
    database_url = plan.database_url
    if plan.config == "embedded":
        database_url = f"sqlite://{tmp}/desk.db"
    else:
        await reset_pg_redis(plan)
    async with unlimited_fake() as fake:
        customers, others = populate(fake, size, plan.warmup)
        port = free_port()
        config = tmp / "appeal-desk.yaml"
        settings = desk_config(plan, fake, port)
        settings["database_url"] = database_url
        config.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
        env = {"DESK_DATABASE_URL": database_url}
        if plan.redis_url:
            env["DESK_REDIS_URL"] = plan.redis_url
        procs: list[Proc] = []
        try:
            procs.append(await start_process("serve", tmp, config, env))
            await wait_ready(f"http://127.0.0.1:{port}", procs)
            await wait_polling(fake, procs)
            await warm_up(fake, others, procs, in_topic=True)
            return await measure(plan, fake, "desk", size, customers, procs, in_topic=True)
        finally:
            await stop_processes(procs)


async def run(plan: Plan) -> list[tuple[Run, Run]]:
    """Every size: the relay, then the desk; the pairs of figures."""
    results: list[tuple[Run, Run]] = []
    for size in plan.sizes:
        pair: list[Run] = []
        for system in SYSTEMS:
            with tempfile.TemporaryDirectory(prefix=f"desk-relay-{system}-") as name:
                tmp = Path(name)
                print(
                    f"{system}: {size.messages:,} messages from {size.customers:,} customers …",
                    flush=True,
                )
                runner = run_relay if system == "relay" else run_desk
                try:
                    result = await runner(plan, size, tmp)
                except SystemExit:
                    _print_logs(tmp)  # the temporary directory goes with its logs
                    raise
                if result.timed_out or result.error:
                    _print_logs(tmp)
                pair.append(result)
        results.append((pair[0], pair[1]))
        print(report(plan, pair[0], pair[1]), flush=True)
    return results


def _print_logs(tmp: Path, tail: int = 4000) -> None:
    for log in sorted(tmp.glob("*.log")):
        text = log.read_text(encoding="utf-8", errors="replace")
        print(f"--- the end of {log.name} ---\n{text[-tail:]}", file=sys.stderr)


# -- the report ---------------------------------------------------------------------------------


def report(plan: Plan, relay: Run, desk: Run) -> str:
    """A table of both systems for one size."""
    size = relay.size
    backend = "SQLite, local stream" if plan.config == "embedded" else "PostgreSQL + Redis"
    each = size.messages / size.customers
    lines = [
        f"{size.messages:,} messages from {size.customers:,} customers ({each:g} each) · "
        f"polling · desk on {backend} · warm-up {plan.warmup}",
    ]
    row = "  {:<30} {:>17} {:>17}"
    lines.append(row.format("", "relay", "desk"))

    def both(name: str, fmt: Any) -> None:
        lines.append(row.format(name, fmt(relay), fmt(desk)))

    both("reached the staff group", lambda r: f"{r.arrived:,}/{r.size.messages:,}")
    both("throughput", lambda r: f"{r.rate:,.0f} msg/s")
    both("time: half / all arrived", lambda r: f"{r.half_s:.2f} / {r.seconds:.2f} s")
    both("posts in the group", lambda r: f"{r.posts:,}")
    both("service CPU / message", lambda r: f"{_per(r.cpu_s * 1000, r):.2f} ms")
    both("  busy (CPU / wall)", lambda r: f"{_share(r.cpu_s, r.seconds)}")
    both("DB statements / message", lambda r: _db(r, "statements"))
    both("DB transactions / message", lambda r: _db(r, "commit", 2))
    both("  + statements outside one", lambda r: _db(r, "autocommit"))
    both("fake Bot API CPU / message", lambda r: f"{_per(r.bench_cpu_s * 1000, r):.2f} ms")
    both("  busy (CPU / wall)", lambda r: f"{_share(r.bench_cpu_s, r.seconds)}")
    for r in (relay, desk):
        if r.timed_out or r.error:
            lines.append(f"  {r.system}: {'timed out' if r.timed_out else r.error}")
    share = desk.rate / relay.rate if relay.rate else 0.0
    lines.append(f"  desk as share of relay: {share:.1%}")
    return "\n".join(lines)


def summary(results: list[tuple[Run, Run]]) -> str:
    """One line per size, for a run of several."""
    row = "{:>18} {:>12} {:>12} {:>7} {:>12} {:>13}"
    header = ("messages:customers", "relay msg/s", "desk msg/s", "share", "desk st/msg")
    lines = [row.format(*header, "desk CPU/msg")]
    for relay, desk in results:
        share = desk.rate / relay.rate if relay.rate else 0.0
        lines.append(
            row.format(
                f"{relay.size.messages:,}:{relay.size.customers:,}",
                f"{relay.rate:,.0f}",
                f"{desk.rate:,.0f}",
                f"{share:.1%}",
                _db(desk, "statements"),
                f"{_per(desk.cpu_s * 1000, desk):.2f} ms",
            )
        )
    return "\n".join(lines)


def _per(value: float, run: Run) -> float:
    return value / max(run.arrived, 1)


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole > 0 else "—"


def _db(run: Run, key: str, digits: int = 1) -> str:
    if not run.counters:
        return "—"
    return f"{_per(run.counters.get(key, 0), run):.{digits}f}"


def parse_sizes(text: str) -> list[Size]:
    """``1000:50,10000:500`` (messages:customers) as sizes."""
    sizes = []
    for part in text.split(","):
        messages, _, customers = part.strip().partition(":")
        try:
            size = Size(int(messages), int(customers or 1))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not MESSAGES:CUSTOMERS: {part!r}") from None
        if size.messages < 1 or size.customers < 1:
            raise argparse.ArgumentTypeError(f"sizes are positive: {part!r}")
        sizes.append(size)
    return sizes


def parse(argv: list[str] | None = None) -> Plan:
    """The command line as a Plan."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=50, help="customers writing")
    parser.add_argument("--each", type=int, default=20, help="messages from each customer")
    parser.add_argument(
        "--sizes", type=parse_sizes, help="MESSAGES:CUSTOMERS,… (instead of --customers/--each)"
    )
    parser.add_argument(
        "--warmup", type=int, default=10, help="messages first from as many other customers"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait per system")
    parser.add_argument("--config", choices=["embedded", "pg-redis"], default="embedded")
    args = parser.parse_args(argv)
    if args.customers < 1 or args.each < 1 or args.warmup < 0:
        parser.error("--customers and --each are positive, --warmup not negative")
    sizes = args.sizes or [Size(args.customers * args.each, args.customers)]
    plan = Plan(sizes=sizes, warmup=args.warmup, timeout_s=args.timeout, config=args.config)
    if plan.config == "pg-redis":
        plan.database_url = os.environ.get("DESK_DATABASE_URL", "")
        plan.redis_url = os.environ.get("DESK_REDIS_URL")
        if not plan.database_url.startswith("postgres") or not plan.redis_url:
            parser.error("pg-redis needs DESK_DATABASE_URL (postgres://…) and DESK_REDIS_URL")
    return plan


def main(argv: list[str] | None = None) -> None:
    """Run every size and print the tables (and a summary for several)."""
    plan = parse(argv)
    results = terminable.run(run(plan))
    if len(results) > 1:
        print(summary(results))


if __name__ == "__main__":
    main()
