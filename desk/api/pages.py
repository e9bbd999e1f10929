"""Customer web pages: the appeal form and the status page, server-rendered, no JavaScript."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import ValidationError

from desk.api.operation import ctx_of
from desk.api.rate_limit import APPEALS, PAGES, limited, retry_after
from desk.api.rendering import error_page, form_text, page_language, render_page
from desk.api.schemas import MAX_TEXT, NewAppealIn
from desk.config.signing import BadToken, ExpiredToken
from desk.context import AppContext
from desk.features.webdesk import (
    STAFF_VIEW_PURPOSE,
    STATUS_PURPOSE,
    accept_appeal,
    accept_reply,
    appeal_for_receipt,
    receipt_forgotten,
    status_token,
)
from models import Appeal, AppealStatus, Customer, Direction, Message, storable

FORM_FIELDS = ("name", "email", "phone", "subject", "text")
# The form's trap for robots: a field people neither see nor reach (hidden by CSS, out of the
# tab order, labelled «leave empty» for screen readers). A filled one sends nothing: the form
# comes back with what was typed, the trap empty, and says why, so a person whose browser
# filled it by mistake just sends again; robots do not read the answer.
TRAP_FIELD = "homepage"
log = logging.getLogger(__name__)


async def new_appeal_form(request: web.Request) -> web.Response:
    """The empty appeal form."""
    lang = page_language(request)
    return render_page(
        request,
        "new_appeal",
        lang,
        action_url="/appeal",
        form=dict.fromkeys(FORM_FIELDS, ""),
        errors=[],
        max_text=MAX_TEXT,
    )


async def _form_again(
    request: web.Request, values: dict[str, str], errors: list[str], http_status: int
) -> web.Response:
    return render_page(
        request,
        "new_appeal",
        page_language(request),
        http_status=http_status,
        action_url="/appeal",
        form=values,
        errors=errors,
        max_text=MAX_TEXT,
    )


async def _form_refused(request: web.Request, seconds: int) -> web.Response:
    """Over the appeals' budget: the form again, as typed, with how long to wait."""
    posted = await request.post()
    values = {k: form_text(posted.get(k, "")) for k in FORM_FIELDS}
    message = ctx_of(request).texts.string(
        "error.form.busy", page_language(request), seconds=seconds
    )
    response = await _form_again(request, values, [message], 429)
    response.headers.update(retry_after(seconds))
    return response


@limited(APPEALS, refuse=_form_refused)
async def submit_appeal_form(request: web.Request) -> web.Response:
    """Take the form, write the appeal to the stream, and send the customer to its status page."""
    ctx = ctx_of(request)
    lang = page_language(request)
    posted = await request.post()
    values = {k: form_text(posted.get(k, "")) for k in FORM_FIELDS}
    if form_text(posted.get(TRAP_FIELD, "")).strip():
        log.info("web form trap filled: nothing sent")
        return await _form_again(request, values, [ctx.texts.string("error.form.trap", lang)], 422)
    try:
        body = NewAppealIn.model_validate({**values, "language": lang})
    except ValidationError as exc:
        return await _form_again(request, values, _form_errors(ctx, exc, lang), 422)
    accepted = await accept_appeal(ctx, body.web_appeal(lang), None)
    raise web.HTTPSeeOther(f"/s/{status_token(ctx, accepted.receipt)}?sent=1")


def _form_errors(ctx: AppContext, exc: ValidationError, lang: str) -> list[str]:
    keys: list[str] = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "string_too_long" and field == "text":
            keys.append("error.form.too_long")
        elif field in ("name", "email", "phone", "text"):
            keys.append(f"error.form.{field}")
        else:
            keys.append("error.form.contact")
    unique = list(dict.fromkeys(keys))
    return [
        ctx.texts.string(k, lang, limit=MAX_TEXT)
        if k.endswith("too_long")
        else ctx.texts.string(k, lang)
        for k in unique
    ]


async def _appeal_of_token(
    request: web.Request, purpose: str = STATUS_PURPOSE
) -> tuple[str, Appeal | None]:
    ctx = ctx_of(request)
    try:
        receipt = ctx.signer.verify(purpose, request.match_info["token"], ctx.clock())
    except ExpiredToken:
        raise _LinkError("error.link_expired", 410) from None
    except BadToken:
        raise _LinkError("error.link_invalid", 403) from None
    appeal = await appeal_for_receipt(receipt)
    if appeal is None and await receipt_forgotten(receipt):
        raise _LinkError("error.forgotten", 410, "error.forgotten_title")
    return receipt, appeal


class _LinkError(Exception):
    def __init__(self, key: str, status: int, title: str = "error.link_title") -> None:
        super().__init__(key)
        self.key = key
        self.status = status
        self.title = title


async def status_page(request: web.Request) -> web.Response:
    """The appeal's status and conversation, with a reply form while it is open."""
    try:
        receipt, appeal = await _appeal_of_token(request)
    except _LinkError as exc:
        return error_page(request, exc.status, exc.title, exc.key)
    return await _status_view(request, receipt, appeal)


async def staff_view_page(request: web.Request) -> web.Response:
    """The appeal's status and conversation for the managers (the link of their alert mails):
    the same page, without the customer's reply form."""
    try:
        receipt, appeal = await _appeal_of_token(request, STAFF_VIEW_PURPOSE)
    except _LinkError as exc:
        return error_page(request, exc.status, exc.title, exc.key)
    if appeal is None:
        return error_page(request, 404)
    return await _status_view(request, receipt, appeal, read_only=True)


async def _status_view(
    request: web.Request,
    receipt: str,
    appeal: Appeal | None,
    *,
    read_only: bool = False,
    reply: str = "",
    error_key: str = "",
    http_status: int = 200,
) -> web.Response:
    """The status page; ``reply`` and ``error_key``: a reply that was refused, shown again in
    the form with the reason."""
    ctx = ctx_of(request)
    texts = ctx.texts
    if appeal is None:
        lang = page_language(request)
        return render_page(
            request,
            "status",
            lang,
            appeal={"number": "", "status": "new", "subject": "", "created_at": "", "channel": ""},
            registered=False,
            messages=[],
            orders=[],
            reply_url="",
            can_reply=False,
            new_url="/",
            flash="",
            title=texts.string("page.new_title", lang),
        )
    customer = await Customer.get(id=appeal.customer_id)
    lang = page_language(request, customer.language)
    messages = await Message.filter(
        appeal_id=appeal.id, direction__in=[Direction.IN, Direction.OUT]
    ).order_by("id")
    zone = ctx.settings.company.timezone
    flash = ""
    if "sent" in request.query:
        flash = texts.string("flash.sent", lang)
    elif "replied" in request.query:
        flash = texts.string("flash.replied", lang)
    return render_page(
        request,
        "status",
        lang,
        http_status=http_status,
        appeal={
            "number": appeal.number,
            "status": appeal.status.value,
            "subject": appeal.subject,
            "created_at": _when(appeal.created_at, zone),
            "channel": texts.channel(appeal.channel, lang),
        },
        registered=True,
        messages=[
            {
                "direction": m.direction.value,
                # Staff show by agent name; API and system senders as the support team.
                "author": m.author if m.direction is Direction.IN or m.agent_id else "",
                "text": m.text,
                "at": _when(m.created_at, zone),
            }
            for m in messages
        ],
        orders=await _orders_of(ctx, customer.id, lang),
        reply_url="" if read_only else f"/s/{request.match_info['token']}/reply",
        can_reply=not read_only and appeal.status is not AppealStatus.CLOSED,
        new_url="/",
        flash=flash,
        title=texts.string("page.status_title", lang, number=appeal.number),
        receipt=receipt,
        reply=reply,
        reply_error=texts.string(error_key, lang, limit=MAX_TEXT) if error_key else "",
        max_text=MAX_TEXT,
    )


async def _orders_of(ctx: AppContext, customer_id: int, lang: str) -> list[dict[str, str]]:
    """The customer's orders with their current stage, for the status page."""
    if ctx.orders is None:
        return []
    return [
        {"external_id": o.external_id, "stage": ctx.orders.stage_title(o.stage, lang)}
        for o in await ctx.orders.of_customer(customer_id)
    ]


@limited(PAGES)
async def status_reply(request: web.Request) -> web.Response:
    """A customer's reply from the status page, into the same appeal (reopening it if needed)."""
    try:
        receipt, appeal = await _appeal_of_token(request)
    except _LinkError as exc:
        return error_page(request, exc.status, exc.title, exc.key)
    token = request.match_info["token"]
    posted = await request.post()
    typed = form_text(posted.get("text", ""))
    text = storable(typed).strip()
    if appeal is None:
        raise web.HTTPSeeOther(f"/s/{token}")
    if not text or len(text) > MAX_TEXT:
        # Shown again with the reason, the text as typed: nothing the customer wrote is lost.
        key = "error.form.too_long" if text else "error.form.text"
        return await _status_view(
            request, receipt, appeal, reply=typed, error_key=key, http_status=422
        )
    customer = await Customer.get(id=appeal.customer_id)
    await accept_reply(ctx_of(request), appeal, text, customer.language)
    raise web.HTTPSeeOther(f"/s/{token}?replied=1")


def _when(moment: datetime | None, zone: str) -> str:
    """A time as the company's clock shows it."""
    if moment is None:
        return ""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return moment.strftime("%d.%m.%Y %H:%M UTC")
    return moment.astimezone(tz).strftime("%d.%m.%Y %H:%M")


def add_routes(app: web.Application) -> None:
    """Register the customer pages."""
    app.router.add_get("/", new_appeal_form)
    app.router.add_post("/appeal", submit_appeal_form)
    app.router.add_get("/s/{token}", status_page)
    app.router.add_post("/s/{token}/reply", status_reply)
    app.router.add_get("/v/{token}", staff_view_page)
