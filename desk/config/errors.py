"""Domain errors of the desk; the edges (API, bots, CLI) map them to texts and statuses."""

from __future__ import annotations

from datetime import UTC, datetime


class DeskError(Exception):
    """Base of every error the desk raises on purpose."""


class AppealNotFound(DeskError):
    """No appeal with that number or id."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"appeal {ref} not found")
        self.ref = ref


class InvalidTransition(DeskError):
    """The appeal cannot move from its status to the one asked for."""

    def __init__(self, number: str, current: str, wanted: str) -> None:
        super().__init__(f"appeal {number} is {current}: it cannot become {wanted}")
        self.current = current
        self.wanted = wanted


class NotAllowed(DeskError):
    """The actor may not do this."""


class AgentNotFound(DeskError):
    """No active agent matches the reference."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"agent {ref} not found")
        self.ref = ref


class InvalidInput(DeskError):
    """Input that passed parsing but cannot be used (empty text, text over the limit)."""


class IdempotencyConflict(DeskError):
    """An idempotency key used again with a different request."""


class OrderNotFound(DeskError):
    """No order with that external id."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"order {ref} not found")
        self.ref = ref


class TaskNotFound(DeskError):
    """No task with this id."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"task {ref} not found")
        self.ref = ref


class TaskClosed(DeskError):
    """The task is already done or cancelled: what became of it, when and by whom (when
    the history says)."""

    def __init__(
        self,
        task_id: int,
        status: str,
        *,
        result: str = "",
        at: datetime | None = None,
        by: str | None = None,
    ) -> None:
        what = "already done" if status == "done" else f"already {status}"
        if result:
            what += f" (result: {result})"
        when = f" on {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if at is not None else ""
        who = f" by {by}" if by else ""
        super().__init__(f"task {task_id} is {what}{when}{who}; nothing was changed")
        self.task_id = task_id
        self.status = status
