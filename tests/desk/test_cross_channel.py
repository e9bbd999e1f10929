"""One customer across channels: Telegram, then email, then VK — one customer, one history."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from bench.fakes.telegram import FakeTelegram
from models import Appeal, ContactPoint, Customer, Message
from tests.fakes.mailserver import MailAccount, SmtpCapture
from tests.fakes.vk import FakeVk
from tests.telegram_world import AGENT_ID, STAFF_CHAT, eventually, telegram_settings, texts_in


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


async def test_telegram_then_email_then_vk_is_one_customer_with_one_history(
    tg: FakeTelegram,
    vk: FakeVk,
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
    start_desk: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    await start_desk(
        **telegram_settings(tg),
        vk={"token": "vk1.a.token", "group_id": vk.group_id, "api_url": vk.url, "wait_s": 1},
        email={
            "address": mailbox.address,
            "imap_host": mailbox.host,
            "imap_port": mailbox.port,
            "imap_user": mailbox.user,
            "imap_password": mailbox.password,
            "imap_tls": "none",
            "smtp_host": smtp_capture.host,
            "smtp_port": smtp_capture.port,
            "smtp_tls": "none",
            "poll_s": 0.5,
        },
    )
    await eventually(lambda: vk.long_poll_requests, what="the desk polling VK")

    # 1. Telegram, with the phone shared from the bot's menu.
    tg.add_private_chat(901, "Мария")
    tg.user_message(901, "Заказ 777 пришёл без инструкции")
    await eventually(lambda: ContactPoint.filter(channel="telegram", address="901").exists())
    tg.user_contact(901, "+79990002233")
    await eventually(lambda: ContactPoint.filter(channel="phone", address="+79990002233").exists())
    first = await eventually(
        lambda: Appeal.filter(channel="telegram", staff_card_ref__isnull=False).first()
    )

    # 2. Email: a new customer until an agent says it is the same person.
    mail = EmailMessage()
    mail["From"] = "Мария Соколова <maria@example.com>"
    mail["To"] = mailbox.address
    mail["Subject"] = "Инструкция к заказу 777"
    mail["Message-ID"] = make_msgid(domain="example.com")
    mail.set_content("Пришлите, пожалуйста, инструкцию на почту.")
    await mailbox.deliver(mail)
    second = await eventually(
        lambda: Appeal.filter(channel="email", staff_card_ref__isnull=False).first(), timeout=15
    )
    assert second.customer_id != first.customer_id
    tg.group_message(STAFF_CHAT, AGENT_ID, f"/merge {first.number}", int(second.staff_thread))
    await eventually(lambda: Appeal.filter(id=first.id, customer_id=second.customer_id).exists())

    # 3. VK: the profile shows the same phone, so she is recognised at once.
    vk.add_user(901, "Мария", "Соколова", phone="+7 999 000-22-33")
    vk.user_message(901, "Инструкцию получила, спасибо!")
    await eventually(lambda: Message.filter(channel="vk").exists(), timeout=10)

    customers = await Customer.all()
    assert len(customers) == 1
    points = {
        (p.channel, p.address) for p in await ContactPoint.filter(customer_id=customers[0].id)
    }
    assert {("telegram", "901"), ("email", "maria@example.com"), ("vk", "901")} <= points
    appeals = await Appeal.filter(customer_id=customers[0].id).order_by("id")
    # The VK message joined her open appeal; an answer to it goes back to VK.
    assert [a.channel for a in appeals] == ["telegram", "email"]
    channels = set(
        await Message.filter(appeal__customer_id=customers[0].id).values_list("channel", flat=True)
    )
    assert {"telegram", "email", "vk"} <= channels

    # The agent sees the whole history from any of her topics.
    tg.group_message(STAFF_CHAT, AGENT_ID, "/customer", int(second.staff_thread))
    history = await eventually(
        lambda: [t for t in texts_in(tg, STAFF_CHAT, int(second.staff_thread)) if "Обращений" in t]
    )
    assert first.number in history[0] and second.number in history[0]
