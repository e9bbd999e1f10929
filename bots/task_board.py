"""Win-back call tasks in the staff group (seed 002): each task is posted in General with the
customer's card, the call script and «Дозвонились» / «Не дозвонились» / «Клиент вернулся»;
«Дозвонились» asks why the customer left (a list, or the agent's own words); overdue tasks
are reminded once a day."""

from __future__ import annotations

import html
import logging
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.types import CallbackQuery, Message
from tortoise.transactions import in_transaction

from bots.callbacks import TaskReasonButton, TaskResultButton
from bots.staff_sync import StaffSync
from desk.appeals.agents import agent_by_id
from desk.appeals.customers import customer_by_id
from desk.appeals.event_types import TaskCreated
from desk.appeals.tasks import phones_of
from desk.config.errors import DeskError, TaskClosed, TaskNotFound
from desk.context import AppContext
from desk.features.orders import order_totals
from desk.features.winback import (
    WINBACK,
    await_reason,
    awaited_reason,
    complete_call,
    earlier_calls,
    forget_reason,
    give_reason,
    overdue_tasks,
    task_by_id,
)
from models import Agent, Task

log = logging.getLogger(__name__)

RESULTS = {"r": "reached", "n": "no_answer", "b": "returned"}
REMINDER_LINES = 15  # per assignee; the rest is «… и ещё N»
EARLIER_CALLS = 3


class TaskBoard:
    """Posts win-back tasks and takes their results from the buttons and the agents' words."""

    def __init__(self, staff: StaffSync, ctx: AppContext) -> None:
        self._staff = staff
        self._ctx = ctx
        self._texts = ctx.texts
        self._lang = ctx.settings.company.language
        self._zone = ZoneInfo(ctx.settings.company.timezone)
        self._settings = ctx.settings.customers

    def _s(self, key: str, **values: Any) -> str:
        return html.escape(self._texts.string(key, self._lang, **values), quote=False)

    def _local(self, moment: datetime, fmt: str = "%d.%m %H:%M") -> str:
        return moment.astimezone(self._zone).strftime(fmt)

    def reasons(self) -> list[str]:
        """The reasons offered after «Дозвонились»: the configured ones, else the shipped list."""
        return self._settings.leave_reasons or self._texts.string(
            "winback.reasons", self._lang
        ).split("|")

    # -- posting ------------------------------------------------------------------------------

    async def on_event(self, event: TaskCreated) -> None:
        """A new win-back task: its card in General (inside the event's transaction)."""
        if event.kind != WINBACK:
            return
        task = await task_by_id(event.task_id)
        if task is not None and task.customer_id is not None:
            await self._post_card(task)

    async def _post_card(self, task: Task) -> None:
        customer = await customer_by_id(task.customer_id or 0)
        if customer is None:
            return
        orders, amount = await order_totals(customer.id)
        assignee = await agent_by_id(task.assignee_id)
        earlier = await earlier_calls(customer.id, EARLIER_CALLS)
        text = self._texts.render(
            "telegram/task_card.html.j2",
            self._lang,
            task_id=task.id,
            retry=bool(earlier) and earlier[0].result == "no_answer",
            name=customer.name,
            phones=await phones_of(customer.id),
            orders=orders,
            amount=_money(amount) if amount else "",
            last_order=self._local(customer.last_order_at, "%d.%m.%Y")
            if customer.last_order_at
            else "",
            warmth=customer.warmth.value,
            calls=[self._earlier(t) for t in earlier],
            assignee=assignee,
            due=self._local(task.due_at) if task.due_at else "—",
            script=task.text,
        )
        buttons = [
            {"text": self._texts.string(f"button.{result}", self._lang), "callback_data": data}
            for result, data in (
                ("reached", TaskResultButton(outcome="r", task_id=task.id).pack()),
                ("no_answer", TaskResultButton(outcome="n", task_id=task.id).pack()),
                ("returned", TaskResultButton(outcome="b", task_id=task.id).pack()),
            )
        ]
        await self._staff.enqueue(None, "post", text=text, markup={"inline_keyboard": [buttons]})

    def _earlier(self, task: Task) -> str:
        when = self._local(task.completed_at, "%d.%m") if task.completed_at else ""
        result = task.result
        if result in RESULTS.values():  # «✅ Дозвонились» without its badge
            result = self._texts.string(f"button.{result}", self._lang).split(" ", 1)[-1]
        return " ".join(part for part in (when, result, task.reason) if part)

    # -- buttons ------------------------------------------------------------------------------

    async def press(
        self, query: CallbackQuery, agent: Agent, button: TaskResultButton | TaskReasonButton
    ) -> tuple[str, bool]:
        """One of the task buttons; the notice for the pressing agent, and whether it alerts."""
        try:
            if isinstance(button, TaskResultButton):
                await self._result(query, agent, button.task_id, RESULTS[button.outcome])
            else:
                reasons = self.reasons()
                if not 0 <= button.reason < len(reasons):
                    return self._texts.string("task.gone", self._lang), True
                post = query.message if isinstance(query.message, Message) else None
                await self._reason(agent, button.task_id, reasons[button.reason], post)
        except TaskClosed:
            return self._texts.string("task.closed", self._lang), True
        except TaskNotFound:
            return self._texts.string("task.gone", self._lang), True
        except DeskError as exc:
            return self._texts.string("staff.error", self._lang, reason=str(exc)), True
        self._ctx.outbox.wake()
        return self._texts.string("task.saved", self._lang), False

    async def _result(self, query: CallbackQuery, agent: Agent, task_id: int, result: str) -> None:
        now = self._ctx.clock()
        card = query.message if isinstance(query.message, Message) else None
        async with in_transaction():
            task = await complete_call(
                self._ctx.lifecycle.events,
                self._settings,
                task_id,
                result,
                actor=agent.name,
                now=now,
            )
            retry = now + timedelta(days=self._settings.no_answer_retry_days)
            line = self._s(
                f"task.result.{result}",
                agent=agent.name,
                at=self._local(now),
                retry=self._local(retry, "%d.%m"),
            )
            if card is not None:
                await self._edit(card, line)
            if result == "reached":
                await self._ask_reason(task, agent, card, now)

    async def _edit(self, post: Message, line: str) -> None:
        """The post shows what was done, and its buttons go."""
        await self._staff.enqueue(
            None,
            "edit",
            text=f"{post.html_text}\n\n{line}",
            message_id=post.message_id,
            chat=post.chat.id,
        )

    async def _ask_reason(
        self, task: Task, agent: Agent, card: Message | None, now: datetime
    ) -> None:
        customer = await customer_by_id(task.customer_id or 0)
        minutes = self._settings.reason_minutes
        text = self._texts.render(
            "telegram/task_reason.html.j2",
            self._lang,
            task_id=task.id,
            name=customer.name if customer is not None else "",
            minutes=minutes,
        )
        buttons = [
            {
                "text": reason[:40],
                "callback_data": TaskReasonButton(task_id=task.id, reason=i).pack(),
            }
            for i, reason in enumerate(self.reasons())
        ]
        rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
        await self._staff.enqueue(
            None,
            "post",
            text=text,
            markup={"inline_keyboard": rows},
            reply_to=card.message_id if card is not None else None,
        )
        until = now + timedelta(minutes=minutes)
        await await_reason(agent.id, task.id, until)

    async def _reason(
        self, agent: Agent, task_id: int, reason: str, post: Message | None = None
    ) -> None:
        """Record the reason; the question it answers (``post``) shows it and loses its
        buttons."""
        async with in_transaction():
            task = await give_reason(self._ctx.lifecycle.events, task_id, reason, actor=agent.name)
            await forget_reason(agent.id, task_id)
            if post is not None:
                await self._edit(post, self._s("task.reason_line", reason=task.reason))

    async def take_reason(self, message: Message, agent: Agent) -> bool:
        """The agent's next words in General after «Дозвонились» are the reason; True if taken."""
        text = (message.text or "").strip()
        if not text:
            return False
        task_id = await awaited_reason(agent.id, self._ctx.clock())
        if task_id is None:
            return False
        try:
            await self._reason(agent, task_id, text)
        except DeskError as exc:
            log.info("typed reason not kept", extra={"task": task_id, "why": str(exc)})
            await forget_reason(agent.id)
            return False
        await self._staff.enqueue(
            None,
            "post",
            text=self._s("task.reason_saved", reason=" ".join(text.split())[:500]),
            reply_to=message.message_id,
        )
        self._ctx.outbox.wake()
        return True

    # -- reminders ----------------------------------------------------------------------------

    async def remind_overdue(self) -> int:
        """One post in General listing open tasks past their time, by assignee (a daily job);
        returns how many tasks it named."""
        now = self._ctx.clock()
        overdue = await overdue_tasks(now)
        if not overdue.tasks:
            return 0
        by_agent: dict[int | None, list[Task]] = defaultdict(list)
        for task in overdue.tasks:
            by_agent[task.assignee_id].append(task)
        agents, names = overdue.agents, overdue.names
        groups = []
        for agent_id, tasks in sorted(by_agent.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
            agent = agents.get(agent_id) if agent_id is not None else None
            groups.append(
                {
                    "agent": agent,
                    "tasks": [
                        {
                            "id": t.id,
                            "what": self._what(t.kind),
                            "name": names.get(t.customer_id, "") if t.customer_id else "",
                            "due": self._local(t.due_at, "%d.%m") if t.due_at else "",
                        }
                        for t in tasks[:REMINDER_LINES]
                    ],
                    "more": max(0, len(tasks) - REMINDER_LINES),
                }
            )
        text = self._texts.render(
            "telegram/tasks_overdue.html.j2",
            self._lang,
            total=len(overdue.tasks),
            groups=groups,
            nobody=self._texts.string("task.nobody", self._lang),
        )
        async with in_transaction():
            await self._staff.enqueue(None, "post", text=text)
        self._ctx.outbox.wake()
        return len(overdue.tasks)

    def _what(self, kind: str) -> str:
        key = f"task.kind.{kind}" if kind in (WINBACK, "call") else "task.kind.other"
        return self._texts.string(key, self._lang)


def _money(amount: Decimal) -> str:
    """An amount for people: «12 500», «1 299.50»."""
    whole = f"{int(amount):,}".replace(",", " ")
    cents = amount - int(amount)
    return whole if cents == 0 else f"{whole}.{abs(cents) * 100:02.0f}"
