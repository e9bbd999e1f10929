"""Agents from the config are kept in the database, where appeals and history refer to them."""

from __future__ import annotations

import logging
from typing import Any

from desk.config.settings import AgentConfig
from models import Agent

log = logging.getLogger(__name__)


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
