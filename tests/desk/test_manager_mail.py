"""The managers' alerts by mail (issue 25): a low rating, «Важно» and an SLA breach reach each
address of ``managers.emails`` through the desk's SMTP, on a desk without Telegram and beside
the managers' chat; once each, retried while the SMTP server is down or deferring."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bench.fakes.telegram import FakeTelegram
from desk.config.config_errors import ConfigError
from desk.config.settings import load_settings
from desk.features.forget import forget_customer
from desk.features.webdesk import feedback_url
from models import Appeal, Event, OutboxItem, OutboxStatus, RatingRequest
from tests.conftest import Desk, free_port
from tests.fakes.mailserver import CapturedMail, SmtpCapture
from tests.telegram_world import (
    AGENT_ID,
    MANAGERS_CHAT,
    STAFF_CHAT,
    MovableClock,
    eventually,
    open_appeal,
    telegram_settings,
)

VERA = "vera@shop.test"  # a manager who reads Russian (the company's language)
BOSS = "boss@shop.test"  # one who reads English
MANAGERS = {"emails": [VERA, {"address": BOSS, "language": "en"}]}


def smtp_settings(port: int) -> dict[str, Any]:
    """The desk's outgoing mail only (no mailbox to read): enough for the managers' alerts."""
    return {
        "address": "support@desk.test",
        "name": "Поддержка",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_tls": "none",
    }


def mail_desk(smtp_port: int, **overrides: Any) -> dict[str, Any]:
    """A desk with no Telegram at all: the web channel, SMTP and the managers' addresses."""
    port = free_port()
    settings: dict[str, Any] = {
        "http": {"host": "127.0.0.1", "port": port},
        "public_url": f"http://127.0.0.1:{port}",
        "workers": {"claim_idle_s": 2.0, "poll_s": 0.05, "sla_scan_s": 0.1},
        "sla": {"calendar": {"hours": None}},
        "email": smtp_settings(smtp_port),
        "managers": MANAGERS,
    }
    settings.update(overrides)
    return settings


async def web_appeal(desk: Desk, text: str, **fields: Any) -> Appeal:
    """A customer's appeal from the web form's API; returns it once routed."""
    body = {"name": "Анна Петрова", "email": "anna@example.com", "text": text, **fields}
    status, answer = await desk.post("/api/v1/appeals", body, auth=False)
    assert status in (201, 202), answer
    found = await eventually(lambda: Appeal.filter(category__isnull=False).order_by("-id").first())
    assert isinstance(found, Appeal)
    return found


async def rate_on_the_page(desk: Desk, appeal: Appeal, score: int, comment: str) -> None:
    """The customer rates on the rating page a mail's link leads to."""
    assert desk.service.ctx is not None
    now = datetime.now(UTC)
    request = await RatingRequest.create(
        customer_id=appeal.customer_id,
        appeal_id=appeal.id,
        expires_at=now + timedelta(days=7),
        created_at=now,
    )
    url = feedback_url(desk.service.ctx, request.id, score)
    path = "/feedback/" + url.split("/feedback/", 1)[1]
    async with desk.http.post(desk.base + path, data={"score": score, "comment": comment}) as r:
        assert r.status == 200, await r.text()


def plain(mail: CapturedMail) -> str:
    body = mail.message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def page(mail: CapturedMail) -> str:
    body = mail.message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


def to(mails: list[CapturedMail], address: str) -> list[CapturedMail]:
    return [m for m in mails if m.rcpt_tos == [address]]


async def settled(smtp: SmtpCapture, count: int, *, quiet_s: float = 1.0) -> list[CapturedMail]:
    """Exactly ``count`` mails: wait for them, then a while longer for any that should not come."""
    await smtp.wait_for(count, timeout=15)
    await asyncio.sleep(quiet_s)
    assert len(smtp.messages) == count, [str(m.message["Subject"]) for m in smtp.messages]
    return list(smtp.messages)


async def staff_mail_rows() -> list[OutboxItem]:
    return list(await OutboxItem.filter(channel="staff_mail").order_by("id"))


async def sent_rows(count: int) -> list[OutboxItem]:
    """The staff mail rows once ``count`` of them are recorded as sent (a send is recorded a
    moment after the mail server has the mail)."""

    async def recorded() -> list[OutboxItem] | None:
        rows = await staff_mail_rows()
        return rows if sum(r.status is OutboxStatus.SENT for r in rows) >= count else None

    found: list[OutboxItem] = await eventually(recorded, what=f"{count} staff mails recorded")
    return found


# -- what the managers read ------------------------------------------------------------------


async def test_low_rating_mails_each_manager_in_their_language_once_with_a_read_only_link(
    smtp_capture: SmtpCapture, start_desk: Callable[..., Any]
) -> None:
    # No Telegram token at all; two delivery workers compete for the rows.
    settings = mail_desk(smtp_capture.port)
    settings["workers"] = {**settings["workers"], "delivery": 2}
    desk: Desk = await start_desk(**settings)
    assert "telegram: disabled" in desk.out.getvalue()
    appeal = await web_appeal(
        desk, "Хочу вернуть куртку, не подошёл размер", phone="+7 916 123-45-67"
    )
    await rate_on_the_page(desk, appeal, 2, "Ответили через три дня <b>и грубо</b>")

    mails = await settled(smtp_capture, 2)
    vera, boss = to(mails, VERA)[0], to(mails, BOSS)[0]
    subject = str(vera.message["Subject"])
    assert subject == f"Низкая оценка: 2 из 5 · {appeal.number} · Анна Петрова"
    assert "support@desk.test" in str(vera.message["From"])
    assert vera.message["Auto-Submitted"] == "auto-generated"
    text = plain(vera)
    assert "Клиент поставил низкую оценку: 2 из 5." in text
    assert "Комментарий клиента: «Ответили через три дня <b>и грубо</b>»" in text
    assert f"Обращение: {appeal.number}" in text
    assert "Клиент: Анна Петрова" in text
    assert "Как связаться: +79161234567, email: anna@example.com" in text
    assert "Категория: Возврат" in text
    assert "&lt;b&gt;и грубо&lt;/b&gt;" in page(vera)  # the customer's words, never markup
    assert str(boss.message["Subject"]).startswith(f"Low rating: 2 of 5 · {appeal.number}")
    assert "The customer's comment:" in plain(boss) and "Category: Returns" in plain(boss)

    # The link opens the appeal's page to read, without the customer's reply form.
    link = re.search(r"^Обращение и вся переписка: (http\S+/v/\S+)$", text, re.M)
    assert link is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(link.group(1)) as r:
            shown = await r.text()
        assert r.status == 200 and "не подошёл размер" in shown and "<form" not in shown
        token = link.group(1).rsplit("/", 1)[1]
        async with http.post(f"{desk.base}/s/{token}/reply", data={"text": "от имени"}) as r:
            assert r.status == 403  # not a status link: nobody writes as the customer with it
        async with http.get(f"{desk.base}/v/{token[:-3]}abc") as r:
            assert r.status == 403

    rows = await sent_rows(2)
    assert [(r.address, r.status, r.attempts) for r in rows] == [
        (VERA, OutboxStatus.SENT, 1),
        (BOSS, OutboxStatus.SENT, 1),
    ]
    fired = await Event.filter(appeal_id=appeal.id, kind="automation.fired").order_by("id")
    low = next(e for e in fired if e.data["rule"] == "low rating")
    assert {"action": "alert_managers", "result": "mailed", "mailed": 2} in low.data["outcomes"]

    # Forgetting the customer clears what the sent alerts quote of them.
    await forget_customer(appeal.customer_id, actor="test", now=datetime.now(UTC))
    for row in await staff_mail_rows():
        assert "Анна" not in str(row.payload) and "anna@example.com" not in str(row.payload)


async def test_sla_breach_mails_the_managers_which_deadline_and_by_how_much(
    smtp_capture: SmtpCapture, start_desk: Callable[..., Any]
) -> None:
    clock = MovableClock(datetime(2026, 11, 30, 7, 0, tzinfo=UTC))  # 10:00 in Moscow
    desk: Desk = await start_desk(clock=clock, **mail_desk(smtp_capture.port))
    appeal = await web_appeal(desk, "Подскажите, есть ли в наличии синий чайник?")
    assert appeal.first_response_due is not None
    clock.now = appeal.first_response_due + timedelta(hours=1)

    mails = await settled(smtp_capture, 2, quiet_s=0.5)  # scans every 0.1 s: still one each
    vera = to(mails, VERA)[0]
    assert str(vera.message["Subject"]).startswith(f"Нарушен срок «первый ответ» · {appeal.number}")
    due = appeal.first_response_due.astimezone(ZoneInfo("Europe/Moscow"))
    assert f"он истёк {due:%d.%m.%Y %H:%M}, просрочено на 1 час." in plain(vera)
    text = plain(to(mails, BOSS)[0])
    assert "The first response deadline is missed" in text and "is 1 hour overdue" in text
    assert "Anna" not in text and "Customer: Анна Петрова" in text


async def test_important_goes_to_the_managers_chat_and_by_mail(
    fake: FakeTelegram, smtp_capture: SmtpCapture, start_desk: Callable[..., Any]
) -> None:
    settings = telegram_settings(fake, telegram={"managers_chat_id": MANAGERS_CHAT})
    await start_desk(**settings, email=smtp_settings(smtp_capture.port), managers=MANAGERS)
    appeal = await open_appeal(
        fake, 404, "Третий раз пишу! Верните деньги за заказ, иначе жалоба в Роспотребнадзор"
    )
    assert "Важно" in appeal.tags
    chat = await eventually(lambda: fake.sent_to(MANAGERS_CHAT))
    assert appeal.number in (chat[0].text or "")
    mails = await settled(smtp_capture, 2, quiet_s=0.3)
    vera = to(mails, VERA)[0]
    assert str(vera.message["Subject"]) == f"Важно: клиент может уйти · {appeal.number} · Клиент"
    assert "Обращение отмечено «Важно»: клиент может уйти." in plain(vera)
    assert "Роспотребнадзор" in plain(vera)  # the router's reasons
    assert "telegram: 404" in plain(vera)  # how to reach the customer

    # An agent marks another appeal «Важно» on its card: the managers hear by mail who did.
    other = await open_appeal(fake, 405, "Есть ли в наличии синий чайник?")
    card_id = int(other.staff_card_ref)
    card = fake.chat(STAFF_CHAT).messages[card_id]
    data = [
        b["callback_data"]
        for row in card["reply_markup"]["inline_keyboard"]
        for b in row
        if b["callback_data"].startswith("ap:imp:")
    ]
    fake.callback(AGENT_ID, STAFF_CHAT, card_id, data[0])
    mails = await settled(smtp_capture, 4, quiet_s=0.3)
    marked = to(mails, VERA)[-1]
    assert other.number in str(marked.message["Subject"])
    assert "Отметил(а): Ирина" in plain(marked)


async def test_no_manager_configured_mails_nothing(
    smtp_capture: SmtpCapture, start_desk: Callable[..., Any]
) -> None:
    desk: Desk = await start_desk(**mail_desk(smtp_capture.port, managers={}))
    appeal = await web_appeal(desk, "Хочу вернуть куртку, не подошёл размер")
    await rate_on_the_page(desk, appeal, 1, "Ужасно")
    fired = await eventually(
        lambda: Event.filter(appeal_id=appeal.id, kind="automation.fired").count()
    )
    assert fired
    await asyncio.sleep(0.5)
    assert smtp_capture.messages == [] and await staff_mail_rows() == []
    rows = await Event.filter(appeal_id=appeal.id, kind="automation.fired")
    low = next(e for e in rows if e.data["rule"] == "low rating")
    alert = next(o for o in low.data["outcomes"] if o["action"] == "alert_managers")
    assert alert["result"] == "skipped"


# -- when the SMTP server fails ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def smtp_on(capture: SmtpCapture, port: int) -> AsyncIterator[None]:
    """``capture`` answering on a given port (the mail server coming up where the desk looks)."""
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(capture, hostname="localhost"), "127.0.0.1", port
    )
    try:
        yield
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


async def test_smtp_down_then_up_delivers_each_alert_once(start_desk: Callable[..., Any]) -> None:
    port = free_port()  # nothing listens there yet
    desk: Desk = await start_desk(**mail_desk(port))
    appeal = await web_appeal(desk, "Хочу вернуть куртку, не подошёл размер")
    await rate_on_the_page(desk, appeal, 2, "Долго")

    async def refused() -> bool:
        rows = await staff_mail_rows()
        return len(rows) == 2 and all(r.last_error and r.attempts >= 1 for r in rows)

    await eventually(refused)
    rows = await staff_mail_rows()
    assert all(r.status is OutboxStatus.PENDING for r in rows), rows  # kept, to try again
    assert all("staff_mail" in r.last_error for r in rows)

    capture = SmtpCapture()
    async with smtp_on(capture, port):
        mails = await settled(capture, 2)
    assert sorted(m.rcpt_tos[0] for m in mails) == [BOSS, VERA]
    rows = await sent_rows(2)
    assert all(r.status is OutboxStatus.SENT and r.last_error == "" for r in rows)


async def test_a_deferring_server_gets_the_alert_again_and_a_refusal_is_set_aside(
    smtp_capture: SmtpCapture, start_desk: Callable[..., Any]
) -> None:
    desk: Desk = await start_desk(**mail_desk(smtp_capture.port))
    appeal = await web_appeal(desk, "Хочу вернуть куртку, не подошёл размер")
    smtp_capture.refuse_next(2, code=451)  # each manager's first try: «try again later»
    await rate_on_the_page(desk, appeal, 3, "")

    mails = await settled(smtp_capture, 2)
    assert smtp_capture.refused == 2
    assert sorted(m.rcpt_tos[0] for m in mails) == [BOSS, VERA]
    assert len({m.message["Message-ID"] for m in mails}) == 2
    rows = await sent_rows(2)
    assert [(r.status, r.attempts) for r in rows] == [(OutboxStatus.SENT, 2)] * 2

    # A refusal for good (5xx): that mail is set aside with the reason, the other still goes,
    # and nothing of it turns to the customer.
    smtp_capture.refuse_next(1, code=550, text="5.1.1 No such user", at="RCPT")
    before = await OutboxItem.filter(channel__not="staff_mail").count()
    await rate_on_the_page(desk, appeal, 1, "Совсем плохо")
    await settled(smtp_capture, 3)
    failed = await eventually(
        lambda: OutboxItem.filter(channel="staff_mail", status=OutboxStatus.FAILED).first()
    )
    assert "No such user" in failed.last_error
    assert await OutboxItem.filter(channel__not="staff_mail").count() == before


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.backend_agnostic
def test_managers_addresses_from_the_environment_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESK_EMAIL__ADDRESS", "support@desk.test")
    monkeypatch.setenv("DESK_EMAIL__SMTP_HOST", "smtp.desk.test")
    monkeypatch.setenv("DESK_MANAGERS__EMAILS", "vera@shop.test, Boss@Shop.TEST")
    managers = load_settings(None, use_default_path=False).managers.emails
    assert [(m.address, m.language) for m in managers] == [
        ("vera@shop.test", None),
        ("Boss@shop.test", None),
    ]
    monkeypatch.setenv("DESK_MANAGERS__EMAILS", '[{"address": "vera@shop.test", "language": "en"}]')
    assert load_settings(None, use_default_path=False).managers.emails[0].language == "en"

    for wrong, reason in (
        ("vera@shop.test, not-an-address", "not a mail address: 'not-an-address'"),
        ("vera@shop.test,vera@shop.test", "duplicate address 'vera@shop.test'"),
        ('[{"address": "vera@shop.test", "language": "de"}]', "'ru' or 'en'"),
    ):
        monkeypatch.setenv("DESK_MANAGERS__EMAILS", wrong)
        with pytest.raises(ConfigError) as caught:
            load_settings(None, use_default_path=False)
        assert reason in str(caught.value) and "DESK_MANAGERS__EMAILS" in str(caught.value)

    monkeypatch.setenv("DESK_MANAGERS__EMAILS", "vera@shop.test")
    monkeypatch.delenv("DESK_EMAIL__SMTP_HOST")
    with pytest.raises(ConfigError) as caught:
        load_settings(None, use_default_path=False)
    assert "managers.emails: mail to managers needs the desk's SMTP" in str(caught.value)
