"""docs/api.md lists every endpoint the application serves: the API's operations (the same
records the OpenAPI document is built from), the operators' endpoints and the pages."""

from __future__ import annotations

from desk.api.app import make_app, operations
from tests import ROOT
from tests.conftest import Desk

DOCS = ROOT / "docs" / "api.md"


def listed() -> str:
    return DOCS.read_text(encoding="utf-8")


def test_every_operation_is_listed_in_the_api_page() -> None:
    text = listed()
    missing = [
        f"{op.method} {op.path}" for op in operations() if f"`{op.method} {op.path}`" not in text
    ]
    assert not missing, f"docs/api.md does not list: {', '.join(missing)}"


async def test_every_route_of_the_served_application_is_listed(desk: Desk) -> None:
    assert desk.service.ctx is not None
    app = make_app(desk.service.ctx)
    text = listed()
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert ("GET", "/api/v1/openapi.json") in routes and ("GET", "/s/{token}") in routes
    missing = sorted(f"{m} {p}" for m, p in routes if f"`{m} {p}`" not in text)
    assert not missing, f"docs/api.md does not list: {', '.join(missing)}"
