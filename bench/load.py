"""Load through the Telegram webhook: many customers writing, measured end to end.

    .venv/bin/python -m bench.load --config embedded --messages 20000
    .venv/bin/python -m bench.load --config pg-redis --workers 2 --messages 20000
    .venv/bin/python -m bench.load --config pg-redis --workers 2 --messages 20000 --rate 1000

The service runs as real ``appeal-desk serve`` / ``appeal-desk worker`` processes (through
bench/querycount.py, which counts their database statements) with the Telegram channel in
webhook mode, pointed at the fake Bot API of bench/fakes/telegram.py: staff posts, topics and
acknowledgements go there, under Telegram's limits. This process plays the customers: it POSTs
updates to the webhook as Telegram would (closed loop with ``--concurrency`` connections, 40 like
Telegram's ``max_connections``; or open loop at a fixed ``--rate``), then measures

* the webhook's answer time (p50/p99; in open loop from the moment a request was due, so a
  slow server cannot hide its queue),
* ingest: messages per second until every one is stored with its staff post queued in the
  outbox (one transaction does both), and the time from POST to that outbox row (p50/p99),
* database statements and transactions per message in every service process,
* the RSS of every service process, sampled as messages are stored,

and finally the same load against bench/ceiling.py, a bare aiohttp endpoint that only parses
and acknowledges, as the ceiling of this machine.

``--config pg-redis`` reads ``DESK_DATABASE_URL`` (PostgreSQL; its schema is dropped and
created again!) and ``DESK_REDIS_URL`` (flushed!); ``scripts/test-services start`` provides both.
There the serve process publishes webhooks to the Redis stream and ``--workers`` worker
processes consume it and deliver the outbox. ``--prefill N`` first adds N closed appeals
(bench/prefill.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench import terminable, wrk
from bench.fakes.telegram import DEFAULT_TOKEN, FakeChat, FakeTelegram
from bench.prefill import prefill
from models import Direction, Message, OutboxItem, db

STAFF_CHAT = -1001234567890
AGENTS = [(1001, "Ирина"), (1002, "Олег")]
SECRET = "bench-KjedHIfjGHdAUz_W-3zHzYF6"  # noqa: S105 (the fake's webhook secret)
CUSTOMER_BASE = 5_000_000
TEXTS = (
    "Здравствуйте! Где мой заказ? Жду уже неделю.",
    "Хочу вернуть товар, он пришёл с браком.",
    "Подскажите, есть ли в наличии размер M?",
    "Пришлите, пожалуйста, закрывающие документы за март.",
    "Спасибо, всё получил, всё отлично!",
)
WRK_MOST_PER_S = 16_000  # updates made for each second of a wrk run
WRK_THREADS = 2
MAX_CONNECTIONS = 100  # Telegram's most (setWebhook's max_connections)
READY_TIMEOUT_S = 120.0
POLL_S = 0.25


@dataclass
class Plan:
    """What to run: the configuration and the load."""

    config: str
    workers: int
    messages: int
    rate: float | None
    concurrency: int
    customers: int
    intake: int
    prefill: int
    sample_every: int
    warmup: int
    ceiling: bool
    timeout_s: float
    sqlite_pragmas: str = ""
    wrk_seconds: float = 0.0  # > 0: the closed loop through wrk for this long
    database_url: str = ""
    redis_url: str | None = None


@dataclass
class Proc:
    """A service process and its statement counters."""

    role: str
    process: asyncio.subprocess.Process
    stats: Path
    log: Path

    def counters(self) -> dict[str, int]:
        try:
            data = json.loads(self.stats.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {
            k: int(v)
            for k, v in data.items()
            if k in ("statements", "autocommit", "begin", "commit", "reset")
        }

    def cpu_s(self) -> float:
        """User and system CPU seconds the process has used."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0


@dataclass
class Sent:
    """The requests of one load run."""

    due: list[float] = field(default_factory=list)  # when each request was due (wall clock)
    answer_s: list[float] = field(default_factory=list)
    failed: int = 0
    started: float = 0.0
    finished: float = 0.0
    keys: dict[str, float] = field(default_factory=dict)  # "chat:message_id" → POST time
    count: int = 0  # requests answered, when the run was for a time (wrk), not a count
    quantiles: dict[float, float] = field(default_factory=dict)  # answer times by wrk

    def answer_ms(self, share: float) -> str:
        """The ``share`` quantile of the answer times."""
        if not self.answer_s and share in self.quantiles:
            return f"{self.quantiles[share] * 1000:.1f} ms"
        return _ms(self.answer_s, share)


# -- the customers ----------------------------------------------------------------------------


class Customers:
    """Telegram updates from many private chats, numbered like Telegram numbers them."""

    def __init__(self, fake: FakeTelegram, count: int, base: int = CUSTOMER_BASE) -> None:
        self._chats: list[FakeChat] = [
            fake.add_private_chat(base + i, f"Клиент {i}", language_code="ru") for i in range(count)
        ]
        self._update_id = 700_000_000 + base

    def update(self, i: int) -> tuple[str, bytes]:
        """The i-th update (a text from customer i mod count) and its message key."""
        chat = self._chats[i % len(self._chats)]
        assert chat.user is not None
        self._update_id += 1
        message_id = chat.take_message_id()
        message = {
            "message_id": message_id,
            "from": chat.user.to_json(),
            "chat": chat.to_json(),
            "date": int(time.time()),
            "text": f"{TEXTS[i % len(TEXTS)]} (№{i})",
        }
        body = json.dumps({"update_id": self._update_id, "message": message}, ensure_ascii=False)
        return f"{chat.id}:{message_id}", body.encode()


async def drive(
    url: str,
    count: int,
    make: Callable[[int], tuple[str, bytes]],
    *,
    concurrency: int,
    rate: float | None,
) -> Sent:
    """POST ``count`` updates: ``concurrency`` at a time, or one every 1/``rate`` seconds."""
    sent = Sent()
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    # Open loop: as many connections as Telegram opens at most (setWebhook's max_connections
    # is at most 100, the service's cap per address); a request due while all are busy waits
    # for one, and its answer time counts from when it was due.
    connector = aiohttp.TCPConnector(limit=concurrency if rate is None else MAX_CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def post(i: int, due: float) -> None:
            key, body = make(i)
            sent.keys[key] = time.time()
            try:
                async with http.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if not ok:
                sent.failed += 1
            sent.answer_s.append(time.perf_counter() - due)

        sent.started = time.perf_counter()
        if rate is None:
            counter = iter(range(count))

            async def loop() -> None:
                for i in counter:
                    await post(i, time.perf_counter())

            await asyncio.gather(*(loop() for _ in range(concurrency)))
        else:
            tasks: set[asyncio.Task[None]] = set()
            for i in range(count):
                due = sent.started + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(post(i, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                await asyncio.gather(*list(tasks))
        sent.finished = time.perf_counter()
    return sent


async def drive_wrk(
    url: str, make: Callable[[int], tuple[str, bytes]], plan: Plan, workdir: Path
) -> Sent:
    """The closed loop through wrk for ``plan.wrk_seconds`` (bench/wrk.py)."""
    # Enough different updates for a rate well above the ceiling's.
    bodies = [make(i)[1] for i in range(int(plan.wrk_seconds * WRK_MOST_PER_S))]
    sent = Sent()
    sent.started = time.perf_counter()
    run = await wrk.run(
        url,
        SECRET,
        bodies,
        seconds=plan.wrk_seconds,
        connections=plan.concurrency,
        threads=WRK_THREADS,
        workdir=workdir,
    )
    if run.repeats:
        print(f"wrk ran out of updates and sent some again ({run.repeats} times)", file=sys.stderr)
    sent.finished = sent.started + run.seconds
    sent.count = run.requests
    sent.failed = run.not_ok + run.errors
    sent.quantiles = run.latency_s
    return sent


# -- the service ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_config(plan: Plan, fake: FakeTelegram, port: int) -> dict[str, Any]:
    """The settings every service process of the run reads."""
    return {
        "database_url": plan.database_url,
        "redis_url": plan.redis_url,
        "secret_key": "bench-ygp9L_LFHUhmfLFYNw6yB-RUJwZo91AD",
        "public_url": f"http://127.0.0.1:{port}",
        "http": {"host": "127.0.0.1", "port": port},
        "telegram": {
            "token": DEFAULT_TOKEN,
            "api_url": fake.url,
            "mode": "webhook",
            "webhook_secret": SECRET,
            "staff_chat_id": STAFF_CHAT,
        },
        "sla": {"calendar": {"hours": None}},
        "agents": [{"name": name, "telegram_id": tid} for tid, name in AGENTS],
    }


async def start_process(
    role: str, tmp: Path, config: Path, env: dict[str, str], index: int = 0
) -> Proc:
    """``appeal-desk ROLE`` with counted statements, its output in a log file."""
    stats = tmp / f"{role}-{index}.stats.json"
    log = tmp / f"{role}-{index}.log"
    out = log.open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.querycount",
        str(stats),
        "--config",
        str(config),
        role,
        stdout=out,
        stderr=out,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("DESK_")}, **env},
    )
    out.close()
    return Proc(role, process, stats, log)


async def wait_ready(url: str, procs: list[Proc]) -> None:
    """Until the serve process answers /healthz and every process has written its counters."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while True:
            for proc in procs:
                if proc.process.returncode is not None:
                    raise SystemExit(f"{proc.role} exited early; see {proc.log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200 and all(p.stats.exists() for p in procs):
                        return
            if loop.time() > deadline:
                raise SystemExit(f"the service did not start; see {procs[0].log}")
            await asyncio.sleep(0.2)


async def stop_processes(procs: list[Proc]) -> None:
    """SIGTERM, then a kill for whoever hangs."""
    for proc in procs:
        if proc.process.returncode is None:
            proc.process.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.wait_for(proc.process.wait(), 20)
        except TimeoutError:
            proc.process.kill()
            await proc.process.wait()


async def reset_backends(plan: Plan) -> None:
    """An empty, migrated database (and an empty Redis) for the run."""
    if plan.config == "pg-redis":
        import asyncpg
        import redis.asyncio as aioredis

        conn = await asyncpg.connect(plan.database_url.replace("postgres://", "postgresql://"))
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        await conn.close()
        client = aioredis.from_url(plan.redis_url or "")
        await client.flushdb()
        await client.aclose()
    await db.migrate(plan.database_url)


# -- measuring --------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0..1) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def last_id(model: type[Message] | type[OutboxItem]) -> int:
    """The highest id in the model's table (0 when empty)."""
    row = await model.all().order_by("-id").first().values("id")
    return int(row["id"]) if row else 0


async def stored_since(base_id: int) -> int:
    """Inbound messages stored after ``base_id``."""
    return await Message.filter(id__gt=base_id, direction=Direction.IN).count()


async def queued_latencies(sent: Sent, base_outbox: int) -> list[float]:
    """For every message of the run: from its POST to its staff post's outbox row."""
    by_message: dict[int, float] = {}
    last = base_outbox
    while True:
        rows = (
            await OutboxItem.filter(id__gt=last, channel="staff")
            .order_by("id")
            .limit(20_000)
            .values("id", "created_at", "payload")
        )
        if not rows:
            break
        last = rows[-1]["id"]
        for row in rows:
            extra = (row["payload"] or {}).get("extra", {})
            if extra.get("kind") == "relay" and "message_id" in extra:
                at: datetime = row["created_at"]
                by_message[int(extra["message_id"])] = at.timestamp()
    latencies: list[float] = []
    ids = list(by_message)
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        for mid, key in await Message.filter(id__in=chunk).values_list("id", "external_id"):
            posted = sent.keys.get(str(key))
            if posted is not None:
                latencies.append(by_message[mid] - posted)
    return latencies


@dataclass
class Result:
    """The figures of one run."""

    sent: Sent
    ingest_s: float = 0.0
    stored: int = 0
    queued: list[float] = field(default_factory=list)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    rss: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    ceiling: Sent | None = None


async def measure(
    plan: Plan, url: str, procs: list[Proc], customers: Customers, workdir: Path
) -> Result:
    """Send the load, wait until all is stored, collect the figures."""
    base_id = await last_id(Message)
    base_outbox = await last_id(OutboxItem)
    before = {f"{p.role}-{i}": p.counters() for i, p in enumerate(procs)}
    cpu_before = {f"{p.role}-{i}": p.cpu_s() for i, p in enumerate(procs)}
    rss: list[tuple[int, dict[str, float]]] = [
        (0, {f"{p.role}-{i}": p.rss_mb() for i, p in enumerate(procs)})
    ]
    t0 = time.perf_counter()
    load = asyncio.create_task(
        drive_wrk(url, customers.update, plan, workdir)
        if plan.wrk_seconds
        else drive(
            url,
            plan.messages,
            customers.update,
            concurrency=plan.concurrency,
            rate=plan.rate,
        )
    )
    stored = 0
    next_sample = plan.sample_every
    done_at = 0.0
    deadline = t0 + plan.timeout_s
    # Counting the stored messages costs PostgreSQL a scan of the run's rows: a long run polls
    # less often (every 5 s at 1,000,000; the end is then known to within that).
    poll_s = min(5.0, max(POLL_S, plan.messages / 200_000))
    while True:
        await asyncio.sleep(poll_s)
        stored = await stored_since(base_id)
        now = time.perf_counter()
        if stored >= next_sample or (stored >= plan.messages and load.done()):
            rss.append((stored, {f"{p.role}-{i}": p.rss_mb() for i, p in enumerate(procs)}))
            if plan.sample_every < plan.messages:  # a long run shows its series as it goes
                line = " ".join(f"{name} {mb:.0f} MB" for name, mb in rss[-1][1].items())
                print(f"{time.perf_counter() - t0:7.0f} s  {stored:>9,} stored  {line}", flush=True)
            while next_sample <= stored:
                next_sample += plan.sample_every
        if load.done() and plan.wrk_seconds:
            # As many as wrk had answered 200 (a request cut at its end may be stored too).
            plan.messages = load.result().count - load.result().failed
        if stored >= plan.messages and load.done():
            done_at = now
            break
        if now > deadline:
            print(f"timed out: {stored} of {plan.messages} stored", file=sys.stderr)
            done_at = now
            break
    sent = await load
    after = {f"{p.role}-{i}": p.counters() for i, p in enumerate(procs)}
    cpu = {f"{p.role}-{i}": p.cpu_s() - cpu_before[f"{p.role}-{i}"] for i, p in enumerate(procs)}
    counters = {
        name: {k: after[name].get(k, 0) - before[name].get(k, 0) for k in after[name]}
        for name in after
    }
    result = Result(sent, done_at - sent.started, stored, counters=counters, rss=rss, cpu=cpu)
    result.queued = await queued_latencies(sent, base_outbox)
    return result


async def warm_up(url: str, fake: FakeTelegram, plan: Plan) -> None:
    """A few messages from other customers first: imports, caches, connection pools."""
    if plan.warmup <= 0:
        return
    others = Customers(fake, min(plan.warmup, 100), base=CUSTOMER_BASE - 100_000)
    base_id = await last_id(Message)
    await drive(url, plan.warmup, others.update, concurrency=plan.concurrency, rate=None)
    deadline = time.perf_counter() + 120
    while await stored_since(base_id) < plan.warmup and time.perf_counter() < deadline:
        await asyncio.sleep(POLL_S)


async def against_ceiling(plan: Plan, fake: FakeTelegram, tmp: Path) -> Sent:
    """The same load against the bare endpoint."""
    port = free_port()
    log = (tmp / "ceiling.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ceiling", str(port), stdout=log, stderr=log
    )
    log.close()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.1)
        others = Customers(fake, plan.customers, base=CUSTOMER_BASE + 1_000_000)
        if plan.wrk_seconds:
            return await drive_wrk(url, others.update, plan, tmp)
        return await drive(
            url, plan.messages, others.update, concurrency=plan.concurrency, rate=plan.rate
        )
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


# -- the run ----------------------------------------------------------------------------------


async def run(plan: Plan) -> Result:
    """Start the fake Bot API and the service, measure, stop everything."""
    with tempfile.TemporaryDirectory(prefix="desk-load-") as name:
        tmp = Path(name)
        if plan.config == "embedded":
            plan.database_url = f"sqlite://{tmp}/desk.db" + (
                f"?{plan.sqlite_pragmas}" if plan.sqlite_pragmas else ""
            )
            plan.redis_url = None
        async with FakeTelegram() as fake:
            fake.limits_enabled = True
            fake.add_group(STAFF_CHAT, "Поддержка", members=[tid for tid, _ in AGENTS])
            for tid, agent in AGENTS:
                fake.add_user(tid, agent)
            customers = Customers(fake, plan.customers)
            await reset_backends(plan)
            await db.connect(plan.database_url)
            try:
                if plan.prefill:
                    took = await prefill(plan.prefill)
                    print(f"prefilled {plan.prefill:,} appeals in {took:.0f} s", flush=True)
                result = await _with_service(plan, fake, tmp, customers)
            finally:
                await db.disconnect()
            if plan.ceiling:
                result.ceiling = await against_ceiling(plan, fake, tmp)
        return result


async def _with_service(plan: Plan, fake: FakeTelegram, tmp: Path, customers: Customers) -> Result:
    port = free_port()
    config = tmp / "appeal-desk.yaml"
    config.write_text(
        yaml.safe_dump(service_config(plan, fake, port), allow_unicode=True), encoding="utf-8"
    )
    procs: list[Proc] = []
    base_env = {"DESK_DATABASE_URL": plan.database_url}
    if plan.redis_url:
        base_env["DESK_REDIS_URL"] = plan.redis_url
    try:
        if plan.config == "embedded" and not plan.workers:
            env = {**base_env, "DESK_WORKERS__INTAKE": str(plan.intake)}
            procs.append(await start_process("serve", tmp, config, env))
        else:
            # The serve process only takes webhooks; the workers ingest and deliver.
            serve_env = {**base_env, "DESK_WORKERS__INTAKE": "0", "DESK_WORKERS__DELIVERY": "0"}
            procs.append(await start_process("serve", tmp, config, serve_env))
            await wait_ready(f"http://127.0.0.1:{port}", procs)
            worker_env = {
                **base_env,
                "DESK_WORKERS__INTAKE": str(plan.intake),
                "DESK_WORKERS__DELIVERY": "1",
            }
            for i in range(plan.workers):
                procs.append(await start_process("worker", tmp, config, worker_env, i))
        await wait_ready(f"http://127.0.0.1:{port}", procs)
        url = f"http://127.0.0.1:{port}/telegram/webhook"
        await warm_up(url, fake, plan)
        return await measure(plan, url, procs, customers, tmp)
    finally:
        if os.environ.get("BENCH_QUERY_TIMES"):
            for proc in procs:
                data = json.loads(proc.stats.read_text(encoding="utf-8"))
                print(f"slowest statements of {proc.role} (s, count, sql):", file=sys.stderr)
                for seconds, count, sql in data.get("sql", [])[:25]:
                    print(f"  {seconds:8.2f} {count:7d}  {sql}", file=sys.stderr)
        await stop_processes(procs)


# -- the report -------------------------------------------------------------------------------


def report(plan: Plan, result: Result) -> str:
    """A compact table of the run."""
    sent = result.sent
    n = plan.messages
    wall = sent.finished - sent.started
    lines = []
    mode = f"open loop {plan.rate:g}/s" if plan.rate else f"closed loop x{plan.concurrency}"
    if plan.wrk_seconds:
        mode += f" through wrk for {plan.wrk_seconds:g} s"
    backend = "SQLite + local stream" if plan.config == "embedded" else "PostgreSQL + Redis"
    if plan.workers:
        backend += f", {plan.workers} worker process(es)"
    lines.append(
        f"{backend} · {n:,} messages from {plan.customers:,} customers · {mode} · "
        f"intake x{plan.intake}/process · prefill {plan.prefill:,} appeals"
    )
    row = "  {:<34} {:>12}"
    lines.append(row.format("webhook answered", f"{(sent.count or n) / wall:,.0f} msg/s"))
    lines.append(
        row.format("webhook answer p50 / p99", f"{sent.answer_ms(0.5)} / {sent.answer_ms(0.99)}")
    )
    lines.append(row.format("webhook failures (not 200)", f"{sent.failed}"))
    ingest = result.stored / result.ingest_s if result.ingest_s else 0.0
    lines.append(row.format("ingested (stored + staff post)", f"{ingest:,.0f} msg/s"))
    lines.append(row.format("stored / sent", f"{result.stored:,} / {n:,}"))
    lines.append(
        row.format(
            "POST → staff post queued p50 / p99",
            f"{_ms(result.queued, 0.5)} / {_ms(result.queued, 0.99)}"
            if result.queued
            else "— (wrk: no POST times)",
        )
    )
    stmts = sum(c.get("statements", 0) for c in result.counters.values())
    txs = sum(c.get("commit", 0) for c in result.counters.values())
    stored = max(result.stored, 1)
    lines.append(row.format("DB statements / message", f"{stmts / stored:.1f}"))
    auto = sum(c.get("autocommit", 0) for c in result.counters.values())
    lines.append(row.format("DB transactions / message", f"{txs / stored:.2f}"))
    lines.append(row.format("  + statements outside one", f"{auto / stored:.1f}"))
    resets = sum(c.get("reset", 0) for c in result.counters.values())
    lines.append(row.format("pool reset queries / message", f"{resets / stored:.1f}"))
    for name, c in result.counters.items():
        lines.append(
            row.format(
                f"  {name}",
                f"{c.get('statements', 0) / stored:.1f} st, {c.get('commit', 0) / stored:.2f} tx",
            )
        )
    total_cpu = sum(result.cpu.values())
    lines.append(row.format("service CPU / message", f"{total_cpu / stored * 1000:.2f} ms"))
    for name, seconds in result.cpu.items():
        lines.append(row.format(f"  {name}", f"{seconds / stored * 1000:.2f} ms"))
    first, last = result.rss[0][1], result.rss[-1][1]
    for name in first:
        peak = max(sample[1].get(name, 0.0) for sample in result.rss)
        lines.append(
            row.format(
                f"RSS {name} start/end/peak", f"{first[name]:.0f}/{last[name]:.0f}/{peak:.0f} MB"
            )
        )
    if plan.sample_every < n and len(result.rss) > 2:
        lines.append(
            "  RSS by messages stored: "
            + ", ".join(
                f"{count:,}: " + "/".join(f"{v:.0f}" for v in values.values())
                for count, values in result.rss
            )
        )
    if result.ceiling is not None:
        top_run = result.ceiling
        top = (top_run.count or n) / (top_run.finished - top_run.started)
        lines.append(row.format("ceiling (parse + 200)", f"{top:,.0f} msg/s"))
        lines.append(
            row.format(
                "ceiling answer p50 / p99",
                f"{top_run.answer_ms(0.5)} / {top_run.answer_ms(0.99)}",
            )
        )
        if plan.rate is None:  # in open loop both answer at the rate
            lines.append(row.format("ingest as share of ceiling", f"{ingest / top:.0%}"))
    return "\n".join(lines)


def _ms(values: list[float], share: float) -> str:
    return f"{percentile(values, share) * 1000:.1f} ms"


def parse(argv: list[str] | None = None) -> Plan:
    """The command line as a Plan."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=["embedded", "pg-redis"], default="embedded")
    parser.add_argument(
        "--workers",
        type=int,
        help="worker processes beside serve, which then only takes webhooks (pg-redis: 1; "
        "embedded: 0, serve does everything)",
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rate", type=float, help="open loop: updates per second")
    parser.add_argument("--concurrency", type=int, default=40, help="closed loop connections")
    parser.add_argument("--customers", type=int, help="distinct chats (default messages/5)")
    parser.add_argument("--intake", type=int, default=1, help="intake workers per process")
    parser.add_argument("--prefill", type=int, default=0, help="closed appeals added first")
    parser.add_argument("--sample-every", type=int, help="RSS sample every N stored messages")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--no-ceiling", action="store_true", help="skip the bare endpoint")
    parser.add_argument(
        "--wrk",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the closed loop through wrk for this long (bench/wrk.py), not --messages",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait")
    parser.add_argument(
        "--sqlite-pragmas", default="", help="e.g. synchronous=NORMAL (embedded; diagnosis)"
    )
    args = parser.parse_args(argv)
    plan = Plan(
        config=args.config,
        workers=args.workers if args.workers is not None else int(args.config == "pg-redis"),
        messages=args.messages,
        rate=args.rate,
        concurrency=args.concurrency,
        # A new customer in five messages (wrk: of about 2,000 a second).
        customers=args.customers or max(1, int(args.wrk * 2000 or args.messages) // 5),
        intake=args.intake,
        prefill=args.prefill,
        sample_every=args.sample_every or (2**62 if args.wrk else args.messages),
        warmup=args.warmup,
        ceiling=not args.no_ceiling,
        timeout_s=args.timeout,
        sqlite_pragmas=args.sqlite_pragmas,
        wrk_seconds=args.wrk,
    )
    if plan.wrk_seconds and plan.rate:
        parser.error("--wrk is a closed loop: no --rate")
    if plan.wrk_seconds and not wrk.available():
        parser.error("--wrk needs wrk (apt-get install wrk)")
    if plan.config == "pg-redis":
        plan.database_url = os.environ.get("DESK_DATABASE_URL", "")
        plan.redis_url = os.environ.get("DESK_REDIS_URL")
        if not plan.database_url.startswith("postgres") or not plan.redis_url:
            parser.error("pg-redis needs DESK_DATABASE_URL (postgres://…) and DESK_REDIS_URL")
    return plan


def main(argv: list[str] | None = None) -> None:
    """Run one configuration and print its table."""
    plan = parse(argv)
    result = terminable.run(run(plan))
    print(report(plan, result))


if __name__ == "__main__":
    main()
