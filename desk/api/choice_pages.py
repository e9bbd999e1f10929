"""The page behind a choice link in a mail: it names the choice and records it only when the
customer confirms (a mail scanner that follows links picks nothing)."""

from __future__ import annotations

from aiohttp import web

from desk.api.operation import ctx_of
from desk.api.rate_limit import PAGES, limited
from desk.api.rendering import error_page, page_language, render_page
from desk.config.signing import BadToken, ExpiredToken
from desk.features.orders import UnknownChoice
from desk.features.webdesk import CHOICE_PURPOSE
from models import Customer, Order, parse_id


async def _action(request: web.Request) -> str | web.Response:
    ctx = ctx_of(request)
    try:
        return ctx.signer.verify(CHOICE_PURPOSE, request.match_info["token"], ctx.clock())
    except ExpiredToken:
        return error_page(request, 410, "error.link_title", "error.link_expired")
    except BadToken:
        return error_page(request, 403, "error.link_title", "error.link_invalid")


async def _page(request: web.Request, action: str, *, done: bool) -> web.Response:
    ctx = ctx_of(request)
    orders = ctx.orders
    _, order_id, choice = [*action.split(":"), "", ""][:3]
    number = parse_id(order_id)
    order = await Order.get_or_none(id=number) if number else None
    if order is None or orders is None:
        return error_page(request, 404)
    customer = await Customer.get(id=order.customer_id)
    lang = page_language(request, customer.language)
    return render_page(
        request,
        "choice",
        lang,
        order=order.external_id,
        stage=orders.stage_title(order.stage, lang),
        choice=orders.choice_title(order, choice, lang),
        done=done,
        action_url=request.path,
    )


@limited(PAGES)
async def choice_page(request: web.Request) -> web.Response:
    """GET: what the link would choose, with a button to confirm it."""
    action = await _action(request)
    if isinstance(action, web.Response):
        return action
    return await _page(request, action, done=False)


@limited(PAGES)
async def confirm_choice(request: web.Request) -> web.Response:
    """POST: the customer confirmed; the choice is recorded (twice is once)."""
    action = await _action(request)
    if isinstance(action, web.Response):
        return action
    ctx = ctx_of(request)
    if ctx.orders is None:
        return error_page(request, 404)
    try:
        await ctx.orders.answer(action, via="email", actor="customer")
    except UnknownChoice:
        return error_page(request, 409, "error.choice_title", "order.choice_stale")
    ctx.outbox.wake()
    return await _page(request, action, done=True)


def add_routes(app: web.Application) -> None:
    """Register the choice pages."""
    app.router.add_get("/c/{token}", choice_page)
    app.router.add_post("/c/{token}", confirm_choice)
