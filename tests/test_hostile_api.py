"""Hostile input to the HTTP API: schemathesis generates requests from /api/v1/openapi.json
(every operation, valid and invalid data, chained through the document's links) against a
running desk; no answer may be a 5xx, and every answer must be one the document describes."""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Flaky
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.schemas import OpenApiSchema

from desk.api.app import operations
from desk.service import Service
from desk.settings import Settings
from tests.conftest import API_TOKEN, PG_URL, _fresh_postgres, free_port

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
# Every example is an HTTP request (a chart one renders a PNG): a quarter of the profile's
# examples per operation keeps the "ci" run short; "thorough" still sends hundreds.
EXAMPLES = max(5, hypothesis_settings().max_examples // 4)


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
        self._thread = threading.Thread(target=self._run, name="hostile-desk", daemon=True)

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
    """A running desk with the test settings and a few appeals, tasks and orders to find."""
    port = free_port()
    db_url = PG_URL
    if db_url is None:
        path = tmp_path_factory.mktemp("hostile-api") / "desk.db"
        shutil.copy(sqlite_template, path)
        db_url = f"sqlite://{path}"
    settings = Settings(
        database_url=db_url,
        secret_key="test-secret-key",
        public_url=f"http://127.0.0.1:{port}",
        # Hundreds of anonymous requests from one address: the rate limits (tested in
        # test_rate_limits.py) would answer most with 429, documented but not the operation.
        http={"host": "127.0.0.1", "port": port, "rate_limits": {"enabled": False}},
        api={"tokens": [{"name": "tests", "token": API_TOKEN, "role": "supervisor"}]},
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
            headers=AUTH,
            timeout=10,
        )
        assert answer.status_code == 201, answer.text


# Operations whose rules go beyond what a JSON schema says: a schema-valid request may still
# get the documented 400/422 (with the error body) for these reasons, and only these.
BEYOND_SCHEMA = {
    "create_appeal": "the email or phone must be a real one",
    "list_appeals": "assignee must name an agent",
    "list_tasks": "assignee must name an agent",
    "reply": "agent must name an agent",
    "note": "agent must name an agent",
    "assign": "agent must name an agent",
    "upsert_order": "a customer needs a contact; the stage must be configured",
    "change_stage": "the stage must be configured",
    "ratings_report": "a period is a known word, a date or a range of at most 366 days",
    "ratings_chart": "a period is a known word, a date or a range of at most 366 days",
    "customers_report": "a period is a known word, a date or a range of at most 366 days",
    "appeals": "a period is a known word, a date or a range of at most 366 days",
    "sla": "a period is a known word, a date or a range of at most 366 days",
    "top": "a period is a known word, a date or a range of at most 366 days",
}


@pytest.fixture(scope="module")
def api_schema(served: str) -> OpenApiSchema:
    """The desk's own OpenAPI document, with a staff token on every request."""
    refused = ["2xx", "400", "401", "403", "404", "409", "422"]
    config = schemathesis.Config.from_dict(
        {
            "base-url": served,
            "auth": {"openapi": {"bearer": {"bearer": API_TOKEN}}},
            "operations": [
                {
                    "include-operation-id": name,
                    "checks": {"positive_data_acceptance": {"expected-statuses": refused}},
                }
                for name in BEYOND_SCHEMA
            ],
        }
    )
    return schemathesis.openapi.from_url(f"{served}/api/v1/openapi.json", config=config)


# Every documented operation, known without a running desk (the document is built from these);
# invalid requests for those that take some input (/healthz takes none).
OPERATIONS = {f"{op.method} {op.path}": op for op in operations()}
CASES = [
    *[(label, GenerationMode.POSITIVE) for label in [*OPERATIONS, "GET /healthz"]],
    *[
        (label, GenerationMode.NEGATIVE)
        for label, op in OPERATIONS.items()
        if op.body or op.query or op.headers or "{" in op.path
    ],
]


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{m.value} {op}" for op, m in CASES])
def test_every_operation_answers_as_documented(
    api_schema: OpenApiSchema, label: str, mode: GenerationMode
) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is missing from the document"

    @hypothesis_settings(max_examples=EXAMPLES)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate()

    check()


def test_linked_operations_in_sequence_answer_as_documented(api_schema: OpenApiSchema) -> None:
    failures: list[FailureGroup] = []

    class Scenarios(api_schema.as_state_machine()):  # type: ignore[misc]
        """Every step's failure is kept the moment it happens."""

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            try:
                super().validate_response(response, case, *args, **kwargs)
            except FailureGroup as exc:
                failures.append(exc)
                raise

    settings = hypothesis_settings(
        max_examples=EXAMPLES, stateful_step_count=6, database=None, deadline=None
    )
    try:
        Scenarios.run(settings=settings)
    except Flaky:
        # The desk's data changes with every step, so a scenario replayed later meets another
        # state and hypothesis calls it flaky (schemathesis' own runner does the same). What
        # counts is whether a step failed when it ran.
        if failures:
            raise failures[0] from None
