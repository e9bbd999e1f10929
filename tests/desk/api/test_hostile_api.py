"""Hostile input to the HTTP API: schemathesis generates requests from /api/v1/openapi.json
(every operation, valid and invalid data, chained through the document's links) against a
running desk (``served``, tests/served_desk.py); no answer may be a 5xx, and every answer must
be one the document describes."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Flaky
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.schemas import OpenApiSchema

from desk.api.app import operations
from tests.conftest import API_TOKEN

pytestmark = pytest.mark.backend_agnostic

# Every example is an HTTP request (a chart one renders a PNG): a quarter of the profile's
# examples per operation keeps the "ci" run short; "thorough" still sends hundreds.
EXAMPLES = max(5, hypothesis_settings().max_examples // 4)


# Operations whose rules go beyond what a JSON schema says: a schema-valid request may still
# get the documented 400/422 (with the error body) for these reasons, and only these.
BEYOND_SCHEMA = {
    "create_appeal": "an Idempotency-Key used again with another body is refused",
    "register_taken": "agent must name an agent; an Idempotency-Key is used with one body",
    "list_appeals": "assignee must name an agent",
    "list_tasks": "assignee must name an agent",
    "reply": "agent must name an agent",
    "note": "agent must name an agent",
    "assign": "agent must name an agent",
    "upsert_order": "a customer needs a contact; the stage must be configured",
    "change_stage": "the stage must be configured",
    "postpone": "the time to postpone until must be ahead and within a year (422 bad_time)",
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
