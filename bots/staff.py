"""The staff group: agents' messages become answers or notes, commands and buttons act on the
appeal of the topic they are in. Only registered agents act; others are refused politely."""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from tortoise.transactions import in_transaction

from bots import answers
from bots.callbacks import (
    AgentOfUpdate,
    AnswerButton,
    AppealButton,
    CallButton,
    CategoryButton,
    GiveButton,
    IsAgent,
    JoinButton,
    TaskReasonButton,
    TaskResultButton,
)
from bots.cards import CardMaker
from bots.deps import BotDeps
from bots.filters import inline
from bots.staff_commands import STAFF_COMMANDS, CommandContext, StaffCommand
from bots.staff_new import continue_draft
from bots.staff_sync import user_mention
from channels.base import Attachment, ChannelKind, DeliveryError
from channels.telegram.updates import attachments_of
from desk.appeals.agents import (
    active_agent,
    answer_join,
    ask_to_join,
    colleagues_on_duty,
    may_refuse,
)
from desk.appeals.customers import (
    customer_by_id,
    customer_of,
    latest_channel,
)
from desk.appeals.messages import appeal_by_id
from desk.appeals.staff_refs import appeal_in_staff_group
from desk.appeals.tasks import CALL_DUE, create_task, phones_of
from desk.appeals.triage import IMPORTANT_TAG
from desk.config.errors import AgentNotFound, DeskError, InvalidInput, InvalidTransition
from models import (
    Agent,
    AgentRole,
    Appeal,
    AppealStatus,
    StoredFile,
)

log = logging.getLogger(__name__)

SUPERVISORS = (AgentRole.SUPERVISOR, AgentRole.MANAGER)
PICKER_LIMIT = 12


COMMAND_LIKE = r"^/[^/]"  # a command, not a //note


def staff_command(*names: str) -> Command:
    """Aiogram's command filter as the staff group types commands: ``/Take@desk_bot`` too."""
    return Command(*names, ignore_case=True, ignore_mention=True)


class FromPerson(Filter):
    """Passes a person's message with content: not a bot's, not a service notice (a topic made
    or closed, a pin, a join)."""

    async def __call__(self, message: Message) -> bool:
        user = message.from_user
        return user is not None and not user.is_bot and not _is_service(message)


class InStaffChat(Filter):
    """Passes updates from the configured staff group only."""

    async def __call__(self, event: Message | CallbackQuery, deps: BotDeps) -> bool:
        settings = deps.ctx.settings.telegram
        message = event.message if isinstance(event, CallbackQuery) else event
        if message is None:
            return False
        if isinstance(event, CallbackQuery) and message.chat.id == settings.managers_chat_id:
            return True  # «Взять» under a managers' alert
        return settings.staff_chat_id is not None and message.chat.id == settings.staff_chat_id


def staff_router() -> Router:
    """The handlers of the staff group (a new router per dispatcher)."""
    router = Router(name="staff")
    router.message.filter(InStaffChat(), FromPerson())
    router.callback_query.filter(InStaffChat())
    router.message.outer_middleware(AgentOfUpdate())
    router.message.register(join_command, staff_command("join"))
    router.message.register(stranger_message, ~IsAgent())
    for run in STAFF_COMMANDS:
        router.message.register(command_handler(run), staff_command(*run.names))
    router.message.register(
        unknown_command, inline(F.text.regexp(COMMAND_LIKE) | F.caption.regexp(COMMAND_LIKE))
    )
    router.message.register(staff_message)
    router.edited_message.filter(InStaffChat())
    router.edited_message.register(staff_edit)
    buttons = router.callback_query
    buttons.outer_middleware(AgentOfUpdate())
    buttons.register(join_pressed, JoinButton.filter())
    buttons.register(not_an_agent, ~IsAgent())
    buttons.register(appeal_pressed, AppealButton.filter())
    buttons.register(give_pressed, GiveButton.filter())
    buttons.register(category_pressed, CategoryButton.filter())
    buttons.register(call_pressed, CallButton.filter())
    buttons.register(answer_pressed, AnswerButton.filter())
    buttons.register(task_pressed, TaskResultButton.filter())
    buttons.register(task_pressed, TaskReasonButton.filter())
    buttons.register(stale_pressed)
    return router


# -- messages: /join, a stranger, the commands, an unknown command, an answer or a note -----


async def join_command(message: Message, deps: BotDeps, agent: Agent | None) -> None:
    """/join: ask the supervisors for access."""
    await StaffDesk(deps).join(message, agent)


async def stranger_message(message: Message, deps: BotDeps) -> None:
    """Not an agent: nothing they write acts on an appeal."""
    if message.from_user is not None:
        await StaffDesk(deps).stranger(message, message.from_user.id)


def command_handler(run: StaffCommand) -> Callable[..., Awaitable[None]]:
    """The handler of one staff command (registered with ``Command(*run.names)``)."""

    async def handle(message: Message, deps: BotDeps, agent: Agent, command: CommandObject) -> None:
        await StaffDesk(deps).command(message, agent, run, (command.args or "").strip())

    return handle


async def unknown_command(message: Message, deps: BotDeps) -> None:
    """A command the desk does not have: say so, in place."""
    name = (message.text or message.caption or "")[1:].split(maxsplit=1)[0].split("@", 1)[0]
    await StaffDesk(deps).unknown_command(message, name.lower())


async def staff_message(message: Message, deps: BotDeps, agent: Agent) -> None:
    """An agent wrote in the staff group."""
    await StaffDesk(deps).on_message(message, agent)


async def staff_edit(message: Message, deps: BotDeps) -> None:
    """An agent corrected a message in the staff group."""
    await StaffDesk(deps).on_edit(message)


# -- buttons (``bots/callbacks.py``): each kind to its handler; ``agent`` is the presser's -----


async def join_pressed(
    query: CallbackQuery, callback_data: JoinButton, deps: BotDeps, agent: Agent | None
) -> None:
    """A supervisor lets someone in, or not."""
    await StaffDesk(deps).decide_join(query, agent, callback_data)


async def not_an_agent(query: CallbackQuery, deps: BotDeps) -> None:
    """Only registered agents act on appeals."""
    notice = deps.ctx.texts.string("staff.callback_not_agent", deps.ctx.settings.company.language)
    await deps.sender.answer_callback(query.id, notice, True)


async def appeal_pressed(
    query: CallbackQuery, callback_data: AppealButton, deps: BotDeps, agent: Agent
) -> None:
    """A button under a card or an alert."""
    await StaffDesk(deps).act(query, agent, callback_data.action, callback_data.appeal_id)


async def give_pressed(
    query: CallbackQuery, callback_data: GiveButton, deps: BotDeps, agent: Agent
) -> None:
    """A colleague picked under «Передать»."""
    desk = StaffDesk(deps)
    await desk.act(query, agent, "give", callback_data.appeal_id, give_to=callback_data.agent)


async def category_pressed(
    query: CallbackQuery, callback_data: CategoryButton, deps: BotDeps, agent: Agent
) -> None:
    """A category picked under the router's question."""
    await StaffDesk(deps).pick_category(query, agent, callback_data)


async def call_pressed(
    query: CallbackQuery, callback_data: CallButton, deps: BotDeps, agent: Agent
) -> None:
    """«Перезвонить» under an alert."""
    notice = await StaffDesk(deps).call_back(callback_data, agent)
    await deps.sender.answer_callback(query.id, notice, False)


async def answer_pressed(
    query: CallbackQuery, callback_data: AnswerButton, deps: BotDeps, agent: Agent
) -> None:
    """An answer template picked under ``/t``: it goes to the customer."""
    await answers.press(StaffDesk(deps), query, agent, callback_data)


async def task_pressed(
    query: CallbackQuery,
    callback_data: TaskResultButton | TaskReasonButton,
    deps: BotDeps,
    agent: Agent,
) -> None:
    """A win-back task's result, or the reason the customer gave."""
    if deps.tasks is not None:
        notice, alert = await deps.tasks.press(query, agent, callback_data)
        await deps.sender.answer_callback(query.id, notice, alert)


async def stale_pressed(query: CallbackQuery, deps: BotDeps) -> None:
    """A button of an older desk, or one that is not ours: the spinner stops, nothing else."""
    await deps.sender.answer_callback(
        query.id, deps.ctx.texts.string("staff.done", deps.ctx.settings.company.language)
    )


class StaffDesk:
    """Handles one staff update; every answer goes to the group through the outbox."""

    def __init__(self, deps: BotDeps) -> None:
        self.deps = deps
        self.ctx = deps.ctx
        self.lang = deps.ctx.settings.company.language
        self.chat = deps.ctx.settings.telegram.staff_chat_id or 0

    def s(self, key: str, **values: Any) -> str:
        """A staff string, escaped for Telegram HTML."""
        return html.escape(self.ctx.texts.string(key, self.lang, **values), quote=False)

    async def say(
        self,
        appeal: Appeal | None,
        text: str,
        *,
        reply_to: int | None = None,
        markup: InlineKeyboardMarkup | None = None,
    ) -> None:
        """Post ``text`` (HTML) in the appeal's topic, or in General."""
        if self.deps.staff is None:
            return
        await self.deps.staff.enqueue(
            appeal,
            "post",
            text=text,
            reply_to=reply_to,
            markup=markup.model_dump(mode="json", exclude_none=True) if markup else None,
        )
        self.ctx.outbox.wake()

    # -- messages -----------------------------------------------------------------------------

    async def stranger(self, message: Message, user_id: int) -> None:
        """Someone who is no agent wrote a command, or in an appeal's topic: told once in a
        while that nothing reached the customer (talk in General is left alone)."""
        command = (message.text or message.caption or "").startswith("/")
        acts = command or await self.appeal_of(message) is not None
        if acts and await self._may_refuse(user_id):
            await self.refuse(message)

    async def command(self, message: Message, agent: Agent, run: StaffCommand, args: str) -> None:
        """A command of ``STAFF_COMMANDS``, about the appeal of the topic it was typed in."""
        appeal = await self.appeal_of(message)
        await run(CommandContext(self, message, agent, appeal, args))

    async def unknown_command(self, message: Message, command: str) -> None:
        appeal = await self.appeal_of(message)
        text = self.s("staff.unknown_command", command=command)
        await self.say(appeal, text, reply_to=message.message_id)

    async def on_message(self, message: Message, agent: Agent) -> None:
        """An agent's message that is no command: an answer to the customer, a ``//`` note,
        or in General the /new dialogue's next answer or a win-back reason."""
        text = message.text or message.caption or ""
        appeal = await self.appeal_of(message)
        if appeal is None:
            if await continue_draft(self, message, agent):
                return
            if self.deps.tasks is not None:
                await self.deps.tasks.take_reason(message, agent)
            return  # other talk in General stays between colleagues
        source_ref = f"tg:{message.chat.id}:{message.message_id}"
        try:
            if text.startswith("//"):
                await self.ctx.lifecycle.note(
                    appeal.number or "",
                    text[2:],
                    actor=agent.name,
                    agent=agent,
                    source="telegram",
                    source_ref=source_ref,
                )
                return
            await self.answer(appeal, agent, text, message, source_ref)
        except InvalidTransition:
            await self.say(appeal, self.s("staff.closed_appeal"), reply_to=message.message_id)
        except InvalidInput as exc:
            await self.say(
                appeal, self.s("staff.error", reason=str(exc)), reply_to=message.message_id
            )

    async def on_edit(self, message: Message) -> None:
        """An agent fixed an answer: the customer's copy follows (where the channel allows)."""
        user = message.from_user
        text = message.text or message.caption or ""
        if user is None or text.startswith(("/", "//")) or not text.strip():
            return
        agent = await active_agent(user.id)
        appeal = await self.appeal_of(message)
        if agent is None or appeal is None:
            return
        signature = ""
        if self.ctx.settings.telegram.sign_replies:
            lang = await _customer_language(appeal)
            signature = self.ctx.texts.string("reply.signature", lang, name=agent.name)
        edited = await self.ctx.lifecycle.edit_reply(
            f"tg:{message.chat.id}:{message.message_id}",
            text,
            actor=agent.name,
            signature=signature,
        )
        if edited is False:
            await self.say(appeal, self.s("staff.edit_not_sent"), reply_to=message.message_id)

    async def refuse(self, message: Message) -> None:
        """Tell a stranger who wrote in the group that nothing reached the customer, and how to
        join: privately, not in the appeal's topic before every agent; in General, by name,
        only when the bot may not write to them (they never started it)."""
        user = message.from_user
        if user is None:
            return
        group = message.chat.title or ""
        try:
            await self.deps.sender.send(user.id, self.s("staff.not_agent", group=group), html=True)
            return
        except DeliveryError as exc:
            log.info("a stranger in the staff group cannot be told privately: %s", exc)
        who = user_mention(user.id, user.full_name)
        text = self.s("staff.not_agent_here", who="{who}").replace("{who}", who)
        await self.say(None, text)

    async def _may_refuse(self, user_id: int) -> bool:
        return await may_refuse(user_id, self.ctx.clock())

    async def answer(
        self, appeal: Appeal, agent: Agent, text: str, message: Message, source_ref: str
    ) -> None:
        """Relay an agent's message (text and files) to the customer, signed per config."""
        files = attachments_of(message)
        if not text.strip() and not files:
            return
        if files and await latest_channel(appeal) != ChannelKind.TELEGRAM.value:
            files = await self._stored(files)
        signature = await self.signature(appeal, agent)
        await self.ctx.lifecycle.reply(
            appeal.number or "",
            text,
            actor=agent.name,
            agent=agent,
            attachments=files,
            signature=signature,
            source="telegram",
            source_ref=source_ref,
        )

    async def signature(self, appeal: Appeal, agent: Agent) -> str:
        """How an agent's answer is signed for the appeal's customer (``— Ирина``), or not
        at all (``telegram.sign_replies``)."""
        if not self.ctx.settings.telegram.sign_replies:
            return ""
        lang = await _customer_language(appeal)
        return self.ctx.texts.string("reply.signature", lang, name=agent.name)

    async def _stored(self, files: tuple[Attachment, ...]) -> tuple[Attachment, ...]:
        """Telegram files copied into the desk's store, for a customer on VK or email."""
        kept = []
        for item in files:
            if item.kind == "location":
                continue
            content = await self.deps.sender.download(item.ref)
            stored = await StoredFile.keep(content, name=item.name or item.kind, mime=item.mime)
            kept.append(Attachment(item.kind, stored.ref, item.name, item.mime, len(content)))
        return tuple(kept)

    async def appeal_of(self, message: Message) -> Appeal | None:
        """The appeal a staff message belongs to: by topic, or by what it replies to."""
        topic = message.message_thread_id if message.is_topic_message else None
        reply = message.reply_to_message
        return await appeal_in_staff_group(
            message.chat.id,
            thread_id=topic,
            reply_to=reply.message_id if reply is not None else None,
        )

    # -- joining ------------------------------------------------------------------------------

    async def join(self, message: Message, agent: Agent | None) -> None:
        """Ask for access: supervisors get a request with Approve / Decline buttons."""
        user = message.from_user
        if user is None:
            return
        if agent is not None:
            await self.say(None, self.s("staff.join_exists"), reply_to=message.message_id)
            return
        await ask_to_join(user.id, user.full_name)
        buttons = InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(
                        text=self.ctx.texts.string("button.approve", self.lang),
                        callback_data=JoinButton(verdict="ok", user_id=user.id).pack(),
                    ),
                    InlineKeyboardButton(
                        text=self.ctx.texts.string("button.decline", self.lang),
                        callback_data=JoinButton(verdict="no", user_id=user.id).pack(),
                    ),
                ]
            ]
        )
        request = "🙋 " + self.s("staff.join_request", name=user.full_name, user_id=user.id)
        await self.say(None, request, markup=buttons)
        await self.say(None, self.s("staff.join_sent"), reply_to=message.message_id)

    async def decide_join(
        self, query: CallbackQuery, agent: Agent | None, button: JoinButton
    ) -> None:
        verdict, user_id = button.verdict, button.user_id
        if agent is None or agent.role not in SUPERVISORS:
            await self.deps.sender.answer_callback(
                query.id, self.ctx.texts.string("staff.join_not_supervisor", self.lang), True
            )
            return
        name = await answer_join(user_id, approve=verdict == "ok")
        if name is None:
            await self.deps.sender.answer_callback(
                query.id, self.ctx.texts.string("staff.join_gone", self.lang), True
            )
            return
        decided = "staff.join_approved" if verdict == "ok" else "staff.join_declined"
        text = self.s(decided, name=name, by=agent.name)
        await self.say(None, text)
        await self.deps.sender.answer_callback(
            query.id, self.ctx.texts.string("staff.done", self.lang)
        )

    # -- buttons ------------------------------------------------------------------------------

    async def act(
        self, query: CallbackQuery, agent: Agent, action: str, appeal_id: int, give_to: str = ""
    ) -> None:
        """An appeal's button pressed by an agent; the answer is the small notice above the
        chat (an alert when the action is not allowed)."""
        notice = self.ctx.texts.string("staff.done", self.lang)
        alert = False
        try:
            notice = await self._press(action, appeal_id, agent, give_to) or notice
        except InvalidTransition as exc:
            status = self.ctx.texts.string(f"status.{exc.current}", self.lang)
            notice = self.ctx.texts.string("staff.not_allowed", self.lang, status=status)
            alert = True
        except DeskError as exc:
            notice = self.ctx.texts.string("staff.error", self.lang, reason=str(exc))
            alert = True
        try:
            await self.deps.sender.answer_callback(query.id, notice, alert)
        except DeskError:
            pass
        except Exception:  # an old query cannot be answered; the action itself is done
            log.info("callback answer failed", extra={"query": query.id})

    async def _press(self, action: str, appeal_id: int, agent: Agent, give_to: str) -> str | None:
        appeal = await appeal_by_id(appeal_id)
        if appeal is None or appeal.number is None:
            return None
        number, actor = appeal.number, agent.name
        if action == "take":
            await self.ctx.triage.assign(number, str(agent.id), actor=actor)
        elif action == "mtake":  # from a managers' alert: the appeal needs work again
            if appeal.status is AppealStatus.RESOLVED:
                await self.ctx.lifecycle.transition(
                    number, AppealStatus.OPEN, actor=actor, reason="taken from an alert"
                )
            await self.ctx.triage.assign(number, str(agent.id), actor=actor)
            return self.ctx.texts.string(
                "staff.reopened_taken", self.lang, agent=agent.name, number=number
            )
        elif action == "done":
            await self.ctx.lifecycle.transition(number, AppealStatus.RESOLVED, actor=actor)
        elif action == "later":
            appeal = await self.ctx.lifecycle.transition(number, AppealStatus.PENDING, actor=actor)
            back = CardMaker(self.ctx.settings, self.ctx.texts).local(appeal.pending_until)
            return self.ctx.texts.string("staff.postponed_till", self.lang, until=back)
        elif action == "reopen":
            await self.ctx.lifecycle.transition(number, AppealStatus.OPEN, actor=actor)
        elif action == "imp":
            await self.ctx.triage.tag(number, IMPORTANT_TAG, actor=actor)
        elif action == "pass":
            await self.picker(appeal, agent)
        elif action == "give":
            try:
                await self.ctx.triage.assign(number, give_to, actor=actor)
            except AgentNotFound:
                return self.ctx.texts.string("staff.no_agent", self.lang, agent=give_to)
        return None

    async def call_back(self, button: CallButton, agent: Agent) -> str:
        """«Перезвонить» under an alert: a call task for whoever pressed it."""
        customer_id, appeal_id = button.customer_id, button.appeal_id
        customer = await customer_by_id(customer_id)
        if customer is None:
            return self.ctx.texts.string("staff.join_gone", self.lang)
        appeal = await appeal_by_id(appeal_id)

        async def run() -> None:
            async with in_transaction():
                text = self.ctx.texts.render(
                    "tasks/manager_callback.txt.j2",
                    self.lang,
                    name=customer.name,
                    phones=await phones_of(customer.id),
                    number=appeal.number if appeal is not None else "",
                    subject=appeal.subject if appeal is not None else "",
                ).strip()
                await create_task(
                    self.ctx.lifecycle.events,
                    kind="call",
                    text=text,
                    due_at=self.ctx.clock() + CALL_DUE,
                    actor=agent.name,
                    appeal=appeal,
                    customer=customer,
                    assignee_id=agent.id,
                )

        await self.ctx.lifecycle.atomic(run)
        self.ctx.outbox.wake()
        return self.ctx.texts.string("staff.call_task", self.lang, agent=agent.name)

    async def pick_category(
        self, query: CallbackQuery, agent: Agent, button: CategoryButton
    ) -> None:
        """One tap on the router's question: the category is set and remembered."""
        category = button.category
        appeal = await appeal_by_id(button.appeal_id)
        routing = self.ctx.routing
        notice = self.ctx.texts.string("staff.done", self.lang)
        alert = False
        if appeal is None or routing is None or appeal.number is None:
            notice, alert = self.ctx.texts.string("staff.join_gone", self.lang), True
        else:
            try:
                await routing.choose(appeal.number, category, actor=agent.name)
                self.ctx.outbox.wake()
                title = routing.categories[category].title.get(self.lang) or category
                notice = self.ctx.texts.string(
                    "staff.categorised", self.lang, number=appeal.number, category=title
                )
            except DeskError as exc:
                notice, alert = (
                    self.ctx.texts.string("staff.error", self.lang, reason=str(exc)),
                    True,
                )
        await self.deps.sender.answer_callback(query.id, notice, alert)

    async def picker(self, appeal: Appeal, agent: Agent) -> None:
        """Post the colleagues on duty as buttons: one tap hands the appeal over."""
        others = await colleagues_on_duty(agent, PICKER_LIMIT)
        if not others:
            await self.say(appeal, self.s("staff.no_agents"))
            return
        rows = [
            [
                InlineKeyboardButton(
                    text=o.name,
                    callback_data=GiveButton(
                        action="give", appeal_id=appeal.id, agent=str(o.id)
                    ).pack(),
                )
            ]
            for o in others
        ]
        await self.say(
            appeal,
            self.s("staff.pick_agent", number=appeal.number),
            markup=InlineKeyboardMarkup(inline_keyboard=rows),
        )


def _is_service(message: Message) -> bool:
    """Topic created/edited/closed notices, pins and joins: nothing for the desk to do."""
    return message.content_type not in (
        "text",
        "photo",
        "document",
        "video",
        "voice",
        "audio",
        "animation",
        "sticker",
        "location",
        "video_note",
    )


async def _customer_language(appeal: Appeal) -> str:
    return (await customer_of(appeal)).language
