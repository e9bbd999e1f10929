"""Run ``appeal-desk`` with every database statement counted, for bench/load.py.

    python -m bench.querycount STATS_FILE serve|worker [appeal-desk arguments]

Tortoise's clients are wrapped where SQL leaves for the database: ``execute_insert``,
``execute_query``, ``execute_query_dict``, ``execute_many``, ``execute_script`` (only the
outermost call counts, so a method that calls another is one statement), and the transaction
round trips (``begin``/``savepoint``, ``commit``/``release_savepoint``, rollbacks), and the
reset query asyncpg's pool sends when a connection goes back to it (``reset``). A thread
writes the totals as JSON to STATS_FILE every 0.2 s; bench/load.py reads the difference over its
measurement window. Nothing of the service is changed beyond the counting.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

STATEMENTS = (
    "execute_insert",
    "execute_query",
    "execute_query_dict",
    "execute_many",
    "execute_script",
)
BEGIN = ("begin", "savepoint")
COMMIT = ("commit", "release_savepoint")
ROLLBACK = ("rollback", "savepoint_rollback")
WRITE_EVERY_S = 0.2

counts: Counter[str] = Counter()
# BENCH_QUERY_TIMES=1: wall time and count per SQL text (first 160 characters), for profiling.
TIMED = bool(os.environ.get("BENCH_QUERY_TIMES"))
sql_seconds: dict[str, float] = {}
sql_counts: Counter[str] = Counter()
_inside = contextvars.ContextVar("inside_statement", default=False)


def _counted(kind: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _inside.get():
            return await method(*args, **kwargs)
        counts[kind] += 1
        if kind == "statements" and not getattr(args[0], "_in_transaction_wrapper", False):
            counts["autocommit"] += 1
        token = _inside.set(True)
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            _inside.reset(token)
            if TIMED:
                sql = str(args[1])[:160] if len(args) > 1 else kind
                sql_seconds[sql] = sql_seconds.get(sql, 0.0) + time.perf_counter() - started
                sql_counts[sql] += 1

    return wrapper


def install() -> None:
    """Wrap the SQLite and asyncpg clients of tortoise (and their transaction wrappers)."""
    from tortoise.backends.asyncpg import client as pg
    from tortoise.backends.sqlite import client as lite

    classes: tuple[type, ...] = (lite.SqliteClient, lite.SqliteTransactionWrapper)
    classes += (pg.AsyncpgDBClient, pg.TransactionWrapper)
    kinds = dict.fromkeys(STATEMENTS, "statements")
    kinds.update(dict.fromkeys(BEGIN, "begin"))
    kinds.update(dict.fromkeys(COMMIT, "commit"))
    kinds.update(dict.fromkeys(ROLLBACK, "rollback"))
    for wrapper in (lite.SqliteTransactionWrapper, pg.TransactionWrapper):
        setattr(wrapper, "_in_transaction_wrapper", True)  # noqa: B010 (a marker of ours)
    for cls in classes:
        for name, kind in kinds.items():
            own = cls.__dict__.get(name)
            if own is not None:
                setattr(cls, name, _counted(kind, own))
    reset = asyncpg.Connection.reset

    async def counted_reset(self: asyncpg.Connection, *, timeout: float | None = None) -> None:
        if self.get_reset_query():
            counts["reset"] += 1
        await reset(self, timeout=timeout)

    asyncpg.Connection.reset = counted_reset


def _writer(path: str) -> None:
    tmp = path + ".tmp"
    while True:
        data: dict[str, Any] = {"pid": os.getpid(), "at": time.time(), **counts}
        if TIMED:
            data["sql"] = [
                [round(seconds, 3), sql_counts[sql], sql]
                for sql, seconds in sorted(sql_seconds.items(), key=lambda kv: -kv[1])[:40]
            ]
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(tmp, path)
        time.sleep(WRITE_EVERY_S)


def main() -> int:
    """Install the counters, start the stats writer, run the ``appeal-desk`` command."""
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, argv = sys.argv[1], sys.argv[2:]
    install()
    threading.Thread(target=_writer, args=(path,), daemon=True, name="query-stats").start()
    from desk.runtime.cli import main as desk_main

    return desk_main(argv)


if __name__ == "__main__":
    sys.exit(main())
