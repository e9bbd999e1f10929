"""Commands agents type in the staff group: /take, /assign, /transfer, /close, /postpone, …
(/new and /cancel, taking down an appeal for a customer, live in ``bots/staff_new.py``)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardMarkup, Message
from tortoise.transactions import in_transaction

from bots import answers
from bots.callbacks import AppealButton
from bots.cards import CardMaker
from bots.feed import FeedBoard
from bots.staff_new import cancel, new_appeal
from desk.appeals.agents import agent_by_id
from desk.appeals.customers import customer_of, customer_profile, merge_customers, set_state
from desk.appeals.postpone import postponed_until
from desk.appeals.timeline import timeline
from desk.config.errors import AgentNotFound, AppealNotFound, InvalidInput, InvalidTransition
from desk.features.consent import set_do_not_contact
from models import (
    Agent,
    Appeal,
    AppealStatus,
    Priority,
    Warmth,
)
from router.assign import offered_back

if TYPE_CHECKING:
    from bots.staff import StaffDesk

HISTORY_LIMIT = 15
TIMELINE_LIMIT = 20  # life-cycle steps shown by /customer; the API gives more
SPAM_TAG = "spam"
PICKER_LIMIT = 10
PRIORITY_WORDS = {
    "low": Priority.LOW,
    "низкий": Priority.LOW,
    "normal": Priority.NORMAL,
    "обычный": Priority.NORMAL,
    "high": Priority.HIGH,
    "высокий": Priority.HIGH,
    "urgent": Priority.URGENT,
    "срочный": Priority.URGENT,
}


def parse_command(text: str) -> tuple[str, str]:
    """``("take", "")`` for ``/take@desk_bot``; ``("", "")`` for plain text and ``//`` notes."""
    if not text.startswith("/") or text.startswith("//"):
        return "", ""
    parts = text[1:].split(maxsplit=1)
    if not parts:
        return "", ""
    return parts[0].split("@", 1)[0].lower(), parts[1].strip() if len(parts) > 1 else ""


@dataclass
class CommandContext:
    """One typed command: who, where, what."""

    desk: StaffDesk
    message: Message
    agent: Agent
    appeal: Appeal | None
    args: str

    async def say(self, text: str) -> None:
        """Answer in place, as a reply to the command."""
        await self.desk.say(self.appeal, text, reply_to=self.message.message_id)

    def s(self, key: str, **values: object) -> str:
        return self.desk.s(key, **values)

    async def usage(self, command: str) -> None:
        """Answer with how the command is written (``usage.<command>`` in strings.yaml)."""
        written = self.desk.ctx.texts.string(f"usage.{command}", self.desk.lang)
        await self.say(self.s("staff.usage", usage=written))

    @property
    def number(self) -> str:
        return self.appeal.number or "" if self.appeal is not None else ""


Command = Callable[[CommandContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StaffCommand:
    """A command under its names (the first is the one ``usage.<name>`` explains); an appeal
    command refuses outside a topic."""

    names: tuple[str, ...]
    run: Command
    needs_appeal: bool = True
    needs_args: bool = False

    async def __call__(self, c: CommandContext) -> None:
        """Run it; domain errors become a polite answer."""
        if self.needs_appeal and c.appeal is None:
            await c.say(c.s("staff.no_appeal"))
            return
        if self.needs_args and not c.args:
            await c.usage(self.names[0])
            return
        try:
            await self.run(c)
        except InvalidTransition as exc:
            status = c.desk.ctx.texts.string(f"status.{exc.current}", c.desk.lang)
            await c.say(c.s("staff.not_allowed", status=status))
        except AgentNotFound as exc:
            await c.say(c.s("staff.no_agent", agent=exc.args[0] if exc.args else c.args))
        except (InvalidInput, AppealNotFound) as exc:
            await c.say(c.s("staff.error", reason=str(exc)))


async def take(c: CommandContext) -> None:
    await c.desk.ctx.triage.assign(c.number, str(c.agent.id), actor=c.agent.name)
    await c.say(c.s("staff.taken", agent=c.agent.name))


async def assign(c: CommandContext) -> None:
    appeal = await c.desk.ctx.triage.assign(c.number, c.args, actor=c.agent.name)
    agent = await agent_by_id(appeal.assignee_id)
    await c.say(c.s("staff.assigned", agent=agent.name if agent else c.args))


async def transfer(c: CommandContext) -> None:
    await c.desk.ctx.triage.transfer(c.number, c.args, actor=c.agent.name)
    await c.say(c.s("staff.transferred", target=c.args))


async def close(c: CommandContext) -> None:
    await c.desk.ctx.lifecycle.transition(c.number, AppealStatus.RESOLVED, actor=c.agent.name)
    await c.say(c.s("staff.resolved", agent=c.agent.name))


async def spam(c: CommandContext) -> None:
    """Close as spam: no notice, no rating request, out of the statistics of answers."""
    await c.desk.ctx.triage.tag(c.number, SPAM_TAG, actor=c.agent.name, on=True)
    await c.desk.ctx.lifecycle.transition(
        c.number, AppealStatus.CLOSED, actor=c.agent.name, reason=SPAM_TAG
    )
    await c.say(c.s("staff.spam", agent=c.agent.name))


WARMTH_WORDS = {
    "hot": Warmth.HOT,
    "горячий": Warmth.HOT,
    "warm": Warmth.WARM,
    "тёплый": Warmth.WARM,
    "теплый": Warmth.WARM,
    "cold": Warmth.COLD,
    "холодный": Warmth.COLD,
}


async def warmth(c: CommandContext) -> None:
    """How warm the relationship with the topic's customer is (seed 002)."""
    to = WARMTH_WORDS.get(c.args.strip().lower())
    if to is None or c.appeal is None:
        await c.usage("warmth")
        return
    customer = await customer_of(c.appeal)
    life = c.desk.ctx.lifecycle

    async def run() -> None:
        async with in_transaction():
            await set_state(life.events, customer, to, actor=c.agent.name, reason="agent")

    await life.atomic(run)
    life.wake()
    await c.say(c.s("staff.warmth", warmth=c.s(f"warmth.{to.value}")))


CONTACT_WORDS = {"off": True, "выкл": True, "on": False, "вкл": False}


async def contact(c: CommandContext) -> None:
    """«Do not contact» for the topic's customer (``off``), or lifted (``on``)."""
    flag = CONTACT_WORDS.get(c.args.strip().lower())
    if flag is None or c.appeal is None:
        await c.usage("contact")
        return
    ctx = c.desk.ctx
    customer = await customer_of(c.appeal)
    await set_do_not_contact(
        ctx.lifecycle, customer, flag, actor=c.agent.name, reason="agent", now=ctx.clock()
    )
    await c.say(c.s("staff.contact_off" if flag else "staff.contact_on"))


async def postpone(c: CommandContext) -> None:
    """Postponed, with a reason, until a time when one leads (``/postpone 2h reason``, ``15:00``,
    ``05.11 10:00``), else for ``lifecycle.postpone_hours``; it stays in the feed's postponed
    part meanwhile and comes back to work by itself."""
    ctx = c.desk.ctx
    until, why = postponed_until(c.args, ctx.clock(), ZoneInfo(ctx.settings.company.timezone))
    appeal = await ctx.lifecycle.transition(
        c.number, AppealStatus.PENDING, actor=c.agent.name, reason=why, until=until
    )
    back = CardMaker(ctx.settings, ctx.texts).local(appeal.pending_until)
    reason = f": {why}" if why else ""
    await c.say(c.s("staff.postponed", agent=c.agent.name, until=back, reason=reason))


async def reopen(c: CommandContext) -> None:
    await c.desk.ctx.lifecycle.transition(c.number, AppealStatus.OPEN, actor=c.agent.name)
    await c.say(c.s("staff.reopened", agent=c.agent.name))


async def tag(c: CommandContext) -> None:
    appeal = await c.desk.ctx.triage.tag(c.number, c.args, actor=c.agent.name)
    added = any(t.casefold() == c.args.strip().casefold() for t in appeal.tags)
    await c.say(
        c.s("staff.tagged", tag=c.args, state=c.s("staff.tag_on" if added else "staff.tag_off"))
    )


async def priority(c: CommandContext) -> None:
    level = PRIORITY_WORDS.get(c.args.strip().lower())
    if level is None:
        await c.usage("priority")
        return
    await c.desk.ctx.triage.set_priority(c.number, level, actor=c.agent.name)
    title = c.desk.ctx.texts.string(f"priority.{level.value}", c.desk.lang)
    await c.say(c.s("staff.priority", priority=title))


async def note(c: CommandContext) -> None:
    await c.desk.ctx.lifecycle.note(
        c.number,
        c.args,
        actor=c.agent.name,
        agent=c.agent,
        source="telegram",
        source_ref=f"tg:{c.message.chat.id}:{c.message.message_id}",
    )
    await c.say(c.s("staff.noted"))


async def template(c: CommandContext) -> None:
    """``/t``: the templates as buttons; ``/t NAME``: that one to the customer."""
    assert c.appeal is not None
    if not c.args:
        await answers.offer(c.desk, c.appeal, c.message.message_id)
        return
    name = c.args.split()[0]
    source_ref = f"tg:{c.message.chat.id}:{c.message.message_id}"
    try:
        await answers.send(c.desk, c.appeal, c.agent, name, source_ref)
    except KeyError:
        notice = c.s("staff.no_template", name=name)
        await answers.offer(c.desk, c.appeal, c.message.message_id, notice)


async def customer_history(c: CommandContext) -> None:
    """Who the topic's customer is: contacts, appeals, and their life cycle in order."""
    assert c.appeal is not None
    ctx = c.desk.ctx
    profile = await customer_profile(c.appeal.customer_id, recent=HISTORY_LIMIT)
    customer, contacts = profile.customer, profile.contacts
    total, appeals = profile.appeals_total, profile.recent
    steps = await timeline(customer.id, TIMELINE_LIMIT + 1)
    zone = ZoneInfo(ctx.settings.company.timezone)
    orders = ctx.orders
    text = ctx.texts.render(
        "telegram/customer_history.html.j2",
        c.desk.lang,
        name=customer.name or ctx.texts.string("card.no_name", c.desk.lang),
        lifecycle=customer.lifecycle.value,
        warmth=customer.warmth.value,
        contacts=[
            {"channel": p.channel, "address": p.address, "reachable": p.reachable} for p in contacts
        ],
        appeals=[
            {
                "number": a.number,
                "channel": ctx.texts.channel(a.channel, c.desk.lang),
                "subject": a.subject,
                "status": ctx.texts.string(f"status.{a.status.value}", c.desk.lang),
                "created": a.created_at.strftime("%d.%m.%Y"),
            }
            for a in appeals
        ],
        more=total > len(appeals),
        steps=[
            {
                "at": step.at.astimezone(zone).strftime("%d.%m.%Y"),
                "kind": step.kind,
                "number": step.number,
                "stage": orders.stage_title(str(step.data.get("after", "")), c.desk.lang)
                if orders is not None and step.kind == "order.stage_changed"
                else "",
                "d": step.data,
            }
            for step in steps[-TIMELINE_LIMIT:]
        ],
        earlier_steps=len(steps) > TIMELINE_LIMIT,
    )
    await c.say(text)


async def merge(c: CommandContext) -> None:
    """The customer of another appeal is the same person: one customer, one history."""
    assert c.appeal is not None
    ctx = c.desk.ctx
    other = await ctx.lifecycle.get(c.args.split()[0])
    async with in_transaction():
        await merge_customers(
            other.customer_id, c.appeal.customer_id, ctx.lifecycle.events, actor=c.agent.name
        )
        if c.desk.deps.staff is not None:
            await c.desk.deps.staff.card(c.appeal)  # contacts and appeals so far changed
    ctx.outbox.wake()
    await c.say(c.s("staff.merged", number=other.number))


async def duty(c: CommandContext) -> None:
    """On or off duty; going off hands one's open appeals back to the team."""
    wanted = c.args.strip().lower()
    if wanted not in ("on", "off", "вкл", "выкл"):
        await c.usage("duty")
        return
    on = wanted in ("on", "вкл")
    mine = await c.desk.ctx.triage.set_on_duty(c.agent, on)
    if on:
        await c.say(c.s("staff.duty_on", agent=c.agent.name))
        return
    numbers = offered_back(c.agent.id, [a.number or "" for a in mine])
    if not numbers:
        await c.say(c.s("staff.duty_off", agent=c.agent.name))
        return
    rows = [
        [
            {
                "text": f"🙋 {a.number}",
                "callback_data": AppealButton(action="take", appeal_id=a.id).pack(),
            }
        ]
        for a in mine[:PICKER_LIMIT]
    ]
    text = c.s("staff.duty_off_offered", agent=c.agent.name, numbers=", ".join(numbers))
    await c.desk.say(
        None, text, markup=InlineKeyboardMarkup.model_validate({"inline_keyboard": rows})
    )


async def help_(c: CommandContext) -> None:
    await c.say(c.desk.ctx.texts.render("telegram/help.html.j2", c.desk.lang))


async def queue(c: CommandContext) -> None:
    board = FeedBoard(c.desk.deps.sender, c.desk.ctx.settings, c.desk.ctx.texts, c.desk.ctx.clock)
    text, _ = await board.render()
    await c.say(text)


# Every command of the staff group, as ``bots/staff.py`` registers them.
STAFF_COMMANDS = (
    StaffCommand(("take",), take),
    StaffCommand(("assign",), assign, needs_args=True),
    StaffCommand(("transfer",), transfer, needs_args=True),
    StaffCommand(
        (
            "close",
            "done",
        ),
        close,
    ),
    StaffCommand(("spam",), spam),
    StaffCommand(("warmth",), warmth, needs_args=True),
    StaffCommand(("contact",), contact, needs_args=True),
    StaffCommand(
        (
            "postpone",
            "later",
        ),
        postpone,
    ),
    StaffCommand(("reopen",), reopen),
    StaffCommand(("tag",), tag, needs_args=True),
    StaffCommand(("priority",), priority, needs_args=True),
    StaffCommand(("note",), note, needs_args=True),
    StaffCommand(
        (
            "t",
            "template",
        ),
        template,
    ),
    StaffCommand(
        (
            "customer",
            "client",
        ),
        customer_history,
    ),
    StaffCommand(("merge",), merge, needs_args=True),
    StaffCommand(("duty",), duty, needs_appeal=False, needs_args=True),
    StaffCommand(("new",), new_appeal, needs_appeal=False),
    StaffCommand(("cancel",), cancel, needs_appeal=False),
    StaffCommand(
        (
            "help",
            "start",
        ),
        help_,
        needs_appeal=False,
    ),
    StaffCommand(
        (
            "queue",
            "feed",
        ),
        queue,
        needs_appeal=False,
    ),
)
