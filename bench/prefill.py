"""Fill a migrated, empty database with many closed appeals quickly (for bench/load.py).

Each customer has a Telegram contact point and two closed appeals with one inbound message each.
Rows are built from the models' own defaults (so they stay valid as the schema grows), written
with COPY on PostgreSQL and with multi-row ``executemany`` batches in one transaction on SQLite.
Call with the ORM connected (``models.db.connect``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import Tortoise
from tortoise.models import Model

from models import Appeal, AppealStatus, ContactPoint, Customer, Direction, Message

APPEALS_PER_CUSTOMER = 2
BATCH = 20_000
ADDRESS_BASE = 9_000_000_000  # far from the load generator's customers


def _template(model: type[Model], **values: Any) -> dict[str, Any]:
    """One row of ``model`` as database values, with the model's defaults."""
    obj = model(**values)
    row: dict[str, Any] = {}
    for name, column in model._meta.fields_db_projection.items():
        field = model._meta.fields_map[name]
        row[column] = field.to_db_value(getattr(obj, name, None), obj)
    return row


async def _copy(model: type[Model], rows: Iterator[dict[str, Any]]) -> None:
    """Write ``rows`` to the model's table in batches."""
    conn = Tortoise.get_connection("default")
    table = model._meta.db_table
    batch: list[dict[str, Any]] = []
    columns: list[str] = []

    async def flush() -> None:
        if not batch:
            return
        records = [[r[c] for c in columns] for r in batch]
        if conn.capabilities.dialect == "postgres":
            async with conn.acquire_connection() as raw:
                await raw.copy_records_to_table(
                    table, records=[tuple(r) for r in records], columns=columns
                )
        else:
            quoted = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" for _ in columns)
            sql = f'INSERT INTO "{table}" ({quoted}) VALUES ({marks})'  # noqa: S608 (our names)
            await conn.execute_many(sql, records)
        batch.clear()

    for row in rows:
        if not columns:
            columns = list(row)
        batch.append(row)
        if len(batch) >= BATCH:
            await flush()
    await flush()
    if conn.capabilities.dialect == "postgres":
        await conn.execute_script(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "  # noqa: S608
            f'(SELECT COALESCE(MAX(id), 1) FROM "{table}"))'
        )


async def prefill(appeals: int) -> float:
    """Add ``appeals`` closed appeals (and their customers and messages); returns seconds."""
    started = time.perf_counter()
    customers = max(1, appeals // APPEALS_PER_CUSTOMER)
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=400)
    customer = _template(Customer, name="Архивный клиент", created_at=long_ago)
    customer["updated_at"] = customer["created_at"]
    point = _template(ContactPoint, customer_id=0, channel="telegram", address="", created_at=now)
    appeal = _template(
        Appeal,
        customer_id=0,
        channel="telegram",
        subject="Где мой заказ?",
        status=AppealStatus.CLOSED,
        created_at=long_ago,
        resolved_at=long_ago,
        closed_at=long_ago,
        last_message_at=long_ago,
        first_response_at=long_ago,
    )
    appeal["updated_at"] = appeal["created_at"]
    message = _template(
        Message,
        appeal_id=0,
        direction=Direction.IN,
        author="Архивный клиент",
        channel="telegram",
        address="",
        text="Где мой заказ? Уже неделю жду.",
        created_at=long_ago,
    )

    def customer_rows() -> Iterator[dict[str, Any]]:
        for i in range(1, customers + 1):
            yield {**customer, "id": i}

    def point_rows() -> Iterator[dict[str, Any]]:
        for i in range(1, customers + 1):
            yield {**point, "id": i, "customer_id": i, "address": str(ADDRESS_BASE + i)}

    def appeal_rows() -> Iterator[dict[str, Any]]:
        for i in range(1, appeals + 1):
            owner = (i - 1) % customers + 1
            yield {**appeal, "id": i, "customer_id": owner, "number": f"A-{i:06d}"}

    def message_rows() -> Iterator[dict[str, Any]]:
        for i in range(1, appeals + 1):
            owner = (i - 1) % customers + 1
            address = str(ADDRESS_BASE + owner)
            yield {
                **message,
                "id": i,
                "appeal_id": i,
                "address": address,
                "external_id": f"{address}:{i}",
            }

    await _copy(Customer, customer_rows())
    await _copy(ContactPoint, point_rows())
    await _copy(Appeal, appeal_rows())
    await _copy(Message, message_rows())
    conn = Tortoise.get_connection("default")
    if conn.capabilities.dialect == "postgres":
        await conn.execute_script("ANALYZE")
    return time.perf_counter() - started
