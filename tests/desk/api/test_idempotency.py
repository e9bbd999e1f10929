"""``Idempotency-Key`` over HTTP: keys are kept per operation and caller, stored as sent, and
the keys of a database from before that survive the upgrade."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tortoise import Tortoise
from tortoise.migrations.api import migrate as run_migrations

from models import Appeal, IdempotencyRecord, Order, db
from tests.conftest import API_TOKEN, Desk

APPEAL = {"name": "Ирина", "email": "irina@example.com", "text": "Где мой заказ 1001?"}
SHOP_TOKEN = "shop-Rk8vQ2xN5mLw7TzJc3Hd"


def order(external_id: str, stage: str = "new") -> dict[str, Any]:
    return {
        "external_id": external_id,
        "stage": stage,
        "customer": {"name": "Марина", "email": "marina@example.com"},
    }


async def test_a_strangers_appeal_key_neither_blocks_nor_reveals_a_shops_order_key(
    desk: Desk,
) -> None:
    key = {"Idempotency-Key": "order:shop-1001"}
    status, body = await desk.post("/api/v1/appeals", APPEAL, auth=False, headers=key)
    assert status == 201, body
    status, body = await desk.post(
        "/api/v1/orders", order("1001"), headers={"Idempotency-Key": "shop-1001"}
    )
    assert status == 201, body
    # The other way round: a key the shop used tells a stranger nothing.
    status, body = await desk.post(
        "/api/v1/orders/1001/stage", {"stage": "shipped"}, headers={"Idempotency-Key": "k-77"}
    )
    assert status == 200, body
    status, body = await desk.post(
        "/api/v1/appeals",
        {**APPEAL, "text": "другое"},
        auth=False,
        headers={"Idempotency-Key": "k-77"},
    )
    assert status == 201, body
    assert await Appeal.all().count() == 2
    assert (await Order.get(external_id="1001")).stage == "shipped"


async def test_two_api_callers_each_have_their_own_keys(start_desk: Callable[..., Any]) -> None:
    tokens = [
        {"name": "tests", "token": API_TOKEN, "role": "supervisor"},
        {"name": "shop", "token": SHOP_TOKEN, "role": "supervisor"},
    ]
    desk: Desk = await start_desk(api={"tokens": tokens})
    key = {"Idempotency-Key": "nightly-sync-1"}
    status, _ = await desk.post("/api/v1/orders", order("2001"), headers=key)
    assert status == 201
    shop = {"Authorization": f"Bearer {SHOP_TOKEN}", **key}
    async with desk.http.post(desk.base + "/api/v1/orders", json=order("2002"), headers=shop) as r:
        assert r.status == 201, await r.text()
    # Within one caller the key still holds: the same body again changes nothing, another is
    # refused.
    status, _ = await desk.post("/api/v1/orders", order("2001"), headers=key)
    assert status == 200
    status, body = await desk.post("/api/v1/orders", order("2003"), headers=key)
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
    assert sorted(await Order.all().values_list("external_id", flat=True)) == ["2001", "2002"]


def without_link(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "status_url"}


@pytest.mark.parametrize(
    ("path", "body", "auth", "ok"),
    [
        ("/api/v1/appeals", APPEAL, False, 201),
        ("/api/v1/orders", order("3001"), True, 201),
        ("/api/v1/orders/3000/stage", {"stage": "shipped"}, True, 200),
    ],
)
async def test_keys_up_to_the_documented_length_work_and_longer_ones_get_a_clear_422(
    desk: Desk, path: str, body: dict[str, Any], auth: bool, ok: int
) -> None:
    assert (await desk.post("/api/v1/orders", order("3000")))[0] == 201
    longest = "k" * 200
    status, answer = await desk.post(path, body, auth=auth, headers={"Idempotency-Key": longest})
    assert status == ok, answer
    status, again = await desk.post(path, body, auth=auth, headers={"Idempotency-Key": longest})
    assert status in (200, 201)
    # The same answer; an appeal's status link is signed afresh (its expiry is counted from now,
    # so a second later it is another link to the same appeal).
    assert without_link(again) == without_link(answer)
    assert ("status_url" in again) == ("status_url" in answer)
    status, answer = await desk.post(path, body, auth=auth, headers={"Idempotency-Key": "k" * 201})
    assert status == 422
    assert answer["error"]["message"] == "invalid request: Idempotency-Key: at most 200 characters"
    assert answer["error"]["fields"] == [
        {"field": "Idempotency-Key", "message": "at most 200 characters"}
    ]
    assert await IdempotencyRecord.filter(key=longest).count() == 1


async def test_keys_stored_before_the_upgrade_keep_their_operation(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite://{path}"
    config = db.tortoise_config(url, command_timeout=None)
    await run_migrations(config=config, target="models.0010_report_days")
    await Tortoise.close_connections()
    receipt = "w-" + "0" * 32
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO idempotency_key (key, fingerprint, external_id, created_at) "
            "VALUES (?, ?, ?, '2026-01-01 00:00:00+00:00')",
            [
                ("form-77", "f1", receipt),
                ("order:shop-1001", "f2", "w-" + "1" * 32),  # a stranger's appeal key
                ("order:k-1", "f3", "1001"),
                ("order-stage:k-2", "f4", "1001"),
            ],
        )
    await db.migrate(url)
    await db.connect(url)
    try:
        rows = await IdempotencyRecord.all().order_by("fingerprint")
        assert [(r.operation, r.caller, r.key, r.external_id) for r in rows] == [
            ("appeal", "anonymous", "form-77", receipt),
            ("appeal", "anonymous", "order:shop-1001", "w-" + "1" * 32),
            ("order", "legacy", "k-1", "1001"),
            ("order-stage", "legacy", "k-2", "1001"),
        ]
    finally:
        await Tortoise.close_connections()
