"""The orders API: a shop's system upserts orders and reports their stages (seed 003)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import (
    AwareDatetime,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from desk.api.errors import ApiError, json_response, read_json
from desk.api.operation import Link, Operation, ctx_of, idempotency_header, idempotency_key
from desk.api.schemas import (
    EMAIL_OR_BLANK,
    GIVEN_EMAIL,
    GIVEN_PHONE,
    NOT_BLANK,
    PHONE_OR_BLANK,
    Body,
    RowId,
    one_of_contacts,
)
from desk.context import AppContext
from desk.features.orders import Contacts, OrderChange, Orders
from models import Customer, Order

AMOUNT_LIMIT = Decimal("1000000000000")  # the column holds 12 digits before the point
KOPECK = Decimal("0.01")
# The amount as a string: digits, a point, no minus, no exponent.
AMOUNT_TEXT = r"^\+?(?:[0-9]{1,12}(?:\.[0-9]*)?|\.[0-9]+)$"
AMOUNT_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1_000_000_000_000},
        {"type": "string", "pattern": AMOUNT_TEXT},
        {"type": "null"},
    ],
    "default": None,
    "description": "the order's sum, under 10^12; kept to the kopeck (cut to 2 decimals)",
}


def _amount_as_documented(value: Any) -> Any:
    """A string amount is refused unless it is plain digits, as the document says."""
    if isinstance(value, str) and not re.fullmatch(AMOUNT_TEXT, value):
        raise ValueError("an amount is digits with an optional decimal point, e.g. 1990.50")
    if isinstance(value, bool):
        raise ValueError("an amount is a number, not true or false")
    return value


_KEY_HEADER = idempotency_header("the same key and body change the order once")


class CustomerIn(Body):
    """The order's customer and how to reach them: at least one of email, phone, telegram_id
    and vk_id."""

    model_config = ConfigDict(
        json_schema_extra=one_of_contacts(
            GIVEN_EMAIL,
            GIVEN_PHONE,
            ("telegram_id", {"type": "integer"}),
            ("vk_id", {"type": "integer"}),
        )
    )

    name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_OR_BLANK)
    phone: str | None = Field(default=None, max_length=40, pattern=PHONE_OR_BLANK)
    telegram_id: RowId | None = None
    vk_id: RowId | None = None
    language: Literal["ru", "en"] | None = None
    timezone: str = Field(default="", max_length=64, description="e.g. Asia/Yekaterinburg")
    preferred_channel: Literal["telegram", "vk", "email"] | None = None


class OrderIn(Body):
    """An order as the shop's system has it."""

    external_id: str = Field(min_length=1, max_length=100, pattern=NOT_BLANK)
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
    amount: Annotated[
        Decimal | None,
        BeforeValidator(_amount_as_documented),
        WithJsonSchema(AMOUNT_SCHEMA),
    ] = Field(default=None, ge=0, lt=AMOUNT_LIMIT)

    @field_validator("amount")
    @classmethod
    def _to_kopecks(cls, value: Decimal | None) -> Decimal | None:
        # The column holds 2 decimals: a float's tail (19.990000000000002) is cut, as the
        # document says, rather than refused.
        return value.quantize(KOPECK, rounding=ROUND_DOWN) if value is not None else None


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


class OrderCustomerOut(Body):
    """Whose order it is, and where they stand."""

    id: int
    name: str
    language: str
    lifecycle: str
    warmth: str
    do_not_contact: bool


class OrderDetailOut(Body):
    """An order: its stage (with its title), amount, customer and the stages it went
    through, oldest first (``kind`` ``stage``, or ``answer``: the customer's choice)."""

    external_id: str
    stage: str
    stage_title: str
    placed_at: datetime | None
    amount: str | None
    customer: OrderCustomerOut
    history: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


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
    order, created = await _orders(ctx).upsert(change, idempotency_key(request))
    ctx.outbox.wake()
    return json_response(_out(order), status=201 if created else 200)


async def change_stage(request: web.Request) -> web.Response:
    """Record the order's new stage (the same stage again changes nothing)."""
    ctx = ctx_of(request)
    body = StageIn.model_validate(await read_json(request))
    order = await _orders(ctx).set_stage(
        request.match_info["external_id"], body.stage, note=body.note, key=idempotency_key(request)
    )
    ctx.outbox.wake()
    return json_response(_out(order))


async def get_order(request: web.Request) -> web.Response:
    """One order with its stage, customer and history of stages."""
    ctx = ctx_of(request)
    orders = _orders(ctx)
    order = await orders.get(request.match_info["external_id"])
    customer = await Customer.get(id=order.customer_id)
    out = OrderDetailOut(
        external_id=order.external_id,
        stage=order.stage,
        stage_title=orders.stage_title(order.stage, ctx.settings.company.language),
        placed_at=order.placed_at,
        amount=str(order.amount) if order.amount is not None else None,
        customer=OrderCustomerOut(
            id=customer.id,
            name=customer.name,
            language=customer.language,
            lifecycle=customer.lifecycle.value,
            warmth=customer.warmth.value,
            do_not_contact=customer.do_not_contact,
        ),
        history=list(order.stage_history),
        created_at=order.created_at,
        updated_at=order.updated_at,
    )
    return json_response(out.model_dump(mode="json"))


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
        links={
            "ChangeStage": Link("change_stage", {"external_id": "$response.body#/external_id"}),
            "GetOrder": Link("get_order", {"external_id": "$response.body#/external_id"}),
        },
    ),
    Operation(
        "GET",
        "/api/v1/orders/{external_id}",
        get_order,
        "One order with its stage, customer and history of stages",
        response=OrderDetailOut,
        errors=(401, 404),
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
