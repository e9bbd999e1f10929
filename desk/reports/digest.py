"""The managers' morning digest: yesterday's figures, SLA breaches, low ratings and the backlog,
with a chart of the last days, posted once a day (whichever process claims the day) at
``reports.digest_at`` through the outbox; and the nightly counts of the finished days' figures
and of customers' phrases."""

from __future__ import annotations

import asyncio
import logging
from datetime import time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from channels.base import STAFF_CHANNEL, Attachment
from desk.context import AppContext
from desk.ops.scheduler import Daily
from desk.reports.appeal_report import appeal_report, buckets
from desk.reports.charts import volume_chart
from desk.reports.periods import parse_period, period_of_days, today_in
from desk.reports.phrases import backfill
from desk.reports.report_days import catch_up
from desk.reports.report_texts import ReportTexts, score_text
from desk.reports.sla_report import latest_breaches
from models import Rating, StoredFile

log = logging.getLogger(__name__)

PHRASES_AT = time(0, 20)  # a finished day's phrases are counted just after midnight
DAYS_AT = time(0, 10)  # and its figures
BREACHES_LISTED = 10
LOW_SCORE = 2
LOW_LISTED = 10
COMMENT_CHARS = 120
TOP_CATEGORIES = 3
QUEUE = "staff:managers"


def report_jobs(ctx: AppContext) -> list[Daily]:
    """The daily jobs of reports: the finished days' figures and phrases always, the digest
    where it has a chat to go to."""
    settings = ctx.settings
    zone = ZoneInfo(settings.company.timezone)

    async def figures() -> int:
        return await catch_up(today_in(ctx.clock(), zone), zone)

    async def phrases() -> int:
        return await backfill(today_in(ctx.clock(), zone), zone)

    jobs = [
        Daily("report-days", DAYS_AT, zone, figures),
        Daily("phrases", PHRASES_AT, zone, phrases),
    ]
    digest_at = settings.reports.digest_at
    if (
        digest_at is not None
        and settings.telegram.staff_chat_id is not None
        and "telegram" in ctx.desks
    ):
        jobs.append(Daily("digest", digest_at, zone, Digest(ctx).post))
    return jobs


class Digest:
    """Yesterday in the managers' chat (the staff group when there is none)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.words = ReportTexts(ctx.texts, ctx.settings)
        self.zone = ZoneInfo(ctx.settings.company.timezone)

    async def text(self) -> str:
        """The digest of the day before ``ctx.clock()``, as Telegram HTML."""
        now = self.ctx.clock()
        yesterday = parse_period("yesterday", now, self.zone)
        report = await appeal_report(yesterday, now, self.zone)
        words = self.words
        low = (
            await Rating.filter(day=yesterday.first_day, score__lte=LOW_SCORE)
            .order_by("score", "id")
            .limit(LOW_LISTED)
            .values("appeal__number", "order__external_id", "score", "comment")
        )
        channels = ", ".join(
            f"{words.name(line, 'channel')} {line.count}" for line in report.by_channel
        )
        top = ", ".join(
            f"{words.name(line, 'category')} {line.count}"
            for line in report.by_category[:TOP_CATEGORIES]
        )
        return words.texts.render(
            "telegram/digest.html.j2",
            words.lang,
            day=words.days(yesterday),
            created=report.created,
            channels=channels,
            done=report.resolution.times.count,
            first=words.target(report.first_response),
            resolution=words.target(report.resolution),
            breaches=words.breaches(await latest_breaches(yesterday, BREACHES_LISTED)),
            breach_count=report.first_response.breaches + report.resolution.breaches,
            low=[_low_line(row) for row in low],
            average=score_text(report.ratings.average),
            rating_count=report.ratings.count,
            backlog=words.backlog(report.backlog),
            top=top,
        ).strip()

    async def chart(self) -> bytes:
        """Appeals per day over ``reports.digest_days`` days up to yesterday, as a PNG."""
        today = today_in(self.ctx.clock(), self.zone)
        last = today - timedelta(days=1)
        days = self.ctx.settings.reports.digest_days
        period = period_of_days(last - timedelta(days=days - 1), last, self.zone)
        title = self.words.s("stats.chart.title", period=self.words.days(period))
        rows = await buckets(period, self.zone, today)
        return await asyncio.to_thread(
            volume_chart, rows, self.words.lang, title, texts=self.ctx.texts
        )

    async def post(self) -> str:
        """Queue the text and the chart for the managers' chat; returns what was queued."""
        settings = self.ctx.settings
        chat = settings.telegram.reports_chat_id
        staff = settings.telegram.staff_chat_id
        if chat is None or staff is None:
            return "no chat"
        text = await self.text()
        try:
            png: bytes | None = await self.chart()
        except Exception:  # the figures matter more than the picture
            log.exception("digest chart failed")
            png = None
        extra: dict[str, Any] = {"kind": "post", "chat": chat}
        async with in_transaction():
            await self.ctx.outbox.enqueue(
                channel=STAFF_CHANNEL,
                address=str(staff),
                text=text,
                fmt="html",
                extra=extra,
                queue=QUEUE,
            )
            if png is not None:
                day = today_in(self.ctx.clock(), self.zone).isoformat()
                stored = await StoredFile.keep(png, name=f"digest-{day}.png", mime="image/png")
                await self.ctx.outbox.enqueue(
                    channel=STAFF_CHANNEL,
                    address=str(staff),
                    text="",
                    fmt="html",
                    attachments=[
                        Attachment(
                            "photo", stored.ref, name=stored.name, mime="image/png", size=len(png)
                        )
                    ],
                    extra=extra,
                    queue=QUEUE,
                )
        self.ctx.outbox.wake()
        return f"digest for chat {chat}" + (" with chart" if png is not None else "")


def _low_line(row: dict[str, Any]) -> dict[str, Any]:
    comment = str(row["comment"] or "").strip()
    if len(comment) > COMMENT_CHARS:
        comment = comment[: COMMENT_CHARS - 1] + "…"
    return {
        "number": row["appeal__number"] or row["order__external_id"] or "—",
        "score": row["score"],
        "comment": comment,
    }
