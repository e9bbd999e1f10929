"""The bots' routers: nothing an update meets goes to a worker thread."""

from __future__ import annotations

from aiogram import Router

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
