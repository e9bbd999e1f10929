"""Query parameters of the API: every operation declares the ones it takes (``Operation.query``,
which the OpenAPI document lists too), one check refuses any other, and the readers below
turn a declared one into a value or a clear 400."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

from desk.api.errors import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check_query(request: web.Request, declared: Collection[str]) -> None:
    """A 400 naming every query parameter the operation does not take, or takes once and got
    more than once; nothing is ignored without a word."""
    names = [name for name, _ in request.query.items()]
    unknown = list(dict.fromkeys(n for n in names if n not in declared))
    repeated = list(dict.fromkeys(n for n in names if n in declared and names.count(n) > 1))
    if not unknown and not repeated:
        return
    fields = [{"field": n, "message": "unknown query parameter"} for n in unknown]
    fields += [{"field": n, "message": "given more than once"} for n in repeated]
    quoted = ", ".join(f"'{_shown(n)}'" for n in unknown or repeated)
    if unknown:
        takes = ", ".join(sorted(declared)) if declared else "none"
        message = f"unknown query parameter {quoted} (this endpoint takes: {takes})"
        code = "unknown_parameter"
    else:
        message = f"query parameter {quoted} is given more than once: give it once"
        code = "bad_request"
    raise ApiError(400, code, message, fields)


def _shown(name: str) -> str:
    """A parameter name as an error repeats it: at most 50 characters, no control ones."""
    clean = "".join(c if c.isprintable() else "?" for c in name)
    return clean if len(clean) <= 50 else clean[:49] + "…"


def query_checked(handler: Handler, declared: Collection[str]) -> Handler:
    """``handler``, answering 400 first when the query holds anything undeclared."""
    names = frozenset(declared)

    async def checked(request: web.Request) -> web.StreamResponse:
        check_query(request, names)
        return await handler(request)

    checked.__name__ = getattr(handler, "__name__", "checked")
    return checked


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in ``low..high``; absent is ``default``, anything else 400."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"query parameter '{name}' must be a number") from None
    if not low <= value <= high:
        raise ApiError(400, "bad_request", f"query parameter '{name}' must be {low}..{high}")
    return value


def text_param(request: web.Request, name: str) -> str:
    """A text query parameter ("" when absent); NUL, which no database text holds, is a 400."""
    raw = request.query.get(name, "")
    if "\x00" in raw:
        raise ApiError(400, "bad_request", f"query parameter '{name}' has a NUL character")
    return raw


def enum_param(request: web.Request, name: str, values: list[str]) -> str | None:
    """One of ``values``, or None when the parameter is absent; anything else is a 400."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in values:
        raise ApiError(
            400, "bad_request", f"query parameter '{name}' must be one of: {', '.join(values)}"
        )
    return raw
