"""Appeals the staff take down for a customer who phoned or came to the office (seed 000,
«Принять обращение»): written to the appeal stream like any customer message, so intake finds
or creates the customer, numbers, routes and acknowledges it as it does every appeal.

Also the half-typed ``/new`` dialogue of an agent in the staff group, kept in the database so
any process (and a restart) continues it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

from channels.taken import TakenAppeal, new_taken_id, taken_inbound
from desk.appeals.idempotency import RequestKey, claim
from desk.context import AppContext
from desk.features.webdesk import WAIT_S, appeal_for_receipt, wait_for_receipt
from models import KeyValue

DRAFT_TTL = timedelta(minutes=30)  # a dialogue left alone this long is forgotten
_DRAFT_KEY = "staff.new_appeal.{}"


@dataclass(frozen=True, slots=True)
class Taken:
    """An appeal taken down and written to the stream; ``number`` is set when it was
    registered in time (else it is being registered and appears shortly)."""

    external_id: str
    number: str | None
    status: str
    customer_id: int | None


async def take_appeal(
    ctx: AppContext,
    form: TakenAppeal,
    *,
    external_id: str | None = None,
    idempotency_key: RequestKey | None = None,
) -> Taken:
    """Write the taken appeal to the stream (durable before we answer) and wait briefly for its
    number. A text intake could never store raises ``InvalidInput``. ``external_id`` makes a
    repeated call one appeal (a Telegram update delivered twice); so does the same
    ``Idempotency-Key`` with the same request."""
    external_id = external_id or new_taken_id()
    if idempotency_key is not None:
        external_id, _ = await claim("taken_appeal", idempotency_key, asdict(form), external_id)
        appeal = await appeal_for_receipt(external_id, form.channel)
        if appeal is not None:
            return Taken(external_id, appeal.number, appeal.status.value, appeal.customer_id)
    inbound = taken_inbound(form, external_id)
    ctx.lifecycle.check(inbound)  # over the configured text limit: InvalidInput, not a 202
    await ctx.stream.publish(inbound)
    appeal = await wait_for_receipt(external_id, WAIT_S, form.channel)
    if appeal is None:
        return Taken(external_id, None, "registering", None)
    return Taken(external_id, appeal.number, appeal.status.value, appeal.customer_id)


# -- the /new dialogue ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Draft:
    """What an agent has told the ``/new`` dialogue so far, and what it asks next."""

    step: str  # name | contact | text
    channel: str = "phone"
    name: str = ""
    email: str | None = None
    phone: str | None = None
    until: datetime | None = field(default=None, compare=False)

    def to_value(self) -> str:
        data = asdict(self)
        data["until"] = self.until.isoformat() if self.until is not None else None
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_value(cls, value: str) -> Draft | None:
        try:
            data = json.loads(value)
            until = data.pop("until", None)
            return cls(**data, until=datetime.fromisoformat(until) if until else None)
        except (ValueError, TypeError):
            return None


async def save_draft(agent_id: int, draft: Draft, now: datetime) -> None:
    """Keep the agent's dialogue for ``DRAFT_TTL`` from ``now``."""
    kept = replace(draft, until=now + DRAFT_TTL)
    await KeyValue.update_or_create(
        key=_DRAFT_KEY.format(agent_id), defaults={"value": kept.to_value()}
    )


async def draft_of(agent_id: int, now: datetime) -> Draft | None:
    """The agent's ``/new`` dialogue in progress (one left too long is forgotten)."""
    row = await KeyValue.get_or_none(key=_DRAFT_KEY.format(agent_id))
    if row is None:
        return None
    draft = Draft.from_value(row.value)
    if draft is None or draft.until is None or draft.until < now:
        await forget_draft(agent_id)
        return None
    return draft


async def forget_draft(agent_id: int) -> bool:
    """End the agent's ``/new`` dialogue; whether there was one."""
    return bool(await KeyValue.filter(key=_DRAFT_KEY.format(agent_id)).delete())
