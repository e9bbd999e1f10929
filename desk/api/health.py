"""Readiness: the database, Redis and every enabled channel answer, each check within a short
time, so a hanging dependency makes a failed check ("timeout"), never a hung probe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol, runtime_checkable

from channels.email.mailbox import ping_mailbox
from desk.context import AppContext
from desk.ops.log_context import redact
from models import db

Check = Callable[[], Awaitable[object]]
NAMES = {"email": "email_smtp"}  # adapters whose component name says more than their kind
ERROR_MAX_LEN = 200


@runtime_checkable
class Pingable(Protocol):
    """A channel adapter that can tell whether its platform answers."""

    async def ping(self) -> None:
        """Raise when the platform cannot be reached."""
        ...


def components(ctx: AppContext) -> dict[str, Check]:
    """What this process depends on, by component name."""
    found: dict[str, Check] = {"database": db.ping}
    if ctx.settings.redis_url:
        found["redis"] = ctx.stream.ping
    for kind, adapter in ctx.adapters.items():
        if isinstance(adapter, Pingable):
            found[NAMES.get(kind, kind)] = adapter.ping
    if ctx.settings.email.disabled_reason() is None:
        found["email_imap"] = partial(ping_mailbox, ctx.settings.email)
    return found


async def run_check(check: Check, timeout_s: float) -> dict[str, Any]:
    """``{"status": "ok", "ms": 3}``, or ``"fail"`` with the error ("timeout" when it hung)."""
    started = time.perf_counter()
    error = ""
    try:
        async with asyncio.timeout(timeout_s):
            await check()
    except TimeoutError:
        error = "timeout"
    except Exception as exc:  # any failure of a dependency is a failed check, told as such
        error = redact(f"{type(exc).__name__}: {exc}")[:ERROR_MAX_LEN]
    result: dict[str, Any] = {
        "status": "fail" if error else "ok",
        "ms": round((time.perf_counter() - started) * 1000),
    }
    if error:
        result["error"] = error
    return result


async def readiness(ctx: AppContext) -> dict[str, Any]:
    """Every component checked at once: ``{"status": "ok|fail", "components": {...}}``; the
    database fails, with ``waiting_since``, for as long as the workers wait out an outage."""
    found = components(ctx)
    timeout = ctx.settings.monitoring.check_timeout_s
    results = await asyncio.gather(*(run_check(check, timeout) for check in found.values()))
    parts = dict(zip(found, results, strict=True))
    down_since = ctx.outage.down_since
    if down_since is not None:  # the workers still wait (they probe with backoff)
        waiting = {"status": "fail", "waiting_since": down_since.isoformat(timespec="seconds")}
        parts["database"] = parts["database"] | waiting
    status = "ok" if all(p["status"] == "ok" for p in parts.values()) else "fail"
    return {"status": status, "components": parts}
