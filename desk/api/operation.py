"""An API endpoint described once (``Operation``: its route, handler, schema, errors), and
what a handler reads from its request: the service context, the caller, the idempotency key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from desk.api.errors import ApiError
from desk.appeals.idempotency import MAX_KEY, RequestKey, key_problem
from desk.config.keys import Caller
from desk.context import AppContext

CTX = web.AppKey("ctx", AppContext)
CALLER = web.RequestKey("caller", Caller)
API_PREFIX = "/api/v1"
OPS_PATHS = ("/healthz", "/readyz", "/metrics")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class QueryParam:
    """A documented query parameter."""

    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: the operation a success answer leads to, and where its parameters
    (``{"number": "$response.body#/number"}``) come from."""

    operation: str  # its handler's name, the operationId
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """One API endpoint: routed and documented from the same record."""

    method: str
    path: str
    handler: Handler
    summary: str
    auth: bool = True
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    query: tuple[QueryParam, ...] = ()
    headers: tuple[QueryParam, ...] = ()
    extra_responses: dict[int, type[BaseModel]] = field(default_factory=dict)
    media: tuple[str, ...] = ()  # other media types of the success answer (CSV, PNG, a file)
    links: dict[str, Link] = field(default_factory=dict)  # where the success answer leads


def ctx_of(request: web.Request) -> AppContext:
    """The service context of a request."""
    return request.app[CTX]


def caller_of(request: web.Request) -> Caller:
    """The authenticated caller of a staff request."""
    caller: Caller = request[CALLER]
    return caller


def idempotency_key(request: web.Request) -> RequestKey | None:
    """The request's ``Idempotency-Key`` in its caller's space (anonymous, or the token's
    caller), or None; one that could not be stored as sent is a 422."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return None
    problem = key_problem(key)
    if problem is not None:
        raise ApiError(
            422,
            "invalid",
            f"invalid request: Idempotency-Key: {problem}",
            [{"field": "Idempotency-Key", "message": problem}],
        )
    caller = request.get(CALLER)
    return RequestKey(key) if caller is None else RequestKey.of_caller(key, caller.name)


def idempotency_header(description: str) -> QueryParam:
    """The documented ``Idempotency-Key`` header of an operation."""
    return QueryParam("Idempotency-Key", {"type": "string", "maxLength": MAX_KEY}, description)


def route_of(request: web.Request) -> str:
    """The route's pattern (``/s/{token}``), never the path: paths carry signed tokens."""
    route = request.match_info.route.resource
    return route.canonical if route is not None else "(no route)"
