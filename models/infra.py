"""Rows that carry the service's own machinery: outbox, local stream, tokens, keys."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.enums import OutboxStatus


class OutboxItem(Model):
    """One message to deliver, delivered in id order within its ``queue_key``."""

    id = fields.BigIntField(primary_key=True)
    appeal: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Appeal", related_name="outbox", null=True, on_delete=fields.CASCADE
    )
    message: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Message", related_name="outbox", null=True, on_delete=fields.SET_NULL
    )
    appeal_id: int | None
    message_id: int | None
    channel = fields.CharField(max_length=16)
    address = fields.CharField(max_length=320)
    queue_key = fields.CharField(max_length=400)
    payload: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    status = fields.CharEnumField(OutboxStatus, max_length=16, default=OutboxStatus.PENDING)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    locked_by = fields.CharField(max_length=100, null=True)
    locked_until = fields.DatetimeField(null=True)
    last_error = fields.CharField(max_length=500, default="")
    external_id = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)
    # What the platform reported after the send, for channels that report (SMS): delivered,
    # failed, unknown (no final report in time); null while one is awaited or none comes.
    receipt = fields.CharField(max_length=16, null=True)

    class Meta:
        table = "outbox"
        indexes = (
            ("status", "next_attempt_at"),
            ("queue_key", "status", "id"),
            ("channel", "address", "external_id"),
        )


class StreamEntry(Model):
    """An entry of the local appeal stream (the embedded default, when Redis is not set)."""

    id = fields.BigIntField(primary_key=True)
    payload: fields.Field[dict[str, Any]] = fields.JSONField()
    created_at = fields.DatetimeField(auto_now_add=True)
    claimed_by = fields.CharField(max_length=100, null=True)
    claimed_until = fields.DatetimeField(null=True)
    deliveries = fields.IntField(default=0)
    dead = fields.BooleanField(default=False)
    error = fields.CharField(max_length=500, default="")

    class Meta:
        table = "stream_entry"
        indexes = (("dead", "id"),)


class ApiToken(Model):
    """A bearer token for staff and integrations (only its SHA-256 is stored)."""

    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=100, unique=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    role = fields.CharField(max_length=16, default="agent")
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)  # written at most once a minute
    expires_at = fields.DatetimeField(null=True)  # none: until revoked

    class Meta:
        table = "api_token"


class IdempotencyRecord(Model):
    """An ``Idempotency-Key`` seen on a create request, with what it created. Keys are unique
    per operation and caller: one caller's keys neither block nor reveal another's."""

    id = fields.BigIntField(primary_key=True)
    operation = fields.CharField(max_length=32)  # "appeal", "order", "order-stage"
    caller = fields.CharField(max_length=200)  # "anonymous", or the API caller ("api:shop")
    key = fields.CharField(max_length=200)  # as the caller sent it
    fingerprint = fields.CharField(max_length=64)
    external_id = fields.CharField(max_length=200)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "idempotency_record"
        unique_together = (("operation", "caller", "key"),)


class KeyValue(Model):
    """Small pieces of service state (the generated signing key, schema marks)."""

    key = fields.CharField(max_length=100, primary_key=True)
    value = fields.TextField()

    class Meta:
        table = "key_value"
