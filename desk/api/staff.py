"""The staff API: list, read, answer, annotate, move and assign appeals."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web
from tortoise.expressions import Q, RawSQL, Subquery
from tortoise.transactions import in_transaction

from channels.base import DeliveryError
from desk.api.errors import ApiError, json_response, read_json
from desk.api.operation import Link, Operation, QueryParam, caller_of, ctx_of
from desk.api.query import enum_param, int_param, text_param
from desk.api.schemas import (
    AppealCustomerOut,
    AppealDetailOut,
    AppealOut,
    AppealPage,
    AssignIn,
    EventOut,
    MergeIn,
    MessageOut,
    StatusIn,
    TextIn,
)
from desk.appeals.customers import merge_customers
from desk.appeals.triage import find_agent
from models import (
    Agent,
    Appeal,
    AppealStatus,
    ContactPoint,
    Customer,
    Event,
    Message,
    Priority,
    StoredFile,
    fits,
    parse_id,
)

MAX_PER_PAGE = 200
MAX_PAGE = 1_000_000


def _appeal_out(appeal: Appeal, assignee: Agent | None) -> AppealOut:
    return AppealOut(
        number=appeal.number or "",
        status=appeal.status,
        channel=appeal.channel,
        subject=appeal.subject,
        category=appeal.category,
        priority=appeal.priority,
        tags=list(appeal.tags),
        assignee=assignee.name if assignee else None,
        team=appeal.team,
        customer_id=appeal.customer_id,
        first_response_due=appeal.first_response_due,
        first_response_at=appeal.first_response_at,
        resolution_due=appeal.resolution_due,
        resolved_at=appeal.resolved_at,
        created_at=appeal.created_at,
        updated_at=appeal.updated_at,
    )


async def list_appeals(request: web.Request) -> web.Response:
    """Appeals, newest first, filtered and paginated."""
    page = int_param(request, "page", 1, 1, MAX_PAGE)
    per_page = int_param(request, "per_page", 50, 1, MAX_PER_PAGE)
    query = Appeal.all()
    status = enum_param(request, "status", [s.value for s in AppealStatus])
    if status:
        query = query.filter(status=status)
    priority = enum_param(request, "priority", [p.value for p in Priority])
    if priority:
        query = query.filter(priority=priority)
    for column in ("category", "channel"):
        if value := text_param(request, column):
            # A value no row can hold matches nothing (ids start at 1).
            query = query.filter(**{column: value} if fits(Appeal, column, value) else {"id": 0})
    if assignee := text_param(request, "assignee"):
        if assignee == "none":
            query = query.filter(assignee_id__isnull=True)
        else:
            agent = await find_agent(assignee)
            query = query.filter(assignee_id=agent.id)
    if tag := text_param(request, "tag"):
        # A whole element of the JSON array, quotes included: "vip" does not match "vip-2";
        # written as either backend writes it (SQLite's JSON text escapes non-ASCII letters).
        # Latin letters match in any case (both backends upper-case them alike).
        written = {json.dumps(tag, ensure_ascii=flag) for flag in (False, True)}
        found = Q(*[Q(tags_text__icontains=w) for w in written], join_type="OR")
        query = query.annotate(tags_text=RawSQL("CAST(tags AS TEXT)")).filter(found)
    if text := text_param(request, "q").strip()[:200]:
        ids = Subquery(Message.filter(text__icontains=text).values("appeal_id"))
        found = Q(subject__icontains=text) | Q(id__in=ids)
        if fits(Appeal, "number", text.upper()):
            found |= Q(number=text.upper())
        query = query.filter(found)
    total = await query.count()
    rows = await query.order_by("-id").offset((page - 1) * per_page).limit(per_page)
    agents = await _agents({a.assignee_id for a in rows})
    items = [_appeal_out(a, agents.get(a.assignee_id)) for a in rows]
    out = AppealPage(items=items, page=page, per_page=per_page, total=total)
    return json_response(out.model_dump(mode="json"))


async def _agents(ids: set[int | None]) -> dict[int | None, Agent]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {a.id: a for a in await Agent.filter(id__in=wanted)}


async def get_appeal(request: web.Request) -> web.Response:
    """One appeal with its customer, messages and history."""
    appeal = await ctx_of(request).lifecycle.get(request.match_info["number"])
    return json_response((await appeal_detail(appeal)).model_dump(mode="json"))


async def appeal_detail(appeal: Appeal) -> AppealDetailOut:
    """The full view of one appeal."""
    customer = await Customer.get(id=appeal.customer_id)
    contacts = await ContactPoint.filter(customer_id=customer.id).order_by("id")
    messages = await Message.filter(appeal_id=appeal.id).order_by("id")
    events = await Event.filter(appeal_id=appeal.id).order_by("id")
    assignee = await _agents({appeal.assignee_id})
    base = _appeal_out(appeal, assignee.get(appeal.assignee_id))
    return AppealDetailOut(
        **base.model_dump(),
        customer=AppealCustomerOut(
            id=customer.id,
            name=customer.name,
            language=customer.language,
            contacts=[
                {"channel": c.channel, "address": c.address, "reachable": c.reachable}
                for c in contacts
            ],
        ),
        messages=[
            MessageOut(
                id=m.id,
                direction=m.direction.value,
                author=m.author,
                channel=m.channel,
                text=m.text,
                attachments=list(m.attachments),
                delivery_state=m.delivery_state.value,
                created_at=m.created_at,
            )
            for m in messages
        ],
        history=[
            EventOut(
                id=e.id, kind=e.kind, actor=e.actor, data=dict(e.data), created_at=e.created_at
            )
            for e in events
        ],
    )


async def _acting_agent(body_agent: str | None) -> Agent | None:
    return await find_agent(body_agent) if body_agent else None


def _author(request: web.Request, agent: Agent | None) -> str:
    return agent.name if agent is not None else caller_of(request).actor


async def _add_text(request: web.Request, kind: str) -> web.Response:
    """Store an answer (``reply``, queued for the customer) or a ``note`` (internal only)."""
    lifecycle = ctx_of(request).lifecycle
    body = TextIn.model_validate(await read_json(request))
    agent = await _acting_agent(body.agent)
    add = lifecycle.reply if kind == "reply" else lifecycle.note
    message = await add(
        request.match_info["number"], body.text, actor=_author(request, agent), agent=agent
    )
    return json_response(_message_json(message), status=201)


async def reply(request: web.Request) -> web.Response:
    """Answer the customer through the appeal's channel (queued in the outbox)."""
    return await _add_text(request, "reply")


async def note(request: web.Request) -> web.Response:
    """Add an internal note, never shown to the customer."""
    return await _add_text(request, "note")


def _message_json(message: Message) -> dict[str, Any]:
    return MessageOut(
        id=message.id,
        direction=message.direction.value,
        author=message.author,
        channel=message.channel,
        text=message.text,
        attachments=list(message.attachments),
        delivery_state=message.delivery_state.value,
        created_at=message.created_at,
    ).model_dump(mode="json")


async def change_status(request: web.Request) -> web.Response:
    """Move the appeal to another status (409 when the move is impossible)."""
    ctx = ctx_of(request)
    body = StatusIn.model_validate(await read_json(request))
    appeal = await ctx.lifecycle.transition(
        request.match_info["number"],
        body.status,
        actor=caller_of(request).actor,
        reason=body.reason,
    )
    return json_response((await appeal_detail(appeal)).model_dump(mode="json"))


async def assign(request: web.Request) -> web.Response:
    """Give the appeal to an agent, or take it back (agent: null)."""
    ctx = ctx_of(request)
    body = AssignIn.model_validate(await read_json(request))
    appeal = await ctx.triage.assign(
        request.match_info["number"], body.agent, actor=caller_of(request).actor
    )
    return json_response((await appeal_detail(appeal)).model_dump(mode="json"))


async def attachment(request: web.Request) -> web.StreamResponse:
    """The content of one file of a message (Telegram files are fetched by their file id)."""
    ctx = ctx_of(request)
    appeal = await ctx.lifecycle.get(request.match_info["number"])
    raw_id, raw_index = request.match_info["message_id"], request.match_info["index"]
    message_id = parse_id(raw_id)
    message = await Message.get_or_none(id=message_id, appeal_id=appeal.id) if message_id else None
    files = list(message.attachments) if message is not None else []
    index = int(raw_index) if re.fullmatch(r"[0-9]{1,6}", raw_index) else len(files)
    if index >= len(files):
        raise ApiError(404, "not_found", "no such attachment")
    file = files[index]
    stored = await StoredFile.by_ref(str(file.get("ref", "")))
    telegram = ctx.desks.get("telegram")
    if stored is not None:
        data = stored.content
    elif message is None or message.channel != "telegram" or telegram is None:
        raise ApiError(404, "not_found", "this attachment was not kept (see its name and size)")
    elif file.get("kind") == "location":
        raise ApiError(404, "not_found", "a location has no file")
    else:
        try:
            data = await telegram.download(str(file["ref"]))
        except DeliveryError as exc:
            raise ApiError(502, "channel_error", f"Telegram did not give the file: {exc}") from exc
    name = str(file.get("name") or f"{file.get('kind', 'file')}-{raw_id}-{raw_index}")
    return web.Response(
        body=data,
        content_type=str(file.get("mime") or "application/octet-stream"),
        headers={"Content-Disposition": f'attachment; filename="{_safe_name(name)}"'},
    )


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100] or "file"


async def merge_customer(request: web.Request) -> web.Response:
    """Merge another customer into this one (the same person writing from elsewhere)."""
    ctx = ctx_of(request)
    body = MergeIn.model_validate(await read_json(request))
    target_id = parse_id(request.match_info["customer_id"])
    target = await Customer.get_or_none(id=target_id) if target_id else None
    source = await Customer.get_or_none(id=body.customer_id)
    if target is None or source is None:
        raise ApiError(404, "not_found", "no such customer")
    if target.id == source.id:
        raise ApiError(409, "conflict", "a customer cannot be merged into itself")
    async with in_transaction():
        await merge_customers(
            source.id, target.id, ctx.lifecycle.events, actor=caller_of(request).actor
        )
    points = await ContactPoint.filter(customer_id=target.id).order_by("id")
    appeals = await Appeal.filter(customer_id=target.id).count()
    return json_response(
        {
            "id": target.id,
            "name": target.name,
            "appeals": appeals,
            "contacts": [{"channel": p.channel, "address": p.address} for p in points],
        }
    )


_NUMBER = "/api/v1/appeals/{number}"


def appeal_links(number: str) -> dict[str, Link]:
    """Links from an answer to the operations on the appeal it names; ``number`` says where
    the number is (``$response.body#/number``)."""
    return {
        "GetAppeal": Link("get_appeal", {"number": number}),
        "Reply": Link("reply", {"number": number}),
        "AddNote": Link("note", {"number": number}),
        "ChangeStatus": Link("change_status", {"number": number}),
        "Assign": Link("assign", {"number": number}),
    }


_DETAIL_LINKS = {
    **appeal_links("$request.path.number"),
    "GetAttachment": Link(
        "attachment",
        {
            "number": "$request.path.number",
            "message_id": "$response.body#/messages/0/id",
            "index": 0,
        },
    ),
    "MergeCustomer": Link("merge_customer", {"customer_id": "$response.body#/customer_id"}),
}
_FILTERS = (
    QueryParam("status", {"type": "string", "enum": [s.value for s in AppealStatus]}),
    QueryParam("priority", {"type": "string", "enum": [p.value for p in Priority]}),
    QueryParam("category", {"type": "string"}),
    QueryParam("channel", {"type": "string"}),
    QueryParam("assignee", {"type": "string"}, "agent id, Telegram id or name; 'none'"),
    QueryParam("tag", {"type": "string"}, "appeals carrying this tag, spelled as in `tags`"),
    QueryParam("q", {"type": "string"}, "text in the subject or any message, or a number"),
    QueryParam("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
    QueryParam("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE}),
)

OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/appeals",
        list_appeals,
        "List and filter appeals",
        response=AppealPage,
        errors=(400, 401, 422),
        query=_FILTERS,
        links=appeal_links("$response.body#/items/0/number"),
    ),
    Operation(
        "GET",
        _NUMBER,
        get_appeal,
        "One appeal with messages and history",
        response=AppealDetailOut,
        errors=(401, 404),
        links=_DETAIL_LINKS,
    ),
    Operation(
        "POST",
        f"{_NUMBER}/messages",
        reply,
        "Answer the customer",
        body=TextIn,
        response=MessageOut,
        status=201,
        errors=(400, 401, 404, 409, 413, 422),
    ),
    Operation(
        "GET",
        f"{_NUMBER}/messages/{{message_id}}/attachments/{{index}}",
        attachment,
        "Download a file of a message",
        errors=(401, 404, 502),
        media=("*/*",),
    ),
    Operation(
        "POST",
        "/api/v1/customers/{customer_id}/merge",
        merge_customer,
        "Merge another customer into this one",
        body=MergeIn,
        errors=(400, 401, 404, 409, 422),
    ),
    Operation(
        "POST",
        f"{_NUMBER}/notes",
        note,
        "Add an internal note",
        body=TextIn,
        response=MessageOut,
        status=201,
        errors=(400, 401, 404, 413, 422),
    ),
    Operation(
        "POST",
        f"{_NUMBER}/status",
        change_status,
        "Change the status",
        body=StatusIn,
        response=AppealDetailOut,
        errors=(400, 401, 404, 409, 422),
        links=_DETAIL_LINKS,
    ),
    Operation(
        "POST",
        f"{_NUMBER}/assign",
        assign,
        "Assign to an agent",
        body=AssignIn,
        response=AppealDetailOut,
        errors=(400, 401, 404, 422),
        links=_DETAIL_LINKS,
    ),
]
