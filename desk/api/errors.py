"""HTTP errors: every failure becomes a clear JSON answer (API) or page (web), never a 500 page
with a traceback."""

from __future__ import annotations

import functools
import json
import logging
import sys
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from desk.api.schemas import PATTERN_MESSAGES
from desk.config.errors import (
    AgentNotFound,
    AppealNotFound,
    DeskError,
    IdempotencyConflict,
    InvalidInput,
    InvalidTransition,
    NotAllowed,
    OrderNotFound,
    TaskClosed,
    TaskNotFound,
)

log = logging.getLogger(__name__)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer in readable UTF-8 (Cyrillic is not escaped)."""
    return web.json_response(
        data,
        status=status,
        headers=headers,
        dumps=functools.partial(json.dumps, ensure_ascii=False),
    )


class ApiError(Exception):
    """An error answer with a status, a machine code and a human message."""

    def __init__(
        self, status: int, code: str, message: str, fields: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []


def error_response(err: ApiError) -> web.Response:
    """The JSON body of an error."""
    body = {"error": {"code": err.code, "message": err.message, "fields": err.fields}}
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return json_response(body, status=err.status, headers=headers)


def from_validation(exc: ValidationError) -> ApiError:
    """422 with one entry per invalid field."""

    def message(e: Any) -> str:
        if e["type"] == "extra_forbidden":
            return "unknown field"
        if e["type"] == "string_pattern_mismatch":
            return PATTERN_MESSAGES.get(str(e.get("ctx", {}).get("pattern")), str(e["msg"]))
        return str(e["msg"]).removeprefix("Value error, ")

    fields = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": message(e)}
        for e in exc.errors(include_url=False)
    ]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return ApiError(422, "invalid", f"invalid request: {summary}", fields)


def from_domain(exc: DeskError) -> ApiError:
    """The HTTP status of a domain error."""
    if isinstance(exc, AppealNotFound | OrderNotFound | TaskNotFound):
        return ApiError(404, "not_found", str(exc) or "no such task")
    if isinstance(exc, InvalidTransition | TaskClosed):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, NotAllowed):
        return ApiError(403, "forbidden", str(exc) or "not allowed")
    if isinstance(exc, IdempotencyConflict):
        return ApiError(422, "idempotency_key_reused", str(exc))
    if isinstance(exc, AgentNotFound):
        return ApiError(422, "unknown_agent", str(exc))
    if isinstance(exc, InvalidInput):
        return ApiError(422, "invalid", str(exc))
    return ApiError(400, "bad_request", str(exc))


def from_http(exc: web.HTTPException) -> ApiError:
    """An aiohttp HTTP exception (404, 405, 413 …) as an API error."""
    codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    message = {
        413: "request body too large",
        404: "no such endpoint",
        405: "method not allowed",
    }.get(exc.status, exc.reason)
    return ApiError(exc.status, codes.get(exc.status, "http_error"), message)


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, read here for every endpoint: anything unreadable (wrong
    encoding or syntax, nested too deeply, a number too long) is a 400, an oversized one a 413."""
    raw = await request.read()
    if not raw:
        raise ApiError(400, "bad_request", "request body is empty: send a JSON object")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "bad_request", f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "bad_request", "request body is nested too deeply") from None
    except ValueError:  # Python's limit on digits (sys.get_int_max_str_digits, 4300 by default)
        raise ApiError(
            400,
            "bad_request",
            f"request body has a number too long to read (over {sys.get_int_max_str_digits()} "
            "digits)",
        ) from None
