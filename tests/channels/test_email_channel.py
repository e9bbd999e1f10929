"""The support mailbox end to end: real Dovecot in, real SMTP out, threads kept both ways."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid, parsedate_to_datetime
from typing import Any

import pytest

from bench.fakes.telegram import FakeTelegram
from models import Agent, Appeal, ContactPoint, Customer, Message, Task
from tests.conftest import Desk
from tests.fakes.mailserver import MailAccount, SmtpCapture, email_settings
from tests.telegram_world import AGENT_ID, STAFF_CHAT, eventually, telegram_settings, texts_in


def customer_mail(
    text: str,
    *,
    subject: str = "Не пришёл заказ",
    sender: str = "Анна Петрова <anna@example.com>",
    **headers: str,
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = "support@desk.example"
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="example.com")
    mail["Date"] = "Mon, 23 Nov 2026 10:00:00 +0300"
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(text)
    return mail


@pytest.fixture
def start_mail_desk(
    fake: FakeTelegram,
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
    start_desk: Callable[..., Any],
) -> Callable[..., Any]:
    async def start() -> Desk:
        desk: Desk = await start_desk(
            **telegram_settings(fake), email=email_settings(mailbox, smtp_capture)
        )
        return desk

    return start


async def test_mail_opens_appeal_is_acknowledged_and_answered_in_thread(
    start_mail_desk: Callable[..., Any],
    fake: FakeTelegram,
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
) -> None:
    await start_mail_desk()
    first = customer_mail("Здравствуйте! Заказ 4521 так и не пришёл.\n\nАнна")
    await mailbox.deliver(first)

    appeal = await eventually(lambda: Appeal.filter(channel="email").first(), timeout=15)
    assert appeal.subject == "Не пришёл заказ"
    ack = (await smtp_capture.wait_for(1, timeout=10))[0]
    assert ack.rcpt_tos == ["anna@example.com"]
    assert f"[{appeal.number}]" in ack.message["Subject"]
    assert ack.message["Auto-Submitted"] is not None
    flags = await mailbox.flags()
    assert all("\\Seen" in f for f in flags.values())

    appeal = await eventually(
        lambda: Appeal.filter(id=appeal.id, staff_thread__isnull=False).first()
    )
    thread = int(appeal.staff_thread)
    await eventually(lambda: any("4521" in t for t in texts_in(fake, STAFF_CHAT, thread)))
    fake.group_message(STAFF_CHAT, AGENT_ID, "Анна, заказ передан в доставку повторно.", thread)
    answer = (await smtp_capture.wait_for(2, timeout=10))[1].message
    assert answer["In-Reply-To"] == first["Message-ID"]
    assert first["Message-ID"] in answer["References"]
    assert f"[{appeal.number}]" in answer["Subject"] and answer["Subject"].startswith("Re:")
    assert mailbox.address in answer["From"]
    assert answer.get_body(("plain",)).get_content().startswith("Анна, заказ передан")
    assert answer.get_body(("html",)) is not None

    # The customer answers our mail with another subject: still the same appeal.
    reply = customer_mail(
        "Спасибо, жду.",
        subject="Re: доставка",
        In_Reply_To=answer["Message-ID"],
        References=f"{first['Message-ID']} {answer['Message-ID']}",
    )
    await mailbox.deliver(reply)
    await eventually(lambda: Message.filter(appeal_id=appeal.id, text="Спасибо, жду.").exists())
    assert await Appeal.filter(channel="email").count() == 1


async def test_number_in_subject_threads_and_auto_replies_open_nothing(
    start_mail_desk: Callable[..., Any],
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
) -> None:
    await start_mail_desk()
    await mailbox.deliver(customer_mail("Нужен счёт"))
    appeal = await eventually(lambda: Appeal.filter(channel="email").first(), timeout=15)
    await smtp_capture.wait_for(1, timeout=10)

    await mailbox.deliver(
        customer_mail(
            "И акт тоже", subject=f"Вопрос по [{appeal.number}]", sender="anna@example.com"
        )
    )
    await mailbox.deliver(
        customer_mail(
            "Я в отпуске до понедельника.",
            subject="Автоответ: Не пришёл заказ",
            Auto_Submitted="auto-replied",
        )
    )
    await mailbox.deliver(
        customer_mail("Рассылка", sender="news@shop.example", List_Id="<news.shop.example>")
    )
    await eventually(lambda: Message.filter(text="И акт тоже").exists(), timeout=15)
    flags = await eventually(
        lambda: _all_seen(mailbox, 4), timeout=10, what="every mail marked handled"
    )
    assert flags
    assert await Appeal.all().count() == 1
    assert not await Message.filter(text__contains="отпуске").exists()
    assert not await ContactPoint.filter(address="news@shop.example").exists()
    assert len(smtp_capture.messages) == 1  # only the acknowledgement, no answers to robots


async def _all_seen(mailbox: MailAccount, count: int) -> bool:
    flags = await mailbox.flags()
    return len(flags) == count and all("\\Seen" in f for f in flags.values())


async def test_restart_neither_skips_nor_repeats_a_mail(
    start_mail_desk: Callable[..., Any],
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
) -> None:
    desk = await start_mail_desk()
    await mailbox.deliver(customer_mail("Первое письмо"))
    await eventually(lambda: Message.filter(text="Первое письмо").exists(), timeout=15)
    await desk.service.stop()
    await mailbox.deliver(customer_mail("Пока вы спали"))
    await start_mail_desk()
    await eventually(lambda: Message.filter(text="Пока вы спали").exists(), timeout=15)
    assert await Message.filter(text="Первое письмо").count() == 1
    assert await Customer.all().count() == 1


async def test_smtp_refusing_for_a_while_delays_the_answer_without_losing_it(
    start_mail_desk: Callable[..., Any],
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
) -> None:
    desk = await start_mail_desk()
    await mailbox.deliver(customer_mail("Ответьте, пожалуйста"))
    appeal = await eventually(lambda: Appeal.filter(channel="email").first(), timeout=15)
    await smtp_capture.wait_for(1, timeout=10)
    smtp_capture.refuse_next(2, code=451)
    status, _ = await desk.post(f"/api/v1/appeals/{appeal.number}/messages", {"text": "Отвечаем"})
    assert status == 201
    mails = await smtp_capture.wait_for(2, timeout=20)
    assert "Отвечаем" in mails[1].message.get_body(("plain",)).get_content()
    bodies = [m.message.get_body(("plain",)).get_content() for m in smtp_capture.messages]
    assert sum("Отвечаем" in b for b in bodies) == 1
    assert smtp_capture.refused == 2


async def test_attachments_reach_the_topic_and_oversized_ones_are_listed(
    fake: FakeTelegram,
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
    start_desk: Callable[..., Any],
) -> None:
    settings = email_settings(mailbox, smtp_capture) | {"max_attachment_bytes": 2000}
    desk: Desk = await start_desk(**telegram_settings(fake), email=settings)
    mail = customer_mail("Счёт и скан во вложении.")
    mail.add_attachment(
        b"%PDF-1.4 small invoice", maintype="application", subtype="pdf", filename="Счёт №5.pdf"
    )
    mail.add_attachment(b"x" * 5000, maintype="image", subtype="png", filename="скан.png")
    await mailbox.deliver(mail)
    appeal = await eventually(
        lambda: Appeal.filter(channel="email", staff_card_ref__isnull=False).first(), timeout=15
    )
    thread = int(appeal.staff_thread)
    docs = await eventually(
        lambda: [s for s in fake.sent_to(STAFF_CHAT, thread) if s.media_type == "document"]
    )
    assert fake.calls("sendDocument")[-1].files  # uploaded from the desk's store
    assert "Счёт и скан" in (docs[0].caption or "")
    assert "скан.png" in (docs[0].caption or "")  # over the cap: named, not lost silently
    stored = await Message.get(appeal_id=appeal.id)
    kinds = [a["kind"] for a in stored.attachments]
    assert kinds.count("document") == 1 and "skipped" in kinds and "email" in kinds
    index = kinds.index("email")
    async with desk.http.get(
        f"{desk.base}/api/v1/appeals/{appeal.number}/messages/{stored.id}/attachments/{index}",
        headers=desk.auth,
    ) as resp:
        assert resp.status == 200
        assert b"Subject:" in await resp.read()  # the raw mail is kept


async def test_recipient_refused_for_good_makes_a_call_task(
    start_mail_desk: Callable[..., Any],
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
) -> None:
    desk = await start_mail_desk()
    await mailbox.deliver(customer_mail("Позвоните мне", sender="gone@example.com"))
    appeal = await eventually(lambda: Appeal.filter(channel="email").first(), timeout=15)
    await smtp_capture.wait_for(1, timeout=10)
    smtp_capture.refuse_next(1, code=550, text="5.1.1 No such user", at="RCPT")
    await desk.post(f"/api/v1/appeals/{appeal.number}/messages", {"text": "Ответ"})
    task = await eventually(
        lambda: Task.filter(appeal_id=appeal.id, kind="call").first(), timeout=10
    )
    assert appeal.number in task.text
    assert not (await ContactPoint.get(channel="email", address="gone@example.com")).reachable


def _plain(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _status_link(mail: EmailMessage) -> str:
    found = re.search(r"http://\S+/s/\S+", _plain(mail))
    assert found, _plain(mail)
    return found.group(0)


async def test_web_customer_with_an_email_gets_the_answer_by_mail_with_the_status_link(
    start_mail_desk: Callable[..., Any],
    fake: FakeTelegram,
    smtp_capture: SmtpCapture,
) -> None:
    desk = await start_mail_desk()
    form = {"name": "Ольга", "email": "olga@example.com", "text": "Где мой заказ 77?"}
    status, body = await desk.post("/api/v1/appeals", form, auth=False)
    assert status == 201, body
    appeal = await eventually(lambda: Appeal.filter(staff_thread__isnull=False).first(), timeout=15)
    ack = (await smtp_capture.wait_for(1, timeout=10))[0]
    assert ack.rcpt_tos == ["olga@example.com"]
    async with desk.http.get(_status_link(ack.message)) as resp:
        assert resp.status == 200 and appeal.number in await resp.text()

    fake.group_message(
        STAFF_CHAT, AGENT_ID, "Ольга, заказ 77 приедет завтра.", int(appeal.staff_thread)
    )
    await smtp_capture.wait_for(2, timeout=10)
    answer = next(
        m for m in smtp_capture.messages if _plain(m.message).startswith("Ольга, заказ 77")
    )
    assert answer.rcpt_tos == ["olga@example.com"]
    assert f"[{appeal.number}]" in answer.message["Subject"]
    link = _status_link(answer.message)
    html_part = answer.message.get_body(("html",))
    assert html_part is not None and f'href="{link}"' in html_part.get_content()
    async with desk.http.get(link) as resp:  # the appeal's page, the answer on it too
        assert resp.status == 200
        page = await resp.text()
    assert appeal.number in page and "приедет завтра" in page
    stored = await Message.get(appeal_id=appeal.id, direction="out")
    assert (stored.channel, stored.address) == ("email", "olga@example.com")


async def test_mails_carry_a_date_and_a_folded_subject_keeps_its_spaces(
    start_mail_desk: Callable[..., Any],
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
) -> None:
    desk = await start_mail_desk()
    subject = "Документы: акт сверки и счёт-фактуру за ноябрь 2026 года по договору поставки"
    await mailbox.deliver(customer_mail("Пришлите, пожалуйста.", subject=subject))
    appeal = await eventually(lambda: Appeal.filter(channel="email").first(), timeout=15)
    assert appeal.subject == subject  # folded by the sender's mail library, read whole

    ack = (await smtp_capture.wait_for(1, timeout=10))[0]
    # Read as a strict RFC 2047 reader does: the standard library's parser.
    assert ack.message["Subject"] == f"[{appeal.number}] Обращение зарегистрировано: {subject}"
    sent_at = parsedate_to_datetime(ack.message["Date"])
    assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 300
    assert re.fullmatch(r"<[^<>@\s]+@[^<>\s]+>", ack.message["Message-ID"])

    # The raw mail kept with the appeal is listed with its real size.
    _, detail = await desk.get(f"/api/v1/appeals/{appeal.number}")
    files = detail["messages"][0]["attachments"]
    index = next(i for i, a in enumerate(files) if a["name"] == "original.eml")
    url = f"{desk.base}/api/v1/appeals/{appeal.number}/messages/{detail['messages'][0]['id']}"
    async with desk.http.get(f"{url}/attachments/{index}", headers=desk.auth) as resp:
        kept = await resp.read()
    assert b"Subject:" in kept and files[index]["size"] == len(kept)


async def test_an_unreachable_mailbox_is_not_tried_again_and_keeps_one_call_task(
    fake: FakeTelegram,
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
    start_desk: Callable[..., Any],
) -> None:
    # Nobody takes new appeals (no capacity): the call task goes to the team's lead.
    settings = telegram_settings(fake, teams=[{"id": "support", "lead": "Олег"}])
    settings["agents"] = [
        {**agent, "capacity": 0}
        for agent in [*settings["agents"], {"name": "Вера", "telegram_id": 1003, "role": "manager"}]
    ]
    desk: Desk = await start_desk(**settings, email=email_settings(mailbox, smtp_capture))
    await mailbox.deliver(customer_mail("Где мой возврат?", sender="gone@example.com"))
    appeal = await eventually(lambda: Appeal.filter(channel="email").first(), timeout=15)
    await smtp_capture.wait_for(1, timeout=10)  # the acknowledgement
    assert appeal.assignee_id is None and appeal.team == "support"
    lead = await Agent.get(name="Олег")

    smtp_capture.refuse_next(1, code=550, text="5.1.1 No such user", at="RCPT")
    await desk.post(f"/api/v1/appeals/{appeal.number}/messages", {"text": "Возврат отправлен."})
    task = await eventually(lambda: Task.filter(appeal_id=appeal.id, kind="call").first())
    assert task.assignee_id == lead.id  # the team's lead, not nobody
    assert "«Возврат отправлен.»" in task.text  # what the customer did not get
    # No phone: the task says what to do instead, and names the contacts known.
    assert "Телефоны: —" not in task.text
    assert "Телефон клиента не известен" in task.text and "/customer" in task.text
    assert "gone@example.com — недоступен" in task.text

    # The next answer is not tried on the dead address: it joins the same open task.
    await desk.post(f"/api/v1/appeals/{appeal.number}/messages", {"text": "Деньги придут завтра."})
    second = await eventually(
        lambda: Message.filter(text="Деньги придут завтра.", delivery_state="failed").first()
    )
    assert "unreachable" in second.delivery_error
    tasks = await Task.filter(appeal_id=appeal.id, kind="call")
    assert len(tasks) == 1 and "«Деньги придут завтра.»" in tasks[0].text
    assert "«Возврат отправлен.»" in tasks[0].text
    assert smtp_capture.refused == 1 and len(smtp_capture.messages) == 1  # the ack only
    topic = await eventually(
        lambda: Appeal.filter(id=appeal.id, staff_thread__isnull=False).first()
    )
    thread = int(topic.staff_thread)
    await eventually(  # the agent sees in the topic that the answer did not go
        lambda: sum("не доставлено" in t for t in texts_in(fake, STAFF_CHAT, thread)) == 2
    )

    # The customer writes again from that address: it is tried again, and the answer arrives.
    await mailbox.deliver(customer_mail("Так где деньги?", sender="gone@example.com"))
    await eventually(
        lambda: ContactPoint.filter(address="gone@example.com", reachable=True).exists(), timeout=15
    )
    await desk.post(f"/api/v1/appeals/{appeal.number}/messages", {"text": "Уже в пути."})
    mails = await smtp_capture.wait_for(2, timeout=10)
    assert _plain(mails[-1].message).startswith("Уже в пути.")
