"""Carries out automation rules: every domain event is matched against the rules in force and
the actions of those that fire run inside the event's transaction; each firing and the outcome
of each action are written to the history of the object the event is about."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import jinja2

from channels.webhook import KIND as WEBHOOK_KIND
from desk.appeals import history
from desk.appeals.customers import set_state
from desk.appeals.event_types import EVENT_TYPES, DomainEvent
from desk.appeals.events import EventBus
from desk.appeals.outbox import Outbox
from desk.appeals.tasks import call_owner, create_task
from desk.appeals.triage import Triage, find_agent
from desk.config.errors import DeskError
from desk.config.notice_templates import STAFF, TASK
from desk.config.settings import Settings, rules_of, stages_of
from desk.config.texts import Texts, language_of
from desk.features.orders import CHOICE_PREFIX
from desk.features.ratings import Ratings, Skipped
from desk.outbound.manager_mail import ManagerMail
from desk.outbound.notify import Button, Notifier
from desk.outbound.staff_group import StaffGroup
from models import Agent, AgentRole, Appeal, Customer, Order, Priority, Warmth, sql
from router.automation import (
    AddTag,
    AlertManagers,
    Assign,
    CallWebhook,
    CreateTask,
    NotifyCustomer,
    NotifyStaff,
    RequestRating,
    Rule,
    SetPriority,
    SetWarmth,
    firing,
)

if TYPE_CHECKING:
    from desk.decide.routing import Routing

log = logging.getLogger(__name__)


class ActionSkipped(DeskError):
    """An action that cannot apply to this event (no appeal, no staff group)."""


@dataclass(slots=True)
class Target:
    """What an event is about, loaded once for its rules."""

    event: DomainEvent
    appeal: Appeal | None
    customer: Customer | None
    order: Order | None
    rule: str = ""

    def data(self) -> dict[str, Any]:
        """The event's data with ``appeal.*``, ``customer.*`` and ``order.*`` for conditions."""
        out: dict[str, Any] = self.event.data()
        if self.appeal is not None:
            a = self.appeal
            out["appeal"] = {
                "number": a.number,
                "status": a.status.value,
                "priority": a.priority.value,
                "category": a.category,
                "team": a.team,
                "channel": a.channel,
                "subject": a.subject,
                "tags": list(a.tags),
                "assigned": a.assignee_id is not None,
            }
        if self.customer is not None:
            c = self.customer
            out["customer"] = {
                "name": c.name,
                "language": c.language,
                "vip": c.vip,
                "lifecycle": c.lifecycle.value,
                "warmth": c.warmth.value,
                "preferred_channel": c.preferred_channel,
                "timezone": c.timezone,
            }
        if self.order is not None:
            out["order"] = {"external_id": self.order.external_id, "stage": self.order.stage}
        return out


class Automation:
    """Subscribes to domain events and runs the actions of the rules that fire."""

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier,
        outbox: Outbox,
        triage: Triage,
        events: EventBus,
        texts: Texts,
        clock: Callable[[], datetime],
        *,
        staff: StaffGroup | None = None,
        routing: Routing | None = None,
        ratings: Ratings | None = None,
        manager_mail: ManagerMail | None = None,
    ) -> None:
        self._rules: list[Rule] = rules_of(settings)
        self._stages = stages_of(settings)
        self._notifier = notifier
        self._outbox = outbox
        self._triage = triage
        self._events = events
        self._texts = texts
        self._clock = clock
        self._staff = staff
        self._routing = routing
        self._ratings = ratings
        self._mail = manager_mail
        self._lang = settings.company.language
        self._settings = settings

    def kinds(self) -> tuple[type[DomainEvent], ...]:
        """The event types some rule is ``on`` (what ``on_batch`` listens to)."""
        return tuple(EVENT_TYPES[on] for on in dict.fromkeys(r.on for r in self._rules))

    async def on_batch(self, events: Sequence[DomainEvent]) -> None:
        """Run the rules that fire for each event, in their order (inside their transaction,
        once the batch's appeals are routed and timed)."""
        for event in events:
            await sql.give_turn()
            await self._fire(event)

    async def _fire(self, event: DomainEvent) -> None:
        chain = event.cause  # the rules that led to it: none of them fires again
        target = await self._target(event)
        for fired in firing(self._rules, event.KIND, target.data(), chain=chain):
            target.rule = fired.rule
            with EventBus.caused_by((*chain, fired.rule)):
                outcomes = [await self._outcome(action, target) for action in fired.actions]
            await history.record(
                "automation.fired",
                actor="automation",
                appeal=target.appeal,
                customer=target.customer,
                at=self._clock(),
                rule=fired.rule,
                on=event.KIND,
                outcomes=outcomes,
            )

    async def _target(self, event: DomainEvent) -> Target:
        appeal = event.appeal
        customer_id = event.customer_id or (appeal.customer_id if appeal is not None else None)
        customer = event.customer
        if customer is None or customer.id != customer_id:
            customer = await Customer.get_or_none(id=customer_id) if customer_id else None
        order_id = getattr(event, "order_id", None)
        order = await Order.get_or_none(id=int(order_id)) if order_id is not None else None
        return Target(event, appeal, customer, order)

    async def _outcome(self, action: Any, target: Target) -> dict[str, Any]:
        """Run one action; a failure is written down and the other actions still run."""
        name = str(action.action)
        try:
            done = await self._run(action, target)
        except ActionSkipped as exc:
            return {"action": name, "result": "skipped", "reason": str(exc)}
        except (DeskError, jinja2.TemplateError, LookupError, ValueError) as exc:
            log.warning("automation action failed", extra={"action": name, "error": str(exc)})
            return {"action": name, "result": "failed", "reason": str(exc)[:300]}
        return {"action": name, **done}

    async def _run(self, action: Any, target: Target) -> dict[str, Any]:
        appeal, actor = target.appeal, "automation"
        if isinstance(action, NotifyCustomer):
            if target.customer is None:
                raise ActionSkipped("the event has no customer")
            sent = await self._notifier.notify(
                target.customer,
                action.template,
                appeal=appeal,
                policy=action.channels,
                quiet=action.quiet_hours,
                values=self._values(target),
                buttons=self._choices(action, target),
                call_if_unreachable=action.if_unreachable == "call_task",
            )
            return sent.describe()
        if isinstance(action, CreateTask):
            return await self._task(action, target)
        if isinstance(action, CallWebhook):
            return await self._webhook(action, target)
        if isinstance(action, RequestRating):
            return await self._rating(action, target)
        if isinstance(action, SetWarmth):
            if target.customer is None:
                raise ActionSkipped("the event has no customer")
            await set_state(
                self._events,
                target.customer,
                Warmth(action.warmth),
                actor=actor,
                reason=f"rule '{target.rule}'",
            )
            return {"result": "done", "warmth": action.warmth}
        if isinstance(action, AlertManagers):
            return await self._alert(action, target)
        if appeal is None:
            raise ActionSkipped("the event has no appeal")
        if isinstance(action, NotifyStaff):
            if self._staff is None:
                raise ActionSkipped("no staff group is configured")
            await self._staff.enqueue(
                appeal, "post", text=self._staff_text(action.template, target)
            )
            return {"result": "posted"}
        if isinstance(action, SetPriority):
            await self._triage.set_priority_in_place(
                appeal, Priority(action.priority), actor=actor, reason="automation"
            )
            return {"result": "done", "priority": action.priority}
        if isinstance(action, AddTag):
            await self._triage.tag_in_place(appeal, action.tag, actor=actor, on=True)
            return {"result": "done", "tag": action.tag}
        if isinstance(action, Assign):
            return await self._assign(action, appeal)
        raise ActionSkipped(f"unknown action {action.action}")

    async def _alert(self, action: AlertManagers, target: Target) -> dict[str, Any]:
        """The managers' chat (with the appeal's card) and the managers' mail, either or both."""
        mail = self._mail if self._mail is not None and self._mail.enabled else None
        if self._staff is None and mail is None:
            raise ActionSkipped("no staff group and no managers' mail is configured")
        text = self._staff_text(action.template, target)
        done: dict[str, Any] = {}
        if self._staff is not None:
            await self._staff.alert(
                target.appeal,
                text=text,
                buttons=action.buttons,
                customer_id=target.customer.id if target.customer is not None else None,
            )
            done["result"] = "posted"
        if mail is not None:
            done["mailed"] = await mail.alert(
                action.template,
                target.appeal,
                customer=target.customer,
                note_html=text,
                **self._values(target),
            )
            done.setdefault("result", "mailed")
        return done

    def _values(self, target: Target) -> dict[str, Any]:
        values: dict[str, Any] = {"event": target.event.data(), "rule": target.rule}
        if target.order is not None:
            order = target.order
            stage = self._stages.get(order.stage)
            values["order"] = {
                "external_id": order.external_id,
                "stage": order.stage,
                "title": stage.title if stage is not None else {},
                "lines": stage.lines if stage is not None else {},
            }
        return values

    @staticmethod
    def _choices(action: NotifyCustomer, target: Target) -> list[Button]:
        if target.order is None:
            return []
        return [
            Button(c.title, f"{CHOICE_PREFIX}:{target.order.id}:{c.id}") for c in action.choices
        ]

    def _staff_text(self, template: str, target: Target) -> str:
        appeal, customer = target.appeal, target.customer
        return self._texts.render(
            STAFF.format(template),
            self._lang,
            number=appeal.number if appeal is not None else "",
            subject=appeal.subject if appeal is not None else "",
            name=customer.name if customer is not None else "",
            reasons=[],
            **self._values(target),
        ).strip()

    async def _task(self, action: CreateTask, target: Target) -> dict[str, Any]:
        appeal, customer = target.appeal, target.customer
        assignee: Agent | None = None
        if action.assignee == "manager":
            assignee = (
                await Agent.filter(active=True, role=AgentRole.MANAGER).order_by("id").first()
            )
        elif action.assignee != "appeal_assignee":
            assignee = await find_agent(action.assignee)
        lang = language_of(customer.language if customer is not None else self._lang)
        text = self._texts.render(
            TASK.format(action.template),
            lang,
            name=customer.name if customer is not None else "",
            number=appeal.number if appeal is not None else "",
            subject=appeal.subject if appeal is not None else "",
            **self._values(target),
        ).strip()
        assignee_id = assignee.id if assignee is not None else None
        if assignee_id is None and action.kind == "call":  # a call nobody owns: see call_owner
            owner = customer.id if customer is not None else None
            assignee_id = await call_owner(self._settings, appeal, owner)
        task = await create_task(
            self._events,
            kind=action.kind,
            text=text,
            due_at=self._clock() + timedelta(minutes=action.due_minutes),
            actor="automation",
            appeal=appeal,
            customer=customer,
            assignee_id=assignee_id,
        )
        return {"result": "created", "task_id": task.id}

    async def _rating(self, action: RequestRating, target: Target) -> dict[str, Any]:
        if self._ratings is None:
            raise ActionSkipped("ratings are not set up")
        if target.customer is None:
            raise ActionSkipped("the event has no customer")
        try:
            request, sent = await self._ratings.request(
                target.customer,
                appeal=target.appeal,
                order=target.order,
                template=action.template,
                policy=action.channels,
                quiet=action.quiet_hours,
            )
        except Skipped as exc:
            raise ActionSkipped(str(exc)) from exc
        return {**sent.describe(), "request_id": request.id}

    async def _assign(self, action: Assign, appeal: Appeal) -> dict[str, Any]:
        if action.agent is not None:
            agent = await find_agent(action.agent)
            await self._triage.assign_in_place(appeal, agent, actor="automation", reason="rule")
            return {"result": "done", "agent": agent.name}
        if self._routing is None:
            raise ActionSkipped("no router")
        if appeal.team != action.team:  # as an agent's transfer: card, history, reports follow
            await self._triage.transfer_in_place(appeal, action.team, actor="automation")
        agent_id = await self._routing.assign(appeal)
        return {"result": "done", "team": action.team, "agent_id": agent_id}

    async def _webhook(self, action: CallWebhook, target: Target) -> dict[str, Any]:
        body = {
            "event": target.event.KIND,
            "at": self._clock().isoformat(),
            **target.data(),
        }
        item = await self._outbox.enqueue(
            channel=WEBHOOK_KIND,
            address=action.url,
            text="",
            appeal=target.appeal,
            extra={"body": body},
        )
        return {"result": "queued", "outbox_id": item.id}
