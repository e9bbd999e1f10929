"""VK customers: long poll and Callback API in, answers and files out, limits and refusals."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.fakes.telegram import DEFAULT_TOKEN, FakeTelegram
from channels.base import OutboundMessage
from channels.settings import VkSettings
from channels.vk.channel import VkChannel
from models import Appeal, ContactPoint, Customer, Event, Message, Task
from tests.conftest import Desk, free_port
from tests.fakes.vk import GROUP_NAME, FakeVk
from tests.telegram_world import AGENT_ID, STAFF_CHAT, eventually, telegram_settings

TOKEN = "vk1.a.community-token"
CALLBACK_SECRET = "cb-jqv6yQzUF0XUFb5PmCbi0sB75nx"


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        fake.add_group(STAFF_CHAT, "Поддержка", members=[AGENT_ID])
        fake.add_user(AGENT_ID, "Ирина")
        yield fake


@pytest.fixture
async def vk() -> AsyncIterator[FakeVk]:
    async with FakeVk() as fake:
        yield fake


def vk_settings(vk: FakeVk, **overrides: Any) -> dict[str, Any]:
    return {"token": TOKEN, "group_id": vk.group_id, "api_url": vk.url, "wait_s": 1, **overrides}


@pytest.fixture
def start_vk_desk(
    tg: FakeTelegram, vk: FakeVk, start_desk: Callable[..., Any]
) -> Callable[..., Any]:
    async def start(**vk_overrides: Any) -> Desk:
        extra: dict[str, Any] = {}
        if vk_overrides.get("mode") == "callback":
            port = free_port()
            extra = {
                "http": {"host": "127.0.0.1", "port": port},
                "public_url": f"http://127.0.0.1:{port}",
            }
        desk: Desk = await start_desk(
            **telegram_settings(tg), vk=vk_settings(vk, **vk_overrides), **extra
        )
        if vk_overrides.get("mode") != "callback":
            # Long poll gives what happens after the first key: wait until the desk has one.
            await eventually(lambda: vk.long_poll_requests, what="the desk polling VK")
        return desk

    return start


async def vk_appeal(text: str) -> Appeal:
    message = await eventually(lambda: Message.filter(channel="vk", text=text).first(), timeout=10)
    return await eventually(
        lambda: Appeal.filter(id=message.appeal_id, staff_card_ref__isnull=False).first()
    )


async def test_vk_message_with_photo_reaches_the_topic_and_is_acknowledged(
    start_vk_desk: Callable[..., Any], tg: FakeTelegram, vk: FakeVk
) -> None:
    await start_vk_desk()
    vk.add_user(301, "Светлана", "Ким")
    vk.user_message(301, "Треснул корпус, фото прилагаю", photo=b"\xff\xd8\xff fake jpeg")

    appeal = await vk_appeal("Треснул корпус, фото прилагаю")
    thread = int(appeal.staff_thread)
    photo = await eventually(
        lambda: [s for s in tg.sent_to(STAFF_CHAT, thread) if s.media_type == "photo"]
    )
    assert "Треснул корпус" in (photo[0].caption or "")
    assert tg.calls("sendPhoto")[-1].files  # uploaded from the desk's store
    customer = await Customer.get(id=appeal.customer_id)
    assert customer.name == "Светлана Ким"
    ack = await eventually(lambda: vk.sent_to(301))
    assert appeal.number in ack[0].text


async def test_agent_answer_and_photo_go_back_to_vk(
    start_vk_desk: Callable[..., Any], tg: FakeTelegram, vk: FakeVk
) -> None:
    await start_vk_desk()
    vk.add_user(302, "Павел")
    vk.user_message(302, "Как оформить возврат?")
    appeal = await vk_appeal("Как оформить возврат?")
    thread = int(appeal.staff_thread)
    tg.group_message(STAFF_CHAT, AGENT_ID, "Заполните заявление по образцу.", thread)
    tg.group_message(STAFF_CHAT, AGENT_ID, None, thread, photo=b"\x89PNG sample form")

    answer = await eventually(
        lambda: [m for m in vk.sent_to(302) if "по образцу" in m.text], timeout=10
    )
    assert answer[0].text.endswith("— Ирина")
    assert answer[0].random_id != 0
    with_photo = await eventually(lambda: [m for m in vk.sent_to(302) if m.attachment], timeout=10)
    assert with_photo[0].attachment.startswith("photo")
    assert vk.calls("photos.getMessagesUploadServer")


async def test_user_who_forbids_messages_gets_a_call_task(
    start_vk_desk: Callable[..., Any], tg: FakeTelegram, vk: FakeVk
) -> None:
    await start_vk_desk()
    vk.add_user(303, "Ольга")
    vk.user_message(303, "Перезвоните")
    appeal = await vk_appeal("Перезвоните")
    vk.deny_messages(303)
    tg.group_message(STAFF_CHAT, AGENT_ID, "Сейчас перезвоним", int(appeal.staff_thread))
    await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").exists(), timeout=10)
    assert not (await ContactPoint.get(channel="vk", address="303")).reachable


async def test_flood_control_is_retried_and_the_answer_arrives_once(
    start_vk_desk: Callable[..., Any], vk: FakeVk, tg: FakeTelegram
) -> None:
    desk = await start_vk_desk()
    vk.add_user(304, "Глеб")
    vk.user_message(304, "Вопрос")
    appeal = await vk_appeal("Вопрос")
    await eventually(lambda: vk.sent_to(304))  # the acknowledgement
    vk.fail_next("messages.send", 9, "Flood control")
    vk.http_error_next("messages.send", 502, executed=True)
    status, _ = await desk.post(f"/api/v1/appeals/{appeal.number}/messages", {"text": "Ответ"})
    assert status == 201
    await eventually(lambda: [m for m in vk.sent_to(304) if m.text == "Ответ"], timeout=15)
    assert len([m for m in vk.sent_to(304) if m.text == "Ответ"]) == 1  # random_id deduplicated


async def test_a_busy_second_for_the_token_is_waited_out_not_a_wait_per_customer(
    vk: FakeVk,
) -> None:
    # Thirty customers answered at once: more than the community token's 20 calls a second,
    # a limit of every call, not of one customer. The sends wait for the next second instead of
    # telling ten customers' chats to wait. VK's own limit stays on in the fake (error 6).
    channel = VkChannel(VkSettings(**vk_settings(vk)))
    users = range(500, 530)
    for user in users:
        vk.add_user(user, f"Клиент {user}")
    outs = [OutboundMessage(i, "vk", str(u), "Ваше обращение принято") for i, u in enumerate(users)]
    await asyncio.gather(*(channel.deliver(out) for out in outs))
    assert all(len(vk.sent_to(user)) == 1 for user in users)
    await channel.close()


async def test_callback_api_confirms_checks_secret_and_stores_once(
    start_vk_desk: Callable[..., Any], vk: FakeVk
) -> None:
    desk = await start_vk_desk(
        mode="callback", secret=CALLBACK_SECRET, confirmation=vk.confirmation_code
    )
    url = f"{desk.base}/vk/callback"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"type": "confirmation", "group_id": vk.group_id}) as resp:
            assert await resp.text() == vk.confirmation_code
        update = {
            "type": "message_new",
            "group_id": vk.group_id,
            "event_id": "e1",
            "secret": "wrong",
            "object": {
                "message": {"id": 1, "peer_id": 305, "from_id": 305, "text": "x", "date": 1}
            },
        }
        async with http.post(url, data=json.dumps(update)) as resp:
            assert resp.status == 403
    assert not await Message.all().exists()
    vk.add_user(305, "Инна")
    vk.set_callback(url, secret=CALLBACK_SECRET)
    await eventually(lambda: vk.callback is not None and vk.callback.confirmed)
    sent = vk.user_message(305, "Через callback")
    vk.redeliver(sent)
    await eventually(lambda: Message.filter(text="Через callback").exists(), timeout=10)
    await vk.wait_callback_idle()
    assert await Message.filter(text="Через callback").count() == 1


async def test_profile_phone_links_vk_to_the_telegram_customer(
    start_vk_desk: Callable[..., Any], tg: FakeTelegram, vk: FakeVk
) -> None:
    await start_vk_desk()
    tg.add_private_chat(306, "Марина")
    tg.user_message(306, "Пишу из телеграма")
    await eventually(lambda: ContactPoint.filter(channel="telegram", address="306").exists())
    tg.user_contact(306, "+7 (912) 000-11-22")
    await eventually(lambda: ContactPoint.filter(channel="phone", address="+79120001122").exists())
    vk.add_user(306, "Марина", "Л.", phone="89120001122")
    vk.user_message(306, "А теперь из ВК")
    await eventually(
        lambda: Message.filter(channel="vk", text="А теперь из ВК").exists(), timeout=10
    )
    tg_point = await ContactPoint.get(channel="telegram", address="306")
    vk_point = await ContactPoint.get(channel="vk", address="306")
    assert tg_point.customer_id == vk_point.customer_id
    kinds = await Event.filter(customer_id=tg_point.customer_id).values_list("kind", flat=True)
    assert "customer.linked" in kinds


async def test_a_failed_profile_lookup_is_asked_again_and_the_name_arrives(
    start_vk_desk: Callable[..., Any], vk: FakeVk
) -> None:
    await start_vk_desk()
    vk.add_user(307, "Олег", "Петров")
    vk.fail_next("users.get", 10, "Internal server error")
    vk.user_message(307, "Первое сообщение")
    first = await vk_appeal("Первое сообщение")
    customer = await Customer.get(id=first.customer_id)
    assert customer.name == ""  # the card says «Без имени» rather than a made-up one
    vk.user_message(307, "Второе сообщение")
    await eventually(lambda: Message.filter(channel="vk", text="Второе сообщение").exists())
    customer = await Customer.get(id=first.customer_id)
    assert customer.name == "Олег Петров"


async def test_messages_written_while_the_desk_was_down_are_read_after_restart(
    start_vk_desk: Callable[..., Any], vk: FakeVk
) -> None:
    desk = await start_vk_desk()
    vk.add_user(307, "Ян")
    vk.user_message(307, "До перезапуска")
    await eventually(lambda: Message.filter(text="До перезапуска").exists(), timeout=10)
    await desk.service.stop()
    vk.user_message(307, "Пока сервис стоял")
    await start_vk_desk()
    await eventually(lambda: Message.filter(text="Пока сервис стоял").exists(), timeout=10)
    assert await Message.filter(text="До перезапуска").count() == 1


async def test_start_button_menu_lists_appeals_and_opens_a_new_one(
    start_vk_desk: Callable[..., Any], vk: FakeVk
) -> None:
    await start_vk_desk()
    vk.add_user(308, "Вера")
    vk.user_message(308, "Начать", payload={"command": "start"})
    greeting = await eventually(lambda: vk.sent_to(308), timeout=10)
    assert "Здравствуйте, Вера" in greeting[0].text
    buttons = [row[0]["action"] for row in greeting[0].keyboard["buttons"]]
    assert [b["type"] for b in buttons] == ["callback", "callback", "callback"]
    assert not await Message.all().exists()  # «Начать» is not an appeal

    vk.user_message(308, "Где мой заказ?")
    first = await vk_appeal("Где мой заказ?")
    list_button = next(b for b in buttons if "list" in b["payload"])
    new_button = next(b for b in buttons if "new" in b["payload"])
    vk.button_press(308, json.loads(list_button["payload"]), greeting[0].conversation_message_id)
    listing = await eventually(lambda: [m for m in vk.sent_to(308) if "Ваши обращения" in m.text])
    assert first.number in listing[0].text
    vk.button_press(308, json.loads(new_button["payload"]), greeting[0].conversation_message_id)
    await eventually(lambda: len(vk.event_answers) == 2)
    vk.user_message(308, "Другой вопрос: опт")
    second = await vk_appeal("Другой вопрос: опт")
    assert second.id != first.id


async def test_voice_document_and_sticker_are_kept_as_files(
    start_vk_desk: Callable[..., Any], vk: FakeVk, tg: FakeTelegram
) -> None:
    await start_vk_desk()
    vk.add_user(309, "Эмиль")
    vk.user_message(
        309,
        "Голосовое и договор",
        voice=b"OggS voice",
        doc=b"%PDF contract",
        doc_name="Договор.pdf",
    )
    vk.user_message(309, sticker_id=9014)
    appeal = await vk_appeal("Голосовое и договор")

    async def both_stored() -> bool:
        return await Message.filter(appeal_id=appeal.id).count() == 2

    await eventually(both_stored, timeout=10)
    first, second = await Message.filter(appeal_id=appeal.id).order_by("id")
    kinds = sorted(a["kind"] for a in first.attachments)
    assert kinds == ["document", "voice"]
    assert all(a["ref"].startswith("file:") for a in first.attachments)
    assert [a["kind"] for a in second.attachments] == ["sticker"]
    docs = await eventually(
        lambda: [
            s
            for s in tg.sent_to(STAFF_CHAT, int(appeal.staff_thread))
            if s.media_type == "document"
        ]
    )
    assert docs


async def test_serve_checks_the_vk_and_telegram_tokens_at_start_and_names_the_community(
    tg: FakeTelegram, vk: FakeVk, start_desk: Callable[..., Any]
) -> None:
    desk: Desk = await start_desk(**telegram_settings(tg), vk=vk_settings(vk))
    banner = desk.out.getvalue()
    assert "telegram: enabled, vk: enabled" in banner and "token" not in banner
    assert f"  vk        «{GROUP_NAME}» (club{vk.group_id}) · longpoll" in banner
    assert re.search(r"^  telegram  @\w+ · polling · staff group", banner, re.M), banner
    assert vk.calls("groups.getById")


async def test_serve_tells_at_start_that_a_vk_or_telegram_token_is_refused(
    tg: FakeTelegram, vk: FakeVk, start_desk: Callable[..., Any]
) -> None:
    vk.revoke_token(TOKEN)
    tg.revoke_token(DEFAULT_TOKEN)
    desk: Desk = await start_desk(**telegram_settings(tg), vk=vk_settings(vk))
    banner = desk.out.getvalue()
    assert "telegram: enabled, token refused, vk: enabled, token refused" in banner, banner
    [vk_line] = [x for x in banner.splitlines() if x.startswith("  vk ")]
    assert "token check failed:" in vk_line and "invalid access_token" in vk_line
    assert "check DESK_VK__TOKEN" in vk_line
    [tg_line] = [x for x in banner.splitlines() if "telegram  token check failed" in x]
    assert "Unauthorized" in tg_line and "check DESK_TELEGRAM__TOKEN" in tg_line
    assert TOKEN not in banner and DEFAULT_TOKEN not in banner
