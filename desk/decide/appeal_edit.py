"""Changing an appeal's category, priority and tags at once, as the staff group does one at a
time: the category as the one-tap buttons set it (kept as an example the router learns from),
the priority as ``/priority``, each tag as ``/tag``; the same history events, one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from desk.appeals.lifecycle import Lifecycle
from desk.appeals.triage import MAX_TAG_CHARS, MAX_TAGS, Triage
from desk.config.errors import InvalidInput
from desk.decide.routing import Routing
from models import Appeal, Priority


@dataclass(frozen=True, slots=True)
class AppealEdit:
    """What to change; None leaves it as it is. ``tags`` is the whole new set."""

    category: str | None = None
    priority: Priority | None = None
    tags: Sequence[str] | None = None


def clean_tags(tags: Sequence[str]) -> list[str]:
    """Tags as ``/tag`` keeps them (spaces squeezed, cut to their limit), once each in any
    case; an empty one or too many is InvalidInput."""
    out: list[str] = []
    for raw in tags:
        tag = " ".join(raw.split())[:MAX_TAG_CHARS]
        if not tag:
            raise InvalidInput("a tag cannot be empty")
        if all(t.casefold() != tag.casefold() for t in out):
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise InvalidInput(f"an appeal has at most {MAX_TAGS} tags")
    return out


async def edit_appeal(
    life: Lifecycle,
    routing: Routing,
    triage: Triage,
    number: str,
    edit: AppealEdit,
    *,
    actor: str,
) -> Appeal:
    """Apply ``edit`` in one transaction: the category first (it may raise the priority to
    its floor), then the tags (``Важно`` raises it to high), then the priority asked for."""
    if edit.category is not None:
        routing.category_of(edit.category)  # an unknown one is refused before anything
    wanted = clean_tags(edit.tags) if edit.tags is not None else None

    async def run() -> Appeal:
        async with in_transaction():
            appeal = await life.get(number)
            if edit.category is not None:  # a person's choice, even the router's: an example
                await routing.choose_in_place(appeal, edit.category, actor=actor)
            if wanted is not None:
                keep = {t.casefold() for t in wanted}
                for tag in [t for t in appeal.tags if t.casefold() not in keep]:
                    await triage.tag_in_place(appeal, tag, actor=actor, on=False)
                for tag in wanted:
                    await triage.tag_in_place(appeal, tag, actor=actor, on=True)
            if edit.priority is not None:
                await triage.set_priority_in_place(appeal, edit.priority, actor=actor)
            return appeal

    appeal = await life.atomic(run)
    life.wake()
    return appeal
