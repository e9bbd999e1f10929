"""Hostile input end to end, through the running desk and the fakes: forged webhook calls and
tokens, forged buttons and commands, markup in customer text, oversized bodies, path tricks in
file names, SQL-like text in filters. Each is refused or kept as plain text, nothing changes that
should not, and the desk keeps working."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from bench.fakes.telegram import FakeTelegram
from desk.config.signing import Signer
from desk.features.webdesk import FEEDBACK_PURPOSE
from models import Appeal, AppealStatus, Customer, Event, Message, Rating, StoredFile, Task
from tests.channels.test_email_channel import customer_mail
from tests.channels.test_vk_channel import CALLBACK_SECRET, vk_settings
from tests.conftest import Desk, free_port
from tests.desk.api.test_api import APPEAL, send_appeal
from tests.desk.test_ratings_flow import (
    NOON,
    RunningClock,
    buttons_of,
    rating_request_in,
    resolve,
    toasts,
)
from tests.fakes.mailserver import MailAccount, SmtpCapture, email_settings
from tests.fakes.vk import FakeVk
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    STRANGER_ID,
    SUPERVISOR_ID,
    WEBHOOK_SECRET,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)

SECRET = WEBHOOK_SECRET
OTHER_GROUP = -1005550001
SQL_LIKE = ["' OR 1=1 --", "%", "_", "\\", "%' OR '1'='1", "a%b_c\\d", '"; DROP TABLE appeal; --']


@pytest.fixture
def fake(fake: FakeTelegram) -> FakeTelegram:
    fake.add_group(OTHER_GROUP, "Флудилка", forum=False, members=[AGENT_ID, STRANGER_ID])
    return fake


@pytest.fixture
async def tdesk(fake: FakeTelegram, start_desk: Callable[..., Any]) -> Desk:
    # Midday: automatic messages (the rating request) are outside quiet hours whenever this runs.
    desk: Desk = await start_desk(clock=RunningClock(NOON), **telegram_settings(fake))
    return desk


# -- webhooks ---------------------------------------------------------------------------------


async def test_forged_and_malformed_telegram_webhook_calls_store_nothing(
    fake: FakeTelegram, start_desk: Callable[..., Any]
) -> None:
    port = free_port()
    desk: Desk = await start_desk(
        **telegram_settings(fake, telegram={"mode": "webhook", "webhook_secret": SECRET}),
        http={"host": "127.0.0.1", "port": port, "max_body_bytes": 64 * 1024},
        public_url=f"http://127.0.0.1:{port}",
    )
    fake.add_private_chat(720, "Вика")
    update = fake.user_message(720, "Настоящее сообщение")  # delivered by the fake itself
    forged_update = json.loads(json.dumps(update))
    forged_update["update_id"] += 1000
    forged_update["message"]["text"] = "Поддельное"
    url = f"{desk.base}/telegram/webhook"
    async with aiohttp.ClientSession() as http:
        for forged in [SECRET[:-1], SECRET + "x", SECRET.upper(), "", "x" * 300]:
            async with http.post(
                url, json=forged_update, headers={"X-Telegram-Bot-Api-Secret-Token": forged}
            ) as resp:
                assert resp.status == 401, forged
        good = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        for body in [b"[]", b"null", b'{"update_id": "x"}', b"[" * 50_000, b"\xff\xfe\x00"]:
            async with http.post(url, data=body, headers=good) as resp:
                assert resp.status == 400, body[:20]
        huge = json.dumps({**forged_update, "padding": "x" * 100_000}).encode()
        async with http.post(url, data=huge, headers=good) as resp:
            assert resp.status == 413
    await eventually(lambda: Message.filter(text="Настоящее сообщение").exists())
    fake.redeliver(update)  # Telegram again, with the right secret: stored once
    await eventually(lambda: len(fake.webhook_attempts) >= 2)
    assert [m.text for m in await Message.all()] == ["Настоящее сообщение"]


async def test_vk_callback_without_the_secret_or_malformed_keeps_nothing_and_never_fails(
    fake: FakeTelegram, start_desk: Callable[..., Any], tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    async with FakeVk() as vk:
        desk: Desk = await start_desk(
            **telegram_settings(fake),
            vk=vk_settings(
                vk, mode="callback", secret=CALLBACK_SECRET, confirmation=vk.confirmation_code
            ),
            http={"host": "127.0.0.1", "port": port, "max_body_bytes": 64 * 1024},
            public_url=f"http://127.0.0.1:{port}",
        )
        url = f"{desk.base}/vk/callback"
        message = {"id": 1, "peer_id": 730, "from_id": 730, "text": "чужое", "date": 1}
        update = {"type": "message_new", "group_id": vk.group_id, "object": {"message": message}}
        async with aiohttp.ClientSession() as http:
            near = [CALLBACK_SECRET[:-1], CALLBACK_SECRET.upper(), [CALLBACK_SECRET]]
            for secret in [None, "", 0, *near]:
                forged = {**update, **({} if secret is None else {"secret": secret})}
                async with http.post(url, data=json.dumps(forged)) as resp:
                    assert resp.status == 403, secret
            wrong_group = {"type": "confirmation", "group_id": vk.group_id + 1}
            async with http.post(url, json=wrong_group) as resp:
                assert resp.status == 403 and vk.confirmation_code not in await resp.text()
            assert not await Message.exists()
            signed = {"secret": CALLBACK_SECRET, "group_id": vk.group_id}

            def new(**fields: Any) -> dict[str, Any]:
                return {"type": "message_new", "object": {"message": {**message, **fields}}}

            malformed: list[Any] = [
                {"type": "message_new", "object": []},
                {"type": "message_new", "object": {"message": "text"}},
                new(peer_id="x", text="no peer"),
                new(id=None, text="no id"),
                new(id=2, text="junk out", out="yes"),  # a message all the same: kept
                new(id=3, text="junk files", attachments=5),
                new(id=4, text="junk date", date=10**20),
                {"type": "message_new", "object": {"message": {"payload": '{"command":"start"}'}}},
                {"type": "message_event", "object": {"peer_id": [], "payload": {"desk": "new"}}},
                {"type": ["message_new"], "object": {}},
                new(id=5, text="deep payload", payload="[" * 50_000),  # kept; no command
            ]
            for body in malformed:
                async with http.post(url, json={**body, **signed}) as resp:
                    assert resp.status == 200 and await resp.text() == "ok", body
            for raw in [b"[1]", b"{", b"\xff", b"[" * 50_000]:
                async with http.post(url, data=raw) as resp:
                    assert resp.status == 400
            async with http.post(url, data=b"{" + b" " * 100_000 + b"}") as resp:
                assert resp.status == 413
        kept = {"junk out", "junk files", "junk date", "deep payload"}
        await eventually(lambda: _count_is(Message.filter(text__in=kept), 4))
        assert set(await Message.all().values_list("text", flat=True)) == kept
        vk.add_user(731, "Инна")
        vk.set_callback(url, secret=CALLBACK_SECRET)
        sent = vk.user_message(731, "Честное сообщение")
        await eventually(lambda: Message.filter(text="Честное сообщение").exists(), timeout=10)
        vk.redeliver(sent)
        await vk.wait_callback_idle()
        assert await Message.filter(text="Честное сообщение").count() == 1


async def test_a_malformed_update_in_long_poll_does_not_stall_the_ones_after_it(
    fake: FakeTelegram, start_desk: Callable[..., Any], tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    async with FakeVk() as vk:
        await start_desk(**telegram_settings(fake), vk=vk_settings(vk))
        await eventually(lambda: vk.long_poll_requests, what="the desk polling VK")
        vk.add_user(732, "Глеб")
        vk.redeliver({"type": "message_new", "object": {"message": {"peer_id": "nope"}}})
        vk.redeliver({"type": "message_event", "object": "junk"})
        vk.user_message(732, "После мусора")
        await eventually(lambda: Message.filter(text="После мусора").exists(), timeout=10)


async def _count_is(query: Any, expected: int) -> bool:
    return bool(await query.count() == expected)


async def test_a_mail_that_is_no_mail_does_not_stall_the_mailbox(
    fake: FakeTelegram,
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
    start_desk: Callable[..., Any],
) -> None:
    await start_desk(**telegram_settings(fake), email=email_settings(mailbox, smtp_capture))
    await mailbox.deliver(b"no header at all, only words\n")
    await mailbox.deliver(b"\n\n\n")
    await mailbox.deliver(customer_mail("Письмо после мусора"))
    # A stalled mailbox never stores it; the wait covers a desk's start on a busy machine.
    await eventually(lambda: Message.filter(text="Письмо после мусора").exists(), timeout=40)
    assert await Message.all().count() == 1


# -- signed links -----------------------------------------------------------------------------


async def test_forged_links_of_every_shape_get_403_and_show_nothing(desk: Desk) -> None:
    body = await send_appeal(desk)
    ctx = desk.service.ctx
    assert ctx is not None
    token = body["status_url"].rsplit("/", 1)[1]
    payload, mac = token.split(".")
    other_key = Signer(b"someone else's key").sign(
        "status", body["receipt"], ctx.clock(), timedelta(days=1)
    )
    as_feedback = ctx.signer.sign(FEEDBACK_PURPOSE, body["receipt"], ctx.clock(), timedelta(1))
    forged = [
        f"{payload}.{mac[:-1]}é",  # non-ASCII in the signature
        f"{payload}.%00",
        f"{payload}.",
        payload,
        other_key,
        as_feedback,  # a genuine token for something else
        "x" * 5000 + "." + mac,
    ]
    async with aiohttp.ClientSession() as http:
        for bad in forged:
            for path in (f"/s/{bad}", f"/feedback/{bad}"):
                async with http.get(desk.base + path) as resp:
                    html = await resp.text()
                    assert resp.status in (403, 404), (path, resp.status)
                    assert "Где мой заказ" not in html and "Traceback" not in html
            async with http.post(desk.base + f"/s/{bad}/reply", data={"text": "влезу"}) as resp:
                assert resp.status in (403, 404)
    assert await Message.all().count() == 1


async def test_forged_and_replayed_rating_buttons_record_one_rating_only(
    fake: FakeTelegram, tdesk: Desk
) -> None:
    appeal = await open_appeal(fake, 740, "Верните деньги", name="Павел")
    await open_appeal(fake, 741, "Другой клиент", name="Пётр")
    await resolve(tdesk, appeal)
    request = await rating_request_in(fake, 740)
    real = buttons_of(request)[3]["callback_data"]  # 4 🙂
    request_id = real.split(":")[1]
    # Another customer presses the same button data under a message in their own chat.
    theirs = fake.sent_to(741)[-1].message_id
    for data in [real, f"rt:{request_id}:1", "rt:²:5", f"rt:{10**30}:5", "rt:1:99", "rt::"]:
        fake.callback(741, 741, theirs, data)
    await eventually(lambda: len(toasts(fake)) >= 6, what="every press answered")
    assert not await Rating.exists()
    # The customer's own press counts; pressing it again (a replay) changes nothing.
    fake.callback(740, 740, request.message_id, real)
    await eventually(lambda: Rating.filter(appeal_id=appeal.id).exists())
    fake.callback(740, 740, request.message_id, real)
    await eventually(lambda: len(toasts(fake)) >= 8, what="the replay answered")
    assert await Rating.filter(appeal_id=appeal.id).values_list("score", flat=True) == [4]
    assert await Event.filter(kind="rating.received").count() == 1


# -- staff commands and buttons ---------------------------------------------------------------


async def test_staff_commands_and_buttons_from_strangers_or_other_chats_change_nothing(
    fake: FakeTelegram, tdesk: Desk
) -> None:
    appeal = await open_appeal(fake, 750, "Где накладная?")
    thread = int(appeal.staff_thread)
    card = int(appeal.staff_card_ref)
    fake.group_message(STAFF_CHAT, STRANGER_ID, "/close", thread)
    fake.group_message(STAFF_CHAT, STRANGER_ID, "/assign Ирина", thread)
    for data in [f"ap:done:{appeal.id}", f"ap:imp:{appeal.id}", f"ap:take:{appeal.id}"]:
        fake.callback(STRANGER_ID, STAFF_CHAT, card, data)
    # An agent, but in another group and in the bot's private chat.
    fake.group_message(OTHER_GROUP, AGENT_ID, f"/close {appeal.number}")
    fake.user_message(AGENT_ID, f"/close {appeal.number}")
    # Forged button data from a real agent and a supervisor in the staff group.
    for data in ["ap:done:²", f"ap:done:{10**30}", "ap:done", "ap", "cat:", f"cat:{10**30}:x"]:
        fake.callback(AGENT_ID, STAFF_CHAT, card, data)
    for data in ["join:ok", "join:ok:x", f"join:ok:{10**30}", "join"]:
        fake.callback(SUPERVISOR_ID, STAFF_CHAT, card, data)
    await eventually(lambda: len(toasts(fake)) >= 13, what="every press answered")
    fresh = await Appeal.get(id=appeal.id)
    assert fresh.status is AppealStatus.OPEN and fresh.assignee_id == appeal.assignee_id
    assert "Важно" not in fresh.tags
    assert not any("/close" in t or "/assign" in t for t in texts_in(fake, 750))
    # The desk still works for the agent.
    fake.callback(AGENT_ID, STAFF_CHAT, card, f"ap:done:{appeal.id}")
    await eventually(lambda: Appeal.filter(id=appeal.id, status=AppealStatus.RESOLVED).exists())


# -- markup -----------------------------------------------------------------------------------

MARKUP = '<b>жирный</b> <a href="javascript:alert(1)">ссылка</a> *звёзды* _курсив_ `код` &amp;'


async def test_markup_in_customer_names_and_texts_reaches_staff_as_plain_text(
    fake: FakeTelegram, tdesk: Desk
) -> None:
    fake.add_private_chat(760, "<i>Хакер</i> &lt;")
    fake.user_message(760, MARKUP)
    appeal = await eventually(lambda: Appeal.filter(staff_card_ref__isnull=False).first())
    posts = [p for p in fake.sent_to(STAFF_CHAT) if p.parse_mode == "HTML"]
    relayed = [p for p in posts if p.message_thread_id == int(appeal.staff_thread)]
    assert relayed and all(p.parse_mode == "HTML" for p in relayed)
    # What staff see, rendered by Telegram's rules, is the customer's text itself ...
    shown = [p.message.get("text") or p.message.get("caption") or "" for p in posts]
    assert any(MARKUP in text for text in shown)
    assert any("<i>Хакер</i> &lt;" in text for text in shown)
    # ... because the bot sent it escaped, so none of it became a link or formatting.
    assert any("&lt;b&gt;жирный&lt;/b&gt; &lt;a href=" in (p.body or "") for p in relayed)
    for post in posts:
        for entity in post.message.get("entities", []):
            assert entity["type"] != "text_link"
            start, end = entity["offset"], entity["offset"] + entity["length"]
            assert "жирный" not in (post.message.get("text") or "")[start:end] or (
                entity["type"] == "italic"  # the card shows the first words in italics
            )


# -- sizes and names --------------------------------------------------------------------------


async def test_oversized_forms_are_refused_and_nothing_is_stored(
    start_desk: Callable[..., Any],
) -> None:
    port = free_port()
    desk: Desk = await start_desk(
        http={"host": "127.0.0.1", "port": port, "max_body_bytes": 65536},
        public_url=f"http://127.0.0.1:{port}",
    )
    form = {"name": "Олег", "phone": "+79990001122", "text": "x" * 200_000}
    async with desk.http.post(desk.base + "/appeal", data=form) as resp:
        assert resp.status == 413 and "Traceback" not in await resp.text()
    body = await send_appeal(desk)
    async with desk.http.post(body["status_url"] + "/reply", data={"text": "y" * 200_000}) as r:
        assert r.status == 413
    async with desk.http.post(
        desk.base + "/api/v1/appeals/A-000001/notes",
        data=b'{"text": "' + b"z" * 200_000 + b'"}',
        headers={**desk.auth, "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 413 and (await resp.json())["error"]["code"] == "too_large"
    async with desk.http.post(
        desk.base + "/api/v1/appeals/A-000001/notes",
        data=b"[" * 60_000,  # within the size limit, deeper than any parser follows
        headers={**desk.auth, "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400 and "nested" in (await resp.json())["error"]["message"]
    assert [m.text for m in await Message.all()] == [APPEAL["text"]]


async def test_nul_and_broken_unicode_in_forms_are_kept_as_storable_text(desk: Desk) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    raw = "name=Ни%00на&phone=%2B79990001122&text=Вопрос%00 про%FF заказ".encode()
    async with desk.http.post(
        desk.base + "/appeal", data=raw, headers=form, allow_redirects=False
    ) as resp:
        assert resp.status == 303
        status_url = desk.base + resp.headers["Location"].split("?", 1)[0]
    async with desk.http.post(
        status_url + "/reply", data="text=ещё%00 вопрос%C3".encode(), headers=form
    ) as resp:
        assert resp.status == 200
    async with desk.http.post(
        desk.base + "/api/v1/appeals",
        data=json.dumps({**APPEAL, "text": "API\x00 текст \udc80"}).encode(),
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 201
    texts = await Message.all().order_by("id").values_list("text", flat=True)
    assert texts == ["Вопрос про\ufffd заказ", "ещё вопрос\ufffd", "API текст \ufffd"]
    assert not any("\x00" in c.name for c in await Customer.all())


TRICKY_NAMES = {
    "../../etc/passwd": "passwd",
    "/etc/shadow": "shadow",
    "..\\..\\windows\\system32\\config\\SAM": "SAM",
    "C:\\Windows\\win.ini": "win.ini",
    "evil\x00.pdf.exe": "evil.pdf.exe",
    "..": "",
    "a" * 1000 + ".pdf": "a" * 251 + ".pdf",
}


async def test_path_tricks_in_file_names_stay_plain_names(fake: FakeTelegram, tdesk: Desk) -> None:
    fake.add_private_chat(770, "Файлов")
    for i, name in enumerate(TRICKY_NAMES):
        fake.user_message(770, document=f"файл {i}".encode(), file_name=name, caption=f"док {i}")
        await eventually(lambda i=i: Message.filter(text=f"док {i}").exists())
    messages = await Message.filter(text__startswith="док ").order_by("id")
    names = [m.attachments[0]["name"] for m in messages]
    assert names == list(TRICKY_NAMES.values())
    appeal = await Appeal.get(id=messages[0].appeal_id)
    for message in messages:
        async with tdesk.http.get(
            f"{tdesk.base}/api/v1/appeals/{appeal.number}/messages/{message.id}/attachments/0",
            headers=tdesk.auth,
        ) as resp:
            assert resp.status == 200
            disposition = resp.headers["Content-Disposition"]
        filename = re.fullmatch(r'attachment; filename="([^"]+)"', disposition)
        assert filename and re.fullmatch(r"[\w.-]{1,100}", filename.group(1)), disposition
        assert ".." not in filename.group(1)


async def test_vk_file_over_the_cap_is_kept_as_a_link_not_in_memory(
    fake: FakeTelegram, start_desk: Callable[..., Any], tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    async with FakeVk() as vk:
        await start_desk(**telegram_settings(fake), vk=vk_settings(vk, max_file_bytes=4096))
        await eventually(lambda: vk.long_poll_requests, what="the desk polling VK")
        vk.add_user(771, "Дина")
        vk.user_message(771, "Большой файл", doc=b"%PDF" + b"0" * 100_000, doc_name="big.pdf")
        vk.user_message(771, "Малый файл", doc=b"%PDF small", doc_name="../../small.pdf")
        small = await eventually(lambda: Message.filter(text="Малый файл").first(), timeout=10)
        big = await eventually(lambda: Message.filter(text="Большой файл").first())
    assert not big.attachments[0]["ref"].startswith("file:")  # VK's link, not our copy
    assert small.attachments[0]["name"] == "small.pdf"
    assert [f.size for f in await StoredFile.all()] == [len(b"%PDF small")]


# -- SQL-like text ----------------------------------------------------------------------------


async def test_sql_like_text_in_filters_and_search_is_plain_text(desk: Desk) -> None:
    await send_appeal(desk, {**APPEAL, "text": "Скидка 50% на всё_сразу"})
    await send_appeal(desk, {**APPEAL, "text": "Обычный вопрос", "email": "b@example.com"})
    for text in SQL_LIKE:
        query = quote(text, safe="")
        for name in ("q", "category", "channel", "assignee", "status", "priority"):
            status, body = await desk.get(f"/api/v1/appeals?{name}={query}")
            assert status in (200, 400, 422), (name, text, status)
            if status == 200:
                expected = 1 if name == "q" and text in ("%", "_") else 0
                assert body["total"] == expected, (name, text, body["total"])
        for name in ("kind", "assignee", "status", "customer_id"):
            status, body = await desk.get(f"/api/v1/tasks?{name}={query}")
            assert status in (200, 400, 422), (name, text, status)
            assert status != 200 or body["total"] == 0
        status, _ = await desk.get(f"/api/v1/appeals/{query}")
        assert status == 404
    for raw_id in ["9" * 4400, "²", "-1", "0x10", "1e3", "%00"]:  # 4,300 digits: int()'s limit
        path = f"/api/v1/appeals/A-000001/messages/1/attachments/{raw_id}"
        assert (await desk.get(path))[0] == 404, raw_id
        done = await desk.post(f"/api/v1/tasks/{raw_id}/complete", {"result": "reached"})
        merge = await desk.post(f"/api/v1/customers/{raw_id}/merge", {"customer_id": 1})
        assert done[0] == merge[0] == 404, raw_id
    assert await Appeal.all().count() == 2 and not await Task.exists()
