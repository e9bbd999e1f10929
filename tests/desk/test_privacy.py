"""A customer's data on request: ``appeal-desk export`` gives everything the desk holds about
them, ``appeal-desk forget`` erases it and leaves the figures of the reports as they were."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from tortoise import Tortoise

from bench.fakes.telegram import FakeTelegram
from models import Appeal, ContactPoint, Customer, Event, Message, Rating, StoredFile, Task
from tests import ROOT
from tests.channels.test_email_channel import customer_mail
from tests.cli import run_cli
from tests.conftest import API_TOKEN, PG_URL, Desk
from tests.desk.test_ratings_flow import (
    NOON,
    RunningClock,
    buttons_of,
    desk_settings,
    rating_request_in,
    resolve,
)
from tests.fakes.mailserver import MailAccount, SmtpCapture, email_settings
from tests.telegram_world import AGENT_ID, STAFF_CHAT, eventually, open_appeal, texts_in

CHAT = 770011223
NAME = "Павел Сидоров"
EMAIL = "pavel.sidorov@example.com"
PHONE = "+79161234567"
FIRST_TEXT = "Не могу оплатить заказ картой Сбербанка"
MAIL_TEXT = "Прошу вернуть деньги за заказ, квитанция во вложении"
RECEIPT = "квитанция-сидоров.pdf"
REPLY = "Павел, проверим платёж и вернёмся"
COMMENT = "Оплата не проходила три дня подряд"
NOTE = "Курьеру: домофон 45, код 1980"
# What must be gone after forget, wherever it was written.
SECRETS = (
    "Сидоров",
    EMAIL,
    PHONE,
    "9161234567",
    str(CHAT),
    "Сбербанка",
    "квитанция во вложении",
    "квитанция-сидоров",
    "проверим платёж",
    "три дня подряд",
    "домофон 45",
)
PERIOD = "?from=2026-11-20&to=2026-11-26"


def cli(db_url: str, *args: str, stdin: str = "") -> Any:
    """``appeal-desk …`` in its own process, on the desk's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    env.update(PYTHONPATH=str(ROOT), DESK_DATABASE_URL=db_url)
    return asyncio.to_thread(run_cli, *args, env=env, cwd=ROOT, stdin=stdin)


def receipt_mail() -> EmailMessage:
    mail = customer_mail(MAIL_TEXT, subject="Возврат Сидоров", sender=f"{NAME} <{EMAIL}>")
    mail.add_attachment(
        "Квитанция № 4521, плательщик Сидоров П.".encode(),
        maintype="application",
        subtype="pdf",
        filename=RECEIPT,
    )
    return mail


async def build_customer(desk: Desk, fake: FakeTelegram, mailbox: MailAccount) -> Appeal:
    """An order, a Telegram appeal answered and rated 2 with a comment (so a call task), and
    a mail with a file: all one customer."""
    fake.add_private_chat(CHAT, "Павел")  # the shop knows a chat the customer opened
    order = {
        "external_id": "7001",
        "stage": "new",
        "amount": "1500.00",
        "customer": {"name": NAME, "telegram_id": CHAT, "email": EMAIL, "phone": PHONE},
    }
    assert (await desk.post("/api/v1/orders", order))[0] == 201
    assert (await desk.post("/api/v1/orders/7001/stage", {"stage": "shipped", "note": NOTE}))[
        0
    ] == 200
    appeal = await open_appeal(fake, CHAT, FIRST_TEXT, name="Павел")
    fake.group_message(STAFF_CHAT, AGENT_ID, REPLY, int(appeal.staff_thread))
    await eventually(lambda: any(REPLY in t for t in texts_in(fake, CHAT)), what="the reply")
    await resolve(desk, appeal)
    request = await rating_request_in(fake, CHAT)
    fake.callback(CHAT, CHAT, request.message_id, buttons_of(request)[1]["callback_data"])
    await eventually(lambda: Rating.filter(appeal_id=appeal.id).exists())
    await eventually(
        lambda: any(
            "Пропустить" in json.dumps(m.reply_markup or {}, ensure_ascii=False)
            for m in fake.sent_to(CHAT)
        )
    )
    fake.user_message(CHAT, COMMENT)
    await eventually(lambda: Rating.filter(appeal_id=appeal.id, comment=COMMENT).exists())
    await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").exists())
    await mailbox.deliver(receipt_mail())
    await eventually(
        lambda: Message.filter(text__contains="квитанция во вложении").exists(), timeout=15
    )
    return appeal


async def leftovers() -> list[str]:
    """Every table's text, JSON and binary columns searched for the customer's data."""
    conn = Tortoise.get_connection("default")
    found: list[str] = []
    for model in Tortoise.apps["models"].values():
        table = model._meta.db_table
        for row in await conn.execute_query_dict(f'SELECT * FROM "{table}"'):  # noqa: S608
            for column, value in row.items():
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if not isinstance(value, str):
                    continue
                with contextlib.suppress(ValueError):  # JSON may hold Cyrillic as \\u escapes
                    value += json.dumps(json.loads(value), ensure_ascii=False)
                found += [f"{table}.{column} #{row.get('id')}: {s}" for s in SECRETS if s in value]
    return found


async def test_export_has_everything_and_forget_leaves_no_trace_nor_changes_the_figures(
    fake: FakeTelegram,
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
    start_desk: Callable[..., Any],
    db_url: str,
    tmp_path: Path,
) -> None:
    desk: Desk = await start_desk(
        clock=RunningClock(NOON), **desk_settings(fake), email=email_settings(mailbox, smtp_capture)
    )
    appeal = await build_customer(desk, fake, mailbox)
    customer_id = appeal.customer_id
    appeals = await Appeal.filter(customer_id=customer_id).count()
    files = [
        a["ref"]
        for m in await Message.filter(appeal__customer_id=customer_id)
        for a in m.attachments
        if a["ref"].startswith("file:")
    ]
    assert len(files) == 2  # the receipt and the original mail
    report = (await desk.get("/api/v1/reports/ratings" + PERIOD))[1]
    listing = (await desk.get("/api/v1/appeals?per_page=200"))[1]

    # Export: by the Telegram chat, into a file.
    out = tmp_path / "export.json"
    done = await cli(db_url, "export", "--customer", f"telegram:{CHAT}", "--out", str(out))
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert (data["format"], data["version"]) == ("appeal-desk/customer-export", 1)
    assert data["customer"]["id"] == customer_id and data["customer"]["name"] == NAME
    datetime.fromisoformat(data["customer"]["created_at"])
    assert {(p["channel"], p["address"]) for p in data["contact_points"]} == {
        ("telegram", str(CHAT)),
        ("email", EMAIL),
        ("phone", PHONE),
    }
    assert data["consents"] == {"do_not_contact": False, "unreachable": []}
    texts = [m["text"] for a in data["appeals"] for m in a["messages"]]
    assert FIRST_TEXT in texts and REPLY in texts and any(MAIL_TEXT in t for t in texts)
    attachments = [x for a in data["appeals"] for m in a["messages"] for x in m["attachments"]]
    receipt = next(x for x in attachments if x["name"] == RECEIPT)
    assert receipt["stored_file"]["name"] == RECEIPT and receipt["stored_file"]["size"] > 0
    kinds = {e["kind"] for a in data["appeals"] for e in a["events"]}
    assert {"appeal.created", "message.received", "rating.received"} <= kinds
    assert {e["kind"] for e in data["events"]} >= {"order.created", "order.stage_changed"}
    [order] = data["orders"]
    assert order["amount"] == "1500.00" and NOTE in json.dumps(order, ensure_ascii=False)
    assert [(r["score"], r["comment"]) for r in data["ratings"]] == [(2, COMMENT)]
    assert data["rating_requests"] and data["tasks"]
    assert any("Павел" in t["text"] for t in data["tasks"])
    assert any(REPLY in json.dumps(d["payload"], ensure_ascii=False) for d in data["deliveries"])
    # The same document on stdout, found by the email.
    printed = await cli(db_url, "export", "--customer", EMAIL.upper())
    assert json.loads(printed.stdout)["customer"]["id"] == customer_id

    # Forget: asks first; anything but "forget" changes nothing.
    refused = await cli(db_url, "forget", "--customer", str(customer_id), stdin="yes\n")
    assert refused.returncode == 1 and "nothing was changed" in refused.stdout
    assert NAME in refused.stdout  # the operator sees whom they are about to forget
    assert (await Customer.get(id=customer_id)).name == NAME
    done = await cli(db_url, "forget", "--customer", f"phone:{PHONE}", stdin="forget\n")
    assert done.returncode == 0, done.stderr
    assert f"customer {customer_id} forgotten" in done.stdout

    assert await leftovers() == []
    assert not await StoredFile.filter(id__in=[int(f[5:]) for f in files]).exists()
    assert not await ContactPoint.filter(customer_id=customer_id).exists()
    assert (await Customer.get(id=customer_id)).do_not_contact
    appeals = await Appeal.filter(customer_id=customer_id).count()
    assert await Message.filter(appeal__customer_id=customer_id).count() == len(texts)
    forgotten = await Event.get(customer_id=customer_id, kind="customer.forgotten")
    assert forgotten.actor == "cli" and forgotten.data["appeals"] == appeals
    assert (await desk.get("/api/v1/reports/ratings" + PERIOD))[1] == report
    after = (await desk.get("/api/v1/appeals?per_page=200"))[1]
    assert [(a["number"], a["status"], a["category"]) for a in after["items"]] == [
        (a["number"], a["status"], a["category"]) for a in listing["items"]
    ]

    # Again: nothing left to do. An unknown reference is a clear error.
    again = await cli(db_url, "forget", "--customer", str(customer_id), "--yes")
    assert again.returncode == 0 and "forgotten before" in again.stdout
    assert await Event.filter(kind="customer.forgotten").count() == 1
    unknown = await cli(db_url, "export", "--customer", f"telegram:{CHAT}")
    assert unknown.returncode == 1 and "no customer matches" in unknown.stderr

    # Writing again, they are a new customer.
    fake.user_message(CHAT, "Здравствуйте, это снова я")
    point = await eventually(
        lambda: ContactPoint.filter(channel="telegram", address=str(CHAT)).first()
    )
    assert point.customer_id != customer_id


BOSS_TOKEN = "boss-i7-d1nMl_NQIaDZAZ8shc1oZPDD9"


async def test_managers_export_and_forget_over_http_and_a_shared_file_stays_for_the_other(
    start_desk: Callable[..., Any],
) -> None:
    tokens = [
        {"name": "tests", "token": API_TOKEN, "role": "supervisor"},
        {"name": "boss", "token": BOSS_TOKEN, "role": "manager"},
    ]
    desk: Desk = await start_desk(api={"tokens": tokens})
    boss = {"Authorization": f"Bearer {BOSS_TOKEN}"}
    for name, email in (("Анна Лебедева", "anna.l@example.com"), ("Борис", "boris@example.com")):
        body = {"name": name, "email": email, "text": f"Счёт для {name} не открывается"}
        assert (await desk.post("/api/v1/appeals", body, auth=False))[0] == 201
    # The same file (stored once, by its hash) came from both customers.
    shared = await StoredFile.keep(b"%PDF price list", name="price.pdf", mime="application/pdf")
    attachment = {"kind": "document", "ref": shared.ref, "name": "price.pdf", "size": 15}
    await Message.all().update(attachments=[attachment])
    anna = await Customer.get(name="Анна Лебедева")

    status, refused = await desk.get("/api/v1/customers/anna.l@example.com/export")
    assert status == 403 and refused["error"]["code"] == "forbidden"
    for digits in ("²", "9" * 5000):  # digits to str.isdigit, but no customer's id
        async with desk.http.get(
            f"{desk.base}/api/v1/customers/{digits}/export", headers=boss
        ) as resp:
            assert resp.status == 404, await resp.text()
    async with desk.http.get(
        desk.base + "/api/v1/customers/anna.l@example.com/export", headers=boss
    ) as resp:
        assert resp.status == 200
        document = await resp.json()
    assert document["customer"]["id"] == anna.id
    [appeal] = document["appeals"]
    [message] = appeal["messages"]
    assert message["attachments"][0]["stored_file"]["name"] == "price.pdf"

    async def forget(ref: str) -> tuple[int, Any]:
        url = f"{desk.base}/api/v1/customers/{ref}/forget"
        async with desk.http.post(url, headers=boss) as resp:
            return resp.status, await resp.json()

    status, done = await forget(str(anna.id))
    assert status == 200, done
    assert done == {
        "customer_id": anna.id,
        "appeals": 1,
        "messages": 1,
        "contact_points": 1,
        "files_deleted": 0,  # Борис's message still shows it
        "already": False,
    }
    assert await StoredFile.exists(id=shared.id)
    assert (await forget(str(anna.id)))[1]["already"] is True
    assert (await forget("anna.l@example.com"))[0] == 404
    status, done = await forget("boris@example.com")
    assert done["files_deleted"] == 1 and not await StoredFile.exists(id=shared.id)
    event = await Event.get(customer_id=anna.id, kind="customer.forgotten")
    assert event.actor == "api:boss" and "Анна" not in json.dumps(event.data, ensure_ascii=False)


@pytest.mark.skipif(PG_URL is not None, reason="reads SQLite's files")
async def test_forget_leaves_nothing_in_the_sqlite_files_and_the_status_link_says_so(
    start_desk: Callable[..., Any], db_url: str
) -> None:
    tokens = [
        {"name": "tests", "token": API_TOKEN, "role": "supervisor"},
        {"name": "boss", "token": BOSS_TOKEN, "role": "manager"},
    ]
    desk: Desk = await start_desk(api={"tokens": tokens})
    needles = ["ZQ-58213-KX", "Ольховская", "olga.olh@example.com"]
    appeal = {
        "name": "Ольга Ольховская",
        "email": "olga.olh@example.com",
        "text": "Договор ZQ-58213-KX: прошу вернуть предоплату за кухню",
    }
    status, body = await desk.post("/api/v1/appeals", appeal, auth=False)
    assert status == 201
    link = body["status_url"]
    async with desk.http.get(link) as resp:
        assert resp.status == 200 and "ZQ-58213-KX" in await resp.text()

    boss = {"Authorization": f"Bearer {BOSS_TOKEN}"}
    url = f"{desk.base}/api/v1/customers/olga.olh@example.com/forget"
    async with desk.http.post(url, headers=boss) as resp:
        assert resp.status == 200

    database = Path(db_url.removeprefix("sqlite://").partition("?")[0])
    for path in (database, database.with_name(database.name + "-wal")):
        data = path.read_bytes() if path.exists() else b""
        for needle in needles:
            assert needle.encode() not in data, (path.name, needle)

    async with desk.http.get(link, headers={"Accept-Language": "ru"}) as resp:
        page = await resp.text()
        assert resp.status == 410
    assert "Ваши данные удалены" in page and "егистрируется" not in page
    assert not any(needle in page for needle in needles)
    async with desk.http.get(link + "?lang=en") as resp:
        assert resp.status == 410 and "Your data has been erased" in await resp.text()
    async with desk.http.post(link + "/reply", data={"text": "ещё вопрос"}) as resp:
        assert resp.status == 410
