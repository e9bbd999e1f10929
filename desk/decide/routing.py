"""Applying the router's decisions: a new appeal gets its category, team, priority and tags;
agents' category choices become examples the model learns from."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from tortoise.functions import Count
from tortoise.transactions import in_transaction

from desk.appeals import appeal_changes
from desk.appeals.event_types import (
    AppealCategorised,
    AppealImportant,
    AppealTransferred,
    AppealUnsorted,
    AppealWaiting,
    MessageReceived,
)
from desk.appeals.events import MESSAGES, batch_cache, batch_held, hold_in_batch
from desk.appeals.lifecycle import Lifecycle
from desk.appeals.triage import IMPORTANT_TAG, Triage
from desk.config.errors import InvalidInput
from desk.config.settings import CategoryConfig, Settings, categories_of, seed_examples_of
from desk.decide.seed_model import seeded_model
from models import (
    OPEN_STATUSES,
    Agent,
    Appeal,
    AppealStatus,
    Customer,
    Direction,
    KeyValue,
    LabelledExample,
    Message,
    Priority,
    Rating,
)
from router.assign import Candidate, Strategy, choose
from router.classify import Classification, Classifier, CustomerFacts
from router.model import TextModel
from router.risk import assess

log = logging.getLogger(__name__)

ROUTER = "router"
CANDIDATES = "routing.candidates"  # the batch cache's keys
AGENTS = "routing.agents"
EXAMPLES_LIMIT = 20_000


class Routing:
    """Classifies new appeals (subscribed to ``message.received``) and learns from agents."""

    def __init__(
        self,
        settings: Settings,
        lifecycle: Lifecycle,
        triage: Triage,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._lifecycle = lifecycle
        self._triage = triage
        self._events = lifecycle.events
        self._clock = clock
        self.categories: dict[str, CategoryConfig] = {c.id: c for c in categories_of(settings)}
        self.model = TextModel()
        self.classifier = self._classifier()
        self._trained_on: list[int] | None = None  # the examples' ids of the last training

    def _classifier(self) -> Classifier:
        rules = [(c.id, c.match) for c in self.categories.values()]
        router = self._settings.router
        return Classifier(rules, self.model, fallback=router.fallback, confident=router.confident)

    async def retrain(self) -> int:
        """Learn again from every labelled example; returns how many there are.

        Nothing is trained when the examples are those of the last training (an example is
        never changed in place: a new choice replaces its row, with a new id). Besides the CPU,
        that spares the memory: training runs in a thread, and glibc gives threads heaps of
        their own that keep what a model freed, so a serve that retrained every ten minutes
        grew in steps."""
        rows = (
            await LabelledExample.filter(category__in=list(self.categories))
            .order_by("-id")
            .limit(EXAMPLES_LIMIT)
            .values_list("id", "text", "category")
        )
        ids = [int(i) for i, _, _ in rows]
        if ids == self._trained_on:
            return self.model.size
        examples = [(str(t), str(c)) for _, t, c in rows]
        # Training is pure CPU work (about 2 ms per example): off the event loop.
        self.model = await asyncio.to_thread(_trained, examples, self._settings)
        self.classifier = self._classifier()
        self._trained_on = ids
        log.info(
            "router model ready",
            extra={"examples": len(self.model.examples), "seeds": len(self.model.seeds)},
        )
        return self.model.size

    KINDS = (MessageReceived, AppealTransferred)  # what ``on_event`` listens to

    async def on_event(self, event: MessageReceived | AppealTransferred) -> None:
        """Route a new appeal once its first message is stored; learn from agents' choices."""
        appeal = event.appeal
        if appeal is None:
            return
        match event:
            case MessageReceived(first=True):
                await self._route(appeal, event.message_id, event.new_customer, event.customer)
            case AppealTransferred(actor=actor, before=before, after=after) if actor != ROUTER:
                if after.get("category") and after.get("category") != before.get("category"):
                    await self._remember(appeal, str(after["category"]))

    async def _route(
        self, appeal: Appeal, message_id: int, fresh: bool, customer: Customer | None
    ) -> None:
        """``fresh``: the customer is new (no earlier appeals, ratings or agents)."""
        message = batch_held(MESSAGES, message_id) or await Message.get(id=message_id)
        text = _routed_text(appeal, message.text)
        facts = await self._facts(appeal, customer, fresh)
        verdict = self.classifier.classify(text, channel=appeal.channel, customer=facts)
        category = self.categories.get(verdict.category or "")
        base = category.priority.value if category is not None else appeal.priority.value
        risk = assess(text, verdict.category, base, facts, self._settings.router.risk)
        if category is not None:
            await self._categorise(appeal, category, verdict, actor=ROUTER)
            await self.assign(appeal, fresh=fresh)
        else:
            await self._events.emit(
                AppealUnsorted(
                    actor=ROUTER,
                    appeal=appeal,
                    scores={k: round(v, 3) for k, v in verdict.scores.items()},
                    reasons=list(verdict.reasons)[:10],
                )
            )
        await self._triage.raise_priority(appeal, Priority(risk.priority), actor=ROUTER)
        if risk.important:
            await self._triage.tag_in_place(appeal, IMPORTANT_TAG, actor=ROUTER, on=True)
            await self._events.emit(
                AppealImportant(actor=ROUTER, appeal=appeal, reasons=list(risk.reasons))
            )

    async def choose(self, number: str, category_id: str, *, actor: str) -> Appeal:
        """A person picked the category (the one-tap buttons): applied and remembered."""
        self.category_of(category_id)
        async with in_transaction():
            appeal = await self._lifecycle.get(number)
            await self.choose_in_place(appeal, category_id, actor=actor)
        return appeal

    def category_of(self, category_id: str) -> CategoryConfig:
        """The configured category; ``InvalidInput`` naming the known ones otherwise."""
        category = self.categories.get(category_id)
        if category is None:
            known = ", ".join(self.categories)
            raise InvalidInput(f"no category '{category_id[:64]}' (known: {known})")
        return category

    async def choose_in_place(self, appeal: Appeal, category_id: str, *, actor: str) -> None:
        """A person's category for a loaded appeal: set, its priority floor applied, kept as
        an example to learn from, and the appeal given to its team when nobody has it; call
        inside a transaction."""
        category = self.category_of(category_id)
        verdict = Classification(category.id, 1.0, {}, (f"chosen by {actor}",))
        await self._categorise(appeal, category, verdict, actor=actor)
        await self._triage.raise_priority(appeal, category.priority, actor=actor)
        await self._remember(appeal, category.id)
        if appeal.assignee_id is None:
            await self.assign(appeal)

    async def assign(self, appeal: Appeal, *, fresh: bool = False) -> int | None:
        """Give the appeal to someone of its team by the team's strategy (inside a transaction);
        nobody free: it waits unassigned in the feed. Returns the agent's id. ``fresh``: the
        customer is new, so no earlier appeal had an agent."""
        team = next((t for t in self._settings.teams if t.id == appeal.team), None)
        strategy = team.strategy if team is not None else Strategy.LEAST_LOADED
        fallback = team.fallback if team is not None else Strategy.LEAST_LOADED
        candidates = await self._candidates()
        if not candidates:
            return None
        previous = (
            None
            if fresh
            else await Appeal.filter(customer_id=appeal.customer_id, assignee_id__isnull=False)
            .exclude(id=appeal.id)
            .order_by("-id")
            .first()
        )
        key = f"router.cursor.{appeal.team or '-'}"
        saved = await self._cursor(key)
        decision, cursor = choose(
            strategy,
            candidates,
            team=appeal.team if team is not None else None,
            now=self._clock(),
            zone=self._settings.company.timezone,
            previous_agent_id=previous.assignee_id if previous is not None else None,
            previous_appeal=previous.number if previous is not None else None,
            cursor=saved,
            fallback=fallback,
        )
        if cursor is not None:
            await KeyValue.update_or_create(key=key, defaults={"value": str(cursor)})
            cache = batch_cache()
            if cache is not None:
                cache[key] = cursor
        if decision.agent_id is None:
            await self._events.emit(
                AppealWaiting(actor=ROUTER, appeal=appeal, reason=decision.reason)
            )
            return None
        agent = batch_held(AGENTS, decision.agent_id) or await Agent.get(id=decision.agent_id)
        _count_assigned(candidates, agent.id)
        await self._triage.assign_in_place(
            appeal,
            agent,
            actor=ROUTER,
            reason=decision.reason,
            strategy=decision.strategy.value if decision.strategy else None,
        )
        return int(agent.id)

    async def _candidates(self) -> list[Candidate]:
        """The agents with their open appeals: read once a batch (the batch's own assignments
        counted as they are made), every time outside one."""
        cache = batch_cache()
        if cache is not None and CANDIDATES in cache:
            held: list[Candidate] = cache[CANDIDATES]
            return held
        candidates = await self._read_candidates()
        if cache is not None:
            cache[CANDIDATES] = candidates
        return candidates

    async def _cursor(self, key: str) -> int | None:
        """Where the team's round robin stands: read once a batch (kept as it moves)."""
        cache = batch_cache()
        if cache is not None and key in cache:
            held: int | None = cache[key]
            return held
        saved = await KeyValue.get_or_none(key=key)
        cursor = int(saved.value) if saved is not None else None
        if cache is not None:
            cache[key] = cursor
        return cursor

    async def _read_candidates(self) -> list[Candidate]:
        agents = await Agent.filter(active=True).order_by("id")
        for agent in agents:
            hold_in_batch(AGENTS, agent.id, agent)
        hours = {a.telegram_id: a.hours for a in self._settings.agents if a.telegram_id}
        by_name = {a.name: a.hours for a in self._settings.agents}
        loads = {
            row["assignee_id"]: row["n"]
            for row in await Appeal.filter(
                assignee_id__in=[a.id for a in agents], status__in=list(OPEN_STATUSES)
            )
            .annotate(n=Count("id"))
            .group_by("assignee_id")
            .values("assignee_id", "n")
        }
        return [
            Candidate(
                agent_id=a.id,
                name=a.name,
                teams=tuple(a.teams),
                on_duty=a.on_duty,
                capacity=a.capacity,
                open_appeals=int(loads.get(a.id, 0)),
                hours=hours.get(a.telegram_id) if a.telegram_id else by_name.get(a.name),
            )
            for a in agents
        ]

    async def _categorise(
        self, appeal: Appeal, category: CategoryConfig, verdict: Classification, *, actor: str
    ) -> None:
        before = appeal.category
        appeal.category = category.id
        appeal.team = category.team
        await appeal_changes.save(appeal, ["category", "team", "updated_at"])
        await self._events.emit(
            AppealCategorised(
                actor=actor,
                appeal=appeal,
                before=before,
                category=category.id,
                team=category.team,
                confidence=round(verdict.confidence, 3),
                reasons=list(verdict.reasons)[:10],
            )
        )
        if appeal.status is AppealStatus.NEW:
            # Registered and classified: the appeal is in work (seed 000's «Классификация»).
            reason = f"categorised as {category.id}"
            await self._lifecycle.move(appeal, AppealStatus.OPEN, actor=actor, reason=reason)

    async def _remember(self, appeal: Appeal, category: str) -> None:
        """Keep the first customer message with the category a person gave it."""
        if not self._settings.router.learn:
            return
        first = await (
            Message.filter(appeal_id=appeal.id, direction=Direction.IN).order_by("id").first()
        )
        if first is None or not first.text.strip():
            return
        text = _routed_text(appeal, first.text)
        await LabelledExample.filter(appeal_id=appeal.id).delete()
        await LabelledExample.create(text=text, category=category, appeal_id=appeal.id)
        self.model.learn(text, category)  # at once; the periodic retrain tidies up

    async def _facts(
        self, appeal: Appeal, customer: Customer | None = None, fresh: bool = False
    ) -> CustomerFacts:
        if customer is None or customer.id != appeal.customer_id:
            customer = await Customer.get(id=appeal.customer_id)
        since = self._clock() - timedelta(days=90)
        complaints = (
            0
            if fresh
            else await Appeal.filter(
                customer_id=customer.id, category="complaint", created_at__gte=since
            )
            .exclude(id=appeal.id)
            .count()
        )
        last = (
            None if fresh else await Rating.filter(customer_id=customer.id).order_by("-id").first()
        )
        return CustomerFacts(
            vip=customer.vip,
            complaints_90d=complaints,
            last_rating=last.score if last is not None else None,
            lifecycle=customer.lifecycle.value,
            warmth=customer.warmth.value,
        )


def _count_assigned(candidates: list[Candidate], agent_id: int) -> None:
    """One more open appeal for the agent (in the batch's held candidates)."""
    for i, candidate in enumerate(candidates):
        if candidate.agent_id == agent_id:
            candidates[i] = replace(candidate, open_appeals=candidate.open_appeals + 1)


def _trained(examples: list[tuple[str, str]], settings: Settings) -> TextModel:
    """The model of agents' choices on top of the shipped seeds (when they are on)."""
    seeds = tuple(seed_examples_of(settings))
    if examples or not seeds:
        return TextModel.trained(examples, seeds=seeds)
    return copy.deepcopy(seeded_model(seeds))  # the copy learns agents' choices


def _routed_text(appeal: Appeal, first_message: str) -> str:
    """What the router reads: the subject (an email's, say) and the first message."""
    if appeal.subject and appeal.subject not in first_message:
        return f"{appeal.subject}\n{first_message}"
    return first_message
