"""Appeals, their messages, ratings and history events."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.enums import AppealStatus, DeliveryState, Direction, Priority, RatingState


class Appeal(Model):
    """One customer request, from registration to closing («обращение»)."""

    id = fields.BigIntField(primary_key=True)
    number = fields.CharField(max_length=16, unique=True, null=True)
    customer: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.Customer", related_name="appeals", on_delete=fields.RESTRICT
    )
    channel = fields.CharField(max_length=16)
    subject = fields.CharField(max_length=300, default="")
    category = fields.CharField(max_length=64, null=True)
    priority = fields.CharEnumField(Priority, max_length=8, default=Priority.NORMAL)
    tags: fields.Field[list[str]] = fields.JSONField(default=list)
    status = fields.CharEnumField(AppealStatus, max_length=16, default=AppealStatus.NEW)
    assignee: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Agent", related_name="appeals", null=True, on_delete=fields.SET_NULL
    )
    customer_id: int
    assignee_id: int | None
    team = fields.CharField(max_length=64, null=True)
    first_response_due = fields.DatetimeField(null=True)
    first_response_at = fields.DatetimeField(null=True)
    resolution_due = fields.DatetimeField(null=True)
    resolved_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    staff_thread = fields.CharField(max_length=64, null=True)
    staff_card_ref = fields.CharField(max_length=64, null=True)
    staff_state: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    sla_state: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    waiting_since = fields.DatetimeField(null=True)
    # While pending (put off with /postpone or «Отложить»): when it comes back to work.
    postponed_until = fields.DatetimeField(null=True)
    rating_state = fields.CharEnumField(RatingState, max_length=16, default=RatingState.NONE)
    last_message_at = fields.DatetimeField(null=True)
    # Report figures, written when they happen (business seconds by the SLA calendar):
    first_response_s = fields.IntField(null=True)
    first_response_work_s = fields.IntField(null=True)
    done_at = fields.DatetimeField(null=True)  # resolved or closed; None again once reopened
    resolution_s = fields.IntField(null=True)
    resolution_work_s = fields.IntField(null=True)
    reopens = fields.SmallIntField(default=0, db_default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    messages: fields.ReverseRelation[Message]
    events: fields.ReverseRelation[Event]

    class Meta:
        table = "appeal"
        indexes = (
            ("customer_id", "status"),
            ("status", "created_at"),
            ("assignee_id", "status"),
            ("category", "status"),
            ("channel", "created_at"),
            ("status", "waiting_since"),
            ("status", "postponed_until"),
            # Covering the reports' columns: PostgreSQL reads a period from the index alone.
            ("created_at", "channel", "category", "team", "assignee_id"),
            (
                "first_response_at",
                "first_response_s",
                "first_response_work_s",
                "first_response_due",
                "reopens",
            ),
            ("done_at", "resolution_s", "resolution_work_s", "resolution_due", "reopens"),
        )

    def __str__(self) -> str:
        return self.number or f"appeal {self.id}"


class Message(Model):
    """One message of an appeal, unique by (channel, external_id): the intake idempotency key."""

    id = fields.BigIntField(primary_key=True)
    appeal: fields.ForeignKeyRelation[Appeal] = fields.ForeignKeyField(
        "models.Appeal", related_name="messages", on_delete=fields.CASCADE
    )
    direction = fields.CharEnumField(Direction, max_length=8)
    author = fields.CharField(max_length=200, default="")
    agent: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Agent", related_name="messages", null=True, on_delete=fields.SET_NULL
    )
    appeal_id: int
    agent_id: int | None
    channel = fields.CharField(max_length=16)
    address = fields.CharField(max_length=320, default="")
    external_id = fields.CharField(max_length=200, null=True)
    source_ref = fields.CharField(max_length=200, null=True, unique=True)
    text = fields.TextField(default="")
    attachments: fields.Field[list[dict[str, Any]]] = fields.JSONField(default=list)
    delivery_state = fields.CharEnumField(DeliveryState, max_length=16, default=DeliveryState.NONE)
    delivery_error = fields.CharField(max_length=500, default="")
    sent_at = fields.DatetimeField(null=True)
    edited_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "message"
        unique_together = (("channel", "external_id"),)
        indexes = (("appeal_id", "id"),)


class RatingRequest(Model):
    """One «how did it go?» sent to a customer about an appeal or an order (seed 004): valid
    until ``expires_at``; answered scores become ``Rating`` rows."""

    id = fields.BigIntField(primary_key=True)
    appeal: fields.ForeignKeyNullableRelation[Appeal] = fields.ForeignKeyField(
        "models.Appeal", related_name="rating_requests", null=True, on_delete=fields.CASCADE
    )
    order: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Order", related_name="rating_requests", null=True, on_delete=fields.CASCADE
    )
    customer: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.Customer", related_name="rating_requests", on_delete=fields.CASCADE
    )
    appeal_id: int | None
    order_id: int | None
    customer_id: int
    channel = fields.CharField(max_length=16, default="")
    expires_at = fields.DatetimeField()
    answered_at = fields.DatetimeField(null=True)
    # After a chat button press: the customer's next message there is the comment.
    comment_channel = fields.CharField(max_length=16, null=True)
    comment_until = fields.DatetimeField(null=True)
    comment_ref = fields.CharField(max_length=240, null=True, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "rating_request"
        indexes = (("appeal_id", "id"), ("customer_id", "comment_until"), ("created_at",))


class Rating(Model):
    """A customer's score 1–5 for an appeal or an order, one per day (the last one wins); the
    agent, category, team and channel are kept as they were, for the reports."""

    id = fields.BigIntField(primary_key=True)
    request: fields.ForeignKeyNullableRelation[RatingRequest] = fields.ForeignKeyField(
        "models.RatingRequest", related_name="ratings", null=True, on_delete=fields.SET_NULL
    )
    appeal: fields.ForeignKeyNullableRelation[Appeal] = fields.ForeignKeyField(
        "models.Appeal", related_name="ratings", null=True, on_delete=fields.CASCADE
    )
    order: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Order", related_name="ratings", null=True, on_delete=fields.CASCADE
    )
    customer: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.Customer", related_name="ratings", on_delete=fields.CASCADE
    )
    request_id: int | None
    appeal_id: int | None
    order_id: int | None
    customer_id: int
    score = fields.SmallIntField()
    comment = fields.TextField(default="")
    day = fields.DateField()
    via = fields.CharField(max_length=16, default="")
    channel = fields.CharField(max_length=16, default="")
    agent_id = fields.BigIntField(null=True)
    category = fields.CharField(max_length=64, null=True)
    team = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "rating"
        unique_together = (("appeal_id", "day"), ("order_id", "day"))
        indexes = (("day",), ("agent_id", "day"))


class PhraseDay(Model):
    """How many appeals of one day and category used a phrase (word lemmas), counted once the
    day is over: the reports add days up instead of reading every text again."""

    id = fields.BigIntField(primary_key=True)
    day = fields.DateField()
    category = fields.CharField(max_length=64, default="")  # "" for appeals without one
    phrase = fields.CharField(max_length=200)
    shown = fields.CharField(max_length=200, default="")  # its commonest wording that day
    appeals = fields.IntField()

    class Meta:
        table = "phrase_day"
        unique_together = (("day", "category", "phrase"),)


class Event(Model):
    """One line of history: who did what to which appeal or customer, and when."""

    id = fields.BigIntField(primary_key=True)
    appeal: fields.ForeignKeyNullableRelation[Appeal] = fields.ForeignKeyField(
        "models.Appeal", related_name="events", null=True, on_delete=fields.CASCADE
    )
    customer: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Customer", related_name="events", null=True, on_delete=fields.CASCADE
    )
    appeal_id: int | None
    customer_id: int | None
    kind = fields.CharField(max_length=64)
    actor = fields.CharField(max_length=200, default="system")
    data: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "event"
        indexes = (("appeal_id", "id"), ("customer_id", "id"), ("kind", "created_at"))


class LabelledExample(Model):
    """A text with the category a person gave it: what the router's model learns from."""

    id = fields.BigIntField(primary_key=True)
    text = fields.TextField()
    category = fields.CharField(max_length=64)
    source = fields.CharField(max_length=32, default="agent")  # agent | import
    appeal: fields.ForeignKeyNullableRelation[Appeal] = fields.ForeignKeyField(
        "models.Appeal", related_name="examples", null=True, on_delete=fields.SET_NULL
    )
    appeal_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "labelled_example"
        indexes = (("category",),)
