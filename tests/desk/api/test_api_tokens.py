"""Staff API tokens: expiry, revocation, when each was last used, and what the first-start
token may do."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from desk.config.keys import create_token, revoke_token
from models import ApiToken
from tests.conftest import Desk
from tests.telegram_world import MovableClock

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def list_status(desk: Desk, token: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with desk.http.get(desk.base + "/api/v1/appeals", headers=headers) as resp:
        return resp.status, await resp.json()


async def test_an_expired_or_revoked_token_gets_401_like_an_unknown_one(
    start_desk: Callable[..., Any],
) -> None:
    clock = MovableClock(START)
    desk: Desk = await start_desk(clock=clock)
    crm = await create_token("crm", "agent", expires_at=START + timedelta(days=90))
    shop = await create_token("shop", "agent")
    assert (await list_status(desk, crm))[0] == 200
    assert (await list_status(desk, shop))[0] == 200

    clock.now = START + timedelta(days=90)
    status, body = await list_status(desk, crm)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert await list_status(desk, shop + "x") == (status, body)  # told apart from no other

    assert await revoke_token("shop") == "shop"
    assert await list_status(desk, shop) == (status, body)
    assert await revoke_token("shop") is None


async def test_last_used_at_is_written_at_most_once_a_minute(
    start_desk: Callable[..., Any],
) -> None:
    clock = MovableClock(START)
    desk: Desk = await start_desk(clock=clock)
    token = await create_token("crm", "agent")
    assert (await ApiToken.get(name="crm")).last_used_at is None

    for _ in range(5):
        assert (await list_status(desk, token))[0] == 200
    assert (await ApiToken.get(name="crm")).last_used_at == START

    clock.now = START + timedelta(seconds=59)
    assert (await list_status(desk, token))[0] == 200
    assert (await ApiToken.get(name="crm")).last_used_at == START  # no write per request

    clock.now = START + timedelta(minutes=1)
    assert (await list_status(desk, token))[0] == 200
    assert (await ApiToken.get(name="crm")).last_used_at == START + timedelta(minutes=1)


async def test_the_first_start_token_works_but_may_not_export_or_forget(
    start_desk: Callable[..., Any],
) -> None:
    desk: Desk = await start_desk(api={"tokens": []})
    [token] = re.findall(r"api token (desk_\S+)", desk.out.getvalue())
    body = {"name": "Анна", "email": "anna@example.com", "text": "Где мой заказ?"}
    assert (await desk.post("/api/v1/appeals", body, auth=False))[0] == 201
    assert (await list_status(desk, token))[0] == 200

    headers = {"Authorization": f"Bearer {token}"}
    path = desk.base + "/api/v1/customers/anna@example.com"
    async with desk.http.get(path + "/export", headers=headers) as resp:
        assert resp.status == 403
        assert "manager" in (await resp.json())["error"]["message"]
    async with desk.http.post(path + "/forget", headers=headers) as resp:
        assert resp.status == 403
