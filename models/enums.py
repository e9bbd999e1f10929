"""Closed sets of values used by the models and by everything above them."""

from __future__ import annotations

import enum


class AppealStatus(enum.StrEnum):
    """Where an appeal stands: new → open ⇄ pending → resolved → closed."""

    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


OPEN_STATUSES = (AppealStatus.NEW, AppealStatus.OPEN, AppealStatus.PENDING)


class Priority(enum.StrEnum):
    """How soon an appeal needs attention."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Direction(enum.StrEnum):
    """Who a message goes to: in from the customer, out to the customer, or a staff note."""

    IN = "in"
    OUT = "out"
    NOTE = "note"


class DeliveryState(enum.StrEnum):
    """What became of a message on its channel."""

    RECEIVED = "received"
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    NONE = "none"  # notes and messages that need no delivery


class OutboxStatus(enum.StrEnum):
    """The delivery state of one outbox row."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class Lifecycle(enum.StrEnum):
    """A customer's buying life cycle (seed 002)."""

    PROSPECT = "prospect"
    ACTIVE = "active"
    LOST = "lost"


class Warmth(enum.StrEnum):
    """How warm the relationship with a customer is (seed 002)."""

    HOT = "hot"
    WARM = "warm"
    COLD = "cold"


class AgentRole(enum.StrEnum):
    """What an agent may do."""

    AGENT = "agent"
    SUPERVISOR = "supervisor"
    MANAGER = "manager"


class RatingState(enum.StrEnum):
    """Whether the customer was asked for a rating and answered."""

    NONE = "none"
    REQUESTED = "requested"
    RATED = "rated"


class TaskStatus(enum.StrEnum):
    """The state of a task for an agent."""

    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"
