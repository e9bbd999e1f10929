"""The orders API: a shop's system upserts orders and reports their stages (seed 003)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, Field

from desk.api.app import Link, Operation, QueryParam, ctx_of
from desk.api.errors import ApiError, json_response, read_json
from desk.api.schemas import Body, RowId
from desk.context import AppContext
from desk.orders import Contacts, OrderChange, Orders
from models import Order

MAX_KEY = 200
_KEY_HEADER = QueryParam(
    "Idempotency-Key",
    {"type": "string", "maxLength": MAX_KEY},
    "the same key and body change the order once",
)


class CustomerIn(Body):
    """The order's customer and how to reach them (at least one contact)."""

    name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    telegram_id: RowId | None = None
    vk_id: RowId | None = None
    language: Literal["ru", "en"] | None = None
    timezone: str = Field(default="", max_length=64, description="e.g. Asia/Yekaterinburg")
    preferred_channel: Literal["telegram", "vk", "email"] | None = None


class OrderIn(Body):
    """An order as the shop's system has it."""

    external_id: str = Field(min_length=1, max_length=100)
    customer: CustomerIn
    stage: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="the order's stage; left out: a new order starts at «new», "
        "a known one keeps its stage",
    )
    placed_at: AwareDatetime | None = Field(
        default=None, description="when the customer ordered (default: now; never later)"
    )
    amount: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=2)


class StageIn(Body):
    """A stage change of an order."""

    stage: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=500)


class OrderOut(Body):
    """An order and its stages so far."""

    external_id: str
    customer_id: int
    stage: str
    history: list[dict[str, Any]]


def _key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key", "").strip() or None
    if key is not None and len(key) > MAX_KEY:
        raise ApiError(400, "bad_request", f"Idempotency-Key is longer than {MAX_KEY} characters")
    return key


def _orders(ctx: AppContext) -> Orders:
    if ctx.orders is None:
        raise ApiError(503, "unavailable", "orders are not available in this process")
    return ctx.orders


def _out(order: Order) -> dict[str, Any]:
    return OrderOut(
        external_id=order.external_id,
        customer_id=order.customer_id,
        stage=order.stage,
        history=list(order.stage_history),
    ).model_dump(mode="json")


async def upsert_order(request: web.Request) -> web.Response:
    """Create the order (201) or update it (200); a new stage fires its notification."""
    ctx = ctx_of(request)
    body = OrderIn.model_validate(await read_json(request))
    c = body.customer
    change = OrderChange(
        external_id=body.external_id,
        contacts=Contacts(
            name=c.name,
            email=c.email,
            phone=c.phone,
            telegram_id=c.telegram_id,
            vk_id=c.vk_id,
            language=c.language or "",
            timezone=c.timezone,
            preferred_channel=c.preferred_channel,
        ),
        stage=body.stage,
        placed_at=body.placed_at,
        amount=body.amount,
    )
    order, created = await _orders(ctx).upsert(change, _key(request))
    ctx.outbox.wake()
    return json_response(_out(order), status=201 if created else 200)


async def change_stage(request: web.Request) -> web.Response:
    """Record the order's new stage (the same stage again changes nothing)."""
    ctx = ctx_of(request)
    body = StageIn.model_validate(await read_json(request))
    order = await _orders(ctx).set_stage(
        request.match_info["external_id"], body.stage, note=body.note, key=_key(request)
    )
    ctx.outbox.wake()
    return json_response(_out(order))


OPERATIONS = [
    Operation(
        "POST",
        "/api/v1/orders",
        upsert_order,
        "Create or update an order with its customer's contacts",
        body=OrderIn,
        response=OrderOut,
        status=201,
        errors=(400, 401, 422),
        headers=(_KEY_HEADER,),
        extra_responses={200: OrderOut},
        links={"ChangeStage": Link("change_stage", {"external_id": "$response.body#/external_id"})},
    ),
    Operation(
        "POST",
        "/api/v1/orders/{external_id}/stage",
        change_stage,
        "Record a stage change of an order",
        body=StageIn,
        response=OrderOut,
        errors=(400, 401, 404, 422),
        headers=(_KEY_HEADER,),
    ),
]
