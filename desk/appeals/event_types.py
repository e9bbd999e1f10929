"""The domain events, one type per kind: what happened to an appeal, a customer, an order or a
task, with the fields that kind carries.

An event is written to the history as ``Event(kind=KIND, data=event.data())`` (stored rows keep
the names, so rules in the config, reports and exports read them as before) and handed to the
subscribers of its type (``desk/appeals/events.py``). Subscribers match on the types::

    match event:
        case MessageReceived(first=True): ...
        case AppealTransferred(): ...
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from models import Appeal, Customer


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    """Something that happened; ``actor`` did it (``customer``, ``router``, an agent's name…)."""

    KIND: ClassVar[str] = ""
    actor: str
    appeal: Appeal | None = None
    # The customer as the emitter has it, when it has it (spares subscribers a read).
    customer: Customer | None = None
    # The automation rules whose actions led to it (``EventBus.caused_by``), outermost first.
    cause: tuple[str, ...] = ()

    @property
    def customer_id(self) -> int | None:
        """The customer it concerns: the one given, else the appeal's."""
        if self.customer is not None:
            return int(self.customer.id)
        return self.appeal.customer_id if self.appeal is not None else None

    def data(self) -> dict[str, Any]:
        """Its own fields (not actor, appeal, customer): the history row's ``data``, the values
        of automation conditions and of staff templates."""
        return {name: getattr(self, name) for name in _payload(type(self))}


_COMMON = frozenset({"actor", "appeal", "customer", "cause"})
_PAYLOADS: dict[type[DomainEvent], tuple[str, ...]] = {}


def _payload(cls: type[DomainEvent]) -> tuple[str, ...]:
    names = _PAYLOADS.get(cls)
    if names is None:
        names = _PAYLOADS[cls] = tuple(f.name for f in fields(cls) if f.name not in _COMMON)
    return names


# -- appeals ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AppealCreated(DomainEvent):
    KIND = "appeal.created"
    channel: str
    address: str
    number: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusMove(DomainEvent):
    """An appeal moved from one status to another."""

    before: str
    after: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusChanged(StatusMove):
    KIND = "appeal.status_changed"
    until: str = ""  # put off (``pending``): when it comes back to work (ISO time)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppealReopened(StatusMove):
    """A resolved appeal open again (the customer wrote inside the reopen window)."""

    KIND = "appeal.reopened"


@dataclass(frozen=True, slots=True, kw_only=True)
class AppealAssigned(DomainEvent):
    KIND = "appeal.assigned"
    before: int | None
    after: int | None
    agent: str | None
    reason: str = ""
    strategy: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppealTagged(DomainEvent):
    KIND = "appeal.tagged"
    tag: str
    added: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AppealTransferred(DomainEvent):
    KIND = "appeal.transferred"
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class PriorityChanged(DomainEvent):
    KIND = "appeal.priority_changed"
    before: str
    after: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppealCategorised(DomainEvent):
    KIND = "appeal.categorised"
    before: str | None
    category: str
    team: str | None
    confidence: float
    reasons: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppealUnsorted(DomainEvent):
    """The classifier was not sure: the staff pick the category with one tap."""

    KIND = "appeal.unsorted"
    scores: dict[str, float]
    reasons: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppealImportant(DomainEvent):
    """«Важно»: the customer may be lost, managers must know."""

    KIND = "appeal.important"
    reasons: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppealWaiting(DomainEvent):
    """No agent could take it: it waits unassigned."""

    KIND = "appeal.waiting"
    reason: str


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived(DomainEvent):
    KIND = "message.received"
    message_id: int
    channel: str
    album: bool
    first: bool  # it opened the appeal
    new_customer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEdited(DomainEvent):
    KIND = "message.edited"
    message_id: int
    before: str
    after: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageExtended(DomainEvent):
    """More files of an album joined a stored message."""

    KIND = "message.extended"
    message_id: int
    added: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSent(DomainEvent):
    KIND = "message.sent"
    message_id: int
    channel: str
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyEdited(DomainEvent):
    KIND = "reply.edited"
    message_id: int
    before: str
    after: str
    delivered: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteAdded(DomainEvent):
    KIND = "note.added"
    message_id: int
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Undelivered(DomainEvent):
    KIND = "delivery.failed"
    outbox_id: int | None
    channel: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rerouted(DomainEvent):
    KIND = "delivery.rerouted"
    outbox_id: int | None
    before: str
    after: str
    reason: str


# -- customers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerCreated(DomainEvent):
    KIND = "customer.created"
    channel: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerLinked(DomainEvent):
    KIND = "customer.linked"
    channel: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerMerged(DomainEvent):
    KIND = "customer.merged"
    merged: int
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerStateChanged(DomainEvent):
    KIND = "customer.state_changed"
    field: str
    before: str
    after: str
    reason: str


# -- ratings ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RatingRequested(DomainEvent):
    KIND = "rating.requested"
    request_id: int
    channel: str
    order_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RatingReceived(DomainEvent):
    KIND = "rating.received"
    score: int
    comment: str
    via: str
    agent: str
    request_id: int
    rating_id: int
    order_id: int | None
    changed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RatingCommented(DomainEvent):
    KIND = "rating.commented"
    score: int
    comment: str
    via: str
    request_id: int
    rating_id: int
    order_id: int | None


# -- orders -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCreated(DomainEvent):
    KIND = "order.created"
    order_id: int
    external_id: str
    stage: str
    placed_at: str | None
    amount: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAnswered(DomainEvent):
    KIND = "order.answered"
    order_id: int
    external_id: str
    stage: str
    choice: str
    channel: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStageChanged(DomainEvent):
    KIND = "order.stage_changed"
    order_id: int
    external_id: str
    before: str | None
    after: str


# -- SLA --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaRaised(DomainEvent):
    """A due time near (warning) or passed (breach)."""

    target: str
    due: str
    share: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaWarning(SlaRaised):
    KIND = "sla.warning"


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaBreached(SlaRaised):
    KIND = "sla.breached"


# -- tasks ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCreated(DomainEvent):
    KIND = "task.created"
    task_id: int
    kind: str
    reason: str
    text: str
    once: str = ""  # the cause a task is made once for (see desk/appeals/tasks.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDue(DomainEvent):
    KIND = "task.due"
    task_id: int
    kind: str
    text: str
    due: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompleted(DomainEvent):
    KIND = "task.completed"
    task_id: int
    kind: str
    result: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskReason(DomainEvent):
    """The reason a lost customer gave, recorded after the call."""

    KIND = "task.reason"
    task_id: int
    reason: str


EVENT_TYPES: dict[str, type[DomainEvent]] = {  # by the history's names
    kind.KIND: kind
    for kind in list(globals().values())
    if isinstance(kind, type) and issubclass(kind, DomainEvent) and kind.KIND
}
