"""The SLA clock of appeals: due times from the policies and the working calendar, paused while
an appeal waits for the customer; warnings at 75%, breaches escalated, met/missed recorded."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from desk.appeals import appeal_changes, history
from desk.appeals.event_types import (
    AppealCategorised,
    AppealCreated,
    DomainEvent,
    MessageSent,
    PriorityChanged,
    SlaBreached,
    SlaWarning,
    StatusMove,
)
from desk.appeals.events import EventBus
from desk.appeals.triage import Triage
from desk.config.settings import Settings
from desk.ops.log_context import log_scope
from desk.ops.metrics import Metrics
from desk.reports.report_days import due_flags, mark_stale
from models import OPEN_STATUSES, Appeal, AppealStatus, Priority, sql
from router.risk import PRIORITIES
from router.sla import Pause, SlaPolicy, SlaState, SlaTarget, evaluate

log = logging.getLogger(__name__)

SCAN_LIMIT = 2000
# The events that move an appeal's due times (its subscription).
RECOMPUTE_ON = (AppealCreated, AppealCategorised, PriorityChanged, StatusMove, MessageSent)


def policy(settings: Settings, appeal: Appeal) -> SlaPolicy:
    """The SLA policy for an appeal's category and priority."""
    return settings.sla.policy_for(appeal.category, appeal.priority.value)


class SlaClock:
    """Keeps ``first_response_due`` / ``resolution_due`` right and raises SLA events."""

    def __init__(
        self,
        settings: Settings,
        triage: Triage,
        events: EventBus,
        clock: Callable[[], datetime],
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._triage = triage
        self._events = events
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._zone = ZoneInfo(settings.company.timezone)

    async def on_batch(self, events: Sequence[DomainEvent]) -> None:
        """Recompute the due times of the appeals whose events (``RECOMPUTE_ON``) changed what
        they depend on: once an appeal, however many of its events the batch held (a new one
        has four: created, categorised, opened, a priority)."""
        appeals = {e.appeal.id: e.appeal for e in events if e.appeal is not None}
        for appeal in appeals.values():
            await sql.give_turn()  # hundreds of appeals in a big batch: the webhook goes on
            await self.recompute(appeal)

    async def states(self, appeal: Appeal, now: datetime | None = None) -> dict[str, SlaState]:
        """Where each target of the appeal stands now."""
        now = now or self._clock()
        rules = policy(self._settings, appeal)
        targets = rules.targets
        started = appeal.created_at or now
        pauses = await pauses_of(appeal)
        done = {
            "first_response": appeal.first_response_at,
            "resolution": appeal.resolved_at or appeal.closed_at,
        }
        out: dict[str, SlaState] = {}
        targets_wanted: tuple[SlaTarget, ...] = ("first_response", "resolution")
        for target in targets_wanted:
            minutes = targets.minutes_for(target)
            if minutes is None:
                continue
            out[target] = evaluate(
                target,
                started,
                minutes,
                self._settings.sla.calendar,
                business_hours=targets.business_hours,
                now=now,
                pauses=pauses,
                done_at=done[target],
                warn_share=rules.warn_at,
            )
        minutes = targets.next_response_minutes
        if minutes and appeal.first_response_at is not None and appeal.waiting_since is not None:
            # The customer wrote again after an answer: the next answer has its own clock.
            out["next_response"] = evaluate(
                "next_response",
                appeal.waiting_since,
                minutes,
                self._settings.sla.calendar,
                business_hours=targets.business_hours,
                now=now,
                pauses=pauses,
                warn_share=rules.warn_at,
            )
        return out

    async def recompute(self, appeal: Appeal) -> None:
        """Store the due times the policy gives now (inside the caller's transaction); a moved
        due time that turns a finished day's target met or missed marks that day for the
        reports."""
        flags = due_flags(appeal)
        states = await self.states(appeal)
        first = states.get("first_response")
        resolution = states.get("resolution")
        before = (appeal.first_response_due, appeal.resolution_due, appeal.sla_state)
        appeal.first_response_due = first.due if first else None
        appeal.resolution_due = resolution.due if resolution else None
        sla = copy.deepcopy(appeal.sla_state or {})
        for target, state in states.items():
            if state.met is not None and target != "next_response":
                sla.setdefault(target, {})["met"] = state.met
        appeal.sla_state = sla
        if (appeal.first_response_due, appeal.resolution_due, sla) != before:
            # A change that moves no due time (NEW → OPEN, say) writes nothing.
            if appeal_changes.is_fresh(appeal):  # written with its batch
                await appeal_changes.save(
                    appeal, ["first_response_due", "resolution_due", "sla_state"]
                )
            else:
                await Appeal.filter(id=appeal.id).update(
                    first_response_due=appeal.first_response_due,
                    resolution_due=appeal.resolution_due,
                    sla_state=sla,
                )
        moments = (appeal.first_response_at, appeal.done_at)
        moved = [
            m for m, was, now in zip(moments, flags, due_flags(appeal), strict=True) if was != now
        ]
        if moved:
            await mark_stale(moved, self._zone, self._clock())

    async def scan(self) -> int:
        """Warn and escalate across open appeals; returns how many events were raised."""
        raised = 0
        rows = await Appeal.filter(status__in=list(OPEN_STATUSES)).order_by("id").limit(SCAN_LIMIT)
        for appeal in rows:
            try:
                with log_scope(appeal=appeal.number, channel=appeal.channel):
                    raised += await self._check(appeal)
            except Exception:  # one broken appeal must not stop the scan
                log.exception("SLA check failed", extra={"appeal": appeal.number})
        return raised

    async def _check(self, appeal: Appeal) -> int:
        states = await self.states(appeal)
        raised = 0
        for target, state in states.items():
            if state.met is not None or state.paused:
                continue
            # Each wait for a next answer is its own cycle, warned and breached once.
            mark = target
            if target == "next_response" and appeal.waiting_since is not None:
                mark = f"next_response@{appeal.waiting_since.isoformat()}"
            marks: dict[str, Any] = dict((appeal.sla_state or {}).get(mark, {}))
            kind = ""
            if state.breached and not marks.get("breached"):
                kind = "sla.breached"
            elif state.warned and not marks.get("warned") and not state.breached:
                kind = "sla.warning"
            if not kind:
                continue
            async with in_transaction():
                fresh = await Appeal.filter(id=appeal.id).select_for_update().first()
                if fresh is None:
                    continue
                sla = dict(fresh.sla_state or {})
                current = dict(sla.get(mark, {}))
                flag = "breached" if kind == "sla.breached" else "warned"
                if current.get(flag):
                    continue  # another process raised it
                current[flag] = True
                if flag == "breached":
                    current["warned"] = True
                sla[mark] = current
                fresh.sla_state = sla
                await fresh.save(update_fields=["sla_state"])
                raised_as = SlaBreached if kind == "sla.breached" else SlaWarning
                await self._events.emit(
                    raised_as(
                        actor="sla",
                        appeal=fresh,
                        target=target,
                        due=state.due.isoformat(),
                        share=round(state.elapsed_share, 2),
                    )
                )
                if kind == "sla.breached":
                    await self._escalate(fresh)
            self._metrics.sla_raised(kind, target)
            raised += 1
        return raised

    async def _escalate(self, appeal: Appeal) -> None:
        rules = policy(self._settings, appeal)
        triage = self._triage
        if rules.breach_escalation == "raise_priority":
            rank = PRIORITIES.index(appeal.priority.value)
            if rank + 1 < len(PRIORITIES):
                higher = Priority(PRIORITIES[rank + 1])
                await triage.raise_priority(appeal, higher, actor="sla", reason="SLA breached")
        elif rules.breach_escalation == "reassign" and appeal.assignee_id is not None:
            reason = "SLA breached: offered to the team again"
            await triage.assign_in_place(appeal, None, actor="sla", reason=reason)


async def pauses_of(appeal: Appeal) -> list[Pause]:
    """The periods the appeal waited in ``pending`` (the clock stops meanwhile)."""
    rows = await history.of_appeal(appeal.id, "appeal.status_changed")
    pauses: list[Pause] = []
    opened: datetime | None = None
    for row in rows:
        after, before = row.data.get("after"), row.data.get("before")
        if after == AppealStatus.PENDING.value and opened is None:
            opened = row.created_at
        elif before == AppealStatus.PENDING.value and opened is not None:
            pauses.append(Pause(opened, row.created_at))
            opened = None
    if opened is not None:
        pauses.append(Pause(opened, None))
    return pauses
