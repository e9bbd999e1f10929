"""What every request passes through: the stopping gate, the log scope, errors turned into
clear answers (JSON for the API, a page for people), and the staff API's bearer token."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from desk.api.errors import ApiError, error_response, from_domain, from_http, from_validation
from desk.api.operation import API_PREFIX, CALLER, OPS_PATHS, Handler, ctx_of, route_of
from desk.api.rendering import error_page as friendly_page
from desk.config.errors import DeskError
from desk.ops.log_context import log_scope

log = logging.getLogger(__name__)


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(API_PREFIX) or request.path in OPS_PATHS


@web.middleware
async def scope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What a request logs carries the appeal it acts on, once an event names it."""
    with log_scope():
        return await handler(request)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a clear 4xx answer; an unexpected one into a logged 500."""

    def error_page(request: web.Request, status: int) -> web.Response:
        try:
            return friendly_page(request, status)
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


def authenticated(handler: Handler) -> Handler:
    """The handler behind a bearer token: 401 without a known one."""

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
