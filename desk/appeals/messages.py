"""Appeals and their stored messages read by id, for those who show them (the staff group)."""

from __future__ import annotations

from collections.abc import Sequence

from models import Appeal, Message


async def appeal_by_id(appeal_id: int) -> Appeal | None:
    """The appeal with this id (None when there is none)."""
    return await Appeal.get_or_none(id=appeal_id) if appeal_id else None


async def first_message(appeal: Appeal) -> Message | None:
    """The message that opened the appeal."""
    return await Message.filter(appeal_id=appeal.id).order_by("id").first()


async def message_by_id(message_id: int) -> Message:
    """A stored message by its id."""
    return await Message.get(id=message_id)


async def messages_by_id(ids: Sequence[int]) -> dict[int, Message]:
    """Stored messages by their ids (one query)."""
    return {m.id: m for m in await Message.filter(id__in=list(ids))} if ids else {}
