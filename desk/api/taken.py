"""The staff API's «Принять обращение»: an appeal taken down by phone or at the office."""

from __future__ import annotations

from aiohttp import web

from channels.base import ChannelKind
from channels.taken import TakenAppeal
from desk.api.errors import json_response, read_json
from desk.api.operation import Operation, caller_of, ctx_of, idempotency_header, idempotency_key
from desk.api.schemas import TakenAppealIn, TakenAppealOut
from desk.api.staff import appeal_links
from desk.appeals.triage import find_agent
from desk.features.taken import take_appeal
from desk.features.webdesk import status_url


async def register_taken(request: web.Request) -> web.Response:
    """Register an appeal for a customer who phoned or came in: 201 with its number, or 202
    while it is still being registered."""
    ctx = ctx_of(request)
    body = TakenAppealIn.model_validate(await read_json(request))
    agent = await find_agent(body.agent) if body.agent else None
    form = TakenAppeal(
        channel=ChannelKind(body.channel),
        text=body.text,
        taken_by=agent.name if agent is not None else caller_of(request).actor,
        taken_via="api",
        name=body.name,
        email=body.email,
        phone=body.phone,
        subject=body.subject,
        language=body.language or ctx.settings.company.language,
    )
    taken = await take_appeal(ctx, form, idempotency_key=idempotency_key(request))
    out = TakenAppealOut(
        number=taken.number,
        status=taken.status,
        channel=body.channel,
        customer_id=taken.customer_id,
        receipt=taken.external_id,
        status_url=status_url(ctx, taken.number) if taken.number else None,
    )
    return json_response(out.model_dump(mode="json"), status=201 if taken.number else 202)


OPERATIONS = [
    Operation(
        "POST",
        "/api/v1/taken-appeals",
        register_taken,
        summary="Register an appeal taken by phone or at the office",
        body=TakenAppealIn,
        response=TakenAppealOut,
        status=201,
        errors=(400, 401, 413, 422),
        headers=(idempotency_header("the same key and body register one appeal"),),
        extra_responses={202: TakenAppealOut},
        links=appeal_links("$response.body#/number"),
    ),
]
