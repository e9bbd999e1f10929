"""How a page for people is drawn: its language, a template rendered with safe headers, a
friendly error page."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from desk.api.operation import ctx_of
from desk.config.texts import language_of

_HTML = "text/html"


def form_text(value: object) -> str:
    """A posted form field as the browser counted it: browsers count a line break as one
    character (``maxlength``) but send it as CRLF, so CRLF and a lone CR become LF."""
    if not isinstance(value, str):
        return ""
    return value.replace("\r\n", "\n").replace("\r", "\n")


def page_language(request: web.Request, default: str = "") -> str:
    """``?lang=``, else the customer's language, else the browser's, else the company's."""
    chosen = request.query.get("lang") or default
    if not chosen:
        chosen = (
            request.headers.get("Accept-Language", "")[:2]
            or ctx_of(request).settings.company.language
        )
    return language_of(chosen)


def render_page(
    request: web.Request, name: str, lang: str, http_status: int = 200, **context: Any
) -> web.Response:
    """``templates/<lang>/web/<name>.html.j2`` as an uncached HTML page."""
    ctx = ctx_of(request)
    html = ctx.texts.render(
        f"web/{name}.html.j2", lang, company=ctx.settings.company.name, **context
    )
    return web.Response(
        text=html,
        status=http_status,
        content_type=_HTML,
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "form-action 'self'; frame-ancestors 'none'",
        },
    )


def error_page(
    request: web.Request, status: int, title_key: str = "", message_key: str = ""
) -> web.Response:
    """A friendly error page in the visitor's language."""
    lang = page_language(request)
    texts = ctx_of(request).texts
    if not title_key:
        if status == 404:
            title_key, message_key = "error.not_found_title", "error.not_found"
        elif status == 413:
            title_key, message_key = "error.server_title", "error.too_large"
        elif status == 429:
            title_key, message_key = "error.busy_title", "error.busy"
        elif status == 408:
            title_key, message_key = "error.server_title", "error.timeout"
        else:
            title_key, message_key = "error.server_title", "error.server"
    return render_page(
        request,
        "error",
        lang,
        http_status=status,
        status=status,
        title=texts.string(title_key, lang),
        message=texts.string(message_key, lang),
        home_url="/",
    )
