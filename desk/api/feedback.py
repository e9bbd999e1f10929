"""The rating pages behind a mail's score links (``/feedback/<token>``): opening one shows the
score preselected and records nothing; only the confirming POST does, so a mail scanner that
follows links casts no rating. The page can be revisited to change the score or the comment
while the request is valid."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web

from desk.api.operation import ctx_of
from desk.api.rate_limit import PAGES, limited
from desk.api.rendering import error_page, form_text, page_language, render_page
from desk.config.signing import BadToken, ExpiredToken
from desk.features.forget import is_forgotten
from desk.features.ratings import COMMENT_LIMIT, FACES, SCORES, RatingClosed, UnknownRequest
from desk.features.webdesk import FEEDBACK_PURPOSE
from models import Appeal, Customer, Order, Rating, RatingRequest, parse_id, storable

MAX_FORM_BYTES = 16 * 1024


async def _request_of(request: web.Request) -> RatingRequest | web.Response:
    """The rating request a token names, or the page that says why not."""
    ctx = ctx_of(request)
    try:
        subject = ctx.signer.verify(FEEDBACK_PURPOSE, request.match_info["token"], ctx.clock())
    except ExpiredToken:
        return _closed(request)
    except BadToken:
        return error_page(request, 403, "error.link_title", "error.link_invalid")
    request_id = parse_id(subject)
    found = await RatingRequest.get_or_none(id=request_id) if request_id else None
    if found is None:
        return error_page(request, 404)
    if await is_forgotten(found.customer_id):
        return error_page(request, 410, "error.forgotten_title", "error.forgotten")
    if ctx.clock() >= found.expires_at:
        return _closed(request)
    return found


def _closed(request: web.Request) -> web.Response:
    return error_page(request, 410, "feedback.closed_title", "feedback.closed")


def _score(raw: str | None) -> int | None:
    value = parse_id(raw) if raw is not None else None  # "²" or 5,000 digits: no score
    return value if value in SCORES else None


async def _page(
    request: web.Request,
    rating_request: RatingRequest,
    *,
    score: int | None,
    comment: str,
    done: bool = False,
    error_key: str = "",
    status: int = 200,
) -> web.Response:
    ctx = ctx_of(request)
    customer = await Customer.get(id=rating_request.customer_id)
    lang = page_language(request, customer.language)
    what, subject = "", ""
    if rating_request.appeal_id is not None:
        appeal = await Appeal.get(id=rating_request.appeal_id)
        what, subject = appeal.number or "", appeal.subject
    elif rating_request.order_id is not None:
        order = await Order.get(id=rating_request.order_id)
        what = f"№ {order.external_id}"
    zone = ZoneInfo(ctx.settings.company.timezone)
    return render_page(
        request,
        "feedback",
        lang,
        status,
        what=what,
        subject=subject,
        score=score,
        comment=comment,
        faces=FACES,
        done=done,
        error=ctx.texts.string(error_key, lang, limit=COMMENT_LIMIT) if error_key else "",
        comment_limit=COMMENT_LIMIT,
        action_url=request.path,
        expires=rating_request.expires_at.astimezone(zone).strftime("%d.%m.%Y %H:%M"),
    )


@limited(PAGES)
async def feedback_page(request: web.Request) -> web.Response:
    """GET: the form, the link's score preselected (or today's, on a revisit)."""
    found = await _request_of(request)
    if isinstance(found, web.Response):
        return found
    ctx = ctx_of(request)
    if ctx.ratings is None:
        return error_page(request, 404)
    day = ctx.ratings.day_of(ctx.clock())
    today = await Rating.filter(request_id=found.id, day=day).order_by("-updated_at").first()
    score = _score(request.query.get("score")) or (today.score if today is not None else None)
    return await _page(
        request, found, score=score, comment=today.comment if today is not None else ""
    )


@limited(PAGES)
async def confirm_feedback(request: web.Request) -> web.Response:
    """POST: the customer confirmed a score (and maybe a comment); it is recorded."""
    found = await _request_of(request)
    if isinstance(found, web.Response):
        return found
    if (request.content_length or 0) > MAX_FORM_BYTES:
        return error_page(request, 413)
    form = await request.post()
    ctx = ctx_of(request)
    if ctx.ratings is None:
        return error_page(request, 404)
    score = _score(str(form.get("score", "")))
    comment = storable(form_text(form.get("comment", "")))
    if score is None:
        return await _page(
            request, found, score=None, comment=comment, error_key="feedback.bad_score", status=400
        )
    if len(comment.strip()) > COMMENT_LIMIT:  # shown again to shorten, not cut unseen
        return await _page(
            request, found, score=score, comment=comment, error_key="feedback.too_long", status=422
        )
    try:
        await ctx.ratings.rate(found.id, score, via="email", comment=comment)
    except RatingClosed:
        return _closed(request)
    except UnknownRequest:
        return error_page(request, 404)
    ctx.outbox.wake()
    return await _page(request, found, score=score, comment=comment.strip(), done=True)


def add_routes(app: web.Application) -> None:
    """Register the feedback pages."""
    app.router.add_get("/feedback/{token}", feedback_page)
    app.router.add_post("/feedback/{token}", confirm_feedback)
