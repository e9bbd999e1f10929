"""An appeal's stored messages, read for those who show them (the staff group's posts)."""

from __future__ import annotations

from models import Appeal, Message


async def first_message(appeal: Appeal) -> Message | None:
    """The message that opened the appeal."""
    return await Message.filter(appeal_id=appeal.id).order_by("id").first()


async def message_by_id(message_id: int) -> Message:
    """A stored message by its id."""
    return await Message.get(id=message_id)
