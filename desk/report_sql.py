"""The report queries PostgreSQL answers in one pass where the ORM would carry every row into
Python: nearest-rank percentiles (``percentile_disc``) with the SLA counts beside them, and SLA
breaches counted by target. Elsewhere (SQLite, the embedded default) these return None and the
reports count the same figures through the ORM."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise import Tortoise

# The columns a query may name: fixed here, never taken from a request.
COLUMNS = frozenset(
    {
        "first_response_at",
        "first_response_s",
        "first_response_work_s",
        "first_response_due",
        "done_at",
        "resolution_s",
        "resolution_work_s",
        "resolution_due",
    }
)


@dataclass(frozen=True, slots=True)
class TargetRow:
    """The figures of one SLA target over the appeals whose moment falls in a range."""

    timed: int
    median_s: int | None
    p90_s: int | None
    work_median_s: int | None
    work_p90_s: int | None
    with_due: int
    met: int
    reopened: int


def _postgres() -> bool:
    return bool(Tortoise.get_connection("default").capabilities.dialect == "postgres")


async def target_row(
    at: str, wall: str, work: str, due: str, start: datetime, end: datetime
) -> TargetRow | None:
    """Over appeals with ``at`` in ``[start, end)``; None when the database is not PostgreSQL."""
    if not _postgres():
        return None
    if not {at, wall, work, due} <= COLUMNS:
        raise ValueError(f"not a report column: {sorted({at, wall, work, due} - COLUMNS)}")
    both = f"coalesce({work}, {wall})"
    query = (
        f"SELECT count({wall}) AS timed, "  # noqa: S608 (fixed column names only)
        f"percentile_disc(0.5) WITHIN GROUP (ORDER BY {wall}) AS median_s, "
        f"percentile_disc(0.9) WITHIN GROUP (ORDER BY {wall}) AS p90_s, "
        f"percentile_disc(0.5) WITHIN GROUP (ORDER BY {both}) AS work_median_s, "
        f"percentile_disc(0.9) WITHIN GROUP (ORDER BY {both}) AS work_p90_s, "
        f"count({due}) AS with_due, "
        f"count(*) FILTER (WHERE {at} <= {due}) AS met, "
        "count(*) FILTER (WHERE reopens > 0) AS reopened "
        f"FROM appeal WHERE {at} >= $1 AND {at} < $2"
    )
    _, rows = await Tortoise.get_connection("default").execute_query(query, [start, end])
    row = rows[0]
    return TargetRow(
        timed=int(row["timed"]),
        median_s=_int(row["median_s"]),
        p90_s=_int(row["p90_s"]),
        work_median_s=_int(row["work_median_s"]),
        work_p90_s=_int(row["work_p90_s"]),
        with_due=int(row["with_due"]),
        met=int(row["met"]),
        reopened=int(row["reopened"]),
    )


async def breach_counts(start: datetime, end: datetime) -> dict[str, int] | None:
    """SLA breaches raised in ``[start, end)`` per target; None when not PostgreSQL."""
    if not _postgres():
        return None
    query = (
        "SELECT data->>'target' AS target, count(*) AS n FROM event "
        "WHERE kind = 'sla.breached' AND created_at >= $1 AND created_at < $2 GROUP BY 1"
    )
    _, rows = await Tortoise.get_connection("default").execute_query(query, [start, end])
    return {str(row["target"] or ""): int(row["n"]) for row in rows}


def _int(value: object) -> int | None:
    return None if value is None else int(str(value))
