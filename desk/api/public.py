"""The public API: customers and web forms send appeals."""

from __future__ import annotations

from aiohttp import web

from desk.api.errors import json_response, read_json
from desk.api.operation import Operation, ctx_of, idempotency_header, idempotency_key
from desk.api.rate_limit import APPEALS, limited
from desk.api.schemas import NewAppealIn, NewAppealOut
from desk.api.staff import appeal_links
from desk.features.webdesk import accept_appeal, status_url


@limited(APPEALS)
async def create_appeal(request: web.Request) -> web.Response:
    """Accept an appeal: 201 with its number, or 202 while it is still being registered."""
    ctx = ctx_of(request)
    body = NewAppealIn.model_validate(await read_json(request))
    accepted = await accept_appeal(
        ctx, body.web_appeal(body.language or ""), idempotency_key(request)
    )
    out = NewAppealOut(
        number=accepted.number,
        status=accepted.status,
        status_url=status_url(ctx, accepted.receipt),
        receipt=accepted.receipt,
    )
    return json_response(out.model_dump(mode="json"), status=201 if accepted.number else 202)


OPERATIONS = [
    Operation(
        "POST",
        "/api/v1/appeals",
        create_appeal,
        summary="Send an appeal as a customer (web form, integrations)",
        auth=False,
        body=NewAppealIn,
        response=NewAppealOut,
        status=201,
        errors=(400, 413, 422, 429),
        headers=(idempotency_header("the same key and body create one appeal"),),
        extra_responses={202: NewAppealOut},
        links=appeal_links("$response.body#/number"),
    ),
]
