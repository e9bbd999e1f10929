"""The service's Prometheus metrics, kept in a registry of its own (never the global one), so
several desks in one process (tests, a bench) count apart."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from tortoise.functions import Count, Min

from channels.base import DeliveryError, RateLimited, Rejected, Unreachable
from channels.stream import AppealStream
from models import OutboxItem, OutboxStatus
from models.db import causes

log = logging.getLogger(__name__)

PREFIX = "appeal_desk"
WAITING = (OutboxStatus.PENDING, OutboxStatus.SENDING)
_SERVER_ERROR = re.compile(r"\bhttp 5\d\d\b|server error|bad gateway|service unavailable")
_TIMEOUT = re.compile(r"time ?out|timed out")


def failure_reason(exc: BaseException) -> str:
    """The ``reason`` label of a failed delivery attempt: rate_limited, unreachable (blocked,
    unknown chat, refused recipient), rejected, timeout, server_error, network, error, or
    internal (an adapter bug)."""
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, Unreachable):
        return "unreachable"
    if isinstance(exc, Rejected):
        return "rejected"
    if not isinstance(exc, DeliveryError):
        return "internal"
    chain = list(causes(exc))
    text = str(exc).lower()
    if any(isinstance(c, TimeoutError) for c in chain) or _TIMEOUT.search(text):
        return "timeout"
    if _SERVER_ERROR.search(text):
        return "server_error"
    if any(isinstance(c, OSError) for c in chain):
        return "network"
    return "error"


class Metrics:
    """Counters and histograms the workers feed, gauges read from the database and the stream
    when scraped."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=registry)

        self.messages_in = counter(
            "messages_in", "Customer messages stored (not duplicates or edits).", ("channel",)
        )
        self.messages_out = counter(
            "messages_out", "Outbox rows delivered, by channel.", ("channel",)
        )
        self.delivery_failures = counter(
            "delivery_failures",
            "Failed delivery attempts, by channel and reason.",
            ("channel", "reason"),
        )
        self.messages_failed = counter(
            "messages_failed", "Outbox rows given up for good, by channel.", ("channel",)
        )
        self.sla_warnings = counter("sla_warnings", "SLA warnings raised, by target.", ("target",))
        self.sla_breaches = counter("sla_breaches", "SLA breaches raised, by target.", ("target",))
        self.job_runs = counter("job_runs", "Daily job runs started in this process.", ("job",))
        self.job_failures = counter("job_failures", "Daily job runs that failed.", ("job",))
        self.scrape_errors = counter(
            "scrape_errors", "Gauges that could not be read at a scrape.", ("source",)
        )
        self.process = Info(
            f"{PREFIX}_process", "This process: serve or worker, and its name", registry=registry
        )
        self.intake_seconds = Histogram(
            f"{PREFIX}_intake_seconds",
            "Time to store one inbound message (the intake handler).",
            ("channel",),
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            f"{PREFIX}_delivery_seconds",
            "Time to deliver one outbox row, failures included.",
            ("channel",),
            registry=registry,
        )
        self.database_up = Gauge(
            f"{PREFIX}_database_up",
            "1 while this process's workers reach the database, 0 while they wait out an outage.",
            registry=registry,
        )
        self.database_up.set(1)
        self.database_outages = Counter(
            f"{PREFIX}_database_outages",
            "Database outages this process's workers waited out (entries kept, not retried "
            "as failures).",
            registry=registry,
        )
        self.stream_lag = gauge(
            "stream_lag", "Intake stream entries not handed out yet.", ("backend",)
        )
        self.stream_pending = gauge(
            "stream_pending", "Intake stream entries handed out and not acknowledged.", ("backend",)
        )
        self.stream_dead = gauge(
            "stream_dead", "Intake stream entries set aside as unprocessable.", ("backend",)
        )
        self.outbox_backlog = gauge(
            "outbox_backlog", "Outbox rows waiting to be delivered, by channel.", ("channel",)
        )
        self.outbox_oldest_seconds = gauge(
            "outbox_oldest_seconds",
            "Age of the oldest outbox row waiting to be delivered, by channel.",
            ("channel",),
        )

    # -- what the workers report ------------------------------------------------------------

    def delivery_failed(self, channel: str, exc: BaseException) -> None:
        """Count one failed delivery attempt."""
        self.delivery_failures.labels(channel, failure_reason(exc)).inc()

    def sla_raised(self, kind: str, target: str) -> None:
        """Count an ``sla.warning`` or ``sla.breached`` event (after its commit)."""
        counter = self.sla_breaches if kind == "sla.breached" else self.sla_warnings
        counter.labels(target).inc()

    def started(self, role: str, name: str) -> None:
        """Name this process in every scrape (``appeal_desk_process_info{role, name}``)."""
        self.process.info({"role": role, "name": name})

    # -- the scrape ---------------------------------------------------------------------------

    def own(self) -> bytes:
        """The text exposition of what this process counted, without the shared gauges (a
        ``worker``: ``serve`` reads those for everyone)."""
        return generate_latest(self.registry)

    async def exposition(
        self, stream: AppealStream, channels: Iterable[str], now: Callable[[], datetime]
    ) -> bytes:
        """The text exposition, with the stream and outbox gauges read now."""
        await self._read_stream(stream)
        await self._read_outbox(channels, now())
        return self.own()

    async def _read_stream(self, stream: AppealStream) -> None:
        try:
            stats = await stream.stats()
        except Exception as exc:  # the scrape still answers with what it has
            self._unreadable("stream", exc, self.stream_lag, self.stream_pending, self.stream_dead)
            return
        self.stream_lag.labels(stream.name).set(stats.lag)
        self.stream_pending.labels(stream.name).set(stats.pending)
        self.stream_dead.labels(stream.name).set(stats.dead)

    async def _read_outbox(self, channels: Iterable[str], now: datetime) -> None:
        try:
            rows = (
                await OutboxItem.filter(status__in=list(WAITING))
                .annotate(rows=Count("id"), oldest=Min("created_at"))
                .group_by("channel")
                .values("channel", "rows", "oldest")
            )
        except Exception as exc:  # the scrape still answers with what it has
            self._unreadable("outbox", exc, self.outbox_backlog, self.outbox_oldest_seconds)
            return
        self.outbox_backlog.clear()
        self.outbox_oldest_seconds.clear()
        for channel in channels:
            self.outbox_backlog.labels(channel).set(0)
            self.outbox_oldest_seconds.labels(channel).set(0)
        for row in rows:
            oldest = row["oldest"]
            age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
            self.outbox_backlog.labels(row["channel"]).set(row["rows"])
            self.outbox_oldest_seconds.labels(row["channel"]).set(age)

    def _unreadable(self, source: str, exc: Exception, *gauges: Gauge) -> None:
        log.warning(
            "metrics source unreadable",
            extra={"source": source, "error": f"{type(exc).__name__}: {exc}"[:200]},
        )
        self.scrape_errors.labels(source).inc()
        for gauge in gauges:
            gauge.clear()  # no stale value that looks current
