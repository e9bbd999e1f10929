"""The customer's bot: /start and its menu, every message into the appeal stream, edits too."""

from __future__ import annotations

import html
import logging

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.filters import CommandStart
from aiogram.types import CallbackQuery, KeyboardButton, Message, ReplyKeyboardMarkup

from bots.deps import BotDeps
from bots.filters import inline
from channels.base import BadInbound, ChannelKind
from channels.telegram.updates import customer_inbound
from desk.appeals.customers import customer_id_at, link_phone, recent_appeals
from desk.config.texts import LANGUAGES, language_of
from desk.features.orders import CHOICE_PREFIX, UnknownChoice
from desk.features.ratings import is_rating_action

log = logging.getLogger(__name__)

MY_APPEALS_LIMIT = 10


def customer_router() -> Router:
    """The handlers of customers' private chats (a new router per dispatcher)."""
    router = Router(name="customer")
    router.message.filter(inline(F.chat.type == ChatType.PRIVATE))
    router.edited_message.filter(inline(F.chat.type == ChatType.PRIVATE))
    router.callback_query.filter(inline(F.message.chat.type == ChatType.PRIVATE))
    router.callback_query.register(choice_pressed, inline(F.data.startswith(f"{CHOICE_PREFIX}:")))
    router.callback_query.register(rating_pressed, inline(F.data.func(is_rating_action)))
    router.message.register(start, CommandStart())
    router.message.register(shared_contact, inline(F.contact))
    router.message.register(text_message, inline(F.text.as_("label")))
    router.message.register(any_message)
    router.edited_message.register(edited_message)
    return router


def _lang(message: Message) -> str:
    user = message.from_user
    return language_of(user.language_code if user is not None else None)


def _labels(deps: BotDeps, key: str) -> set[str]:
    return {deps.ctx.texts.string(key, lang) for lang in LANGUAGES}


def menu(deps: BotDeps, lang: str) -> ReplyKeyboardMarkup:
    """The customer's keyboard: new appeal, my appeals, share phone."""
    s = deps.ctx.texts.string
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=s("menu.new", lang)), KeyboardButton(text=s("menu.list", lang))],
            [
                KeyboardButton(text=s("menu.orders", lang)),
                KeyboardButton(text=s("menu.phone", lang), request_contact=True),
            ],
        ],
        resize_keyboard=True,
        is_persistent=True,
    )


async def start(message: Message, deps: BotDeps) -> None:
    """Greet in the customer's language and show the menu."""
    lang = _lang(message)
    user = message.from_user
    text = deps.ctx.texts.render(
        "telegram/start.html.j2",
        lang,
        name=user.first_name if user is not None else "",
        company=deps.ctx.settings.company.name,
    )
    await deps.tell_customer(message.chat.id, text, markup=menu(deps, lang))


async def shared_contact(message: Message, deps: BotDeps) -> None:
    """A shared phone links this chat to the customer who already has that phone."""
    lang = _lang(message)
    contact = message.contact
    user = message.from_user
    if contact is None or user is None or contact.user_id != user.id:
        await deps.tell_customer(message.chat.id, _s(deps, "customer.phone_not_own", lang))
        return
    await link_phone(
        ChannelKind.TELEGRAM.value,
        str(message.chat.id),
        contact.phone_number,
        name=user.full_name,
        language=lang,
        events=deps.ctx.lifecycle.events,
    )
    await deps.tell_customer(message.chat.id, _s(deps, "customer.phone_linked", lang))


async def text_message(message: Message, deps: BotDeps, label: str) -> None:
    """Menu buttons, or a customer's text for their appeal."""
    lang = _lang(message)
    if label in _labels(deps, "menu.new"):
        await deps.ctx.lifecycle.ask_new_appeal(
            ChannelKind.TELEGRAM.value, str(message.chat.id), message.date
        )
        await deps.tell_customer(message.chat.id, _s(deps, "customer.new_prompt", lang))
        return
    if label in _labels(deps, "menu.list"):
        await _my_appeals(message, deps, lang)
        return
    if label in _labels(deps, "menu.orders"):
        await _my_orders(message, deps, lang)
        return
    await to_stream(message, deps)


async def any_message(message: Message, deps: BotDeps) -> None:
    """Photos, documents, voice, video, stickers, locations: into the appeal stream."""
    await to_stream(message, deps)


async def edited_message(message: Message, deps: BotDeps) -> None:
    """An edit reaches the staff as an edit note; the stored text follows it."""
    await to_stream(message, deps)


def answered(message: Message, deps: BotDeps) -> bool:
    """Whether a customer's message may be a command (aiogram reads captions too) or is a menu
    button: the routers answer those; the channel streams the rest itself
    (``channels/telegram/updates.py`` ``CustomerMessages``)."""
    if (message.text or message.caption or "").startswith("/"):
        return True
    return message.text in deps.menu_labels


async def to_stream(message: Message, deps: BotDeps) -> None:
    """Write the message durably to the appeal stream (before Telegram hears "ok")."""
    lang = _lang(message)
    try:
        inbound = customer_inbound(message)
    except BadInbound:
        await deps.tell_customer(message.chat.id, _s(deps, "customer.unsupported", lang))
        return
    limit = deps.ctx.settings.lifecycle.max_text_chars
    if len(inbound.text) > limit:
        await deps.tell_customer(message.chat.id, _s(deps, "customer.too_long", lang, limit=limit))
        return
    await deps.ctx.stream.publish(inbound)  # intake decides whether it opens a new appeal


async def _customer_id(chat_id: int) -> int | None:
    """The customer behind a private chat, if the desk knows them."""
    return await customer_id_at(ChannelKind.TELEGRAM.value, str(chat_id))


async def _my_appeals(message: Message, deps: BotDeps, lang: str) -> None:
    customer_id = await _customer_id(message.chat.id)
    appeals = []
    if customer_id is not None:
        rows = await recent_appeals(customer_id, MY_APPEALS_LIMIT)
        appeals = [
            {
                "number": a.number,
                "subject": a.subject,
                "status": deps.ctx.texts.string(f"status.{a.status.value}", lang),
            }
            for a in rows
        ]
    text = deps.ctx.texts.render("telegram/my_appeals.html.j2", lang, appeals=appeals)
    await deps.tell_customer(message.chat.id, text)


async def _my_orders(message: Message, deps: BotDeps, lang: str) -> None:
    orders = deps.ctx.orders
    customer_id = await _customer_id(message.chat.id)
    rows = await orders.listing(customer_id, lang) if orders is not None else []
    text = deps.ctx.texts.render("telegram/my_orders.html.j2", lang, orders=rows)
    await deps.tell_customer(message.chat.id, text)


async def choice_pressed(query: CallbackQuery, deps: BotDeps) -> None:
    """A customer's answer to an order's question (a delivery slot, «позвоните мне»)."""
    user = query.from_user
    lang = language_of(user.language_code)
    orders = deps.ctx.orders
    if orders is None or query.message is None:
        await query.answer()
        return
    try:
        order, choice = await orders.answer(
            query.data or "",
            via=ChannelKind.TELEGRAM.value,
            actor=user.full_name or str(user.id),
            sender=str(user.id),
        )
    except UnknownChoice:
        await query.answer(deps.ctx.texts.string("order.choice_stale", lang), show_alert=True)
        return
    deps.ctx.outbox.wake()
    title = orders.choice_title(order, choice, lang)
    await query.answer(deps.ctx.texts.string("order.choice_saved", lang, choice=title))


async def rating_pressed(query: CallbackQuery, deps: BotDeps) -> None:
    """A score under a rating request, or «Пропустить» under the comment prompt."""
    ratings = deps.ctx.ratings
    if ratings is None or query.message is None:
        await query.answer()
        return
    chat = query.message.chat.id
    notice, warning = await ratings.press(
        query.data or "",
        channel=ChannelKind.TELEGRAM.value,
        address=str(chat),
        customer_id=await _customer_id(chat),
        lang=language_of(query.from_user.language_code),
    )
    deps.ctx.outbox.wake()
    await query.answer(notice, show_alert=warning)


def _s(deps: BotDeps, key: str, lang: str, **values: object) -> str:
    return html.escape(deps.ctx.texts.string(key, lang, **values), quote=False)
