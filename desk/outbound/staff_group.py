"""What the desk asks of the staff group, as a protocol: ``bots/staff_sync.py`` ``StaffSync`` is
the one that does it (the desk does not import the bots; they are handed in)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from models import Appeal


class StaffGroup(Protocol):
    """Posts for the staff group, queued in the outbox inside the caller's transaction."""

    async def alert(
        self,
        appeal: Appeal | None,
        reasons: list[str] | None = None,
        *,
        text: str | None = None,
        buttons: Sequence[str] = ("take",),
        customer_id: int | None = None,
    ) -> None:
        """An alert for the managers (with the appeal's card)."""

    async def enqueue(
        self, appeal: Appeal | None, kind: str, *, text: str = "", **extra: Any
    ) -> None:
        """A post in the appeal's topic, or in General without an appeal."""
