"""Intake throughput: messages published to the appeal stream until all are stored.

Run by hand (not a test):  .venv/bin/python -m bench.intake [--messages 5000] [--customers 200]
With DESK_DATABASE_URL / DESK_REDIS_URL set it measures that database and stream; by default a
fresh SQLite file and the local stream (the embedded default).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import tempfile
import time

from bench import terminable
from channels.base import ChannelKind, InboundMessage
from desk.config.settings import Settings
from desk.runtime.service import Service
from models import Message


async def run(messages: int, customers: int) -> None:
    """Publish ``messages`` from ``customers`` senders and time the intake end to end."""
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("DESK_DATABASE_URL") or f"sqlite://{tmp}/bench.db"
        settings = Settings(
            database_url=url,
            redis_url=os.environ.get("DESK_REDIS_URL"),
            http={"port": 0},
            secret_key="bench-ygp9L_LFHUhmfLFYNw6yB-RUJwZo91AD",
        )
        service = Service(settings, "serve", io.StringIO())
        await service.start()
        assert service.ctx is not None
        stream = service.ctx.stream
        start = time.perf_counter()
        for i in range(messages):
            user = str(100_000 + i % customers)
            await stream.publish(
                InboundMessage(
                    channel=ChannelKind.TELEGRAM,
                    external_id=f"bench:{i}",
                    address=user,
                    text=f"Сообщение {i}: где мой заказ?",
                    sender_name=f"Клиент {user}",
                )
            )
        published = time.perf_counter() - start
        while await Message.all().count() < messages:
            await asyncio.sleep(0.05)
        total = time.perf_counter() - start
        await service.stop()
    backend = f"{url.split(':')[0]} + {'redis' if settings.redis_url else 'local stream'}"
    print(f"{backend}: {messages} messages from {customers} customers")
    print(f"  publish   {messages / published:8.0f} msg/s ({published:.2f} s)")
    print(f"  stored    {messages / total:8.0f} msg/s end to end ({total:.2f} s)")


def main() -> None:
    """Parse the arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--customers", type=int, default=200)
    args = parser.parse_args()
    terminable.run(run(args.messages, args.customers))


if __name__ == "__main__":
    main()
