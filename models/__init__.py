"""Tortoise ORM models of Appeal Desk; the app label is ``models``."""

from models.appeals import (
    Appeal,
    Event,
    LabelledExample,
    Message,
    PhraseDay,
    Rating,
    RatingRequest,
)
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
from models.files import FILE_REF_PREFIX, StoredFile
from models.infra import ApiToken, IdempotencyRecord, KeyValue, OutboxItem, StreamEntry
from models.lookup import MAX_ID, fits, parse_id, storable, whole_characters
from models.people import Agent, ContactPoint, Customer
from models.reports import ReportDay, ReportStale
from models.work import Order, Task

__all__ = [
    "FILE_REF_PREFIX",
    "MAX_ID",
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
    "IdempotencyRecord",
    "KeyValue",
    "LabelledExample",
    "Lifecycle",
    "Message",
    "Order",
    "OutboxItem",
    "OutboxStatus",
    "PhraseDay",
    "Priority",
    "Rating",
    "RatingRequest",
    "RatingState",
    "ReportDay",
    "ReportStale",
    "StoredFile",
    "StreamEntry",
    "Task",
    "TaskStatus",
    "Warmth",
    "fits",
    "parse_id",
    "storable",
    "whole_characters",
]
