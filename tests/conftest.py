"""Shared fixtures: a fresh database per test (SQLite, or PostgreSQL when
DESK_TEST_DATABASE_URL is set), Redis when DESK_TEST_REDIS_URL is set, and a running desk."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import random
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from tortoise import Tortoise

from bench.fakes.telegram import FakeTelegram
from desk.config.settings import Settings
from desk.context import utc_now
from desk.runtime.service import Service
from models import db
from tests.telegram_world import staff_world


def _per_worker_services() -> None:
    """Under pytest-xdist each worker gets a database and a Redis database of its own (the
    tests empty them between tests): ``desk_test`` becomes ``desk_test_gw1`` on the same server
    (created by the session fixture ``_worker_database``), Redis db 0 becomes db 1. The
    environment is rewritten, so test modules and the processes tests start see them too."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    index = int(worker[2:])
    pg = os.environ.get("DESK_TEST_DATABASE_URL")
    if pg:
        parts = urlsplit(pg)
        name = f"{parts.path.lstrip('/')}_{worker}"
        os.environ["DESK_TEST_DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    redis_url = os.environ.get("DESK_TEST_REDIS_URL")
    if redis_url:
        parts = urlsplit(redis_url)
        base = int(parts.path.lstrip("/") or 0)
        os.environ["DESK_TEST_REDIS_URL"] = urlunsplit(parts._replace(path=f"/{base + index}"))


_per_worker_services()
PG_URL = os.environ.get("DESK_TEST_DATABASE_URL") or None
REDIS_URL = os.environ.get("DESK_TEST_REDIS_URL") or None
pytest_plugins = ["tests.fakes.mailserver", "tests.exit_watchdog", "tests.served_desk"]

# Secrets as strong as the settings want (they refuse short and guessable ones).
API_TOKEN = "tests-l5cqaPqUl-ONQ2HGqMtcffHx5JSZ"
SECRET_KEY = "cUBJ2quqOwrixK90HVNiePkdfT4yt3udSZNWlAanY1Y"

# Property-based tests: "ci" (the default) is small, derandomised and keeps no example database,
# so the suite stays quick and repeatable; "thorough" searches much longer. Choose one with
# HYPOTHESIS_PROFILE=thorough or pytest --hypothesis-profile=thorough.
hypothesis_settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
hypothesis_settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tests' own cache directory (the router's seeds model), shared by the session and
    the processes it starts: the developer's ~/.cache is neither read nor written. Under
    pytest-xdist the workers share one (beside their own temporary folders), so the model is
    trained once per run, not once per worker (its files are written whole, then renamed)."""
    before = os.environ.get("XDG_CACHE_HOME")
    if "PYTEST_XDIST_WORKER" in os.environ:
        path = tmp_path_factory.getbasetemp().parent / "cache"
        path.mkdir(exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("cache")
    os.environ["XDG_CACHE_HOME"] = str(path)
    yield path
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session", autouse=True)
def _worker_database() -> None:
    """This xdist worker's own PostgreSQL database, created on the test server when missing."""
    if PG_URL is None or "PYTEST_XDIST_WORKER" not in os.environ:
        return
    import asyncpg

    name = urlsplit(PG_URL).path.lstrip("/")
    server = urlunsplit(urlsplit(PG_URL)._replace(path="/postgres"))

    async def create() -> None:
        conn = await asyncpg.connect(server, timeout=10)
        try:
            if not await conn.fetchval("select 1 from pg_database where datname = $1", name):
                await conn.execute(f'create database "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """Commands run in-process set up logging on the stderr pytest captures for that test
    only; later tests must not log into that closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for every test (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("template") / "template.db"

    async def build() -> None:
        await db.migrate(f"sqlite://{path}")
        await Tortoise.close_connections()

    asyncio.run(build())
    return path


_pg_migrated = False


# Ports for the desks tests start: below Linux's ephemeral range (32768–60999), where every
# client connection of the run (to PostgreSQL, Redis, the fakes) takes its own port, so none
# can take a port between its choice and the server's bind (CI saw "address already in use").
TEST_PORTS = range(20_000, 32_000)


def free_port() -> int:
    """A TCP port nobody listens on right now (status links need the real port)."""
    while True:
        port = random.choice(TEST_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


async def _fresh_postgres(url: str) -> None:
    global _pg_migrated
    if not _pg_migrated:
        await db.migrate(url)
        await Tortoise.close_connections()
        _pg_migrated = True
    await db.connect(url)
    conn = Tortoise.get_connection("default")
    tables = list(Tortoise.apps["models"])
    quoted = ", ".join(f'"{Tortoise.apps["models"][m]._meta.db_table}"' for m in tables)
    await conn.execute_script(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
    await Tortoise.close_connections()


@pytest.fixture
async def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    """The URL of an empty, migrated database for this test."""
    if PG_URL:
        await _fresh_postgres(PG_URL)
        return PG_URL
    path = tmp_path / "desk.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite://{path}"


@pytest.fixture
async def redis_url() -> str | None:
    """The test Redis (flushed), or None for the local stream."""
    if REDIS_URL is None:
        return None
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    return REDIS_URL


@pytest.fixture
def make_settings(db_url: str, redis_url: str | None) -> Callable[..., Settings]:
    """Settings for a test desk; keyword arguments override sections."""

    def make(**overrides: Any) -> Settings:
        data: dict[str, Any] = {
            "database_url": db_url,
            "redis_url": redis_url,
            "secret_key": SECRET_KEY,
            "http": {"host": "127.0.0.1", "port": free_port()},
            "workers": {"claim_idle_s": 2.0},
            "api": {"tokens": [{"name": "tests", "token": API_TOKEN, "role": "supervisor"}]},
            "agents": [{"name": "Ирина", "telegram_id": 1001}],
        }
        data.update(overrides)
        return Settings(**data)

    return make


class Desk:
    """A running desk in this process with an HTTP client pointed at it."""

    def __init__(self, service: Service, session: aiohttp.ClientSession, out: io.StringIO) -> None:
        self.service = service
        self.http = session
        self.out = out
        self.base = f"http://127.0.0.1:{service.bound_port}"
        self.auth = {"Authorization": f"Bearer {API_TOKEN}"}

    async def post(
        self,
        path: str,
        payload: Any = None,
        *,
        auth: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """POST JSON and return (status, parsed JSON body)."""
        hdrs = {**(self.auth if auth else {}), **(headers or {})}
        async with self.http.post(self.base + path, json=payload, headers=hdrs) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str, *, auth: bool = True) -> tuple[int, Any]:
        """GET and return (status, parsed JSON body)."""
        async with self.http.get(self.base + path, headers=self.auth if auth else {}) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """A fake Bot API with the staff group and the managers' chat (``staff_world``); a test
    file that needs more adds it in a fixture of the same name that takes this one."""
    async with FakeTelegram() as tg:
        yield staff_world(tg)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that talked to the fake Bot API shows the fake's last calls (a timeout
    then says what the desk did and did not ask)."""
    report = yield
    if report.failed and call.when == "call":
        fake = getattr(item, "funcargs", {}).get("fake")
        if isinstance(fake, FakeTelegram):
            report.sections.append(("fake Bot API: the last calls", fake.trail()))
    return report


@pytest.fixture
async def start_desk(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    """Start desks with the given setting overrides; all are stopped at the end."""
    started: list[Desk] = []

    async def start(clock: Callable[[], datetime] | None = None, **overrides: Any) -> Desk:
        out = io.StringIO()
        service = Service(make_settings(**overrides), "serve", out, clock=clock or utc_now)
        await service.start()
        desk = Desk(service, aiohttp.ClientSession(), out)
        started.append(desk)
        return desk

    yield start
    for desk in started:
        await desk.http.close()
        await desk.service.stop()


@pytest.fixture
async def desk(start_desk: Callable[..., Any]) -> Desk:
    """A running desk with the default test settings."""
    started: Desk = await start_desk()
    return started


# CI's second pass (PostgreSQL + Redis) checks what depends on the backend; the tests marked
# ``backend_agnostic`` do not (pure parsing, the router, the fakes, signals and subprocess
# drills, which also take minutes on PostgreSQL), so they run once. Run by hand, everything
# runs. On CI the two passes run side by side and each takes a share, so that neither is the
# long one: DESK_TEST_BACKEND_PASS=1 (the second pass) leaves ``backend_agnostic`` to the first,
# and DESK_TEST_SQLITE_PASS=1 (the first, with a second beside it) leaves ``second_pass`` to it.
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("DESK_TEST_BACKEND_PASS") == "1":
        leave, reason = "backend_agnostic", "backend-agnostic: run in the SQLite pass"
    elif os.environ.get("DESK_TEST_SQLITE_PASS") == "1":
        leave, reason = "second_pass", "run in the PostgreSQL pass"
    else:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker(leave) is not None:
            item.add_marker(skip)
