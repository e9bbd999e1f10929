"""The web channel's side of the desk: accepting web appeals and replies, status links."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta

from channels.base import ChannelKind
from channels.web import WebAppeal, appeal_inbound, new_receipt, reply_inbound
from desk.appeals.idempotency import RequestKey, claim
from desk.context import AppContext
from desk.features.forget import FORGOTTEN_ID
from desk.features.ratings import parse_action
from models import Appeal, Message

APPEAL_NUMBER = re.compile(r"A-\d{6,}")  # receipts are "w-<hex>": never a number
STATUS_PURPOSE = "status"
STAFF_VIEW_PURPOSE = "staff-view"  # the managers' read-only page of an appeal (their alerts)
CHOICE_PURPOSE = "choice"
CHOICE_TTL = timedelta(days=14)
FEEDBACK_PURPOSE = "feedback"
WAIT_S = 3.0
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class Accepted:
    """A web appeal written to the stream; ``number`` is set when it was registered in time."""

    receipt: str
    number: str | None
    status: str


async def accept_appeal(
    ctx: AppContext, form: WebAppeal, idempotency_key: RequestKey | None
) -> Accepted:
    """Write the appeal to the stream (durable before we answer) and wait briefly for its number.

    The same ``Idempotency-Key`` with the same body answers with the same appeal; with a
    different body it is refused.
    """
    receipt = new_receipt()
    if idempotency_key:
        receipt, _ = await claim("appeal", idempotency_key, asdict(form), receipt)
        appeal = await appeal_for_receipt(receipt)
        if appeal is not None:
            return Accepted(receipt, appeal.number, appeal.status.value)
    await ctx.stream.publish(appeal_inbound(form, receipt))
    appeal = await wait_for_receipt(receipt, WAIT_S)
    if appeal is None:
        return Accepted(receipt, None, "registering")
    return Accepted(receipt, appeal.number, appeal.status.value)


async def accept_reply(ctx: AppContext, appeal: Appeal, text: str, language: str) -> str:
    """Write a customer's status-page reply to the stream; returns its receipt."""
    receipt = new_receipt()
    await ctx.stream.publish(reply_inbound(appeal.number or "", text, receipt, language))
    await wait_for_receipt(receipt, WAIT_S)
    return receipt


async def appeal_for_receipt(receipt: str, channel: ChannelKind = ChannelKind.WEB) -> Appeal | None:
    """The appeal that the web message with this receipt (or the ``channel`` message with this
    external id) was stored in, if it was yet; a status link sent by mail names the appeal's
    number instead (``A-000123``)."""
    if APPEAL_NUMBER.fullmatch(receipt):
        return await Appeal.get_or_none(number=receipt)
    message = await Message.filter(channel=channel.value, external_id=receipt).first()
    if message is None:
        return None
    return await Appeal.get(id=message.appeal_id)


async def receipt_forgotten(receipt: str) -> bool:
    """Whether the web message with this receipt belonged to a customer since forgotten."""
    forgotten = FORGOTTEN_ID + receipt
    return await Message.filter(channel=ChannelKind.WEB.value, external_id=forgotten).exists()


async def wait_for_receipt(
    receipt: str, timeout: float, channel: ChannelKind = ChannelKind.WEB
) -> Appeal | None:
    """Poll briefly until the intake worker (in this process or another) stored the message."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        appeal = await appeal_for_receipt(receipt, channel)
        if appeal is not None or loop.time() >= deadline:
            return appeal
        await asyncio.sleep(POLL_S)


def status_token(ctx: AppContext, receipt: str) -> str:
    """A signed token naming the appeal of ``receipt``, valid for the configured days."""
    days = ctx.settings.lifecycle.status_link_days
    return ctx.signer.sign(STATUS_PURPOSE, receipt, ctx.clock(), timedelta(days=days))


def status_url(ctx: AppContext, receipt: str) -> str:
    """The customer's link to the status page of the appeal of ``receipt`` (a web message's
    receipt, or an appeal's number: the link in every mail to a customer)."""
    return f"{ctx.settings.effective_public_url()}/s/{status_token(ctx, receipt)}"


def staff_view_url(ctx: AppContext, number: str) -> str:
    """The link in a managers' alert mail: the appeal's status page to read, without the
    customer's reply form (a status link would let whoever has it write as the customer)."""
    days = ctx.settings.lifecycle.status_link_days
    token = ctx.signer.sign(STAFF_VIEW_PURPOSE, number, ctx.clock(), timedelta(days=days))
    return f"{ctx.settings.effective_public_url()}/v/{token}"


def choice_url(ctx: AppContext, action: str) -> str:
    """A mail's link to the page where the customer confirms a choice (``oc:<order>:<id>``)."""
    token = ctx.signer.sign(CHOICE_PURPOSE, action, ctx.clock(), CHOICE_TTL)
    return f"{ctx.settings.effective_public_url()}/c/{token}"


def feedback_url(ctx: AppContext, request_id: int, score: int | None = None) -> str:
    """A mail's link to the rating page of one request, the score preselected; it lives as
    long as the request (the page itself records nothing until the customer confirms)."""
    ttl = timedelta(days=ctx.settings.ratings.valid_days)
    token = ctx.signer.sign(FEEDBACK_PURPOSE, str(request_id), ctx.clock(), ttl)
    query = f"?score={score}" if score is not None else ""
    return f"{ctx.settings.effective_public_url()}/feedback/{token}{query}"


def choices_page(ctx: AppContext, actions: Sequence[str]) -> str | None:
    """One page that offers all of ``actions`` (an SMS carries one link, not five): the rating
    page of their request, with no score chosen; None for other choices."""
    rated = [parse_action(a) for a in actions]
    requests = {r[0] for r in rated if r is not None}
    if not actions or None in rated or len(requests) != 1:
        return None
    return feedback_url(ctx, requests.pop())


def action_url(ctx: AppContext, action: str) -> str:
    """The page a mail links to for a button's action: a score or an order's choice."""
    rated = parse_action(action)
    if rated is not None:
        return feedback_url(ctx, *rated)
    return choice_url(ctx, action)
