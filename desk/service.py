"""The service runner: database, stream, workers and HTTP in one process, stopped gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TextIO

from aiohttp import web

from channels.base import ChannelAdapter
from channels.stream import AppealStream, open_stream
from channels.web import WebAdapter
from desk.agents import sync_agents
from desk.context import AppContext, utc_now
from desk.delivery import DeliveryWorker
from desk.errors import DeskError
from desk.intake import IntakeWorker
from desk.keys import TokenBook, bootstrap_token, signing_key
from desk.lifecycle import Lifecycle
from desk.outbox import Outbox
from desk.settings import Settings
from desk.signing import Signer
from models import db

log = logging.getLogger(__name__)

Role = Literal["serve", "worker"]
SHUTDOWN_GRACE_S = 10.0
MIGRATION_WAIT_S = 120.0


class NotMigrated(DeskError):
    """The database has migrations to apply that this process will not apply by itself."""


@dataclass
class ChannelReport:
    """Which channels run in this process, and why the others do not."""

    enabled: list[str] = field(default_factory=list)
    disabled: dict[str, str] = field(default_factory=dict)


def channel_report(settings: Settings) -> ChannelReport:
    """The channels these settings enable."""
    report = ChannelReport(enabled=["web"])
    for name, section in (
        ("telegram", settings.telegram),
        ("vk", settings.vk),
        ("email", settings.email),
    ):
        reason = section.disabled_reason()
        if reason is None:
            report.enabled.append(name)
        else:
            report.disabled[name] = reason
    return report


def consumer_name(settings: Settings, role: Role) -> str:
    """This process's name in the stream: stable for ``serve`` so a restart takes back its own
    entries at once; unique per process for ``worker``."""
    if settings.workers.name:
        return settings.workers.name
    host = socket.gethostname()
    return f"{host}-serve" if role == "serve" else f"{host}-worker-{os.getpid()}"


async def prepare_database(settings: Settings, role: Role, say: Callable[[str], None]) -> None:
    """Apply migrations to a new database (``serve``); wait for them (``worker``); refuse a
    database that needs ``appeal-desk migrate``."""
    url = settings.database_url
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MIGRATION_WAIT_S
    while True:
        pending = await db.pending_migrations(url)
        if not pending:
            return
        fresh = pending == db.known_migrations()
        if fresh and role == "serve":
            say(f"new database: applying {len(pending)} migration(s)")
            await db.migrate(url)
            return
        if not fresh:
            raise NotMigrated(
                f"the database needs migrations {', '.join(pending)}: run 'appeal-desk migrate'"
            )
        if loop.time() >= deadline:
            raise NotMigrated(
                "the database is empty: start 'appeal-desk serve' or run "
                "'appeal-desk migrate' first"
            )
        say("waiting for the database to be migrated …")
        await asyncio.sleep(2.0)


async def build_context(settings: Settings, stream: AppealStream) -> AppContext:
    """Every part of the service wired together (the ORM must be connected already)."""
    outbox = Outbox(utc_now)
    adapters: dict[str, ChannelAdapter] = {"web": WebAdapter()}
    return AppContext(
        settings=settings,
        stream=stream,
        lifecycle=Lifecycle(settings, outbox, utc_now),
        outbox=outbox,
        signer=Signer(await signing_key(settings)),
        tokens=TokenBook(settings),
        adapters=adapters,
    )


class Service:
    """One process of Appeal Desk; owns every long-lived task it starts."""

    def __init__(self, settings: Settings, role: Role, out: TextIO) -> None:
        self._settings = settings
        self._role = role
        self._out = out
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.ctx: AppContext | None = None
        self.bound_port: int | None = None

    def _say(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    async def start(self) -> None:
        """Prepare the database, connect, start workers and (for ``serve``) the HTTP server."""
        settings = self._settings
        await prepare_database(settings, self._role, self._say)
        await db.connect(settings.database_url)
        await sync_agents(settings.agents)
        name = consumer_name(settings, self._role)
        stream = open_stream(
            settings.redis_url,
            consumer=name,
            claim_idle_s=settings.workers.claim_idle_s,
            max_deliveries=settings.workers.max_deliveries,
        )
        await stream.start()
        self.ctx = ctx = await build_context(settings, stream)
        token = await bootstrap_token(settings) if self._role == "serve" else None
        self._stop_workers = asyncio.Event()
        for i in range(settings.workers.intake):
            worker = IntakeWorker(stream, ctx.lifecycle)
            self._tasks.append(
                asyncio.create_task(worker.run(self._stop_workers), name=f"intake-{i}")
            )
        for i in range(settings.workers.delivery):
            delivery = DeliveryWorker(ctx.outbox, ctx.adapters, ctx.clock, name=f"{name}-d{i}")
            self._tasks.append(
                asyncio.create_task(delivery.run(self._stop_workers), name=f"delivery-{i}")
            )
        if self._role == "serve":
            from desk.api.app import make_app

            self._runner = web.AppRunner(make_app(ctx), access_log=None, handler_cancellation=True)
            await self._runner.setup()
            site = web.TCPSite(self._runner, settings.http.host, settings.http.port)
            await site.start()
            self.bound_port = int(self._runner.addresses[0][1])
        self._banner(name, token)

    def _banner(self, consumer: str, token: str | None) -> None:
        s = self._settings
        report = channel_report(s)
        stream = (
            "redis " + db.mask_url(s.redis_url)
            if s.redis_url
            else "local, in the database (DESK_REDIS_URL is not set)"
        )
        self._say(f"Appeal Desk — {self._role} ({consumer})")
        self._say(f"  database  {db.mask_url(s.database_url)}")
        self._say(f"  stream    {stream}")
        if self._role == "serve":
            host = s.http.host
            self._say(
                f"  http      http://{host}:{self.bound_port}  (form /, API /api/v1, "
                f"spec /api/v1/openapi.json)"
            )
            self._say(f"  links     {s.effective_public_url()}")
        self._say(f"  workers   intake x{s.workers.intake}, delivery x{s.workers.delivery}")
        self._say("  channels  " + ", ".join(f"{c}: enabled" for c in report.enabled))
        for name, reason in report.disabled.items():
            self._say(f"            {name}: disabled — {reason}")
        if token:
            self._say(f"  api token {token}")
            self._say(
                "            (created now for 'admin'; shown once: keep it, or make "
                "another with 'appeal-desk token create NAME')"
            )

    async def stop(self) -> None:
        """Stop taking work, finish what is in flight, close connections."""
        if self._runner is not None:
            await self._runner.cleanup()
        if hasattr(self, "_stop_workers"):
            self._stop_workers.set()
            if self.ctx is not None:
                self.ctx.outbox.wake()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE_S)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.ctx is not None:
            await self.ctx.stream.close()
        await db.disconnect()
        self._say("stopped")


async def run_until_stopped(
    settings: Settings, role: Role, out: TextIO, stop: asyncio.Event
) -> None:
    """Start a service, wait for ``stop``, and stop it gracefully."""
    service = Service(settings, role, out)
    try:
        await service.start()
        await stop.wait()
    finally:
        await service.stop()
