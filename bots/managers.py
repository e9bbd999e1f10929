"""The managers' chat: ``/rating [period]`` answers with the figures of customers' ratings and
a chart of them; ``/stats``, ``/sla`` and ``/top`` with the desk's figures, its SLA and what
customers come about (the staff group takes the commands when there is no managers' chat).
Only active agents may ask; anyone else is refused politely, and a bad period is explained."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Router
from aiogram.filters import Filter
from aiogram.types import Message

from bots.deps import BotDeps
from bots.staff_commands import parse_command
from channels.base import DeliveryError, RateLimited
from desk.appeals.agents import active_agent, may_refuse
from desk.config.settings import categories_of
from desk.reports.appeal_report import appeal_report
from desk.reports.charts import rating_chart, volume_chart
from desk.reports.periods import MAX_DAYS, BadPeriod, Period, describe, parse_period, today_in
from desk.reports.rating_report import (
    NONE,
    SCORES,
    UNASSIGNED,
    Breakdown,
    RatingReport,
    rating_report,
)
from desk.reports.report_texts import ReportTexts, percent_text, score_text
from desk.reports.sla_report import sla_report
from desk.reports.top_report import top_report

log = logging.getLogger(__name__)

RATING_COMMANDS = ("rating", "ratings", "оценки")
STATS_COMMANDS = ("stats", "статистика")
SLA_COMMANDS = ("sla",)
TOP_COMMANDS = ("top", "топ")
TOP_LINES = 5  # lines per breakdown: the rest is «… и ещё N»
RETRY_WITHIN_S = 5.0  # a flood wait this short is waited out; a longer one drops the answer


class ReportCommand(Filter):
    """Passes one of ``names`` typed in the reports chat; hands the handler its ``args``."""

    def __init__(self, *names: str) -> None:
        self.names = frozenset(names)

    async def __call__(self, message: Message, deps: BotDeps) -> bool | dict[str, Any]:
        chat = deps.ctx.settings.telegram.reports_chat_id
        if chat is None or message.chat.id != chat:
            return False
        command, args = parse_command(message.text or message.caption or "")
        return {"args": args} if command in self.names else False


def managers_router() -> Router:
    """The handlers of the managers' chat (a new router per dispatcher); include it before
    the staff router, which would call an unknown command out."""
    router = Router(name="managers")
    router.message.register(rating_command, ReportCommand(*RATING_COMMANDS))
    router.message.register(stats_command, ReportCommand(*STATS_COMMANDS))
    router.message.register(sla_command, ReportCommand(*SLA_COMMANDS))
    router.message.register(top_command, ReportCommand(*TOP_COMMANDS))
    return router


async def rating_command(message: Message, deps: BotDeps, args: str) -> None:
    """``/rating [period]``: the figures, then the chart."""
    await ManagerReports(deps).rating(message, args)


async def stats_command(message: Message, deps: BotDeps, args: str) -> None:
    """``/stats [period]``: volume, times, SLA, backlog, ratings, then the chart."""
    await ManagerReports(deps).stats(message, args)


async def sla_command(message: Message, deps: BotDeps, args: str) -> None:
    """``/sla [period]``: the SLA figures."""
    await ManagerReports(deps).sla(message, args)


async def top_command(message: Message, deps: BotDeps, args: str) -> None:
    """``/top [period]``: the most frequent categories and phrases."""
    await ManagerReports(deps).top(message, args)


class ManagerReports:
    """Answers one report command, straight to the chat it came from."""

    def __init__(self, deps: BotDeps) -> None:
        self.deps = deps
        self.ctx = deps.ctx
        self.lang = deps.ctx.settings.company.language
        self.zone = ZoneInfo(deps.ctx.settings.company.timezone)

    def s(self, key: str, **values: Any) -> str:
        """A string for the chat, escaped for Telegram HTML."""
        return html.escape(self.ctx.texts.string(key, self.lang, **values), quote=False)

    async def period(self, message: Message, args: str) -> Period | None:
        """The period asked for by an active agent; None (after saying why) otherwise."""
        user = message.from_user
        if user is None or user.is_bot:
            return None
        if await active_agent(user.id) is None:
            if await may_refuse(user.id, self.ctx.clock(), scope="report_refused"):
                await self.reply(message, self.s("report.not_agent"))
            return None
        try:
            return parse_period(args, self.ctx.clock(), self.zone)
        except BadPeriod as exc:
            await self.reply(message, self.bad_period(exc))
            return None

    async def rating(self, message: Message, args: str) -> None:
        """Check who asks, read the period, count, answer with the text and the chart."""
        period = await self.period(message, args)
        if period is None:
            return
        report = await rating_report(period)
        title = self.ctx.texts.string("report.chart.title", self.lang, period=self.days(period))
        await self.reply(message, self.figures(report))
        await self.chart(
            message,
            lambda: rating_chart(report, self.lang, title, texts=self.ctx.texts),
            f"ratings-{period.first_day.isoformat()}.png",
            title,
        )

    async def stats(self, message: Message, args: str) -> None:
        """``/stats [period]``: the desk's figures, then appeals per day as a chart."""
        period = await self.period(message, args)
        if period is None:
            return
        report = await appeal_report(period, self.ctx.clock(), self.zone)
        words = ReportTexts(self.ctx.texts, self.ctx.settings)
        title = words.s("stats.chart.title", period=self.days(period))
        await self.reply(message, words.stats(report))
        await self.chart(
            message,
            lambda: volume_chart(report.buckets, self.lang, title, texts=self.ctx.texts),
            f"appeals-{period.first_day.isoformat()}.png",
            title,
        )

    async def sla(self, message: Message, args: str) -> None:
        """``/sla [period]``: first answers and resolutions against their due times."""
        period = await self.period(message, args)
        if period is not None:
            report = await sla_report(period, self.zone, today_in(self.ctx.clock(), self.zone))
            await self.reply(message, ReportTexts(self.ctx.texts, self.ctx.settings).sla(report))

    async def top(self, message: Message, args: str) -> None:
        """``/top [period]``: what customers come about most, against the period before."""
        period = await self.period(message, args)
        if period is not None:
            today = today_in(self.ctx.clock(), self.zone)
            report = await top_report(period, self.zone, today)
            await self.reply(message, ReportTexts(self.ctx.texts, self.ctx.settings).top(report))

    async def chart(
        self, message: Message, draw: Callable[[], bytes], filename: str, title: str
    ) -> None:
        """Draw a chart in a thread and send it as a photo; a failure is said, not hidden."""
        try:
            png = await asyncio.to_thread(draw)
        except Exception:  # the figures are out already: say so rather than go silent
            log.exception("report chart failed", extra={"chart": filename})
            await self.reply(message, self.s("report.chart_failed"))
            return
        await self._deliver(
            message,
            lambda: self.deps.sender.send_photo(
                message.chat.id,
                png,
                filename=filename,
                caption=html.escape(title, quote=False),
                html=True,
                thread_id=_thread_of(message),
            ),
        )

    def bad_period(self, exc: BadPeriod) -> str:
        """Why the period cannot be used, in the chat's language."""
        if exc.reason == "date":
            return self.s("report.bad_date", text=exc.text)
        if exc.reason == "order":
            return self.s("report.bad_order", text=exc.text)
        if exc.reason == "length":
            return self.s("report.bad_length", text=exc.text, days=MAX_DAYS)
        return self.s("report.bad_period", text=exc.text)

    def days(self, period: Period) -> str:
        """The period's days as people write them in this language."""
        return describe(period, self.ctx.texts.string("report.date_format", self.lang))

    def figures(self, report: RatingReport) -> str:
        """The report as the chat reads it (Telegram HTML from the template)."""
        settings = self.ctx.settings
        categories = {c.id: c.title.get(self.lang) or c.id for c in categories_of(settings)}
        teams = {t.id: t.title or t.id for t in settings.teams}
        groups = [
            self._group("report.by_agent", report.by_agent, {}),
            self._group("report.by_category", report.by_category, categories),
            self._group("report.by_team", report.by_team, teams),
            self._group("report.by_channel", report.by_channel, {}),
        ]
        total = report.count
        return self.ctx.texts.render(
            "telegram/rating_report.html.j2",
            self.lang,
            period=self.days(report.period),
            count=total,
            count_word=self.ctx.texts.plural("report.ratings", total, self.lang),
            average=score_text(report.average),
            distribution=[
                {
                    "score": score,
                    "count": report.distribution[score],
                    "percent": round(100 * report.distribution[score] / total) if total else 0,
                }
                for score in reversed(SCORES)
            ],
            sent=report.requests_sent,
            answered=report.requests_answered,
            rate=percent_text(report.response_rate),
            groups=[g for g in groups if g["lines"]],
        ).strip()

    def _group(self, title: str, lines: list[Breakdown], names: dict[str, str]) -> dict[str, Any]:
        shown = [
            {
                "name": self._name(line, names),
                "average": score_text(line.average),
                "count": line.count,
            }
            for line in lines[:TOP_LINES]
        ]
        return {
            "title": self.ctx.texts.string(title, self.lang),
            "lines": shown,
            "more": max(0, len(lines) - TOP_LINES),
        }

    def _name(self, line: Breakdown, names: dict[str, str]) -> str:
        if line.agent_id is None and line.key == UNASSIGNED:
            return self.ctx.texts.string("report.unassigned", self.lang)
        if line.key == NONE:
            return self.ctx.texts.string("report.none", self.lang)
        return names.get(line.key, line.name)

    async def reply(self, message: Message, text: str) -> None:
        """Answer the command in its chat (and topic)."""
        await self._deliver(
            message,
            lambda: self.deps.sender.send(
                message.chat.id,
                text,
                html=True,
                thread_id=_thread_of(message),
                reply_to=message.message_id,
            ),
        )

    async def _deliver(self, message: Message, send: Callable[[], Awaitable[object]]) -> None:
        """Send now; a short flood wait is waited out once, any other failure is logged (the
        command can simply be typed again)."""
        for attempt in (1, 2):
            try:
                await send()
                return
            except RateLimited as exc:
                if attempt == 2 or exc.retry_after > RETRY_WITHIN_S:
                    log.warning("report answer dropped: rate limited", extra=_where(message))
                    return
                await asyncio.sleep(exc.retry_after)
            except DeliveryError:
                log.warning("report answer failed", extra=_where(message))
                return


def _thread_of(message: Message) -> int | None:
    return message.message_thread_id if message.is_topic_message else None


def _where(message: Message) -> dict[str, Any]:
    return {"chat_id": message.chat.id, "message_id": message.message_id}
