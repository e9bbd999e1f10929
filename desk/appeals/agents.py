"""Agents from the config are kept in the database, where appeals and history refer to them."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from desk.config.settings import AgentConfig
from models import Agent, AgentRole, KeyValue

log = logging.getLogger(__name__)

REFUSAL_PAUSE = timedelta(minutes=10)  # one refusal per stranger in this time


async def sync_agents(configured: list[AgentConfig]) -> int:
    """Create or update every configured agent (by Telegram id, else by name); returns the count.

    Agents that are no longer in the config are left alone: they may have joined through the
    staff group, and their past appeals keep their names.
    """
    for entry in configured:
        if entry.telegram_id is not None:
            agent = await Agent.filter(telegram_id=entry.telegram_id).first()
        else:
            agent = await Agent.filter(name=entry.name, telegram_id__isnull=True).first()
        values: dict[str, Any] = {
            "name": entry.name,
            "role": entry.role,
            "teams": list(entry.teams),
            "capacity": entry.capacity,
            "active": True,
        }
        if agent is None:
            await Agent.create(telegram_id=entry.telegram_id, **values)
        else:
            await Agent.filter(id=agent.id).update(**values)
    log.info("agents synced", extra={"count": len(configured)})
    return len(configured)


async def active_agent(telegram_id: int) -> Agent | None:
    """The registered, active agent with this Telegram id."""
    return await Agent.filter(telegram_id=telegram_id, active=True).first()


async def agent_by_id(agent_id: int | None) -> Agent | None:
    """The agent with this database id (None for None, or when there is none)."""
    return await Agent.get_or_none(id=agent_id) if agent_id is not None else None


def _join_key(telegram_id: int) -> str:
    return f"telegram.join.{telegram_id}"


async def ask_to_join(telegram_id: int, name: str) -> None:
    """Someone asked for access (/join): kept until a supervisor answers."""
    await KeyValue.update_or_create(key=_join_key(telegram_id), defaults={"value": name[:200]})


async def answer_join(telegram_id: int, *, approve: bool) -> str | None:
    """A supervisor's answer to a join request: approved, the person is an active agent (made,
    or made active again). The name they asked under; None when no request waits."""
    request = await KeyValue.get_or_none(key=_join_key(telegram_id))
    if request is None:
        return None
    if approve:
        existing = await Agent.filter(telegram_id=telegram_id).first()
        if existing is None:
            await Agent.create(telegram_id=telegram_id, name=request.value, role=AgentRole.AGENT)
        else:
            await Agent.filter(id=existing.id).update(active=True)
    await request.delete()
    return request.value


async def colleagues_on_duty(agent: Agent, limit: int) -> list[Agent]:
    """The other active agents on duty, by name (whom an appeal may be handed to)."""
    return list(
        await Agent.filter(active=True, on_duty=True)
        .exclude(id=agent.id)
        .order_by("name")
        .limit(limit)
    )


async def may_refuse(user_id: int, now: datetime, scope: str = "refused") -> bool:
    """One refusal per stranger per ``REFUSAL_PAUSE`` (and ``scope``): a chatty guest must not
    spend the group's message budget."""
    key = f"telegram.{scope}.{user_id}"
    last = await KeyValue.get_or_none(key=key)
    if last is not None and now - datetime.fromisoformat(last.value) < REFUSAL_PAUSE:
        return False
    await KeyValue.update_or_create(key=key, defaults={"value": now.isoformat()})
    return True
