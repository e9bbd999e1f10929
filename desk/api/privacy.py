"""A customer's data on request over HTTP, for manager tokens only: the export document (as
``appeal-desk export`` prints it) and forgetting (as ``appeal-desk forget --yes``)."""

from __future__ import annotations

from aiohttp import web

from desk.api.errors import ApiError, json_response
from desk.api.operation import Operation, caller_of, ctx_of
from desk.api.schemas import Body
from desk.appeals.customers import customer_by_ref
from desk.config.errors import NotAllowed
from desk.features.data_export import export_customer
from desk.features.forget import forget_customer
from models import AgentRole

_PATH = "/api/v1/customers/{customer}"


class ForgottenOut(Body):
    """What forgetting cleared (counts only); ``already``: it was forgotten before."""

    customer_id: int
    appeals: int
    messages: int
    contact_points: int
    files_deleted: int
    already: bool


async def _customer_id(request: web.Request) -> int:
    """The customer the path names (after a manager check)."""
    if caller_of(request).role != AgentRole.MANAGER.value:
        raise NotAllowed("only a manager's token may read or erase a customer's data")
    ref = request.match_info["customer"]
    found = await customer_by_ref(ref)
    if found is None:
        raise ApiError(404, "not_found", f"no customer matches '{ref}'")
    return found


async def export(request: web.Request) -> web.Response:
    """Everything the desk holds about one customer."""
    customer_id = await _customer_id(request)
    document = await export_customer(customer_id, ctx_of(request).clock())
    if document is None:
        raise ApiError(404, "not_found", "no such customer")
    return json_response(document, headers={"Cache-Control": "no-store"})


async def forget(request: web.Request) -> web.Response:
    """Erase one customer's personal data; the figures stay."""
    customer_id = await _customer_id(request)
    done = await forget_customer(
        customer_id, actor=caller_of(request).actor, now=ctx_of(request).clock()
    )
    if done is None:
        raise ApiError(404, "not_found", "no such customer")
    out = ForgottenOut(customer_id=customer_id, already=done.already, **done.describe())
    return json_response(out.model_dump(mode="json"))


_WHO = "a customer id, a channel address (telegram:12345, phone:+7…), an email or a phone"

OPERATIONS = [
    Operation(
        "GET",
        _PATH + "/export",
        export,
        "Everything held about a customer, as JSON (managers only; see "
        f"desk/features/data_export.py for the structure). The path names {_WHO}",
        errors=(401, 403, 404),
    ),
    Operation(
        "POST",
        _PATH + "/forget",
        forget,
        "Erase a customer's personal data and keep the figures (managers only; idempotent). "
        f"The path names {_WHO}",
        response=ForgottenOut,
        errors=(401, 403, 404),
    ),
]
