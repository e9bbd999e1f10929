"""Who and what an appeal is: assignee, tags, priority, category and team, changed by staff."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from desk.appeals import appeal_changes
from desk.appeals.event_types import (
    AppealAssigned,
    AppealTagged,
    AppealTransferred,
    PriorityChanged,
)
from desk.appeals.lifecycle import Lifecycle
from desk.config.errors import AgentNotFound, InvalidInput
from desk.config.settings import Settings, categories_of
from models import OPEN_STATUSES, Agent, Appeal, AppealStatus, Priority, fits, parse_id

IMPORTANT_TAG = "Важно"
MAX_TAGS = 20
MAX_TAG_CHARS = 40


class Triage:
    """Changes of an appeal's attributes, each with its history event, in one transaction."""

    def __init__(self, lifecycle: Lifecycle, settings: Settings) -> None:
        self._lifecycle = lifecycle
        self._settings = settings

    async def assign(self, number: str, agent_ref: str | None, *, actor: str) -> Appeal:
        """Give the appeal to an agent (by id, Telegram id or name), or take it from everyone."""
        life = self._lifecycle

        async def run() -> Appeal:
            async with in_transaction():
                appeal = await life.get(number)
                agent = await find_agent(agent_ref) if agent_ref else None
                await self.assign_in_place(appeal, agent, actor=actor)
                return appeal

        return await self._done(await life.atomic(run))

    async def assign_in_place(
        self,
        appeal: Appeal,
        agent: Agent | None,
        *,
        actor: str,
        reason: str = "",
        strategy: str | None = None,
    ) -> None:
        """Change the assignee of a loaded appeal; call inside a transaction."""
        before = appeal.assignee_id
        appeal.assignee = agent
        await appeal_changes.save(appeal, ["assignee_id", "updated_at"])
        await self._lifecycle.events.emit(
            AppealAssigned(
                actor=actor,
                appeal=appeal,
                before=before,
                after=agent.id if agent else None,
                agent=agent.name if agent else None,
                reason=reason,
                strategy=strategy,
            )
        )
        if agent is not None and appeal.status is AppealStatus.NEW:
            await self._lifecycle.move(appeal, AppealStatus.OPEN, actor=actor, reason="assigned")

    async def tag(self, number: str, tag: str, *, actor: str, on: bool | None = None) -> Appeal:
        """Add a tag (``on``), remove it (``on=False``) or toggle it (``None``)."""
        tag = " ".join(tag.split())[:MAX_TAG_CHARS]
        if not tag:
            raise InvalidInput("a tag cannot be empty")
        life = self._lifecycle

        async def run() -> Appeal:
            async with in_transaction():
                appeal = await life.get(number)
                await self.tag_in_place(appeal, tag, actor=actor, on=on)
                return appeal

        return await self._done(await life.atomic(run))

    async def tag_in_place(
        self, appeal: Appeal, tag: str, *, actor: str, on: bool | None = None
    ) -> None:
        """Add, remove or toggle a tag of a loaded appeal; call inside a transaction."""
        tags = list(appeal.tags)
        present = any(t.casefold() == tag.casefold() for t in tags)
        add = (not present) if on is None else on
        if add == present:
            return
        if add:
            if len(tags) >= MAX_TAGS:
                raise InvalidInput(f"an appeal has at most {MAX_TAGS} tags")
            tags.append(tag)
        else:
            tags = [t for t in tags if t.casefold() != tag.casefold()]
        appeal.tags = tags
        await appeal_changes.save(appeal, ["tags", "updated_at"])
        await self._lifecycle.events.emit(
            AppealTagged(actor=actor, appeal=appeal, tag=tag, added=add)
        )
        if add and tag == IMPORTANT_TAG:
            await self.raise_priority(appeal, Priority.HIGH, actor=actor)

    async def set_priority(self, number: str, priority: Priority, *, actor: str) -> Appeal:
        """Set the appeal's priority."""
        life = self._lifecycle

        async def run() -> Appeal:
            async with in_transaction():
                appeal = await life.get(number)
                await self.set_priority_in_place(appeal, priority, actor=actor)
                return appeal

        return await self._done(await life.atomic(run))

    async def transfer(self, number: str, target: str, *, actor: str) -> Appeal:
        """Hand the appeal to another category (and its team) or team; the assignee is freed."""
        categories = categories_of(self._settings)
        category = self._find(target, [(c.id, c.title) for c in categories])
        team = self._find(target, [(t.id, {"": t.title}) for t in self._settings.teams])
        if category is None and team is None:
            known = ", ".join([c.id for c in categories] + [t.id for t in self._settings.teams])
            raise InvalidInput(f"no category or team '{target[:64]}' (known: {known})")
        return await self.transfer_to(number, category=category, team=team, actor=actor)

    async def transfer_to(
        self, number: str, *, category: str | None = None, team: str | None = None, actor: str
    ) -> Appeal:
        """Hand the appeal to a category (and its team) or a team, by their ids; the assignee
        is freed. An unknown id is InvalidInput naming the known ones."""
        categories = categories_of(self._settings)
        if category is not None:
            found = next((c for c in categories if c.id == category), None)
            if found is None:
                known = ", ".join(c.id for c in categories)
                raise InvalidInput(f"no category '{category[:64]}' (known: {known})")
            team = found.team
        elif team is None or all(t.id != team for t in self._settings.teams):
            known = ", ".join(t.id for t in self._settings.teams)
            raise InvalidInput(f"no team '{(team or '')[:64]}' (known: {known})")
        life = self._lifecycle

        async def run() -> Appeal:
            async with in_transaction():
                appeal = await life.get(number)
                await self.transfer_in_place(appeal, team, category=category, actor=actor)
                return appeal

        return await self._done(await life.atomic(run))

    async def transfer_in_place(
        self, appeal: Appeal, team: str | None, *, category: str | None = None, actor: str
    ) -> None:
        """Hand a loaded appeal to ``team`` (and ``category``, when given); the assignee is
        freed. Call inside a transaction."""
        before = {"category": appeal.category, "team": appeal.team}
        if category is not None:
            appeal.category = category
        appeal.team = team
        appeal.assignee = None
        await appeal.save(update_fields=["category", "team", "assignee_id", "updated_at"])
        await self._lifecycle.events.emit(
            AppealTransferred(
                actor=actor,
                appeal=appeal,
                before=before,
                after={"category": appeal.category, "team": appeal.team},
            )
        )

    async def raise_priority(
        self, appeal: Appeal, floor: Priority, *, actor: str, reason: str = ""
    ) -> None:
        """Raise a loaded appeal's priority to at least ``floor``; call inside a transaction."""
        order = list(Priority)
        if order.index(appeal.priority) < order.index(floor):
            await self.set_priority_in_place(appeal, floor, actor=actor, reason=reason)

    async def set_priority_in_place(
        self, appeal: Appeal, priority: Priority, *, actor: str, reason: str = ""
    ) -> None:
        """Set a loaded appeal's priority; call inside a transaction."""
        before = appeal.priority
        if before is priority:
            return
        appeal.priority = priority
        await appeal_changes.save(appeal, ["priority", "updated_at"])
        await self._lifecycle.events.emit(
            PriorityChanged(
                actor=actor, appeal=appeal, before=before.value, after=priority.value, reason=reason
            )
        )

    async def set_on_duty(self, agent: Agent, on: bool) -> list[Appeal]:
        """On or off duty; going off hands the agent's open appeals back to the team (they
        are returned, oldest first, for the team to take)."""
        await Agent.filter(id=agent.id).update(on_duty=on)
        agent.on_duty = on
        if on:
            return []
        mine = await Appeal.filter(assignee_id=agent.id, status__in=list(OPEN_STATUSES)).order_by(
            "id"
        )

        async def run() -> None:
            async with in_transaction():
                for appeal in mine:
                    await self.assign_in_place(appeal, None, actor=agent.name, reason="off duty")

        await self._lifecycle.atomic(run)
        self._lifecycle.wake()
        return list(mine)

    async def _done(self, appeal: Appeal) -> Appeal:
        self._lifecycle.wake()
        return appeal

    @staticmethod
    def _find(target: str, known: list[tuple[str, dict[str, str]]]) -> str | None:
        wanted = target.strip().casefold()
        for ident, titles in known:
            if wanted == ident.casefold() or any(
                wanted == title.casefold() for title in titles.values() if title
            ):
                return ident
        return None


async def find_agent(ref: str) -> Agent:
    """An active agent by database id, Telegram id, @name or exact name (any case)."""
    ref = ref.strip().removeprefix("@")
    query = Agent.filter(active=True)
    agent = None
    if (number := parse_id(ref)) is not None:
        agent = (
            await query.filter(id=number).first() or await query.filter(telegram_id=number).first()
        )
    if agent is None and fits(Agent, "name", ref):
        agent = await query.filter(name=ref).first()
    if agent is None and fits(Agent, "name", ref):
        agent = await query.filter(name__iexact=ref).first()
    if agent is None:
        raise AgentNotFound(ref)
    return agent
