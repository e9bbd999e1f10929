"""Automation rules: ``on`` an event, ``if`` a condition holds, ``do`` actions. This module
decides which rules fire and with which actions; ``desk/`` carries the actions out."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from router.conditions import ConditionError, Node, holds, names, parse

# The events rules may listen to, with the fields their data offers (besides ``appeal.*``,
# ``customer.*`` and ``order.*``, which the desk adds when the event concerns one).
EVENTS: dict[str, frozenset[str]] = {
    "appeal.created": frozenset({"channel", "number"}),
    "appeal.status_changed": frozenset({"before", "after", "reason"}),
    "appeal.assigned": frozenset({"before", "after", "agent", "reason"}),
    "appeal.priority_changed": frozenset({"before", "after"}),
    "message.received": frozenset({"channel", "first", "message_id"}),
    "message.sent": frozenset({"channel", "source", "message_id"}),
    "sla.warning": frozenset({"target", "due", "share"}),
    "sla.breached": frozenset({"target", "due", "share"}),
    "rating.requested": frozenset({"request_id", "channel"}),
    "rating.received": frozenset({"score", "comment", "via", "agent", "request_id", "changed"}),
    "rating.commented": frozenset({"score", "comment", "via", "request_id"}),
    "order.created": frozenset({"stage", "external_id"}),
    "order.stage_changed": frozenset({"before", "after", "external_id"}),
    "order.answered": frozenset({"stage", "choice", "channel", "external_id"}),
    "customer.state_changed": frozenset({"before", "after", "field", "reason"}),
    "task.created": frozenset({"kind", "task_id", "reason"}),
    "task.due": frozenset({"kind", "task_id"}),
}
OBJECTS = ("appeal", "customer", "order", "task", "rating")
MAX_CHAIN = 3  # a rule fires at most this deep inside a chain of automation-made events


class QuietHours(BaseModel):
    """When automatic messages may reach a customer (their local time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time = time(9, 0)
    end: time = time(21, 0)
    live_minutes: int = Field(
        default=15,
        ge=0,
        description="a conversation with a message this recent is live: not held (0: always)",
    )


class Choice(BaseModel):
    """An answer the customer can give with one tap (or a confirmed link in a mail)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9_-]{1,24}$")
    title: dict[str, str] = Field(min_length=1, description="the button's label per language")
    task: bool = Field(default=False, description="picking it makes a task for a manager")


class NotifyCustomer(BaseModel):
    """A message to the customer from a template, by their preferred channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["notify_customer"]
    template: str = Field(min_length=1)
    channels: Literal["preferred", "conversation", "any"] = "preferred"
    quiet_hours: QuietHours | None = QuietHours()
    if_unreachable: Literal["call_task", "skip"] = "call_task"
    choices: list[Choice] = Field(default_factory=list, description="buttons (order events)")


class NotifyStaff(BaseModel):
    """A post in the appeal's topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["notify_staff"]
    template: str = Field(min_length=1)


class AlertManagers(BaseModel):
    """An alert in the managers chat, with the appeal's card."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["alert_managers"]
    template: str = "alert"
    buttons: tuple[Literal["take", "call"], ...] = Field(
        default=("take",),
        description="«Взять» (take the appeal, reopening it) and «Перезвонить» (a call task)",
    )


class CreateTask(BaseModel):
    """A task for a person: a call-back, a follow-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["create_task"]
    kind: str = "call"
    assignee: Literal["appeal_assignee", "manager"] | str = "appeal_assignee"
    due_minutes: int = Field(default=120, ge=0)
    template: str = Field(min_length=1)


class SetPriority(BaseModel):
    """Set the appeal's priority."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["set_priority"]
    priority: Literal["low", "normal", "high", "urgent"]


class AddTag(BaseModel):
    """Add a tag to the appeal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["add_tag"]
    tag: str = Field(min_length=1, max_length=40)


class SetWarmth(BaseModel):
    """How warm the relationship with the customer is (seed 002): hot, warm or cold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["set_warmth"]
    warmth: Literal["hot", "warm", "cold"]


class Assign(BaseModel):
    """Give the appeal to an agent or a team."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["assign"]
    agent: str | None = None
    team: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Assign:
        if (self.agent is None) == (self.team is None):
            raise ValueError("assign needs exactly one of agent or team")
        return self


class RequestRating(BaseModel):
    """Ask the customer how it went (the rating flow)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["request_rating"]
    template: str = Field(default="rating_request", min_length=1)
    channels: Literal["preferred", "conversation", "any"] = "conversation"
    quiet_hours: QuietHours | None = QuietHours()


class CallWebhook(BaseModel):
    """A signed JSON POST to another system, retried through the outbox."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["call_webhook"]
    url: str = Field(pattern=r"^https?://")


Action = Annotated[
    NotifyCustomer
    | NotifyStaff
    | AlertManagers
    | CreateTask
    | SetPriority
    | AddTag
    | SetWarmth
    | Assign
    | RequestRating
    | CallWebhook,
    Field(discriminator="action"),
]


class Rule(BaseModel):
    """One automation rule from the config."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=100)
    on: str
    when: str = Field(default="", alias="if")
    do: list[Action] = Field(min_length=1)
    enabled: bool = True

    @field_validator("on")
    @classmethod
    def _known_event(cls, value: str, info: ValidationInfo) -> str:
        if value not in EVENTS:
            raise ValueError(
                f"rule '{info.data.get('name', '?')}': unknown event '{value}' "
                f"(known: {', '.join(sorted(EVENTS))})"
            )
        return value

    @model_validator(mode="after")
    def _fields_exist(self) -> Rule:
        if not self.when:
            return self
        try:
            tree = parse(self.when)
        except ConditionError as exc:
            raise ValueError(f"rule '{self.name}': condition: {exc}") from None
        known = EVENTS[self.on]
        for name in names(tree):
            head = name.split(".", 1)[0]
            if name not in known and head not in OBJECTS:
                raise ValueError(
                    f"rule '{self.name}': the condition reads '{name}', which {self.on} does "
                    f"not have (it has {', '.join(sorted(known))}, and appeal.*, customer.*, "
                    "order.*)"
                )
        return self

    def condition(self) -> Node | None:
        """The parsed ``if``, or None when the rule always applies."""
        return _parsed(self.when) if self.when else None


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> Node:
    """A condition parsed once (rules are checked on every event they listen to)."""
    return parse(text)


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule that fires for an event, and what it asks for."""

    rule: str
    actions: tuple[Any, ...]


def firing(
    rules: Sequence[Rule],
    event: str,
    data: Mapping[str, Any],
    *,
    chain: Sequence[str] = (),
) -> list[Firing]:
    """The rules that fire for ``event`` with ``data``, in config order.

    ``chain`` names the rules whose actions led to this event; a rule already in it does not
    fire again (loop protection), and nothing fires deeper than ``MAX_CHAIN``.
    """
    if len(chain) >= MAX_CHAIN:
        return []
    out: list[Firing] = []
    for rule in rules:
        if not rule.enabled or rule.on != event or rule.name in chain:
            continue
        tree = rule.condition()
        if tree is None or holds(tree, data):
            out.append(Firing(rule.name, tuple(rule.do)))
    return out
