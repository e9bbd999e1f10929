"""Customers over HTTP: the life-cycle time line, warmth, and the lost-customer report."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, Field
from tortoise.transactions import in_transaction

from desk.api.errors import ApiError, json_response, read_json
from desk.api.operation import Link, Operation, QueryParam, caller_of, ctx_of
from desk.api.query import enum_param, int_param
from desk.api.reports import PERIOD_PARAMS, PeriodOut, report_response
from desk.api.schemas import Body
from desk.api.staff import MAX_PAGE, MAX_PER_PAGE
from desk.appeals.customers import set_state
from desk.appeals.timeline import MAX_ENTRIES, timeline
from desk.features.consent import set_do_not_contact
from desk.features.customer_list import customer_page
from desk.features.orders import order_totals
from desk.reports.customer_report import CustomerReport, customer_report
from desk.reports.periods import Period
from models import Customer, Lifecycle, Warmth
from models.lookup import parse_id


class CustomerStandingOut(BaseModel):
    """A customer's standing: life cycle, warmth, orders."""

    id: int
    name: str
    lifecycle: str
    warmth: str
    vip: bool
    do_not_contact: bool
    last_order_at: datetime | None
    lost_after: datetime | None
    orders: int
    amount: str = Field(description="the sum of the orders' amounts")


class EntryOut(BaseModel):
    """One step of the life cycle; ``data`` holds what the history recorded with it."""

    at: datetime
    kind: str
    actor: str
    number: str | None
    data: dict[str, Any]


class TimelineOut(BaseModel):
    """A customer and their life cycle, oldest step first."""

    customer: CustomerStandingOut
    items: list[EntryOut]


class WarmthIn(Body):
    """How warm the relationship is now, and why."""

    warmth: Literal["hot", "warm", "cold"]
    reason: str = Field(default="", max_length=500)


class CountedOut(BaseModel):
    """How many customers are in each life-cycle state now."""

    lost: int
    active: int
    prospect: int


class ReturnedCustomerOut(BaseModel):
    """One return: who, when, and what they ordered since (to the period's end)."""

    customer_id: int
    name: str
    at: str
    orders: int
    amount: str


class ReturnedOut(BaseModel):
    """Customers who came back in the period and their orders' total."""

    count: int
    amount: str
    customers: list[ReturnedCustomerOut]


class ReasonOut(BaseModel):
    """A reason customers gave for leaving, and how many gave it."""

    reason: str
    count: int


class CallsOut(BaseModel):
    """Win-back calls due in the period and whether they were made by their time."""

    due: int
    on_time: int
    late: int
    overdue: int
    waiting: int
    on_time_share: float | None
    results: dict[str, int]


class CustomerDayOut(BaseModel):
    """One day: customers lost and returned, and the returned customers' orders."""

    day: str
    lost: int
    returned: int
    amount: str


class CustomerReportOut(BaseModel):
    """Lost customers of a period (seed 002)."""

    period: PeriodOut
    now: CountedOut
    lost: int
    returned: ReturnedOut
    reasons: list[ReasonOut]
    calls: CallsOut
    daily: list[CustomerDayOut]


class LastOrderOut(BaseModel):
    """A customer's latest order."""

    external_id: str
    stage: str
    placed_at: datetime | None
    amount: str | None


class CustomerLineOut(BaseModel):
    """A customer in the list: their state, why, and their last purchase."""

    id: int
    name: str
    lifecycle: str
    warmth: str
    vip: bool
    do_not_contact: bool
    state_since: datetime | None = Field(description="when the life-cycle state last changed")
    state_reason: str = Field(
        description="why, as the history recorded it (for a lost customer: how long without "
        "an order)"
    )
    left_because: str = Field(
        description="what the customer said on the latest win-back call that reached them"
    )
    last_order_at: datetime | None
    last_order: LastOrderOut | None


class CustomerPage(BaseModel):
    """One page of customers."""

    items: list[CustomerLineOut]
    page: int
    per_page: int
    total: int


class ContactIn(Body):
    """Whether the desk may contact the customer by itself (notices, rating requests,
    win-back calls); answers agents write still go."""

    do_not_contact: bool
    reason: str = Field(default="", max_length=500)


async def list_customers(request: web.Request) -> web.Response:
    """Customers by life-cycle state (``state=lost``: the lost ones), most recently changed
    first, with warmth, the reason and the last purchase; paginated as the appeals list."""
    page = int_param(request, "page", 1, 1, MAX_PAGE)
    per_page = int_param(request, "per_page", 50, 1, MAX_PER_PAGE)
    state = enum_param(request, "state", [s.value for s in Lifecycle])
    warmth = enum_param(request, "warmth", [w.value for w in Warmth])
    flag = enum_param(request, "do_not_contact", ["true", "false"])
    total, lines = await customer_page(
        state=Lifecycle(state) if state else None,
        warmth=Warmth(warmth) if warmth else None,
        do_not_contact=None if flag is None else flag == "true",
        page=page,
        per_page=per_page,
    )
    items = [
        CustomerLineOut(
            id=line.customer.id,
            name=line.customer.name,
            lifecycle=line.customer.lifecycle.value,
            warmth=line.customer.warmth.value,
            vip=line.customer.vip,
            do_not_contact=line.customer.do_not_contact,
            state_since=line.state.at if line.state else None,
            state_reason=line.state.reason if line.state else "",
            left_because=line.left_because,
            last_order_at=line.customer.last_order_at,
            last_order=LastOrderOut(
                external_id=line.last_order.external_id,
                stage=line.last_order.stage,
                placed_at=line.last_order.placed_at,
                amount=str(line.last_order.amount) if line.last_order.amount is not None else None,
            )
            if line.last_order is not None
            else None,
        )
        for line in lines
    ]
    out = CustomerPage(items=items, page=page, per_page=per_page, total=total)
    return json_response(out.model_dump(mode="json"))


async def set_contact(request: web.Request) -> web.Response:
    """Flag a customer not to be contacted automatically, or lift the flag."""
    ctx = ctx_of(request)
    body = ContactIn.model_validate(await read_json(request))
    customer = await _customer(request)
    await set_do_not_contact(
        ctx.lifecycle,
        customer,
        body.do_not_contact,
        actor=caller_of(request).actor,
        reason=body.reason or "api",
        now=ctx.clock(),
    )
    return json_response(await customer_out(customer))


async def _customer(request: web.Request) -> Customer:
    raw = request.match_info["customer_id"]
    customer_id = parse_id(raw)
    customer = await Customer.get_or_none(id=customer_id) if customer_id is not None else None
    if customer is None:
        raise ApiError(404, "not_found", "no such customer")
    return customer


async def customer_out(customer: Customer) -> dict[str, Any]:
    """The API form of a customer's standing."""
    orders, amount = await order_totals(customer.id)
    return CustomerStandingOut(
        id=customer.id,
        name=customer.name,
        lifecycle=customer.lifecycle.value,
        warmth=customer.warmth.value,
        vip=customer.vip,
        do_not_contact=customer.do_not_contact,
        last_order_at=customer.last_order_at,
        lost_after=customer.lost_after,
        orders=orders,
        amount=str(amount),
    ).model_dump(mode="json")


async def customer_timeline(request: web.Request) -> web.Response:
    """The customer's appeals, orders, ratings, tasks and changes of state, in order."""
    customer = await _customer(request)
    limit = int_param(request, "limit", 200, 1, MAX_ENTRIES)
    entries = await timeline(customer.id, limit)
    body = TimelineOut(
        customer=CustomerStandingOut.model_validate(await customer_out(customer)),
        items=[
            EntryOut(at=e.at, kind=e.kind, actor=e.actor, number=e.number, data=e.data)
            for e in entries
        ],
    )
    return json_response(body.model_dump(mode="json"))


async def set_warmth(request: web.Request) -> web.Response:
    """Set how warm the relationship is (seed 002: hot, warm, cold)."""
    ctx = ctx_of(request)
    body = WarmthIn.model_validate(await read_json(request))
    customer = await _customer(request)
    async with in_transaction():
        await set_state(
            ctx.lifecycle.events,
            customer,
            Warmth(body.warmth),
            actor=caller_of(request).actor,
            reason=body.reason or "api",
        )
    ctx.outbox.wake()
    return json_response(await customer_out(customer))


def _daily_csv(report: CustomerReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["day", "lost", "returned", "amount"])
    for day in report.daily:
        writer.writerow([day.day.isoformat(), day.lost, day.returned, str(day.amount)])
    return out.getvalue()


async def customers_report(request: web.Request) -> web.Response:
    """Lost customers of the period as JSON, or its days as CSV with ``?format=csv``."""
    ctx = ctx_of(request)
    zone = ZoneInfo(ctx.settings.company.timezone)

    async def build(period: Period) -> CustomerReport:
        return await customer_report(period, ctx.clock(), zone)

    return await report_response(request, "customers", build, _daily_csv, CustomerReportOut)


_CUSTOMER_ERRORS = (400, 401, 404, 422)
OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/customers",
        list_customers,
        "Customers by life-cycle state (state=lost: the lost ones) with warmth, the reason "
        "and the last purchase",
        response=CustomerPage,
        errors=(400, 401),
        query=(
            QueryParam("state", {"type": "string", "enum": [s.value for s in Lifecycle]}),
            QueryParam("warmth", {"type": "string", "enum": [w.value for w in Warmth]}),
            QueryParam(
                "do_not_contact",
                {"type": "string", "enum": ["true", "false"]},
                "only the customers with (true) or without (false) the flag",
            ),
            QueryParam("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
            QueryParam("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE}),
        ),
        links={
            "Timeline": Link("customer_timeline", {"customer_id": "$response.body#/items/0/id"})
        },
    ),
    Operation(
        "PUT",
        "/api/v1/customers/{customer_id}/contact",
        set_contact,
        "Whether the desk contacts a customer by itself (notices, rating requests, win-back "
        "calls); answers agents write still go",
        body=ContactIn,
        response=CustomerStandingOut,
        errors=_CUSTOMER_ERRORS,
    ),
    Operation(
        "GET",
        "/api/v1/customers/{customer_id}/timeline",
        customer_timeline,
        "A customer's life cycle in order: appeals, orders, ratings, tasks, state and warmth",
        response=TimelineOut,
        errors=_CUSTOMER_ERRORS,
        query=(QueryParam("limit", {"type": "integer", "minimum": 1, "maximum": MAX_ENTRIES}),),
    ),
    Operation(
        "PUT",
        "/api/v1/customers/{customer_id}/warmth",
        set_warmth,
        "Set how warm the relationship with a customer is",
        body=WarmthIn,
        response=CustomerStandingOut,
        errors=_CUSTOMER_ERRORS,
    ),
    Operation(
        "GET",
        "/api/v1/reports/customers",
        customers_report,
        "Lost customers of a period: lost now and in the period, returned with their orders, "
        "reasons for leaving, win-back calls on time",
        response=CustomerReportOut,
        errors=(400, 401),
        media=("text/csv",),
        query=(
            *PERIOD_PARAMS,
            QueryParam(
                "format", {"type": "string", "enum": ["json", "csv"]}, "csv: the days as CSV"
            ),
        ),
    ),
]
