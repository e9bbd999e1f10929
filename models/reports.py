"""What the reports keep of finished days: their figures, and which days changed after."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class ReportDay(Model):
    """The figures of one finished day (in the company's time zone) for one line: ``all``
    (the whole desk), or one ``channel``, ``category``, ``team`` or ``agent`` (``key``). Each
    figure belongs to the day its moment falls on: an appeal opened on Monday, answered on
    Tuesday and resolved on Friday counts as opened on Monday, answered on Tuesday and done on
    Friday. The ``all`` line also keeps the durations and the SLA breaches, and marks the day
    as counted."""

    id = fields.BigIntField(primary_key=True)
    day = fields.DateField()
    kind = fields.CharField(max_length=16)
    key = fields.CharField(max_length=64, default="")
    created = fields.IntField(default=0)  # appeals opened
    answered = fields.IntField(default=0)  # first answers given
    answered_due = fields.IntField(default=0)  # of them, with a due time
    answered_met = fields.IntField(default=0)  # of them, on time
    done = fields.IntField(default=0)  # appeals resolved or closed
    done_due = fields.IntField(default=0)
    done_met = fields.IntField(default=0)
    reopened = fields.IntField(default=0)  # of the appeals done, how many had been reopened
    zone = fields.CharField(max_length=64, default="")  # the time zone the day was counted in
    # ``all`` only: durations per target and clock, SLA breaches raised per target
    figures: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    counted_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "report_day"
        unique_together = (("day", "kind", "key"),)


class ReportStale(Model):
    """A finished day whose figures changed after it was counted (a reopening, a new owner or
    category, a due time moved): counted again before it is read or by the night's job."""

    id = fields.BigIntField(primary_key=True)
    day = fields.DateField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "report_stale"
        indexes = (("day",),)
