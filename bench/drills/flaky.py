"""Drill 3: Telegram misbehaving while customers write and agents answer; then the audit.

* 20% of sends answered 500/502 (``fail_rate``): Telegram did nothing, the desk retries;
* timeouts (``timeout_next``): Telegram sent the message but the answer comes after the desk's
  timeout (``telegram.timeout_s``), so the desk cannot know; it retries;
* a 429 flood (``fail_next`` with 429 and retry_after): the desk waits and retries.

What the desk guarantees, and what the audit holds it to: every outbox row reaches Telegram; a
row is sent twice only when an attempt of it timed out after Telegram had accepted it (Telegram
has no idempotency key, and an answer that never came cannot tell "sent" from "not sent"; the
desk chooses at least once over at most once). 5xx and 429 never duplicate. Order per chat holds.

    .venv/bin/python -m bench.drills.flaky --messages 2000
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
from bench.drills.inprocess import running_desk
from bench.drills.traffic import Agents, Customers, caught_up
from bench.fakes.telegram import FakeTelegram, RecordedRequest

ANSWER_LATE_S = 3.0  # longer than the desk's 2 s Telegram timeout in the drill


async def flaky_drill(
    workdir: Path,
    *,
    messages: int,
    customers: int = 50,
    timeouts: int = 5,
    flood: int = 30,
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
        fake.fail_rate(0.2, seed=11)
        half = messages // 2
        people.write(half)
        await agents.answer_some(customers)
        mark = len(fake.requests)
        fake.timeout_next("sendMessage", ANSWER_LATE_S, count=timeouts)
        await agents.answer_some(customers)
        deadline = asyncio.get_running_loop().time() + 60
        while len(_sends_after(fake, mark)) < timeouts:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the desk sent nothing after the timeouts were set")
            await asyncio.sleep(0.05)
        fake.fail_next("sendMessage", 429, count=flood, retry_after=1)
        people.write(messages - half)
        await agents.answer_some(customers)
        done = await caught_up(people, 120 + messages / 20, say)
        fake.fail_rate(0.0)
        report = await audit(
            people.written, fake.sent, in_doubt=_answered_late(fake, mark, timeouts)
        )
        if not done:
            say("  the desk did not catch up in time")
        calls = fake.calls("sendMessage")
        failed = sum(1 for c in calls if c.status >= 500)
        flooded = sum(1 for c in calls if c.status == 429)
    say(
        f"flaky telegram: {messages} messages, {agents.replies} answers; sendMessage calls "
        f"{len(calls)}: {failed} answered 5xx, {flooded} answered 429, {timeouts} answered late; "
        f"{time.perf_counter() - started:.0f} s"
    )
    say(report.summary())
    return report


def _sends_after(fake: FakeTelegram, mark: int) -> list[RecordedRequest]:
    return [r for r in fake.requests[mark:] if r.method == "sendMessage"]


def _answered_late(fake: FakeTelegram, mark: int, count: int) -> list[InDoubt]:
    """The sends the fake executed but answered late: of the first ``count`` sendMessage
    calls after ``mark`` (``timeout_next`` holds back the next calls), the ones that ran."""
    return [
        (str(call.params.get("chat_id")), str(call.params.get("text", "")))
        for call in _sends_after(fake, mark)[:count]
        if call.status == 200
    ]


def main() -> None:
    """Parse the arguments and run the drill."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--timeouts", type=int, default=10)
    parser.add_argument("--flood", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drill-flaky-") as tmp:
        report = terminable.run(
            flaky_drill(
                Path(tmp),
                messages=args.messages,
                customers=args.customers,
                timeouts=args.timeouts,
                flood=args.flood,
            )
        )
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
