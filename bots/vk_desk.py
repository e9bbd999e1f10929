"""The VK side of the service wired together: community updates into the appeal stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web
from tortoise.transactions import in_transaction

from bots.customer import MY_APPEALS_LIMIT
from channels.base import BadInbound, ChannelKind, DeliveryError
from channels.vk.channel import CommunityMessages, VkChannel, VkPoller, callback_view, vk_id
from desk.appeals.customers import customer_id_at, recent_appeals
from desk.context import AppContext
from desk.features.orders import CHOICE_PREFIX, UnknownChoice
from desk.features.ratings import is_rating_action
from desk.ops.scheduler import Daily
from desk.outbound.chat_desk import ChatDesk

log = logging.getLogger(__name__)


def vk_desk(ctx: AppContext) -> ChatDesk | None:
    """The VK community's bot when a token is set (the service finds this in the entry points)."""
    return VkDesk(ctx) if ctx.settings.vk.disabled_reason() is None else None


class VkDesk:
    """Registers the ``vk`` adapter; turns community updates into stream entries. The runtime
    sees it as a ``desk.outbound.chat_desk.ChatDesk``."""

    name = ChannelKind.VK.value
    staff = None  # the staff group lives in Telegram

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.vk
        self.timeout_s = self.settings.timeout_s
        self.lang = ctx.settings.company.language  # VK does not tell a user's language
        self.channel = VkChannel(self.settings)
        ctx.adapters[ChannelKind.VK.value] = self.channel
        # Customers' messages go to the stream from the channel; the rest to this bot.
        self.updates = CommunityMessages(self.channel, ctx.stream, self.handle)

    async def handle(self, update: Any) -> None:
        """Store one update durably before VK hears "ok" (or before ts moves on). A malformed
        update is logged and dropped: VK would only send the same bytes again."""
        try:
            await self._handle(update)
        except BadInbound as exc:
            log.warning("VK update not kept", extra={"reason": str(exc)[:200]})

    async def _handle(self, update: Any) -> None:
        kind = update.get("type") if isinstance(update, dict) else None
        if kind not in ("message_new", "message_edit", "message_event"):
            return  # other community events: nothing to keep
        payload = update.get("object")
        if kind == "message_new" and isinstance(payload, dict):
            payload = payload.get("message", payload)
        if not isinstance(payload, dict):
            raise BadInbound(f"a VK {kind} without its object")
        if kind == "message_event":
            await self._button(payload)
        elif vk_id(payload.get("out")) == 1:
            return  # our own message, echoed by VK
        elif kind == "message_new" and _command(payload.get("payload")) == "start":
            await self.greet(_peer(payload), vk_id(payload.get("from_id")) or 0)
        else:
            await self._store(payload, edited=kind == "message_edit")

    async def _store(self, message: dict[str, Any], *, edited: bool) -> None:
        inbound = await self.channel.inbound(message, edited=edited)
        await self.ctx.stream.publish(inbound)  # intake decides whether it opens a new appeal

    async def greet(self, peer: int, user_id: int) -> None:
        """The «Начать» button: a greeting with the menu (callback buttons)."""
        name, _ = await self.channel.profile(user_id or peer)
        text = self.ctx.texts.render(
            "vk/start.txt.j2",
            self.lang,
            name=(name.split() or [""])[0],
            company=self.ctx.settings.company.name,
        )
        await self._tell(peer, text, keyboard=self.menu())

    def menu(self) -> dict[str, Any]:
        """New appeal / my appeals, as inline callback buttons."""
        s = self.ctx.texts.string

        def button(key: str, command: str) -> dict[str, Any]:
            return {
                "action": {
                    "type": "callback",
                    "label": s(key, self.lang)[:40],
                    "payload": json.dumps({"desk": command}),
                }
            }

        return {
            "inline": True,
            "buttons": [
                [button("menu.new", "new")],
                [button("menu.list", "list")],
                [button("menu.orders", "orders")],
            ],
        }

    async def _button(self, event: dict[str, Any]) -> None:
        command = _command(event.get("payload"))
        peer = _peer(event)
        notice = ""
        if command.startswith(f"{CHOICE_PREFIX}:"):
            notice = await self._choice(command, vk_id(event.get("user_id")) or 0)
        elif is_rating_action(command) and self.ctx.ratings is not None:
            notice, _ = await self.ctx.ratings.press(
                command,
                channel=ChannelKind.VK.value,
                address=str(peer),
                customer_id=await _customer_of(peer),
                lang=self.lang,
            )
            self.ctx.outbox.wake()
        elif command == "new":
            await self.ctx.lifecycle.ask_new_appeal(ChannelKind.VK.value, str(peer), None)
            notice = self.ctx.texts.string("customer.new_prompt", self.lang)
        elif command == "list":
            await self._tell(peer, await self._appeals_text(peer))
        elif command == "orders":
            await self._tell(peer, await self._orders_text(peer))
        await self.channel.answer_event(event, notice)

    async def _choice(self, action: str, user_id: int) -> str:
        """An order's question answered with a button: stored, and a word of thanks."""
        orders = self.ctx.orders
        if orders is None:
            return ""
        try:
            order, choice = await orders.answer(
                action, via=ChannelKind.VK.value, actor=f"vk:{user_id}", sender=str(user_id)
            )
        except UnknownChoice:
            return self.ctx.texts.string("order.choice_stale", self.lang)
        self.ctx.outbox.wake()
        title = orders.choice_title(order, choice, self.lang)
        return self.ctx.texts.string("order.choice_saved", self.lang, choice=title)

    async def _appeals_text(self, peer: int) -> str:
        customer_id = await _customer_of(peer)
        rows = []
        if customer_id is not None:
            for a in await recent_appeals(customer_id, MY_APPEALS_LIMIT):
                status = self.ctx.texts.string(f"status.{a.status.value}", self.lang)
                rows.append({"number": a.number, "subject": a.subject, "status": status})
        return self.ctx.texts.render("vk/my_appeals.txt.j2", self.lang, appeals=rows)

    async def _orders_text(self, peer: int) -> str:
        orders = self.ctx.orders
        rows = await orders.listing(await _customer_of(peer), self.lang) if orders else []
        return self.ctx.texts.render("vk/my_orders.txt.j2", self.lang, orders=rows)

    async def _tell(self, peer: int, text: str, *, keyboard: dict[str, Any] | None = None) -> None:
        async with in_transaction():
            await self.ctx.outbox.enqueue(
                channel=ChannelKind.VK.value,
                address=str(peer),
                text=text.strip(),
                extra={"keyboard": keyboard} if keyboard else None,
            )
        self.ctx.outbox.wake()

    def poller(self) -> VkPoller:
        """Bots Long Poll into ``handle``."""
        return VkPoller(self.channel, self.updates)

    async def whoami(self) -> str:
        """The community's name and id (groups.getById)."""
        return await self.channel.whoami()

    def add_routes(self, app: web.Application) -> None:
        """Serve the Callback API endpoint on the service's HTTP server (in callback mode)."""
        if self.settings.mode != "callback":
            return
        view = callback_view(self.settings, self.updates)
        app.router.add_post(self.settings.callback_path, view)

    async def open(self, public_url: str) -> None:
        """Nothing to register: VK is told the callback URL in the community's settings."""

    def loops(self, stop: asyncio.Event) -> dict[str, Coroutine[Any, Any, None]]:
        """Bots Long Poll, in longpoll mode."""
        return {"vk-polling": self.poller().run(stop)} if self.settings.mode == "longpoll" else {}

    def daily_jobs(self) -> list[Daily]:
        """None: VK has no daily work of its own."""
        return []

    async def download(self, ref: str) -> bytes:
        """VK files are kept by the desk when they arrive; nothing is fetched later."""
        raise DeliveryError("VK files are not fetched later")

    async def close(self) -> None:
        """Close HTTP sessions."""
        await self.channel.close()


def _command(payload: Any) -> str:
    """The command a button carries: ``{"command": "start"}`` (VK's «Начать») or ours."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):
            return ""
    if not isinstance(payload, dict):
        return ""
    return str(payload.get("desk") or payload.get("command") or payload.get("choice") or "")


async def _customer_of(peer: int) -> int | None:
    return await customer_id_at(ChannelKind.VK.value, str(peer))


def _peer(message: dict[str, Any]) -> int:
    """The dialog a message or a button press is in; BadInbound without one."""
    peer = vk_id(message.get("peer_id"))
    if not peer:
        raise BadInbound("a VK message or event without its peer_id")
    return peer
