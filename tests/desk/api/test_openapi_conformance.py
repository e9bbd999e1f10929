"""The served OpenAPI document and the server agree: schemathesis runs every operation (its
examples, the coverage of every parameter and status, the methods it does not take, and
generated valid and invalid data) with all its checks, as an anonymous caller, an agent and a
manager, against a running desk (``served``, tests/served_desk.py)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from schemathesis import engine
from schemathesis.core import NOT_SET
from schemathesis.engine import events
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.served_desk import AGENT_TOKEN, MANAGER_TOKEN

# What the document and the server say is the same on any backend: run once on CI (SQLite).
pytestmark = pytest.mark.backend_agnostic

# Rules a JSON schema cannot state, and the error each one answers with: only these may refuse
# a request the document calls valid (every other refusal still fails the check).
#  - an agent named in a body or a filter must exist (a row, not a shape): 422 unknown_agent;
#  - an Idempotency-Key used again with another body is refused (state, not shape): 422;
#  - a report's period: a known word, a date or a range of at most 366 days, and either
#    ``period`` or ``from``/``to`` (OpenAPI has no rule across parameters): 400 on period/from/to;
#  - an appeal is postponed to a moment ahead and within a year (the clock, not a shape): 422
#    bad_time on until/duration.
BEYOND_SCHEMA = {
    (422, "unknown_agent"): None,
    (422, "idempotency_key_reused"): None,
    (400, "bad_request"): {"period", "from", "to"},
    (422, "bad_time"): {"until", "duration"},
}
# Few examples per operation: each is an HTTP request, and three callers run them all. The
# coverage phase still sends every parameter's edge values and every undeclared method.
CONFIG = {
    "generation": {"max-examples": 4},
    "phases": {"stateful": {"max-steps": 10}},
    "seed": 24,
}


@schemathesis.check
def valid_data_accepted(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """schemathesis' positive_data_acceptance, except for the rules in BEYOND_SCHEMA."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if case.body is not NOT_SET and not isinstance(case.body, dict):
            # Every body the document describes is a JSON object; schemathesis 4.32's coverage
            # phase may still mark a bare number as valid data (`-d 0`): no valid request.
            return None
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            raise  # not an error body of ours: a real failure
        key = (response.status_code, error.get("code"))
        if key in BEYOND_SCHEMA:
            fields = BEYOND_SCHEMA[key]
            if fields is None or {f.get("field") for f in error.get("fields", [])} <= fields:
                return None
        raise


def failures_of(served: str, token: str | None) -> list[str]:
    """Run every phase of schemathesis (examples, coverage, fuzzing, stateful) with every
    check over the served document as the caller of ``token``; what failed, described."""
    config: dict[str, Any] = {
        "base-url": served,
        **CONFIG,
        # Replaced by valid_data_accepted, which keeps it but for the rules beyond the schema.
        "checks": {"positive_data_acceptance": {"enabled": False}},
    }
    if token is not None:
        config["headers"] = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(
        f"{served}/api/v1/openapi.json", config=schemathesis.Config.from_dict(config)
    )
    found: list[str] = []
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        answer = event.recorder.interactions.get(case_id)
                        got = answer.response if answer is not None else None
                        body = got.content[:300] if got is not None and got.content else b""
                        found.append(
                            f"{event.label} [{check.name}] {failure.title}: {failure.message}\n"
                            f"    {check.failure_info.code_sample}\n"
                            f"    -> {got.status_code if got else '?'} {body!r}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            found.append(f"error: {event!r}")
    return found


@pytest.mark.parametrize("caller", ["anonymous", "agent", "manager"])
def test_the_server_answers_as_its_document_says(served: str, caller: str) -> None:
    token = {"anonymous": None, "agent": AGENT_TOKEN, "manager": MANAGER_TOKEN}[caller]
    failures = failures_of(served, token)
    assert not failures, "\n".join(dict.fromkeys(failures))
