"""The bots' routers: nothing an update meets goes to a worker thread; buttons pack as before."""

from __future__ import annotations

import pytest
from aiogram import Router
from pydantic import ValidationError

from bots.callbacks import (
    AppealButton,
    CallButton,
    CategoryButton,
    GiveButton,
    JoinButton,
    TaskReasonButton,
    TaskResultButton,
)
from bots.customer import customer_router
from bots.managers import managers_router
from bots.staff import staff_router


def test_every_filter_and_handler_runs_in_the_event_loop() -> None:
    """aiogram runs a callable that is not a coroutine function (a bare ``F.…`` magic filter
    among them) through ``asyncio.to_thread``: a trip to a thread and back per update."""
    routers: list[Router] = [managers_router(), staff_router(), customer_router()]
    sync = []
    for router in routers:
        for name, observer in router.observers.items():
            for f in observer._handler.filters or []:  # the router-wide filters
                if not f.awaitable:
                    sync.append(f"{router.name}.{name} filter {f.callback!r}")
            for handler in observer.handlers:
                if not handler.awaitable:
                    sync.append(f"{router.name}.{name} handler {handler.callback!r}")
                for f in handler.filters or []:
                    if not f.awaitable:
                        sync.append(f"{router.name}.{name} filter {f.callback!r}")
    assert not sync, sync


def test_buttons_pack_as_the_desk_has_always_posted_them() -> None:
    # Buttons already in a staff group keep working after an upgrade.
    assert AppealButton(action="take", appeal_id=17).pack() == "ap:take:17"
    assert GiveButton(action="give", appeal_id=17, agent="3").pack() == "ap:give:17:3"
    assert CategoryButton(appeal_id=17, category="returns").pack() == "cat:17:returns"
    assert CallButton(customer_id=5, appeal_id=0).pack() == "call:5:0"
    assert TaskResultButton(outcome="r", task_id=9).pack() == "wb:r:9"
    assert TaskReasonButton(task_id=9, reason=2).pack() == "wr:9:2"
    assert JoinButton(verdict="ok", user_id=42).pack() == "join:ok:42"
    assert AppealButton.unpack("ap:mtake:17") == AppealButton(action="mtake", appeal_id=17)
    for forged in ("ap:take:0", f"ap:take:{10**30}", "ap:give:17", "ap:burn:17", "cat:x:y"):
        with pytest.raises(ValidationError):
            (CategoryButton if forged.startswith("cat") else AppealButton).unpack(forged)
