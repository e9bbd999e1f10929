"""The aiohttp application: routes, authentication and error handling."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from desk.api.errors import (
    ApiError,
    error_response,
    from_domain,
    from_http,
    from_validation,
    json_response,
)
from desk.api.query import query_checked
from desk.appeals.idempotency import MAX_KEY, RequestKey, key_problem
from desk.config.errors import DeskError
from desk.config.keys import Caller
from desk.context import AppContext
from desk.ops.log_context import log_scope

log = logging.getLogger(__name__)

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


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(API_PREFIX) or request.path in OPS_PATHS


@web.middleware
async def scope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What a request logs carries the appeal it acts on, once an event names it."""
    with log_scope():
        return await handler(request)


def route_of(request: web.Request) -> str:
    """The route's pattern (``/s/{token}``), never the path: paths carry signed tokens."""
    route = request.match_info.route.resource
    return route.canonical if route is not None else "(no route)"


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a clear 4xx answer; an unexpected one into a logged 500."""
    from desk.api.pages import error_page as page

    def error_page(request: web.Request, status: int) -> web.Response:
        try:
            return page(request, status)
        except Exception:  # the page itself failed: still answer, plainly
            log.exception("error page failed", extra={"status": status, "route": route_of(request)})
            return web.Response(status=status, text=f"{status}")

    try:
        return await handler(request)
    except ApiError as exc:
        if _is_api(request):
            return error_response(exc)
        return error_page(request, exc.status)
    except ValidationError as exc:
        return error_response(from_validation(exc))
    except DeskError as exc:
        return error_response(from_domain(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if _is_api(request):
            answer = error_response(from_http(exc))
        else:
            answer = error_page(request, exc.status)
        if "Allow" in exc.headers:  # a 405 says which methods the resource takes (RFC 9110)
            answer.headers["Allow"] = exc.headers["Allow"]
        return answer
    except Exception:
        log.exception(
            "request failed", extra={"route": route_of(request), "method": request.method}
        )
        if _is_api(request):
            return error_response(ApiError(500, "internal", "internal error; it was logged"))
        return error_page(request, 500)


PROBES = ("/healthz", "/readyz", "/metrics")


@web.middleware
async def gate_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While the process stops: new requests get 503 (Telegram and VK send an update again
    later), those in flight finish; probes still answer."""
    gate = ctx_of(request).gate
    if gate.closed and request.path not in PROBES:
        response = error_response(
            ApiError(503, "stopping", "the service is stopping; try again in a few seconds")
        )
        response.headers["Retry-After"] = "5"
        return response
    with gate.busy():
        return await handler(request)


def _authenticated(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>'")
        caller = await ctx_of(request).tokens.caller(token.strip())
        if caller is None:
            raise ApiError(401, "unauthorized", "unknown or revoked token")
        request[CALLER] = caller
        return await handler(request)

    return wrapped


def operations() -> list[Operation]:
    """Every documented endpoint."""
    from desk.api import answers, customers, orders, privacy, public, reports, staff, stats, tasks

    return [
        *public.OPERATIONS,
        *staff.OPERATIONS,
        *answers.OPERATIONS,
        *orders.OPERATIONS,
        *tasks.OPERATIONS,
        *reports.OPERATIONS,
        *customers.OPERATIONS,
        *privacy.OPERATIONS,
        *stats.OPERATIONS,
    ]


def make_app(ctx: AppContext) -> web.Application:
    """The HTTP application of the service."""
    from desk.api import ops, pages
    from desk.api.connections import body_deadline
    from desk.api.openapi import openapi_document
    from desk.api.rate_limit import LIMITER, RateLimiter

    app = web.Application(
        middlewares=[
            gate_middleware,
            scope_middleware,
            errors_middleware,
            body_deadline(ctx.settings.http.body_timeout_s),
        ],
        client_max_size=ctx.settings.http.max_body_bytes,
    )
    app[CTX] = ctx
    app[LIMITER] = RateLimiter(ctx.settings.http)
    for op in operations():
        handler = query_checked(op.handler, [p.name for p in op.query])
        handler = _authenticated(handler) if op.auth else handler
        app.router.add_route(op.method, op.path, handler)
    document = openapi_document(operations(), ctx.settings)

    async def spec(_: web.Request) -> web.Response:
        return json_response(document)

    app.router.add_get(f"{API_PREFIX}/openapi.json", spec)
    ops.add_routes(app, with_metrics=ctx.settings.monitoring.metrics)
    pages.add_routes(app)
    return app
