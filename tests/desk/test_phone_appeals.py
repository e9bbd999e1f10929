"""Appeals the staff take down for a customer who phoned or came in (seed 000, «Принять
обращение»): through the staff API and through /new in the staff group. Either way the appeal
goes the customer's way through intake: found or created customer, category, topic, the
acknowledgement on a reachable contact, and a history that names who took it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench.fakes.telegram import FakeTelegram
from bots.staff_new import Problem, parse_line
from channels.base import ChannelKind
from models import Appeal, ContactPoint, Customer, Direction, Event, KeyValue, Message
from tests.conftest import Desk
from tests.fakes.mailserver import MailAccount, SmtpCapture, email_settings
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    STRANGER_ID,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)

TAKEN = "/api/v1/taken-appeals"
IVAN = "ivan@example.com"


async def topic_posts(fake: FakeTelegram, appeal: Appeal) -> list[str]:
    """What the appeal's topic in the staff group shows, once it has its card."""
    fresh = await eventually(
        lambda: Appeal.filter(id=appeal.id, staff_card_ref__isnull=False).first(),
        what=f"the topic of {appeal.number}",
    )
    return texts_in(fake, STAFF_CHAT, int(fresh.staff_thread))


def replies_to(fake: FakeTelegram, sent: dict[str, Any]) -> list[str]:
    """The bot's answers to one message of the staff group."""
    message_id = sent["message"]["message_id"]
    return [s.body or "" for s in fake.sent_to(STAFF_CHAT) if s.reply_to_message_id == message_id]


async def contacts_of(customer_id: int) -> set[tuple[str, str]]:
    """The customer's contact points as (channel, address)."""
    rows = await ContactPoint.filter(customer_id=customer_id).values_list("channel", "address")
    return {(str(channel), str(address)) for channel, address in rows}


def acks_in(fake: FakeTelegram, chat_id: int, number: str) -> list[str]:
    """The acknowledgements a customer's chat received (of appeal ``number``, if given)."""
    return [t for t in texts_in(fake, chat_id) if "зарегистрировано" in t and number in t]


async def answer_to(fake: FakeTelegram, text: str, thread: int | None = None) -> str:
    """The agent (Ирина) writes in the staff group; returns the bot's first answer to it."""
    sent = fake.group_message(STAFF_CHAT, AGENT_ID, text, thread)
    answers = await eventually(lambda: replies_to(fake, sent), what=f"an answer to {text!r}")
    return str(answers[0])


# -- the staff API ------------------------------------------------------------------------


async def test_api_phone_appeal_is_routed_topiced_acknowledged_by_mail_and_names_its_taker(
    fake: FakeTelegram,
    mailbox: MailAccount,
    smtp_capture: SmtpCapture,
    start_desk: Callable[..., Any],
) -> None:
    desk: Desk = await start_desk(
        **telegram_settings(fake), email=email_settings(mailbox, smtp_capture)
    )
    status, out = await desk.post(
        TAKEN,
        {
            "channel": "phone",
            "name": "Анна Смирнова",
            "phone": "8 (916) 555-12-34",
            "email": "Anna@Example.com",
            "text": "Хочу вернуть кроссовки, не подошёл размер",
            "agent": "Ирина",
        },
    )
    assert status == 201, out
    assert out["channel"] == "phone" and out["status_url"].startswith("http")
    appeal = await Appeal.get(number=out["number"])
    assert appeal.channel == "phone"
    assert (appeal.category, appeal.team) == ("returns", "support")
    customer = await Customer.get(id=appeal.customer_id)
    assert customer.name == "Анна Смирнова" and out["customer_id"] == customer.id
    points = set(
        await ContactPoint.filter(customer_id=customer.id).values_list("channel", "address")
    )
    assert points == {("phone", "+79165551234"), ("email", "anna@example.com")}

    # The topic: the card names the channel, the post names who took it, the text follows.
    posts = await eventually(
        lambda: _with(topic_posts(fake, appeal), "Хочу вернуть"), what="the relayed text"
    )
    assert any("Канал: телефон" in p for p in posts)
    assert any("Принял(а): <b>Ирина</b> (через API)" in p for p in posts), posts

    # The customer hears by mail that the appeal is registered, with its status link.
    mails = await smtp_capture.wait_for(1, timeout=10)
    assert mails[0].rcpt_tos == ["anna@example.com"]
    body = mails[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert appeal.number in body and "зарегистрировано" in body and "/s/" in body

    # The history says who took it, by which channel and way, and it shows in the API.
    taken = await Event.get(appeal_id=appeal.id, kind="appeal.taken")
    assert taken.actor == "Ирина" and taken.data == {"channel": "phone", "via": "api"}
    created = await Event.get(appeal_id=appeal.id, kind="appeal.created")
    assert created.actor == "Ирина"
    _, detail = await desk.get(f"/api/v1/appeals/{appeal.number}")
    assert detail["channel"] == "phone"
    assert any(h["kind"] == "appeal.taken" and h["actor"] == "Ирина" for h in detail["history"])

    # The customer's status page names the channel as people say it.
    async with desk.http.get(out["status_url"]) as page:
        html = await page.text()
    assert page.status == 200 and appeal.number in html
    assert "<dt>Канал</dt>" in html and "<dd>телефон</dd>" in html

    # An answer goes by mail (the customer gave one), not to a phone nobody can send to.
    status, _ = await desk.post(
        f"/api/v1/appeals/{appeal.number}/messages", {"text": "Оформили возврат."}
    )
    assert status == 201
    mails = await smtp_capture.wait_for(2, timeout=10)
    assert "Оформили возврат" in mails[1].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def _with(posts: Any, text: str) -> list[str] | None:
    """The topic's posts once ``text`` is in two of them: the card's subject and the relay."""
    found: list[str] = await posts
    return found if sum(text in p for p in found) >= 2 else None


async def test_api_visit_of_a_known_customer_joins_them_and_repeats_are_one_appeal(
    desk: Desk,
) -> None:
    status, first = await desk.post(
        "/api/v1/appeals",
        {"name": "Олег", "phone": "+7 916 000-11-22", "text": "Когда привезут заказ 55?"},
        auth=False,
    )
    assert status == 201
    known = (await Appeal.get(number=first["number"])).customer_id
    key = {"Idempotency-Key": "visit-olga-1"}
    body = {"channel": "visit", "phone": "89160001122", "text": "Пришёл лично: заказ 55 так и нет"}
    status, out = await desk.post(TAKEN, body, headers=key)
    assert status == 201, out
    assert out["customer_id"] == known  # the same person, by the phone in another spelling
    again_status, again = await desk.post(TAKEN, body, headers=key)
    assert again_status == 201 and again["number"] == out["number"]
    assert await Appeal.filter(customer_id=known).count() == 2
    assert await Customer.all().count() == 1
    taken = await Appeal.get(number=out["number"])
    assert taken.channel == "visit" and taken.id != (await Appeal.get(number=first["number"])).id
    event = await Event.get(appeal_id=taken.id, kind="appeal.taken")
    assert event.actor == "api:tests" and event.data == {"channel": "visit", "via": "api"}
    assert (await Customer.get(id=known)).name == "Олег"  # no name given: the known one kept

    status, out = await desk.post(TAKEN, {**body, "text": "другой текст"}, headers=key)
    assert status == 422 and out["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"phone": "12-34", "text": "Не работает"}, "phone", "not a phone number"),
        ({"email": "anna@", "text": "Не работает"}, "email", "not an email address"),
        ({"name": "Анна", "text": "Не работает"}, None, "an email or a phone"),
        ({"phone": "+79160001122", "text": "   "}, "text", "must not be blank"),
        ({"phone": "+79160001122", "text": "x", "channel": "fax"}, "channel", "phone"),
        ({"phone": "+79160001122", "text": "x", "agent": "Никто"}, None, "Никто"),
    ],
)
async def test_api_bad_taken_appeals_get_clear_errors(
    desk: Desk, body: dict[str, Any], field: str | None, words: str
) -> None:
    status, out = await desk.post(TAKEN, body)
    assert status == 422, out
    error = out["error"]
    assert words in error["message"]
    if field is not None:
        assert any(f["field"] == field for f in error["fields"]), error
    assert not await Appeal.exists()


async def test_api_taken_appeal_needs_a_staff_token(desk: Desk) -> None:
    status, out = await desk.post(TAKEN, {"phone": "+79160001122", "text": "x"}, auth=False)
    assert status == 401 and out["error"]["code"] == "unauthorized"


async def test_api_text_over_the_configured_limit_is_refused_not_left_registering(
    start_desk: Callable[..., Any],
) -> None:
    desk: Desk = await start_desk(lifecycle={"max_text_chars": 100})
    status, out = await desk.post(TAKEN, {"phone": "+79160001122", "text": "я" * 101})
    assert status == 422 and "over the limit" in out["error"]["message"]


# -- /new in the staff group ----------------------------------------------------------------


@pytest.fixture
async def tdesk(fake: FakeTelegram, start_desk: Callable[..., Any]) -> Desk:
    desk: Desk = await start_desk(**telegram_settings(fake))
    return desk


async def test_new_in_one_line_registers_a_phone_appeal_with_its_topic(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    answer = await answer_to(
        fake, "/new Иван Петров +79161234567 ivan@example.com: где мой заказ 777, не пришёл"
    )
    appeal = await Appeal.get(channel="phone")
    assert f"Обращение {appeal.number} зарегистрировано (телефон)" in answer
    assert "Иван Петров" in answer
    assert appeal.category == "order_status"
    customer = await Customer.get(id=appeal.customer_id)
    assert customer.name == "Иван Петров"
    points = set(
        await ContactPoint.filter(customer_id=customer.id).values_list("channel", "address")
    )
    assert points == {("phone", "+79161234567"), ("email", "ivan@example.com")}
    message = await Message.get(appeal_id=appeal.id, direction=Direction.IN)
    assert message.text == "где мой заказ 777, не пришёл" and message.channel == "phone"
    posts = await eventually(lambda: _with(topic_posts(fake, appeal), "где мой заказ"))
    assert any("📞" in p and "Принял(а): <b>Ирина</b>." in p for p in posts), posts
    taken = await Event.get(appeal_id=appeal.id, kind="appeal.taken")
    assert taken.actor == "Ирина" and taken.data == {"channel": "phone", "via": "telegram"}


async def test_new_visit_of_a_telegram_customer_joins_them_and_acks_in_their_chat(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    first = await open_appeal(fake, 777, "Здравствуйте", name="Мария")
    fake.user_contact(777, "+79990002233")
    point = await eventually(
        lambda: ContactPoint.filter(channel="phone", address="+79990002233").first()
    )
    await eventually(lambda: acks_in(fake, 777, first.number), what="her first acknowledgement")

    answer = await answer_to(fake, "/new визит 8 999 000-22-33 — принесла сломанный чайник")
    appeal = await Appeal.get(channel="visit")
    assert appeal.customer_id == point.customer_id
    assert "Мария" in answer and "(визит в офис)" in answer
    assert await Customer.all().count() == 1
    # The acknowledgement goes where she can be reached: her Telegram chat.
    await eventually(lambda: acks_in(fake, 777, appeal.number), what="the acknowledgement")
    assert len(acks_in(fake, 777, "")) == 2  # one per appeal
    posts = await eventually(lambda: _with(topic_posts(fake, appeal), "чайник"))
    assert any("🏢" in p and "визит в офис" in p for p in posts)


async def test_new_step_by_step_asks_name_contact_and_text(tdesk: Desk, fake: FakeTelegram) -> None:
    assert "Как зовут клиента" in await answer_to(fake, "/new")
    assert "Телефон или email" in await answer_to(fake, "Светлана")
    assert "не похоже на телефон" in await answer_to(fake, "+7 916")
    assert "Нужен телефон или email" in await answer_to(fake, "позже скажу")
    assert "Напишите текст" in await answer_to(fake, "sveta@example.com")
    answer = await answer_to(fake, "Пришлите акт сверки за май")
    appeal = await Appeal.get(channel="phone")
    assert f"Обращение {appeal.number} зарегистрировано" in answer and "Светлана" in answer
    customer = await Customer.get(id=appeal.customer_id)
    assert customer.name == "Светлана"
    assert await ContactPoint.filter(
        customer_id=customer.id, channel="email", address="sveta@example.com"
    ).exists()
    assert not await KeyValue.filter(key__startswith="staff.new_appeal.").exists()
    # The dialogue is over: the next words in General are only talk between colleagues.
    fake.group_message(STAFF_CHAT, AGENT_ID, "Кто на обед?")
    await answer_to(fake, "/queue")
    assert await Appeal.all().count() == 1


async def test_new_dialogue_is_cancelled_and_refused_in_a_topic(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    assert "Как зовут клиента" in await answer_to(fake, "/new визит")
    assert "отменено" in await answer_to(fake, "/cancel")
    assert "Нечего отменять" in await answer_to(fake, "/cancel")
    fake.group_message(STAFF_CHAT, AGENT_ID, "Пётр")  # no question stands: nothing happens
    await answer_to(fake, "/new +79160001122: первое")
    appeal = await Appeal.get(channel="phone")
    thread = int(
        (
            await eventually(
                lambda: Appeal.filter(id=appeal.id, staff_thread__isnull=False).first()
            )
        ).staff_thread
    )
    assert "общей теме" in await answer_to(fake, "/new", thread)
    assert not await KeyValue.filter(key__startswith="staff.new_appeal.").exists()
    assert (await Customer.get(id=appeal.customer_id)).name == ""


@pytest.mark.parametrize(
    ("line", "answer"),
    [
        ("/new Иван 12345: не работает", "«12345» не похоже на телефон"),
        ("/new Иван ivan@: не работает", "«ivan@» не похоже на email"),
        ("/new Иван: не работает", "Нужен телефон или email"),
        ("/new Иван +79161234567", "Не хватает текста"),
    ],
)
async def test_new_with_bad_input_says_what_is_wrong_and_how(
    tdesk: Desk, fake: FakeTelegram, line: str, answer: str
) -> None:
    sent = fake.group_message(STAFF_CHAT, AGENT_ID, line)
    answers = await eventually(lambda: len(replies_to(fake, sent)) >= 2 and replies_to(fake, sent))
    assert answer in answers[0]
    assert "/new [телефон|визит]" in answers[1]
    assert not await Appeal.exists()


async def test_new_from_a_stranger_registers_nothing(tdesk: Desk, fake: FakeTelegram) -> None:
    fake.add_private_chat(STRANGER_ID, "Гость")
    fake.group_message(STAFF_CHAT, STRANGER_ID, "/new Иван +79161234567: текст")
    await eventually(lambda: texts_in(fake, STRANGER_ID), what="the private refusal")
    assert not await Appeal.exists()


# -- the one-line format, as a plain function ---------------------------------------------------


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "Иван Петров +79161234567 ivan@example.com: не пришёл заказ",
            (
                ChannelKind.PHONE,
                "Иван Петров",
                "ivan@example.com",
                "+79161234567",
                "не пришёл заказ",
            ),
        ),
        (
            "визит ivan@example.com, Иван, 8 (916) 123-45-67\nзаказ 10:30 не привезли",
            (
                ChannelKind.VISIT,
                "Иван",
                "ivan@example.com",
                "+79161234567",
                "заказ 10:30 не привезли",
            ),
        ),
        (
            "phone Anna +1 415 555 0100 the order is late",
            (ChannelKind.PHONE, "Anna", None, "+14155550100", "the order is late"),
        ),
        (
            "офис Ольга olga@example.com. — сломался чайник",
            (ChannelKind.VISIT, "Ольга", "olga@example.com", None, "сломался чайник"),
        ),
    ],
)
def test_one_line_is_read_forgivingly(line: str, expected: tuple[Any, ...]) -> None:
    read = parse_line(line)
    assert (read.channel, read.name, read.email, read.phone, read.text) == expected


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("Иван +7916: текст", "staff.new_bad_phone"),
        ("Иван +7 916 123 45 67 89 01 23: текст", "staff.new_bad_phone"),
        ("Иван a@b: текст", "staff.new_bad_email"),
        ("Иван Петров: текст", "staff.new_no_contact"),
        ("Иван +79161234567:   ", "staff.new_no_text"),
    ],
)
def test_one_line_problems_are_named(line: str, key: str) -> None:
    with pytest.raises(Problem) as problem:
        parse_line(line)
    assert problem.value.key == key
