"""Orders and tasks: the work around customers that is not a conversation."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.enums import TaskStatus


class Order(Model):
    """A customer's order in an external system, tracked by its stage (seed 003)."""

    id = fields.BigIntField(primary_key=True)
    external_id = fields.CharField(max_length=100, unique=True)
    customer: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.Customer", related_name="orders", on_delete=fields.CASCADE
    )
    customer_id: int
    stage = fields.CharField(max_length=64, default="new")
    placed_at = fields.DatetimeField(null=True)  # when the customer ordered (else: received)
    amount = fields.DecimalField(max_digits=14, decimal_places=2, null=True)
    stage_history: fields.Field[list[dict[str, Any]]] = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "order"
        indexes = (("customer_id", "created_at"), ("customer_id", "placed_at"))


class Task(Model):
    """A call or follow-up an agent has to do (win-back calls, low-rating call-backs)."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=32)
    customer: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Customer", related_name="tasks", null=True, on_delete=fields.CASCADE
    )
    appeal: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Appeal", related_name="tasks", null=True, on_delete=fields.CASCADE
    )
    assignee: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Agent", related_name="tasks", null=True, on_delete=fields.SET_NULL
    )
    customer_id: int | None
    appeal_id: int | None
    assignee_id: int | None
    text = fields.TextField(default="")
    due_at = fields.DatetimeField(null=True)
    due_raised_at = fields.DatetimeField(null=True)  # when ``task.due`` was raised (once)
    status = fields.CharEnumField(TaskStatus, max_length=16, default=TaskStatus.OPEN)
    result = fields.TextField(default="")  # reached, no_answer, returned, done
    reason = fields.CharField(max_length=500, default="")  # why a lost customer left
    created_at = fields.DatetimeField(auto_now_add=True)
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "task"
        indexes = (
            ("status", "due_at"),
            ("assignee_id", "status"),
            ("customer_id", "status"),
            ("customer_id", "kind", "created_at"),
            ("kind", "completed_at"),
        )
