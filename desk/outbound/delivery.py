"""The delivery worker: outbox rows out through channel adapters, with retries and backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from tortoise.expressions import F, Q, Subquery
from tortoise.functions import Min
from tortoise.models import Model
from tortoise.transactions import in_transaction

from channels.base import (
    Attachment,
    ChannelAdapter,
    DeliveryError,
    OutboundMessage,
    RateLimited,
    Rejected,
    Unavailable,
    Unreachable,
)
from channels.group_commit import GroupCommit
from desk.appeals.event_types import Undelivered
from desk.appeals.events import EventBus
from desk.appeals.lifecycle import appeal_number
from desk.appeals.outbox import Outbox
from desk.ops.log_context import log_scope
from desk.ops.metrics import Metrics
from desk.ops.outage import OutageWatch
from models import (
    Appeal,
    Customer,
    DeliveryState,
    Direction,
    Message,
    OutboxItem,
    OutboxStatus,
    db,
    sql,
)

log = logging.getLogger(__name__)

SCAN_LIMIT = 500
PARALLEL = 16
MIN_PASS_S = 0.05  # at most 20 passes a second while a backlog waits and nothing is due
BACKLOG_ROWS = 100
CLAIM_SHARE = 0.1  # of a worker's time, at most, for the claim's query (see pace)
PACE_MAX_S = 2.0
HELD_IN_CLAIM = 1_000  # held destinations the claim's query leaves out by itself
SLOW_SEND_S = 0.5  # a pass waits this long for its sends; the rest go on beside later passes
THREAD_IDS = 50  # of an appeal's message ids, for an adapter that threads (mail)
MAX_SLOW = 64  # … as long as no more than this many do (else the pass waits for them all)
MAX_BACKOFF_S = 900.0
NO_ADAPTER_RETRY_S = 300.0
OUTAGE_RETRY_S = 1.0  # a send the database kept from starting goes again this soon after
UnreachableHook = Callable[[OutboxItem, str], Awaitable[None]]

M = TypeVar("M", bound=Model)


class PassContext:
    """What a pass's rows refer to, loaded on the first ask with one IN-query for the whole
    pass: the rows' appeals, their customers, the customer messages they relay."""

    def __init__(self, items: list[OutboxItem]) -> None:
        self._items = items
        self._loading: dict[type[Model], asyncio.Future[dict[int, Model]]] = {}

    async def get(self, model: type[M], row_id: int) -> M | None:
        if model not in self._loading:  # the pass's other sends wait for the same query
            self._loading[model] = asyncio.ensure_future(self._load(model))
        found = (await self._loading[model]).get(row_id)
        return found if isinstance(found, model) else None

    async def _load(self, model: type[Model]) -> dict[int, Model]:
        if model is Appeal:
            ids = {i.appeal_id for i in self._items if i.appeal_id is not None}
        elif model is Customer:
            appeals = await asyncio.gather(
                *(self.get(Appeal, i.appeal_id) for i in self._items if i.appeal_id is not None)
            )
            ids = {a.customer_id for a in appeals if a is not None}
        elif model is Message:
            extras = (i.payload.get("extra") or {} for i in self._items)
            ids = {
                int(extra["message_id"])
                for extra in extras
                if isinstance(extra, dict) and extra.get("message_id")
            }
        else:
            ids = set()
        return {row.pk: row for row in await model.filter(id__in=ids)} if ids else {}


_pass: ContextVar[PassContext | None] = ContextVar("delivery_pass", default=None)


async def passed(model: type[M], row_id: int) -> M | None:
    """The ``model`` row with ``row_id`` (an appeal, a customer, a message), read with the
    rest of the delivery pass's when called inside one, else read now; None when it is gone."""
    context = _pass.get()
    if context is not None:
        found = await context.get(model, row_id)
        if found is not None:
            return found
    return await model.get_or_none(id=row_id)


Destination = tuple[str, str]  # (channel, address): what a platform's rate limit applies to


def pace(claim_s: float) -> float:
    """The least time from one pass's start to the next one's, given how long the claim's
    query takes: the query reads every waiting row, so a backlog (a staff group that may have
    20 posts a minute, a channel down for hours) makes it slow, and passes back to back would
    keep the database busy looking instead of storing what customers write. Its share of the
    time stays under CLAIM_SHARE, and the pause under PACE_MAX_S (an answer waits no longer
    than that for the next pass); a quick claim (milliseconds) changes nothing."""
    return min(claim_s / CLAIM_SHARE, PACE_MAX_S)


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed try: 2, 4, 8 … up to 15 minutes."""
    base = min(MAX_BACKOFF_S, 2.0 ** max(1, attempts))
    return base * random.uniform(0.8, 1.2)


def claimable(now: datetime) -> Q:
    """The rows a claim may take by their own columns: waiting, and not under a live lease.

    The status is part of it, not only of the claim's subquery: PostgreSQL checks a row that
    another worker changed during the claim's scan again by the row's own conditions alone
    (READ COMMITTED), and a row that worker had just sent, its lease cleared, passed as free
    and went a second time."""
    unleased = Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    return Q(status=OutboxStatus.PENDING) | Q(Q(status=OutboxStatus.SENDING), unleased)


class DeliveryWorker:
    """Claims due outbox rows (one per conversation at a time) and delivers them."""

    def __init__(
        self,
        outbox: Outbox,
        adapters: Mapping[str, ChannelAdapter],
        clock: Callable[[], datetime],
        *,
        name: str,
        lease_s: float = 60.0,
        max_attempts: int = 12,
        idle_s: float = 1.0,
        events: EventBus | None = None,
        on_unreachable: UnreachableHook | None = None,
        metrics: Metrics | None = None,
        outage: OutageWatch | None = None,
    ) -> None:
        self._outbox = outbox
        self._adapters = adapters
        self._clock = clock
        self._name = name
        self._lease = timedelta(seconds=lease_s)
        self._max_attempts = max_attempts
        self._idle = idle_s
        self._events = events or EventBus()
        self._on_unreachable = on_unreachable
        self._metrics = metrics or Metrics()
        self._outage = outage or OutageWatch(self._metrics)
        self._scanned = 0  # rows the last pass looked at
        # How long the claim's query takes: the shorter of the last two, since one slow answer
        # may be the event loop's (busy with a batch), not the query's.
        self._claim_s = 0.0
        self._last_claim_s = 0.0
        # Destinations the platform asked to wait (429), until when: their rows are neither
        # claimed nor tried meanwhile (a flood into the staff group would otherwise have every
        # pass render and reschedule its whole backlog).
        self._holds: dict[Destination, datetime] = {}
        # Sends waiting long for the platform's answer (a late answer is no failure: the post
        # may be in the chat), by row id: later passes go on meanwhile, other chats are served.
        self._slow: dict[int, asyncio.Future[None]] = {}
        # Sends recorded together: those that finish while a record is written go in the next.
        self._recorder: GroupCommit[tuple[OutboxItem, str], None] = GroupCommit(
            self._sent, max_batch=SCAN_LIMIT
        )

    @property
    def name(self) -> str:
        """The worker's name on the rows it claims (``locked_by``)."""
        return self._name

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; a failing pass is logged and retried, never fatal.
        Sends under way when it is set finish; claimed rows not yet started are given back."""
        try:
            await self.take_back()
        except Exception:  # a task root: the leases run out by themselves
            log.exception("taking back leased rows failed")
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                started = loop.time()
                try:
                    with sql.inline():  # a pass's statements are short: no thread hop each
                        handled = await self.deliver_due(stop, slow_beside=True)
                except Exception as exc:  # a task root: log and keep the worker alive
                    handled = 0
                    if db.is_outage(exc) and await self._outage.wait(exc, stop):
                        await self._take_back_after_outage()
                    else:
                        log.exception("delivery pass failed")
                if not handled:
                    await self._outbox.wait(timeout=self._idle)
                # Intake wakes us after every message: with a backlog, one scan per MIN_PASS_S
                # serves them all instead of one scan of the backlog per message.
                least = MIN_PASS_S if not handled and self._scanned >= BACKLOG_ROWS else 0.0
                rest = max(least, pace(self._claim_s)) - (loop.time() - started)
                if rest > 0 and not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), rest)
            await self.finish_slow()
        finally:  # cancelled: their rows stay leased, taken back by the next start
            for send in list(self._slow.values()):
                send.cancel()

    async def finish_slow(self) -> None:
        """Wait for the sends still waiting for their answers (each records its own outcome)."""
        if self._slow:
            await asyncio.wait(list(self._slow.values()))

    async def take_back(self) -> int:
        """Free the rows leased under this worker's name by a process that died (a restart
        with the same name): they go again now instead of after the lease. Returns the count.

        Whether such a row reached the customer is unknown: it is sent again (at least once).
        """
        mine = OutboxItem.filter(status=OutboxStatus.SENDING, locked_by=self._name)
        if self._slow:  # still waiting for their answers: not to be sent again
            mine = mine.exclude(id__in=list(self._slow))
        taken = await mine.update(locked_until=None)
        if taken:
            log.warning("leased rows taken back", extra={"worker": self._name, "rows": taken})
        return int(taken)

    async def _take_back_after_outage(self) -> None:
        """Rows this worker claimed when the database went away were never sent (every send of
        the pass has finished and recorded its outcome): they go now, not after the lease."""
        try:
            await self.take_back()
        except Exception:  # a task root's helper: the leases run out by themselves
            log.exception("taking back leased rows failed")

    async def deliver_due(
        self, stop: asyncio.Event | None = None, *, slow_beside: bool = False
    ) -> int:
        """One pass: claim every conversation's next due row and deliver them; returns how many
        were tried (rows of a held destination are given back untried, and do not count: a pass
        that met only those is an idle one). Once ``stop`` is set, rows still waiting for their
        turn are given back unsent. With ``slow_beside`` (the worker's own loop), sends still
        waiting for their answers after SLOW_SEND_S go on beside the next passes (``finish_slow``
        waits for them); else the pass waits for every send.

        Each send is recorded before its task ends, group-committed with the sends that finished
        meanwhile (one UPDATE of their rows, one of their messages, one commit). A process that
        dies between a send and its record sends it again (at least once)."""
        claimed = await self._claim()
        if not claimed:
            return 0
        token = _pass.set(PassContext(claimed))  # the sends below start with it
        try:
            return await self._deliver_all(claimed, stop, slow_beside)
        finally:
            _pass.reset(token)

    async def _deliver_all(
        self, claimed: list[OutboxItem], stop: asyncio.Event | None, slow_beside: bool
    ) -> int:
        gate = asyncio.Semaphore(PARALLEL)
        held: list[int] = []  # rows whose destination was told to wait during this pass
        over = False  # the pass has ended; its slow sends go on

        async def one(item: OutboxItem) -> None:
            async with gate:
                if stop is not None and stop.is_set():
                    await self._outbox.release([self._name], [item.id])
                    return
                if self._is_held(item):
                    if over:
                        await self._outbox.release([self._name], [item.id])
                    else:
                        held.append(item.id)
                    return
                await self._deliver(item, stop)

        sends = {asyncio.ensure_future(one(item)): item.id for item in claimed}
        try:
            done, slow = await asyncio.wait(sends, timeout=SLOW_SEND_S if slow_beside else None)
            if slow and len(slow) + len(self._slow) > MAX_SLOW:
                await asyncio.wait(slow)  # too many waiting: this pass waits for them all
                done, slow = set(sends), set()
        except asyncio.CancelledError:  # the worker is cancelled: none is left running unowned
            for send in sends:
                send.cancel()
            raise
        for send in slow:  # waiting for late answers: the next passes go on meanwhile
            self._slow[sends[send]] = send
            send.add_done_callback(partial(self._slow_done, sends[send]))
        over = True
        if held:  # untried: given back as they were, claimed again once the wait is over
            await self._outbox.release([self._name], held)
        for send in done:  # every send has finished before a failure is raised
            if not send.cancelled() and (exc := send.exception()) is not None:
                raise exc
        return len(claimed) - len(held)

    def _slow_done(self, row_id: int, send: asyncio.Future[None]) -> None:
        """A send that waited long has its answer (and has recorded it)."""
        self._slow.pop(row_id, None)
        if not send.cancelled() and (exc := send.exception()) is not None:
            log.error("a slow send failed", exc_info=exc, extra={"outbox_id": row_id})

    def _is_held(self, item: OutboxItem) -> bool:
        """Whether the platform asked to wait before the next send to ``item``'s destination."""
        until = self._holds.get((item.channel, item.address))
        return until is not None and until > self._clock()

    def _hold(self, item: OutboxItem, seconds: float) -> None:
        """Hold every row of ``item``'s destination for ``seconds`` (a 429's retry_after)."""
        until = self._clock() + timedelta(seconds=seconds)
        key = (item.channel, item.address)
        self._holds[key] = max(until, self._holds.get(key, until))

    def _held(self, now: datetime) -> dict[str, list[str]]:
        """The addresses still held at ``now`` by channel, the longest waits first and at most
        HELD_IN_CLAIM of them (the ones whose wait is over are dropped).

        Each list is padded to a power of two with its last address: the claim's SQL text then
        changes only when the count doubles, so asyncpg's statement cache is not filled with a
        text per count of held chats."""
        self._holds = {key: until for key, until in self._holds.items() if until > now}
        longest = sorted(self._holds.items(), key=lambda hold: hold[1], reverse=True)
        held: dict[str, list[str]] = {}
        for channel, address in (key for key, _ in longest[:HELD_IN_CLAIM]):
            held.setdefault(channel, []).append(address)
        for addresses in held.values():
            padded = 1 << (len(addresses) - 1).bit_length()
            addresses += addresses[-1:] * (padded - len(addresses))
        return held

    def _claim_took(self, seconds: float) -> None:
        """The claim's query took ``seconds``: the pace follows the shorter of the last two."""
        self._claim_s, self._last_claim_s = min(seconds, self._last_claim_s), seconds

    async def _claim(self) -> list[OutboxItem]:
        now = self._clock()
        # Only the oldest row of a conversation may go; of those, the ones due now and not under
        # another worker's lease. A row held for quiet hours or waiting to retry blocks its own
        # conversation, nobody else's.
        waiting = [OutboxStatus.PENDING, OutboxStatus.SENDING]
        oldest = (
            OutboxItem.filter(status__in=waiting)
            .group_by("queue_key")
            .annotate(first=Min("id"))
            .values("first")
        )
        free = claimable(now)
        until = now + self._lease
        due = OutboxItem.filter(free, id__in=Subquery(oldest), next_attempt_at__lte=now)
        # Held destinations are left out here, one condition per channel; past HELD_IN_CLAIM the
        # pass gives their rows back untried (a longer query would cost more than it saves).
        # Not .exclude(channel=…, address__in=…): tortoise negates each of its conditions alone.
        for channel, addresses in self._held(now).items():
            due = due.filter(~Q(channel=channel, address__in=addresses))
        if self._slow:  # waiting for their answers (past their lease, too: never sent twice)
            due = due.exclude(id__in=list(self._slow))
        async with in_transaction():  # one commit for the pass's claims
            # PostgreSQL: rows another worker is claiming are skipped, not waited for.
            looking = time.perf_counter()
            heads = await (
                due.order_by("id").limit(SCAN_LIMIT).select_for_update(skip_locked=True).only("id")
            )
            self._claim_took(time.perf_counter() - looking)
            self._scanned = len(heads)
            if not heads:
                return []
            ids = [row.id for row in heads]
            # The condition again: a second process on one SQLite file may have claimed a row
            # between the two statements; it stays theirs.
            await OutboxItem.filter(free, id__in=ids).update(
                status=OutboxStatus.SENDING,
                locked_by=self._name,
                locked_until=until,
                attempts=F("attempts") + 1,
            )
        # Payloads are loaded for the rows won only.
        return list(
            await OutboxItem.filter(id__in=ids, locked_by=self._name, locked_until=until).order_by(
                "id"
            )
        )

    async def _deliver(self, item: OutboxItem, stop: asyncio.Event | None = None) -> None:
        """Try ``item`` once and record the outcome (a send with the others finishing now)."""
        number = appeal_number(item.appeal_id) if item.appeal_id is not None else None
        started = time.perf_counter()
        with log_scope(appeal=number, channel=item.channel):
            outcome = await self._deliver_one(item)
            record = (
                partial(self._recorder.publish, [(item, outcome)])
                if isinstance(outcome, str)
                else outcome
            )
            # What happened is known: the database being out must not lose it (a send not
            # recorded would go again after the lease).
            await self._outage.retry(record, stop)
        self._metrics.delivery_seconds.labels(item.channel).observe(time.perf_counter() - started)

    async def _deliver_one(self, item: OutboxItem) -> str | Callable[[], Awaitable[None]]:
        """One attempt; returns the platform's id of what was sent, or how to record the
        failure."""
        adapter = self._adapters.get(item.channel)
        if adapter is None:
            self._metrics.delivery_failures.labels(item.channel, "no_adapter").inc()
            return partial(
                self._retry_later,
                item,
                f"channel {item.channel} is not enabled",
                NO_ADAPTER_RETRY_S,
                count_attempt=False,
            )
        try:
            external_id = await self._attempt(adapter, item)
        except RateLimited as exc:
            self._hold(item, exc.retry_after)
            return partial(self._retry_later, item, str(exc), exc.retry_after, count_attempt=False)
        except Unreachable as exc:
            return partial(self._fail, item, str(exc), unreachable=True)
        except Unavailable as exc:  # the channel is out for now: rerouted like a dead address
            return partial(self._fail, item, str(exc), unreachable=True)
        except Rejected as exc:
            return partial(self._fail, item, str(exc))
        except DeliveryError as exc:
            if item.attempts >= self._max_attempts:
                return partial(self._fail, item, f"gave up after {item.attempts} attempts: {exc}")
            return partial(self._retry_later, item, str(exc), backoff(item.attempts))
        except Exception as exc:  # an adapter bug must not kill the worker or lose the row
            if db.is_outage(exc):  # the adapter's own lookups: not the row's failure
                reason = f"database unavailable: {type(exc).__name__}"
                return partial(self._retry_later, item, reason, OUTAGE_RETRY_S, count_attempt=False)
            log.exception("adapter crashed", extra={"outbox_id": item.id})
            return partial(
                self._retry_later,
                item,
                f"internal error: {type(exc).__name__}",
                backoff(item.attempts),
            )
        return external_id

    async def _attempt(self, adapter: ChannelAdapter, item: OutboxItem) -> str:
        """One call of the adapter; a failure is counted by its reason and raised on."""
        try:
            out = _outbound(item)
            if getattr(adapter, "wants_conversation", False):
                out = await with_conversation(out)
            return await adapter.deliver(out)
        except Exception as exc:
            self._metrics.delivery_failed(item.channel, exc)
            raise

    async def _sent(self, sent: list[tuple[OutboxItem, str]]) -> list[None]:
        """Record sends (row, the platform's id of what it sent): one UPDATE of their rows,
        one of their messages, one commit."""
        now = self._clock()
        async with in_transaction():
            await sql.update_each(
                "outbox",
                "external_id",
                [(item.id, external_id[:200]) for item, external_id in sent],
                also='"status" = {p1}, "sent_at" = {p2}, "locked_until" = NULL, '
                '"last_error" = {p3}',
                params=[OutboxStatus.SENT.value, now, ""],
            )
            await sql.update_each(
                "message",
                "external_id",
                [
                    (item.message_id, external_id[:200])
                    for item, external_id in sent
                    if item.message_id is not None
                ],
                also='"delivery_state" = {p1}, "delivery_error" = {p2}',
                params=[DeliveryState.SENT.value, ""],
            )
        for item, _ in sent:
            self._metrics.messages_out.labels(item.channel).inc()
            number = appeal_number(item.appeal_id) if item.appeal_id is not None else None
            with log_scope(appeal=number, channel=item.channel):
                log.info("delivered", extra={"outbox_id": item.id, "channel": item.channel})
        return [None] * len(sent)

    async def _retry_later(
        self, item: OutboxItem, reason: str, delay_s: float, *, count_attempt: bool = True
    ) -> None:
        attempts = item.attempts if count_attempt else max(0, item.attempts - 1)
        level = logging.WARNING if count_attempt else logging.DEBUG
        await OutboxItem.filter(id=item.id, locked_by=self._name).update(
            status=OutboxStatus.PENDING,
            attempts=attempts,
            locked_until=None,
            next_attempt_at=self._clock() + timedelta(seconds=delay_s),
            last_error=reason[:500],
        )
        log.log(
            level,
            "delivery postponed",
            extra={
                "outbox_id": item.id,
                "channel": item.channel,
                "reason": reason,
                "delay_s": round(delay_s, 1),
            },
        )

    async def _fail(self, item: OutboxItem, reason: str, *, unreachable: bool = False) -> None:
        async with in_transaction():
            await OutboxItem.filter(id=item.id).update(
                status=OutboxStatus.FAILED, locked_until=None, last_error=reason[:500]
            )
            if item.message_id is not None:
                await Message.filter(id=item.message_id).update(
                    delivery_state=DeliveryState.FAILED, delivery_error=reason[:500]
                )
            if item.appeal_id is not None:
                appeal = await Appeal.get(id=item.appeal_id)
                await self._events.emit(
                    Undelivered(
                        actor="delivery",
                        appeal=appeal,
                        outbox_id=item.id,
                        channel=item.channel,
                        reason=reason,
                    )
                )
            if unreachable and self._on_unreachable is not None:
                await self._on_unreachable(item, reason)
        self._metrics.messages_failed.labels(item.channel).inc()
        log.warning(
            "delivery failed",
            extra={"outbox_id": item.id, "channel": item.channel, "reason": reason},
        )


async def with_conversation(out: OutboundMessage) -> OutboundMessage:
    """``out`` with what the desk knows of its appeal's conversation: number, subject, the
    customer's language and the appeal's message ids in its channel (the last 50, oldest
    first; notes are not part of it)."""
    appeal = await passed(Appeal, out.appeal_id) if out.appeal_id is not None else None
    if appeal is None:
        return out
    customer = await passed(Customer, appeal.customer_id)
    ids = await (
        Message.filter(appeal_id=appeal.id, channel=out.channel, external_id__isnull=False)
        .exclude(direction=Direction.NOTE)
        .order_by("-id")
        .limit(THREAD_IDS)
        .values_list("external_id", flat=True)
    )
    return replace(
        out,
        appeal_number=appeal.number or "",
        appeal_subject=appeal.subject,
        language=customer.language if customer is not None else "",
        thread=tuple(str(i) for i in reversed(ids) if i),
    )


def _outbound(item: OutboxItem) -> OutboundMessage:
    payload = item.payload
    return OutboundMessage(
        outbox_id=item.id,
        channel=item.channel,
        address=item.address,
        text=str(payload.get("text", "")),
        subject=str(payload.get("subject", "")),
        attachments=tuple(Attachment(**a) for a in payload.get("attachments", ())),
        fmt=str(payload.get("fmt", "plain")),
        extra=dict(payload.get("extra", {})),
        appeal_id=item.appeal_id,
    )
