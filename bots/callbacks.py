"""The staff group's buttons as aiogram ``CallbackData``: one class per kind of button, packed
into the button and matched by its own filter (``AppealButton.filter(...)``).

The packed forms are the ones the desk has always posted (``ap:take:17``, ``cat:17:returns``),
so buttons already in the group keep working.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiogram import BaseMiddleware
from aiogram.filters import Filter
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, User
from pydantic import Field

from desk.appeals.agents import active_agent
from models import MAX_ID, Agent

AppealAction = Literal["take", "mtake", "done", "later", "reopen", "imp", "pass"]
# A row id or a Telegram user id as a button carries it: forged data with a number no row can
# have is not a button of ours (the press is answered, nothing else).
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]


class AppealButton(CallbackData, prefix="ap"):
    """Under a card: «Взять», «Решено», «Отложить», «Вернуть в работу», «Важно», «Передать»;
    «Взять» under a managers' alert (``mtake``: the appeal needs work again)."""

    action: AppealAction
    appeal_id: RowId


class GiveButton(CallbackData, prefix="ap"):
    """A colleague's name under «Передать»: the appeal is handed to them."""

    action: Literal["give"]
    appeal_id: RowId
    agent: str  # the colleague's agent id


class CategoryButton(CallbackData, prefix="cat"):
    """A category under the router's question: set and remembered as an example."""

    appeal_id: RowId
    category: str


class CallButton(CallbackData, prefix="call"):
    """«Перезвонить» under an alert: a call task for whoever pressed it."""

    customer_id: RowId
    appeal_id: Annotated[int, Field(ge=0, le=MAX_ID)]  # 0: an alert about a customer, not an appeal


class TaskResultButton(CallbackData, prefix="wb"):
    """Under a win-back task's card: «Дозвонились» (r), «Не дозвонились» (n), «Вернулся» (b)."""

    outcome: Literal["r", "n", "b"]
    task_id: RowId


class TaskReasonButton(CallbackData, prefix="wr"):
    """A reason under the «why did they leave» question, by its place in the list."""

    task_id: RowId
    reason: Annotated[int, Field(ge=0, lt=1000)]


class JoinButton(CallbackData, prefix="join"):
    """A supervisor's answer to someone asking for access with /join."""

    verdict: Literal["ok", "no"]
    user_id: RowId


class AnswerButton(CallbackData, prefix="ans"):
    """An answer template under ``/t``: pressed, it goes to the customer of the appeal."""

    appeal_id: RowId
    name: Annotated[str, Field(min_length=1, max_length=32)]  # the template's name


class AgentOfUpdate(BaseMiddleware):
    """Finds the active agent who wrote or pressed a button in the staff group or the
    managers' chat (``agent``, None for anyone else) before the filters run: one read an
    update, whatever handler takes it, and none for a customer's update elsewhere."""

    async def __call__(self, handler: Any, event: TelegramObject, data: dict[str, Any]) -> Any:
        agent = None
        chat: Chat | None = None
        user: User | None = None
        if isinstance(event, CallbackQuery):
            chat, user = (event.message.chat if event.message else None), event.from_user
        elif isinstance(event, Message):
            chat, user = event.chat, event.from_user
        if chat is not None and user is not None:
            telegram = data["deps"].ctx.settings.telegram
            if chat.id in (telegram.staff_chat_id, telegram.managers_chat_id):
                agent = await active_agent(user.id)
        data["agent"] = agent
        return await handler(event, data)


class IsAgent(Filter):
    """Passes an update from an active agent (see ``AgentOfUpdate``)."""

    async def __call__(self, event: TelegramObject, agent: Agent | None = None) -> bool:
        return agent is not None
