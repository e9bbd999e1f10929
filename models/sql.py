"""Parameterised SQL for the hot path: one statement for many rows, on SQLite and PostgreSQL.

The ORM builds each statement in Python (pypika) and makes a model object of every row; on the
intake and delivery paths that work, not the database, was the bound. These helpers send the
same tables a few statements per batch through tortoise's own connection, so they join the
caller's transaction. Values go as parameters, never into the text: ``?`` markers for SQLite,
``$n`` for asyncpg. JSON columns take ``json_value(...)``; datetimes and booleans go as they
are (the sqlite3 adapters tortoise registers store datetimes as it does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any, TypeVar

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

M = TypeVar("M", bound=Model)

# SQLite allows 32,766 parameters in one statement (since 3.32), asyncpg 32,767: big batches
# are sent in chunks under this.
MAX_PARAMS = 30_000
DEFAULT = "default"
# The local stream's own SQLite file beside the database's (``models/db.py``), so appends never
# wait for intake's transactions on the database's one connection. Absent on PostgreSQL: there
# the stream's table is in the database, and statements on this name go to the default.
STREAM = "stream"


# Set inside ``inline()``: short statements on SQLite run in the event loop's thread.
INLINE: ContextVar[bool] = ContextVar("sqlite_inline", default=False)


@contextlib.contextmanager
def inline() -> Iterator[None]:
    """Inside, short statements on SQLite run in the event loop's thread instead of going to
    the connection's thread and back (``models/sqlite_client.py`` says which); for the hot
    path's batches, whose statements are indexed reads and rows written in a transaction. No
    effect on PostgreSQL."""
    token = INLINE.set(True)
    try:
        yield
    finally:
        INLINE.reset(token)


# Rows a multi-row INSERT writes at most when it runs in the event loop's thread: a batch's
# history (a thousand events of 300 messages) in one statement kept the loop 50-100 ms, and
# every webhook answer waiting behind it. Fifty rows take a few ms.
INLINE_ROWS = 50


# Work that keeps the event loop (a batch's statements run inline, its Python between them)
# gives it a turn at least this often, so a webhook's answer waits for no long stretch.
TURN_S = 0.0002
_turned = [0.0]  # when a caller of ``give_turn`` last gave the loop a turn


async def give_turn() -> None:
    """Give the event loop a turn when the work calling this has kept it ``TURN_S`` since the
    last turn given here (cheap otherwise: call it in long loops of a batch)."""
    now = time.perf_counter()
    if now - _turned[0] > TURN_S:
        await asyncio.sleep(0)
        _turned[0] = time.perf_counter()


# Connections of our own beside the ORM's one (tortoise would ask every ``in_transaction()``
# which of its connections it means): set by ``models/db.py`` when it connects.
OWN: dict[str, BaseDBAsyncClient] = {}


def connection(name: str = DEFAULT) -> BaseDBAsyncClient:
    """The named connection: the stream's own when it has one, else the ORM's default (or the
    transaction the caller is inside)."""
    own = OWN.get(name)
    if own is not None:
        return own
    conn: BaseDBAsyncClient = connections.get(DEFAULT)
    return conn


def is_postgres(conn: BaseDBAsyncClient) -> bool:
    """Whether ``conn`` speaks PostgreSQL (else SQLite)."""
    return conn.capabilities.dialect == "postgres"


def json_value(value: Any) -> str:
    """A JSON column's parameter, as tortoise's JSONField writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def markers(conn: BaseDBAsyncClient, count: int, start: int = 1) -> list[str]:
    """``count`` parameter markers, numbered from ``start`` where the dialect numbers them."""
    if is_postgres(conn):
        return [f"${i}" for i in range(start, start + count)]
    return ["?"] * count


def in_list(conn: BaseDBAsyncClient, count: int, start: int = 1) -> str:
    """``(?, ?, …)`` for an ``IN`` of ``count`` values."""
    return "(" + ", ".join(markers(conn, count, start)) + ")"


def _chunks(
    conn: BaseDBAsyncClient, rows: Sequence[Sequence[Any]], width: int
) -> list[Sequence[Sequence[Any]]]:
    size = max(1, MAX_PARAMS // max(width, 1))
    if INLINE.get() and not is_postgres(conn):  # the loop waits for each: keep them short
        size = min(size, INLINE_ROWS)
    return [rows[i : i + size] for i in range(0, len(rows), size)]


async def insert_many(
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    returning: str | None = "id",
    using: str = DEFAULT,
) -> list[Any]:
    """Insert ``rows`` with one multi-row ``INSERT`` (per 30,000 parameters); returns the
    ``returning`` column of each row in the order given (both databases return the rows of a
    multi-row VALUES in order), or nothing when ``returning`` is None."""
    if not rows:
        return []
    conn = connection(using)
    width = len(columns)
    names = ", ".join(f'"{c}"' for c in columns)
    out: list[Any] = []
    for chunk in _chunks(conn, rows, width):
        marks = markers(conn, width * len(chunk))
        groups = ", ".join(
            "(" + ", ".join(marks[i * width : (i + 1) * width]) + ")" for i in range(len(chunk))
        )
        sql = f'INSERT INTO "{table}" ({names}) VALUES {groups}'  # noqa: S608 (markers only)
        params = [value for row in chunk for value in row]
        if returning is None:
            await conn.execute_query(sql, params)
            continue
        found = await conn.execute_query_dict(f'{sql} RETURNING "{returning}"', params)
        out += [row[returning] for row in found]
    return out


async def insert_models(objects: Sequence[Model]) -> None:
    """Insert objects made in Python (``Model(...)``, not saved yet), all of one model, with one
    multi-row INSERT; each gets its id and counts as saved, as ``Model.create`` leaves it. The
    values are the ORM's own (``to_db_value``: defaults, ``auto_now``, JSON, enums)."""
    if not objects:
        return
    meta = type(objects[0])._meta
    names = [
        name
        for name in meta.fields_db_projection
        if not (meta.fields_map[name].pk and meta.fields_map[name].generated)
    ]
    fields = [(name, meta.fields_map[name]) for name in names]
    rows = [[f.to_db_value(getattr(o, n), o) for n, f in fields] for o in objects]
    columns = [meta.fields_db_projection[name] for name in names]
    ids = await insert_many(meta.db_table, columns, rows, returning=meta.db_pk_column)
    for obj, pk in zip(objects, ids, strict=True):
        obj.pk = pk
        obj._saved_in_db = True


async def execute_in(text: str, values: Sequence[Any], *, before: Sequence[Any] = ()) -> int:
    """Run ``text``, whose one ``{in}`` stands for the list ``values`` (chunked when long) and
    ``{p1}``, ``{p2}``, … for ``before``; returns the rows changed."""
    if not values:
        return 0
    conn = connection()
    changed = 0
    size = MAX_PARAMS - len(before)
    fixed = {f"p{n + 1}": m for n, m in enumerate(markers(conn, len(before)))}
    for i in range(0, len(values), size):
        chunk = values[i : i + size]
        statement = text.format(**fixed, **{"in": in_list(conn, len(chunk), len(before) + 1)})
        count, _ = await conn.execute_query(statement, [*before, *chunk])
        changed += int(count)
    return changed


async def select_in(
    sql: str, values: Sequence[Any], *, before: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    """Rows of ``sql``, whose one ``{in}`` stands for the list ``values`` (chunked when long);
    ``before`` are parameters of markers written before ``{in}`` (``{p1}``, ``{p2}``, …)."""
    if not values:
        return []
    conn = connection()
    rows: list[dict[str, Any]] = []
    size = MAX_PARAMS - len(before)
    fixed = {f"p{n + 1}": m for n, m in enumerate(markers(conn, len(before)))}
    for i in range(0, len(values), size):
        chunk = values[i : i + size]
        text = sql.format(**fixed, **{"in": in_list(conn, len(chunk), len(before) + 1)})
        rows += [dict(r) for r in await conn.execute_query_dict(text, [*before, *chunk])]
    return rows


async def update_each(
    table: str,
    column: str,
    values: Sequence[tuple[Any, Any]],
    *,
    also: str = "",
    params: Sequence[Any] = (),
) -> int:
    """Set ``column`` of each row to its own value, ``values`` being (id, value) pairs, with
    one ``UPDATE … SET column = CASE id WHEN … END`` (per 30,000 parameters); ``also`` adds
    assignments common to every row, its markers written ``{p1}``, … for ``params``. Returns
    the rows changed."""
    if not values:
        return 0
    conn = connection()
    changed = 0
    fixed = len(params)
    size = max(1, (MAX_PARAMS - fixed) // 3)
    for i in range(0, len(values), size):
        chunk = values[i : i + size]
        # Markers in the order they appear in the text (SQLite's are positional).
        marks = markers(conn, 3 * len(chunk) + fixed)
        pairs = marks[: 2 * len(chunk)]
        case = " ".join(f"WHEN {pairs[2 * j]} THEN {pairs[2 * j + 1]}" for j in range(len(chunk)))
        own = marks[2 * len(chunk) : 2 * len(chunk) + fixed]
        common = also.format(**{f"p{n + 1}": m for n, m in enumerate(own)})
        ids = ", ".join(marks[2 * len(chunk) + fixed :])
        statement = (
            f'UPDATE "{table}" SET "{column}" = CASE "id" {case} END'  # noqa: S608 (markers only)
            + (f", {common}" if common else "")
            + f' WHERE "id" IN ({ids})'
        )
        args = [*(v for pair in chunk for v in pair), *params, *(key for key, _ in chunk)]
        count, _ = await conn.execute_query(statement, args)
        changed += int(count)
    return changed


def _numbered(conn: BaseDBAsyncClient, text: str, count: int) -> str:
    """``text`` with its markers ``{p1}``, ``{p2}``, … written in the dialect's way."""
    return text.format(**{f"p{n + 1}": m for n, m in enumerate(markers(conn, count))})


async def execute(text: str, params: Sequence[Any] = (), *, using: str = DEFAULT) -> int:
    """Run one statement whose markers are written ``{p1}``, ``{p2}``, …; rows changed."""
    conn = connection(using)
    changed, _ = await conn.execute_query(_numbered(conn, text, len(params)), list(params))
    return int(changed)


async def fetch(
    text: str, params: Sequence[Any] = (), *, using: str = DEFAULT
) -> list[dict[str, Any]]:
    """The rows of one statement (a SELECT, or a change with RETURNING), markers as above."""
    conn = connection(using)
    found = await conn.execute_query_dict(_numbered(conn, text, len(params)), list(params))
    return [dict(row) for row in found]


def listed(first: int, count: int) -> str:
    """``({p<first>}, …)``: the numbered markers of an ``IN`` list of ``count`` values, for the
    text of ``fetch`` or ``execute`` (keep the numbers rising through the text: SQLite's
    markers are positional)."""
    return "(" + ", ".join(f"{{p{n}}}" for n in range(first, first + count)) + ")"


def models_of(model: type[M], rows: Iterable[dict[str, Any]]) -> list[M]:
    """Model objects of rows read without the ORM (every column selected), made as the ORM
    makes them: each column converted by its field."""
    return [model._init_from_db(**row) for row in rows]


def datetime_loaded(value: datetime | str) -> datetime:
    """A datetime column's value as read without the ORM: text on SQLite, a datetime on
    PostgreSQL."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def json_loaded(value: Any) -> Any:
    """A JSON column's value as read without the ORM: text on SQLite (and asyncpg without a
    codec), already decoded where a codec is set."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value
