"""Orders from a shop's system (seed 003): upserted with their customer's contacts, moved
through stages, answered by the customer's choices; every change is an event for automation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tortoise.functions import Count, Sum
from tortoise.transactions import in_transaction

from channels.base import PHONE_CHANNEL, ChannelKind
from desk.appeals.customers import (
    customer_by_contacts,
    normalise_email,
    normalise_phone,
)
from desk.appeals.event_types import OrderAnswered, OrderCreated, OrderStageChanged
from desk.appeals.events import EventBus
from desk.appeals.idempotency import RequestKey, claim
from desk.config.errors import DeskError, InvalidInput, OrderNotFound
from desk.config.settings import Settings, stages_of
from desk.features.winback import ordered
from models import ContactPoint, Customer, Order, fits, parse_id

NEW_STAGE = "new"  # where an order reported without a stage starts
CHOICE_PREFIX = "oc"  # the action of an order's choice button: oc:<order id>:<choice id>


class UnknownChoice(DeskError):
    """A choice that the order's current stage does not offer (an old button, a forged link)."""

    def __init__(self, action: str) -> None:
        super().__init__(f"choice '{action[:64]}' is not offered by the order's current stage")
        self.action = action


@dataclass(frozen=True, slots=True)
class Contacts:
    """How to reach an order's customer, as the shop's system knows them."""

    name: str = ""
    email: str | None = None
    phone: str | None = None
    telegram_id: int | None = None
    vk_id: int | None = None
    language: str = ""
    timezone: str = ""
    preferred_channel: str | None = None

    def keys(self) -> list[tuple[str, str]]:
        """(channel, address) pairs, strongest first; bad email or phone is an InvalidInput."""
        out: list[tuple[str, str]] = []
        if self.telegram_id is not None:
            out.append((ChannelKind.TELEGRAM.value, str(self.telegram_id)))
        if self.vk_id is not None:
            out.append((ChannelKind.VK.value, str(self.vk_id)))
        if self.email:
            email = normalise_email(self.email)
            if email is None:
                raise InvalidInput(f"'{self.email}' is not an email address")
            out.append((ChannelKind.EMAIL.value, email))
        if self.phone:
            phone = normalise_phone(self.phone)
            if phone is None:
                raise InvalidInput(f"'{self.phone}' is not a phone number")
            out.append((PHONE_CHANNEL, phone))
        if not out:
            raise InvalidInput("an order needs at least one contact of its customer")
        return out


@dataclass(frozen=True, slots=True)
class OrderChange:
    """An order as the shop's system sends it."""

    external_id: str
    contacts: Contacts
    stage: str | None  # None: a new order starts at «new», a known one keeps its stage
    placed_at: datetime | None = None  # when the customer ordered; default: now
    amount: Decimal | None = None


class Orders:
    """Upserts orders and records their stages and the customers' answers."""

    def __init__(self, settings: Settings, events: EventBus, clock: Callable[[], datetime]) -> None:
        self.stages = stages_of(settings)
        self._customers = settings.customers
        self._events = events
        self._clock = clock

    def _known_stage(self, stage: str) -> None:
        if stage not in self.stages:
            raise InvalidInput(f"unknown stage '{stage}' (known: {', '.join(self.stages)})")

    def stage_title(self, stage: str, lang: str) -> str:
        """A stage's title for customers, else its id."""
        config = self.stages.get(stage)
        return (config.title.get(lang) if config is not None else None) or stage

    def choice_title(self, order: Order, choice: str, lang: str) -> str:
        """The label of a choice of the order's current stage, else its id."""
        config = self.stages.get(order.stage)
        found = next((c for c in config.choices if c.id == choice), None) if config else None
        return (found.title.get(lang) if found is not None else None) or choice

    @staticmethod
    async def of_customer(customer_id: int, limit: int = 10) -> list[Order]:
        """A customer's latest orders."""
        return await Order.filter(customer_id=customer_id).order_by("-id").limit(limit)

    async def listing(self, customer_id: int | None, lang: str) -> list[dict[str, str]]:
        """«Мои заказы»: the latest orders with their current stage, for the bots' templates."""
        if customer_id is None:
            return []
        return [
            {"external_id": o.external_id, "stage": self.stage_title(o.stage, lang)}
            for o in await self.of_customer(customer_id)
        ]

    async def upsert(
        self, change: OrderChange, key: RequestKey | None = None
    ) -> tuple[Order, bool]:
        """Create the order (with its customer) or update its contacts and stage; (order,
        created). Without a stage a new order starts at «new» and a known one keeps its own.
        The same ``key`` with the same request does nothing again."""
        if change.stage is not None:
            self._known_stage(change.stage)
        keys = change.contacts.keys()
        async with in_transaction():
            if key is not None:
                _, first = await claim("order", key, _request(change), change.external_id)
                if not first:
                    return await self.get(change.external_id), False
            customer, _ = await customer_by_contacts(
                keys,
                name=change.contacts.name,
                language=change.contacts.language,
                preferred=change.contacts.preferred_channel or keys[0][0],
            )
            await self._update_customer(customer, change.contacts)
            order = await Order.filter(external_id=change.external_id).first()
            if order is None:
                stage = change.stage or NEW_STAGE
                self._known_stage(stage)
                now = self._clock()
                placed = min(change.placed_at or now, now)
                order = await Order.create(
                    external_id=change.external_id,
                    customer=customer,
                    stage=stage,
                    stage_history=[],
                    placed_at=placed,
                    amount=change.amount,
                )
                if customer.last_order_at is None or placed > customer.last_order_at:
                    customer.last_order_at = placed
                    await customer.save(update_fields=["last_order_at", "updated_at"])
                await self._events.emit(
                    OrderCreated(
                        actor="api",
                        customer=customer,
                        order_id=order.id,
                        external_id=order.external_id,
                        stage=order.stage,
                        placed_at=order.placed_at.isoformat() if order.placed_at else None,
                        amount=str(order.amount) if order.amount is not None else None,
                    )
                )
                await self._enter(order, customer, None, stage, note="")
                await ordered(self._events, self._customers, customer, now)
                return order, True
            if change.stage is not None and order.stage != change.stage:
                await self._enter(order, customer, order.stage, change.stage, note="")
            return order, False

    async def set_stage(
        self, external_id: str, stage: str, *, note: str = "", key: RequestKey | None = None
    ) -> Order:
        """Move an order to ``stage`` (the same stage again changes nothing)."""
        self._known_stage(stage)
        async with in_transaction():
            if key is not None:
                request = {"external_id": external_id, "stage": stage, "note": note}
                _, first = await claim("order-stage", key, request, external_id)
                if not first:
                    return await self.get(external_id)
            order = await self.get(external_id)
            if order.stage != stage:
                customer = await Customer.get(id=order.customer_id)
                await self._enter(order, customer, order.stage, stage, note=note)
            return order

    async def answer(
        self, action: str, *, via: str, actor: str, sender: str | None = None
    ) -> tuple[Order, str]:
        """Record the customer's choice from a button or a confirmed link (``oc:<id>:<c>``);
        (order, choice id). A choice the current stage does not offer, or a button pressed by
        someone (``sender``: their address in ``via``) who is not the order's customer, is an
        UnknownChoice."""
        prefix, _, rest = action.partition(":")
        order_id, _, choice = rest.partition(":")
        number = parse_id(order_id)
        if prefix != CHOICE_PREFIX or number is None or not choice:
            raise UnknownChoice(action)
        async with in_transaction():
            order = await Order.get_or_none(id=number)
            stage = self.stages.get(order.stage) if order is not None else None
            if order is None or stage is None or choice not in {c.id for c in stage.choices}:
                raise UnknownChoice(action)
            if sender is not None and not await ContactPoint.exists(
                customer_id=order.customer_id, channel=via, address=sender
            ):
                raise UnknownChoice(action)
            customer = await Customer.get(id=order.customer_id)
            answered = [
                h
                for h in order.stage_history
                if h.get("kind") == "answer" and h.get("stage") == order.stage
            ]
            if answered and answered[-1].get("choice") == choice:
                return order, choice  # the same button twice: once is enough
            order.stage_history = [
                *order.stage_history,
                {
                    "kind": "answer",
                    "stage": order.stage,
                    "choice": choice,
                    "via": via,
                    "at": self._clock().isoformat(),
                },
            ]
            await order.save(update_fields=["stage_history", "updated_at"])
            await self._events.emit(
                OrderAnswered(
                    actor=actor,
                    customer=customer,
                    order_id=order.id,
                    external_id=order.external_id,
                    stage=order.stage,
                    choice=choice,
                    channel=via,
                )
            )
            return order, choice

    async def get(self, external_id: str) -> Order:
        found = fits(Order, "external_id", external_id)
        order = await Order.filter(external_id=external_id).first() if found else None
        if order is None:
            raise OrderNotFound(external_id)
        return order

    async def _enter(
        self, order: Order, customer: Customer, before: str | None, stage: str, *, note: str
    ) -> None:
        order.stage = stage
        entry = {"kind": "stage", "stage": stage, "at": self._clock().isoformat()}
        if note:
            entry["note"] = note
        order.stage_history = [*order.stage_history, entry]
        await order.save(update_fields=["stage", "stage_history", "updated_at"])
        await self._events.emit(
            OrderStageChanged(
                actor="api",
                customer=customer,
                order_id=order.id,
                external_id=order.external_id,
                before=before,
                after=stage,
            )
        )

    @staticmethod
    async def _update_customer(customer: Customer, contacts: Contacts) -> None:
        changed: list[str] = []
        if contacts.timezone and customer.timezone != contacts.timezone:
            customer.timezone = contacts.timezone
            changed.append("timezone")
        if contacts.preferred_channel and customer.preferred_channel != contacts.preferred_channel:
            customer.preferred_channel = contacts.preferred_channel
            changed.append("preferred_channel")
        if changed:
            await customer.save(update_fields=[*changed, "updated_at"])


def _request(change: OrderChange) -> dict[str, Any]:
    return {
        "external_id": change.external_id,
        "stage": change.stage,
        "contacts": change.contacts.keys(),
    }


async def order_totals(customer_id: int) -> tuple[int, Decimal]:
    """How many orders a customer has placed and their amounts' sum (0 when none carry one)."""
    row = (
        await Order.filter(customer_id=customer_id)
        .annotate(n=Count("id"), total=Sum("amount"))
        .first()
        .values("n", "total")
    ) or {}
    total = row.get("total")
    return int(row.get("n") or 0), Decimal(total) if total is not None else Decimal(0)
