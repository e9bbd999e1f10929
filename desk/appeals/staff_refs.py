"""Which appeal a message in the staff group is about: its topic, or the desk's post it answers
(the card, another post, a relayed message)."""

from __future__ import annotations

from typing import Any

from channels.base import STAFF_CHANNEL
from models import Appeal, Message, OutboxItem


async def appeal_in_staff_group(
    chat_id: int, *, thread_id: int | None, reply_to: int | None
) -> Appeal | None:
    """The appeal of the topic ``thread_id``, else of the post ``reply_to`` answers."""
    if thread_id:
        return await Appeal.filter(staff_thread=str(thread_id)).first()
    if reply_to is None:
        return None
    ref = str(reply_to)
    appeal = await Appeal.filter(staff_card_ref=ref).first()
    if appeal is not None:
        return appeal
    row = await OutboxItem.filter(
        channel=STAFF_CHANNEL, address=str(chat_id), external_id=ref
    ).first()
    if row is not None and row.appeal_id is not None:
        return await Appeal.get_or_none(id=row.appeal_id)
    stored = await Message.filter(source_ref=f"tg:{chat_id}:{ref}").first()
    return await Appeal.get_or_none(id=stored.appeal_id) if stored is not None else None


async def save_staff_refs(appeal: Appeal, state: dict[str, Any]) -> None:
    """Where the appeal lives in the staff group: its topic, its card, what the card shows."""
    appeal.staff_state = state
    await Appeal.filter(id=appeal.id).update(
        staff_thread=appeal.staff_thread,
        staff_card_ref=appeal.staff_card_ref,
        staff_state=state,
    )
