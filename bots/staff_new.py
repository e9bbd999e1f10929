"""«Принять обращение» in the staff group: an agent takes down an appeal for a customer who
phoned or came to the office, in one line (``/new Иван +79161234567 ivan@example.com: текст``)
or step by step in General (``/new``: name → contact → text; ``/cancel`` stops).

The line is read forgivingly: an optional first word says the channel (``телефон``/``phone``,
``визит``/``visit``/``офис``; a call when left out); emails and phone numbers are found anywhere
before the text, in any order and spelling (``8 (916) 123-45-67``); the words left are the
name; the text follows the first colon or line break (without one, whatever follows the last
contact).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from aiogram.types import Message

from channels.base import ChannelKind
from channels.taken import TakenAppeal
from desk.appeals.customers import customer_by_id, normalise_email, normalise_phone
from desk.config.errors import InvalidInput
from desk.features.taken import Draft, draft_of, forget_draft, save_draft, take_appeal
from models import Agent

if TYPE_CHECKING:
    from bots.staff import StaffDesk
    from bots.staff_commands import CommandContext

CHANNEL_WORDS = {
    "phone": ChannelKind.PHONE,
    "call": ChannelKind.PHONE,
    "телефон": ChannelKind.PHONE,
    "тел": ChannelKind.PHONE,
    "звонок": ChannelKind.PHONE,
    "visit": ChannelKind.VISIT,
    "office": ChannelKind.VISIT,
    "визит": ChannelKind.VISIT,
    "офис": ChannelKind.VISIT,
    "лично": ChannelKind.VISIT,
}
SKIP_NAME = ("-", "—", "–")  # «the desk knows the customer»: no name given
_EMAIL_LIKE = re.compile(r"[^\s,;<>()\[\]]*@[^\s,;<>()\[\]]*")
# Digits with the spaces, brackets, dots and dashes people write phone numbers with.
_PHONE_LIKE = re.compile(r"\+?\(?\d[\d\s().\-]*\d\)?")
_SEPARATOR = re.compile(r"[:\n]")


class Problem(Exception):
    """What is wrong with what the agent typed: a key of strings.yaml and the value at fault."""

    def __init__(self, key: str, value: str = "") -> None:
        super().__init__(key)
        self.key = key
        self.value = value


@dataclass(frozen=True, slots=True)
class Contacts:
    """The contacts found in a piece of text, and the words left over."""

    email: str | None
    phone: str | None
    rest: str


@dataclass(frozen=True, slots=True)
class NewLine:
    """A one-line ``/new``, read."""

    channel: ChannelKind
    name: str
    email: str | None
    phone: str | None
    text: str


def split_contacts(text: str) -> Contacts:
    """The first email and the first phone number in ``text`` (normalised), and the rest;
    something that looks like one but is not valid raises ``Problem``."""
    emails: list[str] = []
    phones: list[str] = []

    def email(match: re.Match[str]) -> str:
        value = match.group().strip(".,;:")
        normal = normalise_email(value)
        if normal is None:
            raise Problem("staff.new_bad_email", value)
        emails.append(normal)
        return " "

    def phone(match: re.Match[str]) -> str:
        value = match.group().strip()
        normal = normalise_phone(value)
        if normal is None:
            raise Problem("staff.new_bad_phone", value)
        phones.append(normal)
        return " "

    rest = _PHONE_LIKE.sub(phone, _EMAIL_LIKE.sub(email, text))
    for word in rest.split():
        if any(ch.isdigit() for ch in word):  # a name has no digits: a phone cut short
            raise Problem("staff.new_bad_phone", word)
    rest = " ".join(rest.split()).strip(" ,;-—–")
    return Contacts(emails[0] if emails else None, phones[0] if phones else None, rest)


def channel_word(args: str) -> tuple[ChannelKind | None, str]:
    """The channel named by the first word of ``args`` (if it names one) and what follows."""
    words = args.strip().split(maxsplit=1)
    if words:
        kind = CHANNEL_WORDS.get(words[0].lower().strip(".,:;"))
        if kind is not None:
            return kind, words[1] if len(words) > 1 else ""
    return None, args.strip()


def parse_line(args: str) -> NewLine:
    """Read a one-line ``/new`` (see the module's docstring); ``Problem`` when something is
    missing or wrong."""
    kind, args = channel_word(args)
    separator = _SEPARATOR.search(args)
    if separator is not None:
        head, text = args[: separator.start()], args[separator.end() :]
    else:
        found = [*_EMAIL_LIKE.finditer(args), *_PHONE_LIKE.finditer(args)]
        end = max((m.end() for m in found), default=len(args))
        head, text = args[:end], args[end:]
    contacts = split_contacts(head)
    if contacts.email is None and contacts.phone is None:
        raise Problem("staff.new_no_contact")
    text = text.strip().lstrip(",;-—– ").strip()
    if not text:
        raise Problem("staff.new_no_text")
    return NewLine(kind or ChannelKind.PHONE, contacts.rest, contacts.email, contacts.phone, text)


# -- the commands -------------------------------------------------------------------------


async def new_appeal(c: CommandContext) -> None:
    """/new: in one line, or (alone, in General) the first question of the dialogue."""
    kind, rest = channel_word(c.args)
    if not rest:
        if c.appeal is not None:  # answers here would go to that topic's customer
            usage = c.desk.ctx.texts.string("usage.new", c.desk.lang)
            await c.say(c.s("staff.new_in_topic", usage=usage))
            return
        draft = Draft(step="name", channel=(kind or ChannelKind.PHONE).value)
        await save_draft(c.agent.id, draft, c.desk.ctx.clock())
        await c.say(c.s("staff.new_ask_name", channel=_channel_name(c.desk, draft.channel)))
        return
    try:
        line = parse_line(c.args)
    except Problem as problem:
        await c.say(c.s(problem.key, value=problem.value))
        await c.usage("new")
        return
    await forget_draft(c.agent.id)  # a line typed mid-dialogue replaces it
    form = TakenAppeal(
        channel=line.channel,
        text=line.text,
        taken_by=c.agent.name,
        taken_via="telegram",
        name=line.name,
        email=line.email,
        phone=line.phone,
        language=c.desk.ctx.settings.company.language,
    )
    await _register(c.desk, form, c.message, c.agent)


async def cancel(c: CommandContext) -> None:
    """/cancel: the agent's /new dialogue ends."""
    gone = await forget_draft(c.agent.id)
    await c.say(c.s("staff.new_cancelled" if gone else "staff.new_nothing"))


async def continue_draft(desk: StaffDesk, message: Message, agent: Agent) -> bool:
    """The agent's answer to the /new dialogue's question, if one stands (True: taken)."""
    now = desk.ctx.clock()
    draft = await draft_of(agent.id, now)
    text = (message.text or "").strip()
    if draft is None or not text:
        return False

    async def ask(next_draft: Draft, key: str, **values: str) -> bool:
        await save_draft(agent.id, next_draft, now)
        await desk.say(None, desk.s(key, **values), reply_to=message.message_id)
        return True

    try:
        if draft.step == "name":
            if text in SKIP_NAME:
                return await ask(replace(draft, step="contact"), "staff.new_ask_contact")
            found = split_contacts(text)  # a name with the contacts typed after it
            draft = replace(draft, name=found.rest, email=found.email, phone=found.phone)
            if found.email or found.phone:
                return await ask(replace(draft, step="text"), "staff.new_ask_text")
            return await ask(replace(draft, step="contact"), "staff.new_ask_contact")
        if draft.step == "contact":
            found = split_contacts(text)
            if found.email is None and found.phone is None:
                raise Problem("staff.new_no_contact")
            draft = replace(
                draft, email=found.email, phone=found.phone, name=draft.name or found.rest
            )
            return await ask(replace(draft, step="text"), "staff.new_ask_text")
    except Problem as problem:
        await desk.say(None, desk.s(problem.key, value=problem.value), reply_to=message.message_id)
        return True
    form = TakenAppeal(
        channel=ChannelKind(draft.channel),
        text=text,
        taken_by=agent.name,
        taken_via="telegram",
        name=draft.name,
        email=draft.email,
        phone=draft.phone,
        language=desk.ctx.settings.company.language,
    )
    if await _register(desk, form, message, agent):
        await forget_draft(agent.id)
    return True


async def _register(desk: StaffDesk, form: TakenAppeal, message: Message, agent: Agent) -> bool:
    """Register the appeal and tell the agent its number (or that it is on its way); False
    when the desk refused it (the reason is told). A one-line /new typed in an appeal's topic
    is answered there."""
    here = await desk.appeal_of(message)
    try:
        taken = await take_appeal(
            desk.ctx, form, external_id=f"tg:{message.chat.id}:{message.message_id}"
        )
    except InvalidInput as exc:
        await desk.say(here, desk.s("staff.error", reason=str(exc)), reply_to=message.message_id)
        return False
    if taken.number is None:
        text = desk.s("staff.new_registering")
    else:
        customer = await customer_by_id(taken.customer_id or 0)
        name = customer.name if customer is not None and customer.name else ""
        text = desk.s(
            "staff.new_registered",
            number=taken.number,
            channel=_channel_name(desk, form.channel.value),
            customer=name or desk.ctx.texts.string("card.no_name", desk.lang),
        )
    await desk.say(here, text, reply_to=message.message_id)
    return True


def _channel_name(desk: StaffDesk, channel: str) -> str:
    return desk.ctx.texts.channel(channel, desk.lang)
