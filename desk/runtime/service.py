"""The service runner: database, stream, workers and HTTP in one process, stopped gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TextIO
from zoneinfo import ZoneInfo

from aiohttp import web

from channels.base import SMS_CHANNEL, STAFF_MAIL_CHANNEL, ChannelAdapter, ChannelKind, wait_or_stop
from channels.email.mail import MailSender, PlainMailSender
from channels.email.mailbox import MailboxReader, store_mail
from channels.email.parse import ParsedMail
from channels.sms.sender import SmsSender, make_provider
from channels.stream import AppealStream, open_stream
from channels.web import WebAdapter
from channels.webhook import KIND as WEBHOOK_KIND
from channels.webhook import WebhookSender
from desk.api.app import make_app
from desk.api.connections import CappedSite, runner_options
from desk.api.ops import worker_app
from desk.appeals.agents import sync_agents
from desk.appeals.events import Stage
from desk.appeals.intake import IntakeWorker
from desk.appeals.lifecycle import Lifecycle
from desk.appeals.outbox import Outbox
from desk.appeals.tasks import raise_due
from desk.appeals.triage import Triage
from desk.config.errors import DeskError
from desk.config.keys import TokenBook, bootstrap_token, signing_key
from desk.config.notice_templates import VARIANTS
from desk.config.settings import Settings
from desk.config.signing import Signer
from desk.context import AppContext, utc_now
from desk.decide.automation import Automation
from desk.decide.routing import Routing
from desk.decide.sla import RECOMPUTE_ON, SlaClock
from desk.features.answers import AnswerBook
from desk.features.orders import Orders
from desk.features.ratings import Ratings
from desk.features.webdesk import action_url, choices_page, staff_view_url, status_url
from desk.features.winback import WinBack
from desk.ops.log_context import redact
from desk.ops.metrics import Metrics
from desk.ops.outage import OutageWatch
from desk.ops.scheduler import Daily
from desk.outbound.chat_desk import ChatDesk, chat_desk_factories
from desk.outbound.delivery import DeliveryWorker
from desk.outbound.fallback import Fallback
from desk.outbound.manager_mail import ManagerMail
from desk.outbound.notify import Notifier
from desk.outbound.sms import SmsGate, SmsReports
from desk.reports.digest import report_jobs
from desk.reports.report_facts import ReportFacts
from models import db

log = logging.getLogger(__name__)

Role = Literal["serve", "worker"]
MIGRATION_WAIT_S = 120.0
HTTP_CLOSE_S = 1.0  # requests still open after the grace period get this long, then are cut
TOKEN_HINTS = {
    "telegram": "check DESK_TELEGRAM__TOKEN",
    "vk": "check DESK_VK__TOKEN and DESK_VK__GROUP_ID",
}


class NotMigrated(DeskError):
    """The database has migrations to apply that this process will not apply by itself."""


@dataclass(frozen=True)
class TokenCheck:
    """What a chat platform said of our token at start: who we are there, or why not."""

    ok: bool
    text: str  # "@desk_bot", "«Shop» (club1)", or the platform's refusal


async def check_tokens(ctx: AppContext) -> dict[str, TokenCheck]:
    """Ask each enabled chat platform who we are (Telegram getMe, VK groups.getById), side by
    side and each within its timeout, so a wrong token shows at start, not at the first send."""
    who: dict[str, tuple[Callable[[], Awaitable[str]], float]] = {
        name: (desk.whoami, desk.timeout_s) for name, desk in ctx.desks.items()
    }

    async def check(name: str, ask: Callable[[], Awaitable[str]], timeout_s: float) -> TokenCheck:
        try:
            async with asyncio.timeout(timeout_s):
                return TokenCheck(True, await ask())
        except TimeoutError:
            reason = f"no answer in {timeout_s:g} s"
        except Exception as exc:  # any refusal or failure is reported, the start goes on
            reason = redact(str(exc) or type(exc).__name__)[:200]
        log.error("token check failed", extra={"channel": name, "reason": reason})
        return TokenCheck(False, reason)

    results = await asyncio.gather(*(check(n, *args) for n, args in who.items()))
    return dict(zip(who, results, strict=True))


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
        ("sms", settings.sms),
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


def chat_desks(ctx: AppContext) -> dict[str, ChatDesk]:
    """The bots of each chat platform the settings turn on, built by the factories the package
    installs (``bots/``, entry points ``appeal_desk.chat_desks``)."""
    factories = chat_desk_factories()
    for name, channel in (("telegram", ctx.settings.telegram), ("vk", ctx.settings.vk)):
        if channel.disabled_reason() is None and name not in factories:
            raise DeskError(
                f"{name} is configured but its bots are not installed: "
                "run 'pip install -e .' in the checkout (it registers them)"
            )
    desks: dict[str, ChatDesk] = {}
    for name in sorted(factories):
        desk = factories[name](ctx)
        if desk is not None:
            desks[name] = desk
    return desks


async def build_context(
    settings: Settings,
    stream: AppealStream,
    clock: Callable[[], datetime] = utc_now,
    answers: AnswerBook | None = None,
) -> AppContext:
    """Every part of the service wired together (the ORM must be connected already)."""
    outbox = Outbox(clock)
    adapters: dict[str, ChannelAdapter] = {"web": WebAdapter()}
    metrics = Metrics()
    lifecycle = Lifecycle(settings, outbox, clock, metrics=metrics)
    ctx = AppContext(
        settings=settings,
        stream=stream,
        lifecycle=lifecycle,
        triage=Triage(lifecycle, settings),
        outbox=outbox,
        signer=Signer(await signing_key(settings)),
        tokens=TokenBook(settings, clock),
        adapters=adapters,
        clock=clock,
        metrics=metrics,
        outage=OutageWatch(metrics),
        answers=answers if answers is not None else AnswerBook.of(settings),
    )
    ctx.desks = chat_desks(ctx)
    staff_group = next((d.staff for d in ctx.desks.values() if d.staff is not None), None)
    if settings.email.disabled_reason() is None:
        adapters[ChannelKind.EMAIL.value] = MailSender(
            settings.email,
            ctx.texts.render,
            settings.company.name,
            status_link=lambda number: status_url(ctx, number),
            clock=clock,
        )
        lifecycle.answer_by_mail = True
    if settings.email.sending_disabled_reason() is None:
        adapters[STAFF_MAIL_CHANNEL] = PlainMailSender(settings.email, settings.company.name, clock)
    manager_mail = ManagerMail(
        settings,
        outbox,
        ctx.texts,
        clock,
        link=(lambda number: staff_view_url(ctx, number)) if settings.public_url else None,
    )
    if manager_mail.enabled:
        lifecycle.events.subscribe(Stage.STAFF, manager_mail.on_event, *ManagerMail.KINDS)
    if settings.sms.disabled_reason() is None:
        ctx.sms = SmsGate(
            settings.sms,
            SmsSender(settings.sms, make_provider(settings.sms)),
            zone=ZoneInfo(settings.company.timezone),
            clock=clock,
            events=lifecycle.events,
            outbox=outbox,
            texts=ctx.texts,
            language=settings.company.language,
            staff=staff_group,
        )
        adapters[SMS_CHANNEL] = ctx.sms
    ctx.routing = routing = Routing(settings, lifecycle, ctx.triage, clock)
    await routing.retrain()
    lifecycle.events.subscribe(Stage.ROUTING, routing.on_event, *Routing.KINDS)
    customer_channels = [c for c in adapters if c in VARIANTS]
    ctx.sla = sla = SlaClock(settings, ctx.triage, lifecycle.events, clock, metrics=metrics)
    lifecycle.events.subscribe_batch(Stage.SLA, sla.on_batch, *RECOMPUTE_ON)
    zone = ZoneInfo(settings.company.timezone)
    facts = ReportFacts(settings.sla.calendar, zone, clock)
    lifecycle.events.subscribe_batch(Stage.REPORTS, facts.on_batch, *ReportFacts.KINDS)
    ctx.notifier = Notifier(
        outbox,
        lifecycle.events,
        lifecycle,
        settings,
        ctx.texts,
        customer_channels,
        clock,
        links=lambda action: action_url(ctx, action),
        sms=ctx.sms,
        pages=lambda actions: choices_page(ctx, actions),
    )
    ctx.orders = Orders(settings, lifecycle.events, clock)
    ctx.ratings = Ratings(settings, ctx.notifier, lifecycle.events, ctx.texts, clock)
    ctx.winback = WinBack(settings, lifecycle.events, ctx.texts, clock)
    lifecycle.capture = ctx.ratings.take_comment
    secret = settings.automation.webhook_secret
    adapters[WEBHOOK_KIND] = WebhookSender(
        secret.get_secret_value().encode() if secret is not None else b"", clock
    )
    automation = Automation(
        settings,
        ctx.notifier,
        outbox,
        ctx.triage,
        lifecycle.events,
        ctx.texts,
        clock,
        staff=staff_group,
        routing=routing,
        ratings=ctx.ratings,
        manager_mail=manager_mail,
    )
    lifecycle.events.subscribe_batch(Stage.AUTOMATION, automation.on_batch, *automation.kinds())
    return ctx


class Service:
    """One process of Appeal Desk; owns every long-lived task it starts."""

    def __init__(
        self,
        settings: Settings,
        role: Role,
        out: TextIO,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._role = role
        self._out = out
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_workers = asyncio.Event()
        self._deliverers: list[str] = []
        self._runner: web.AppRunner | None = None
        self.ctx: AppContext | None = None
        self.bound_port: int | None = None
        self.token_checks: dict[str, TokenCheck] = {}

    def _say(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    async def start(self) -> None:
        """Prepare the database, connect, start workers and (for ``serve``) the HTTP server."""
        settings = self._settings
        answers = AnswerBook.of(settings)  # a broken file stops the start before anything runs
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
        self.ctx = ctx = await build_context(settings, stream, self._clock, answers)
        ctx.metrics.started(self._role, name)
        fallback = Fallback(
            ctx.outbox,
            ctx.lifecycle.events,
            ctx.texts,
            [c for c in ctx.adapters if c in VARIANTS],
            ctx.clock,
            settings,
            sms=ctx.sms,
        )
        ctx.lifecycle.undeliverable = fallback.elsewhere
        token = await bootstrap_token(settings) if self._role == "serve" else None
        self.token_checks = await check_tokens(ctx)
        for i in range(settings.workers.intake):
            worker = IntakeWorker(stream, ctx.lifecycle, outage=ctx.outage)
            self._tasks.append(
                asyncio.create_task(worker.run(self._stop_workers), name=f"intake-{i}")
            )
        for i in range(settings.workers.delivery):
            delivery = DeliveryWorker(
                ctx.outbox,
                ctx.adapters,
                ctx.clock,
                name=f"{name}-d{i}",
                idle_s=settings.workers.poll_s,
                events=ctx.lifecycle.events,
                on_unreachable=fallback.reroute,
                metrics=ctx.metrics,
                outage=ctx.outage,
            )
            self._deliverers.append(delivery.name)
            self._tasks.append(
                asyncio.create_task(delivery.run(self._stop_workers), name=f"delivery-{i}")
            )
        self._tasks.append(asyncio.create_task(self._retrain(ctx.routing), name="router-retrain"))
        if self._role == "serve" and ctx.sla is not None:
            self._tasks.append(asyncio.create_task(self._sla_scan(ctx.sla), name="sla-scan"))
        if self._role == "serve" and ctx.sms is not None:
            reports = SmsReports(
                settings.sms, ctx.sms, ctx.lifecycle.events, ctx.clock, fallback.reroute
            )
            self._tasks.append(asyncio.create_task(self._sms_reports(reports), name="sms-reports"))
        self._tasks.append(asyncio.create_task(self._daily(ctx), name="daily-jobs"))
        if self._role == "worker" and settings.workers.metrics_port is not None:
            await self._serve_metrics(ctx, settings.workers.metrics_port)
        if self._role == "serve":
            await self._serve_http(ctx)
            for desk in ctx.desks.values():
                await self._start_desk(desk)
            self._start_mailbox(ctx)
        self._banner(name, token)

    async def _sla_scan(self, sla: SlaClock) -> None:
        """Warnings, breaches and tasks come due, and postponed appeals come back, checked
        every ``workers.sla_scan_s`` (serve only: one scanner)."""
        while not self._stop_workers.is_set():
            try:
                raised = await sla.scan()
                raised += (
                    await raise_due(self.ctx.lifecycle.events, self._clock()) if self.ctx else 0
                )
                if self.ctx is not None:  # postponed appeals whose time came are in work again
                    raised += await self.ctx.lifecycle.wake_postponed(self._clock())
                if raised and self.ctx is not None:
                    self.ctx.outbox.wake()
            except Exception as exc:  # a task root: the next pass tries again
                if not await self._outage(exc):
                    log.exception("SLA scan failed")
            await wait_or_stop(self._stop_workers, self._settings.workers.sla_scan_s)

    async def _sms_reports(self, reports: SmsReports) -> None:
        """Ask the SMS gateway for delivery reports every ``sms.status_poll_s`` (serve only)."""
        while not self._stop_workers.is_set():
            try:
                if await reports.poll() and self.ctx is not None:
                    self.ctx.outbox.wake()  # an undelivered SMS may have become a call task
            except Exception as exc:  # a task root: the next pass tries again
                if not await self._outage(exc):
                    log.exception("SMS reports failed")
            await wait_or_stop(self._stop_workers, self._settings.sms.status_poll_s)

    async def _daily(self, ctx: AppContext) -> None:
        """Daily jobs (the lost-customer scan, the overdue-task reminder, reports), run by
        whichever process claims the day."""
        settings = self._settings
        jobs: list[Daily] = []
        zone = ZoneInfo(settings.company.timezone)
        if ctx.winback is not None:
            jobs.append(Daily("winback", settings.customers.scan_at, zone, ctx.winback.scan))
        for desk in ctx.desks.values():
            jobs += desk.daily_jobs()
        jobs += report_jobs(ctx)
        while not self._stop_workers.is_set():
            for job in jobs:
                try:
                    if await job.run_if_due(self._clock(), ctx.metrics):
                        ctx.outbox.wake()
                except Exception as exc:  # a task root: the claim is given back, a tick retries
                    if not await self._outage(exc):
                        log.exception("daily job failed", extra={"job": job.name})
            await wait_or_stop(self._stop_workers, settings.workers.sla_scan_s)

    async def _outage(self, exc: Exception) -> bool:
        """Wait out the database outage ``exc`` tells of (True), or say it was none (False)."""
        if self.ctx is None or not db.is_outage(exc):
            return False
        return await self.ctx.outage.wait(exc, self._stop_workers)

    async def _retrain(self, routing: Routing | None) -> None:
        """Learn again from agents' category choices now and then."""
        if routing is None:
            return
        period = self._settings.router.retrain_minutes * 60
        while not self._stop_workers.is_set():
            await wait_or_stop(self._stop_workers, period)
            if self._stop_workers.is_set():
                return
            try:
                await routing.retrain()
            except Exception:  # a task root: the next period tries again
                log.exception("router retrain failed")

    async def _serve_http(self, ctx: AppContext) -> None:
        settings = self._settings
        app = make_app(ctx)
        for desk in ctx.desks.values():
            desk.add_routes(app)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=HTTP_CLOSE_S,
            **runner_options(settings.http),
        )
        await self._runner.setup()
        await CappedSite(self._runner, settings.http, settings.http.port).start()
        self.bound_port = int(self._runner.addresses[0][1])

    async def _serve_metrics(self, ctx: AppContext, port: int) -> None:
        """A worker's own small server for Prometheus: /healthz and /metrics."""
        self._runner = web.AppRunner(
            worker_app(ctx),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=HTTP_CLOSE_S,
            **runner_options(self._settings.http),
        )
        await self._runner.setup()
        await CappedSite(self._runner, self._settings.http, port).start()
        self.bound_port = int(self._runner.addresses[0][1])

    async def _start_desk(self, desk: ChatDesk) -> None:
        """A platform's start-up calls and its loops (polling, tickers); a platform that does
        not answer now is reported, and the rest of the service starts."""
        try:
            await desk.open(self._settings.effective_public_url())
        except Exception as exc:  # the platform unreachable now: its updates wait on its side
            log.error(
                "chat platform start failed", extra={"channel": desk.name, "reason": str(exc)[:200]}
            )
            self._say(f"  {desk.name:<9} start failed: {redact(str(exc))} (check DESK_PUBLIC_URL)")
        for name, loop in desk.loops(self._stop_workers).items():
            self._tasks.append(asyncio.create_task(loop, name=name))

    def _start_mailbox(self, ctx: AppContext) -> None:
        """Read the support mailbox (serve only: one reader per mailbox)."""
        settings = self._settings
        if settings.email.disabled_reason() is not None:
            return

        async def handle(parsed: ParsedMail, raw: bytes) -> None:
            await store_mail(
                parsed, raw, ctx.lifecycle.ingest, max_chars=settings.lifecycle.max_text_chars
            )

        reader = MailboxReader(settings.email, handle)
        self._tasks.append(asyncio.create_task(reader.run(self._stop_workers), name="mailbox"))

    def _banner(self, consumer: str, token: str | None) -> None:
        s = self._settings
        report = channel_report(s)
        own_file = db.stream_url(s.database_url)
        if s.redis_url:
            stream = "redis " + db.mask_url(s.redis_url)
        elif own_file is not None:
            stream = f"local, {db.mask_url(own_file)} (DESK_REDIS_URL is not set)"
        else:
            stream = "local, in the database (DESK_REDIS_URL is not set)"
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
        elif self.bound_port is not None:
            self._say(f"  metrics   http://{s.http.host}:{self.bound_port}/metrics  (and /healthz)")
        self._say(f"  workers   intake x{s.workers.intake}, delivery x{s.workers.delivery}")
        checks = self.token_checks
        refused = {name for name, check in checks.items() if not check.ok}
        shown = [
            f"{c}: enabled" + (", token refused" if c in refused else "") for c in report.enabled
        ]
        self._say("  channels  " + ", ".join(shown))
        for name, reason in report.disabled.items():
            self._say(f"            {name}: disabled — {reason}")
        for name in sorted(refused):
            self._say(
                f"  {name:<9} token check failed: {checks[name].text} ({TOKEN_HINTS[name]}; "
                "nothing is sent or received there until it is fixed)"
            )
        who = {name: f"{check.text} · " for name, check in checks.items() if check.ok}
        if "telegram" in report.enabled:
            tg = s.telegram
            staff = (
                f"staff group {tg.staff_chat_id}"
                if tg.staff_chat_id is not None
                else "no staff group (DESK_TELEGRAM__STAFF_CHAT_ID is not set)"
            )
            self._say(f"  telegram  {who.get('telegram', '')}{tg.mode} · {staff}")
        if "vk" in who:
            self._say(f"  vk        {who['vk']}{s.vk.mode}")
        if s.managers.emails:
            count = len(s.managers.emails)
            self._say(
                f"  managers  alerts by mail to {count} address(es) through {s.email.smtp_host}"
            )
        if token:
            self._say(f"  api token {token}")
            self._say(
                "            (created now for 'admin'; shown once: keep it, or make "
                "another with 'appeal-desk token create NAME')"
            )

    async def stop(self) -> None:
        """Stop gracefully: take no new work (HTTP answers 503, polling and stream reads end),
        let what is in flight finish within ``workers.stop_grace_s``, give back the outbox
        rows this process claimed and did not send, close connections."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.workers.stop_grace_s
        if self.ctx is not None:
            self.ctx.gate.close()
            self.ctx.outbox.wake()
        self._stop_workers.set()
        unfinished: list[str] = []
        if self._tasks:
            _, pending = await asyncio.wait(
                self._tasks, timeout=self._settings.workers.stop_grace_s
            )
            unfinished = sorted(task.get_name() for task in pending)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.ctx is not None and not await self.ctx.gate.idle(deadline - loop.time()):
            unfinished.append("http requests")
        if unfinished:
            log.warning("stopped before work in flight finished", extra={"tasks": unfinished})
        released = await self._release_claims()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.ctx is not None:
            await self.ctx.stream.close()
            for desk in self.ctx.desks.values():
                await desk.close()
            webhooks = self.ctx.adapters.get(WEBHOOK_KIND)
            if isinstance(webhooks, WebhookSender):
                await webhooks.close()
            if self.ctx.sms is not None:
                await self.ctx.sms.sender.provider.close()
        await db.disconnect()
        log.info("stopped", extra={"released_outbox_rows": released, "cut_short": unfinished})
        self._say("stopped")

    async def _release_claims(self) -> int:
        """Give back the stream entries and outbox rows this process holds and did not finish;
        returns the count of outbox rows."""
        if self.ctx is None:
            return 0
        try:
            await self.ctx.stream.release()
            return await self.ctx.outbox.release(self._deliverers) if self._deliverers else 0
        except Exception:  # the stop goes on: the claims run out by themselves
            log.exception("claims not released")
            return 0


async def run_until_stopped(
    settings: Settings, role: Role, out: TextIO, stop: asyncio.Event
) -> None:
    """Start a service, wait for ``stop``, and stop it gracefully."""
    service = Service(settings, role, out)
    try:
        await service.start()
        # What start-up built lives as long as the process (the router's model and word forms,
        # templates, settings: millions of objects): out of the collector's sight, a full
        # collection under load walks only what the work made. Without this one paused the
        # event loop, and every webhook answer waiting on it, for up to 0.2 s. (Once a process:
        # tests that start many services in one process leave it alone.)
        gc.collect()
        gc.freeze()
        await stop.wait()
    finally:
        await service.stop()
