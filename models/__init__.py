"""Tortoise ORM models of Appeal Desk; the app label is ``models``."""

from models.appeals import Appeal, Event, Message, Rating
from models.enums import (
    OPEN_STATUSES,
    AgentRole,
    AppealStatus,
    DeliveryState,
    Direction,
    Lifecycle,
    OutboxStatus,
    Priority,
    RatingState,
    TaskStatus,
    Warmth,
)
from models.infra import ApiToken, IdempotencyKey, KeyValue, OutboxItem, StreamEntry
from models.people import Agent, ContactPoint, Customer
from models.work import Order, Task

__all__ = [
    "OPEN_STATUSES",
    "Agent",
    "AgentRole",
    "ApiToken",
    "Appeal",
    "AppealStatus",
    "ContactPoint",
    "Customer",
    "DeliveryState",
    "Direction",
    "Event",
    "IdempotencyKey",
    "KeyValue",
    "Lifecycle",
    "Message",
    "Order",
    "OutboxItem",
    "OutboxStatus",
    "Priority",
    "Rating",
    "RatingState",
    "StreamEntry",
    "Task",
    "TaskStatus",
    "Warmth",
]
