"""Everything the desk holds about one customer, as one JSON document (a data subject's
access request).

The document (``format`` ``appeal-desk/customer-export``, ``version`` 1) has these keys; every
row carries all the columns of its table, datetimes in ISO 8601 with their UTC offset, amounts
as decimal strings, and keys that are absent in a version stay absent in the next::

    format, version, exported_at
    customer          the customer row (name, language, time zone, life cycle, warmth, …)
    consents          {"do_not_contact": bool, "unreachable": ["telegram:12345", …]}
    contact_points    the addresses they write from (channel, address, reachable, verified)
    appeals           their appeals, each with
        messages        in, out and staff notes: texts, authors, attachments (kind, ref, name,
                        mime, size and, for files the desk stores, ``stored_file``: id, name,
                        mime, size, sha256; file contents are not included)
        events          the appeal's history
    orders            their orders with stage histories
    rating_requests   requests sent to them
    ratings           their scores and comments
    tasks             calls and follow-ups about them
    events            history about them that belongs to no appeal (orders, life cycle, tasks)
    deliveries        outbox rows to their addresses or about their appeals (what was sent,
                      what waits), including copies posted to the staff group
    router_examples   texts of their appeals the router learned categories from
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tortoise.expressions import Q

from models import (
    FILE_REF_PREFIX,
    Appeal,
    ContactPoint,
    Customer,
    Event,
    LabelledExample,
    Message,
    Order,
    OutboxItem,
    Rating,
    RatingRequest,
    StoredFile,
    Task,
)

FORMAT = "appeal-desk/customer-export"
VERSION = 1


def plain(value: Any) -> Any:
    """A column value as JSON: ISO 8601 datetimes, decimal strings, enum values."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: plain(value) for key, value in row.items()} for row in rows]


async def customer_scope(customer_id: int) -> tuple[list[int], set[tuple[str, str]]]:
    """The ids of a customer's appeals and their (channel, address) pairs."""
    appeals = await Appeal.filter(customer_id=customer_id).order_by("id").values("id")
    points = await ContactPoint.filter(customer_id=customer_id).values("channel", "address")
    return [int(a["id"]) for a in appeals], {(str(p["channel"]), str(p["address"])) for p in points}


def file_refs(messages: Iterable[dict[str, Any]]) -> set[str]:
    """The stored-file refs the messages' attachments name."""
    return {
        str(a.get("ref", ""))
        for m in messages
        for a in m.get("attachments") or ()
        if str(a.get("ref", "")).startswith(FILE_REF_PREFIX)
    }


async def deliveries_of(
    appeal_ids: list[int], addresses: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Outbox rows about the appeals or to the addresses."""
    query = Q(appeal_id__in=appeal_ids) if appeal_ids else Q(id=-1)
    for channel, address in addresses:
        query |= Q(channel=channel, address=address)
    return list(await OutboxItem.filter(query).order_by("id").values())


async def export_customer(customer_id: int, now: datetime) -> dict[str, Any] | None:
    """The export document of one customer, or None when there is no such customer."""
    customer = await Customer.filter(id=customer_id).values()
    if not customer:
        return None
    appeal_ids, addresses = await customer_scope(customer_id)
    points = await ContactPoint.filter(customer_id=customer_id).order_by("id").values()
    appeals = await Appeal.filter(customer_id=customer_id).order_by("id").values()
    messages = await Message.filter(appeal_id__in=appeal_ids).order_by("id").values()
    about = Q(customer_id=customer_id) | Q(appeal_id__in=appeal_ids)
    events = await Event.filter(about).order_by("id").values()
    refs = file_refs(messages)
    ids = [
        int(r.removeprefix(FILE_REF_PREFIX)) for r in refs if r[len(FILE_REF_PREFIX) :].isdigit()
    ]
    files = {
        f"{FILE_REF_PREFIX}{f['id']}": plain(f)
        for f in await StoredFile.filter(id__in=ids).values(
            "id", "name", "mime", "size", "sha256", "created_at"
        )
    }
    for message in messages:
        for attachment in message["attachments"] or ():
            stored = files.get(str(attachment.get("ref", "")))
            if stored is not None:
                attachment["stored_file"] = stored
    by_appeal: dict[int, dict[str, list[dict[str, Any]]]] = {
        a["id"]: {"messages": [], "events": []} for a in appeals
    }
    for message in _rows(messages):
        by_appeal[message["appeal_id"]]["messages"].append(message)
    loose: list[dict[str, Any]] = []
    for event in _rows(events):
        target = by_appeal.get(event["appeal_id"]) if event["appeal_id"] is not None else None
        (target["events"] if target is not None else loose).append(event)
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": now.isoformat(),
        "customer": _rows(customer)[0],
        "consents": {
            "do_not_contact": bool(customer[0]["do_not_contact"]),
            "unreachable": [f"{p['channel']}:{p['address']}" for p in points if not p["reachable"]],
        },
        "contact_points": _rows(points),
        "appeals": [{**row, **by_appeal[row["id"]]} for row in _rows(appeals)],
        "orders": _rows(await Order.filter(customer_id=customer_id).order_by("id").values()),
        "rating_requests": _rows(
            await RatingRequest.filter(customer_id=customer_id).order_by("id").values()
        ),
        "ratings": _rows(await Rating.filter(customer_id=customer_id).order_by("id").values()),
        "tasks": _rows(await Task.filter(about).order_by("id").values()),
        "events": loose,
        "deliveries": _rows(await deliveries_of(appeal_ids, addresses)),
        "router_examples": _rows(
            await LabelledExample.filter(appeal_id__in=appeal_ids).order_by("id").values()
        ),
    }
