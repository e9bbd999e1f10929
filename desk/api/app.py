"""The aiohttp application: every operation routed and documented, the pages, the probes."""

from __future__ import annotations

from aiohttp import web

from desk.api import (
    answers,
    appeal_actions,
    choice_pages,
    customers,
    feedback,
    ops,
    orders,
    pages,
    privacy,
    public,
    reports,
    staff,
    stats,
    taken,
    tasks,
)
from desk.api.connections import body_deadline
from desk.api.errors import json_response
from desk.api.middlewares import authenticated, errors_middleware, gate_middleware, scope_middleware
from desk.api.openapi import openapi_document
from desk.api.operation import API_PREFIX, CTX, Operation
from desk.api.query import query_checked
from desk.api.rate_limit import LIMITER, RateLimiter
from desk.context import AppContext


def operations() -> list[Operation]:
    """Every documented endpoint."""
    return [
        *public.OPERATIONS,
        *taken.OPERATIONS,
        *staff.OPERATIONS,
        *appeal_actions.OPERATIONS,
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
        handler = authenticated(handler) if op.auth else handler
        app.router.add_route(op.method, op.path, handler)
    document = openapi_document(operations(), ctx.settings)

    async def spec(_: web.Request) -> web.Response:
        return json_response(document)

    app.router.add_get(f"{API_PREFIX}/openapi.json", spec)
    ops.add_routes(app, with_metrics=ctx.settings.monitoring.metrics)
    pages.add_routes(app)
    choice_pages.add_routes(app)
    feedback.add_routes(app)
    return app
