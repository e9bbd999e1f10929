"""The operators' endpoints: /healthz (the process is alive), /readyz (its dependencies
answer) and /metrics (Prometheus text); and the small server of a ``worker`` process, with
/healthz and the /metrics of what it counted."""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from desk.api.errors import ApiError, json_response
from desk.api.health import readiness
from desk.api.middlewares import errors_middleware
from desk.api.operation import CTX, ctx_of
from desk.context import AppContext


async def healthz(_: web.Request) -> web.Response:
    """200 at once: the process runs and its event loop answers (nothing else is checked)."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when the database, Redis and every enabled channel answer, 503 otherwise (and while
    the process stops)."""
    ctx = ctx_of(request)
    if ctx.gate.closed:  # stopping: send no more traffic here
        return json_response({"status": "stopping", "components": {}}, status=503)
    report = await readiness(ctx)
    return json_response(report, status=200 if report["status"] == "ok" else 503)


def _scraper_checked(request: web.Request) -> None:
    """A 401 unless the bearer token is the configured metrics token (when one is set)."""
    token = ctx_of(request).settings.monitoring.token
    if token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <metrics token>'")


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition; wants the bearer token when one is configured."""
    _scraper_checked(request)
    ctx = ctx_of(request)
    body = await ctx.metrics.exposition(ctx.stream, ctx.adapters, ctx.clock)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def worker_metrics(request: web.Request) -> web.Response:
    """What this worker process counted, as Prometheus text (the shared gauges are serve's)."""
    _scraper_checked(request)
    body = ctx_of(request).metrics.own()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application, *, with_metrics: bool) -> None:
    """Register the operators' endpoints (``/metrics`` only when enabled)."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if with_metrics:
        app.router.add_get("/metrics", metrics)


def worker_app(ctx: AppContext) -> web.Application:
    """The HTTP application of a ``worker`` process: /healthz, and /metrics when enabled."""
    app = web.Application(middlewares=[errors_middleware])
    app[CTX] = ctx
    app.router.add_get("/healthz", healthz)
    if ctx.settings.monitoring.metrics:
        app.router.add_get("/metrics", worker_metrics)
    return app
