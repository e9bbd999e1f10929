"""Customers, the addresses they write from, and the agents who answer them."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.enums import AgentRole, Lifecycle, Warmth


class Customer(Model):
    """A person or company that writes to the desk, across all its contact points."""

    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=200, default="")
    language = fields.CharField(max_length=8, default="ru")
    timezone = fields.CharField(max_length=64, default="")
    preferred_channel = fields.CharField(max_length=16, null=True)
    lifecycle = fields.CharEnumField(Lifecycle, max_length=16, default=Lifecycle.PROSPECT)
    warmth = fields.CharEnumField(Warmth, max_length=8, default=Warmth.WARM)
    vip = fields.BooleanField(default=False)
    do_not_contact = fields.BooleanField(default=False)
    last_order_at = fields.DatetimeField(null=True)
    # When the customer counts as lost if no order comes first (set at each order).
    lost_after = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    contact_points: fields.ReverseRelation[ContactPoint]

    class Meta:
        table = "customer"
        indexes = (("lifecycle", "lost_after"),)

    def __str__(self) -> str:
        return self.name or f"customer {self.id}"


class ContactPoint(Model):
    """One address of a customer on one channel, unique by (channel, address)."""

    id = fields.BigIntField(primary_key=True)
    customer: fields.ForeignKeyRelation[Customer] = fields.ForeignKeyField(
        "models.Customer", related_name="contact_points", on_delete=fields.CASCADE
    )
    customer_id: int
    channel = fields.CharField(max_length=16)
    address = fields.CharField(max_length=320)
    reachable = fields.BooleanField(default=True)
    verified = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_seen_at = fields.DatetimeField(null=True)

    class Meta:
        table = "contact_point"
        unique_together = (("channel", "address"),)


class Agent(Model):
    """A staff member who answers appeals from the staff group or the API."""

    id = fields.BigIntField(primary_key=True)
    telegram_id = fields.BigIntField(null=True, unique=True)
    name = fields.CharField(max_length=200)
    role = fields.CharEnumField(AgentRole, max_length=16, default=AgentRole.AGENT)
    teams: fields.Field[list[str]] = fields.JSONField(default=list)
    on_duty = fields.BooleanField(default=True)
    capacity = fields.IntField(default=10)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agent"

    def __str__(self) -> str:
        return self.name
