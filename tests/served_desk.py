"""A desk serving in a thread of its own, for tests that call it synchronously (schemathesis):
the ``served`` fixture, one desk per test module, with a staff token of each role and a few
appeals and an order to find."""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from desk.config.settings import Settings
from desk.runtime.service import Service
from tests.conftest import API_TOKEN, PG_URL, SECRET_KEY, _fresh_postgres, free_port

# A token of each staff role (API_TOKEN is the supervisor's).
AGENT_TOKEN = "agent-Zq7LwN3xR9vKp2TbYd5H"
MANAGER_TOKEN = "manager-Vt4JcM8sQe1WnG6uXa0F"
ROLE_TOKENS = {"agent": AGENT_TOKEN, "supervisor": API_TOKEN, "manager": MANAGER_TOKEN}


class ThreadedDesk:
    """A desk serving in a thread of its own: schemathesis calls it synchronously."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = f"http://127.0.0.1:{settings.http.port}"
        self.out = io.StringIO()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="served-desk", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        if PG_URL:
            await _fresh_postgres(PG_URL)
        service = Service(self.settings, "serve", self.out)
        try:
            await service.start()
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            raise
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await service.stop()

    def start(self) -> None:
        """Start serving; returns once the HTTP server answers."""
        self._thread.start()
        self._ready.wait(60)
        if self._failure is not None:
            raise RuntimeError(f"desk did not start: {self._failure!r}\n{self.out.getvalue()}")

    def stop(self) -> None:
        """Stop the service and its thread."""
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()


@pytest.fixture(scope="module")
def served(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a running desk with the test settings, a token of each role, and a few
    appeals, tasks and orders to find."""
    port = free_port()
    db_url = PG_URL
    if db_url is None:
        path = tmp_path_factory.mktemp("served-desk") / "desk.db"
        shutil.copy(sqlite_template, path)
        db_url = f"sqlite://{path}"
    settings = Settings(
        database_url=db_url,
        secret_key=SECRET_KEY,
        public_url=f"http://127.0.0.1:{port}",
        # Hundreds of anonymous requests from one address: the rate limits (tested in
        # test_rate_limits.py) would answer most with 429, documented but not the operation.
        http={"host": "127.0.0.1", "port": port, "rate_limits": {"enabled": False}},
        api={
            "tokens": [
                {"name": role, "token": token, "role": role} for role, token in ROLE_TOKENS.items()
            ]
        },
        agents=[{"name": "Ирина", "telegram_id": 1001}],
    )
    desk = ThreadedDesk(settings)
    desk.start()
    try:
        _seed(desk.base)
        yield desk.base
    finally:
        desk.stop()


def _seed(base: str) -> None:
    """Data for the generated requests to find: appeals with messages, an order."""
    with requests.Session() as http:
        for i in range(2):
            answer = http.post(
                f"{base}/api/v1/appeals",
                json={"name": f"Клиент {i}", "email": f"c{i}@example.com", "text": f"Вопрос {i}"},
                timeout=10,
            )
            assert answer.status_code == 201, answer.text
        answer = http.post(
            f"{base}/api/v1/orders",
            json={"external_id": "1001", "customer": {"name": "Олег", "email": "o@example.com"}},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
