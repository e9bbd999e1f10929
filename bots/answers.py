"""Answer templates in the staff group: ``/t`` shows them as buttons under the appeal's topic;
a press, or ``/t NAME``, sends one to the appeal's customer like an agent's answer (stored,
queued in the outbox, in the history) and shows its text in the topic for the colleagues."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup

from bots.callbacks import AnswerButton
from channels.base import DeliveryError
from desk.appeals.customers import customer_of
from desk.appeals.messages import appeal_by_id
from desk.config.errors import DeskError, InvalidTransition
from desk.features.answers import Answer
from models import Agent, Appeal

if TYPE_CHECKING:
    from bots.staff import StaffDesk

log = logging.getLogger(__name__)

BUTTONS_LIMIT = 40  # more are still listed in the text and sent with /t NAME
TITLE_CHARS = 60
SOURCE = "template"  # MessageSent.source: the topic shows what went out


def answer_keyboard(answers: list[Answer], appeal: Appeal, lang: str) -> InlineKeyboardMarkup:
    """One button a template, by its title in the staff group's language."""
    rows = [
        [
            InlineKeyboardButton(
                text=answer.title(lang)[:TITLE_CHARS],
                callback_data=AnswerButton(appeal_id=appeal.id, name=answer.name).pack(),
            )
        ]
        for answer in answers[:BUTTONS_LIMIT]
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def offer(desk: StaffDesk, appeal: Appeal, reply_to: int, notice: str = "") -> None:
    """Post the templates in the appeal's topic as buttons (``notice`` above them)."""
    book = desk.deps.answers
    answers = book.all()
    if not answers:
        await desk.say(appeal, desk.s("staff.no_templates", path=str(book.path)), reply_to=reply_to)
        return
    listed = desk.ctx.texts.render(
        "telegram/answers.html.j2",
        desk.lang,
        answers=[(a.name, a.title(desk.lang)) for a in answers],
        buttons=len(answers) <= BUTTONS_LIMIT,
    )
    text = f"{notice}\n\n{listed}" if notice else listed
    markup = answer_keyboard(answers, appeal, desk.lang)
    await desk.say(appeal, text, reply_to=reply_to, markup=markup)


async def send(desk: StaffDesk, appeal: Appeal, agent: Agent, name: str, source_ref: str) -> Answer:
    """Send the template ``name`` to the appeal's customer, in their language and signed as the
    agent's answers are; an unknown name raises ``KeyError``. ``source_ref`` (the command's
    message, the press) makes a repeated update send nothing more."""
    book = desk.deps.answers
    answer = book.get(name)
    if answer is None:
        raise KeyError(name)
    customer = await customer_of(appeal)
    text = book.render(
        answer.name,
        customer.language,
        customer=customer.name,
        number=appeal.number or "",
        agent=agent.name,
        company=desk.ctx.settings.company.name,
    )
    await desk.ctx.lifecycle.reply(
        appeal.number or "",
        text,
        actor=agent.name,
        agent=agent,
        signature=await desk.signature(appeal, agent),
        source=SOURCE,
        source_ref=source_ref,
    )
    return answer


async def press(desk: StaffDesk, query: CallbackQuery, agent: Agent, button: AnswerButton) -> None:
    """A template's button pressed by an agent: sent, and the presser told so above the chat
    (an alert when it could not go)."""
    string, lang = desk.ctx.texts.string, desk.lang
    alert = True
    appeal = await appeal_by_id(button.appeal_id)
    if appeal is None or appeal.number is None:
        notice = string("staff.join_gone", lang)
    else:
        try:
            answer = await send(desk, appeal, agent, button.name, f"tgcb:{query.id}")
            notice = string(
                "staff.template_sent", lang, title=answer.title(lang), number=appeal.number
            )
            alert = False
        except KeyError:
            notice = string("staff.template_gone", lang, name=button.name)
        except InvalidTransition:
            notice = string("staff.closed_appeal", lang)
        except DeskError as exc:
            notice = string("staff.error", lang, reason=str(exc))
    try:
        await desk.deps.sender.answer_callback(query.id, notice, alert)
    except DeliveryError as exc:  # a press answered too late: the answer went all the same
        log.info("callback answer failed", extra={"query": query.id, "reason": str(exc)})
