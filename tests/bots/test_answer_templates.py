"""Answer templates: the shipped set as buttons under /t, a press or /t NAME answering the
customer, strangers refused, the API listing them, and a broken file stopping the start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.fakes.telegram import FakeTelegram, SentMessage
from desk.config.config_errors import ConfigError
from desk.runtime.cli import main
from models import Direction, Event, Message
from tests.conftest import Desk
from tests.telegram_world import (
    AGENT_ID,
    STAFF_CHAT,
    STRANGER_ID,
    eventually,
    open_appeal,
    telegram_settings,
    texts_in,
)

SHIPPED = {"greeting", "delivery", "returns", "documents", "closing"}


@pytest.fixture
async def tdesk(fake: FakeTelegram, start_desk: Callable[..., Any]) -> Desk:
    desk: Desk = await start_desk(**telegram_settings(fake))
    return desk


def buttons_of(post: SentMessage) -> dict[str, str]:
    """The template buttons of a post: name → callback data."""
    rows = (post.reply_markup or {}).get("inline_keyboard", [])
    return {
        b["callback_data"].split(":", 2)[2]: b["callback_data"]
        for row in rows
        for b in row
        if b.get("callback_data", "").startswith("ans:")
    }


async def template_post(fake: FakeTelegram, thread: int, command_id: int) -> SentMessage:
    """The bot's answer to the /t command typed as ``command_id``."""
    posts = await eventually(
        lambda: [
            s
            for s in fake.sent_to(STAFF_CHAT, thread)
            if s.reply_to_message_id == command_id and s.method != "editMessageText"
        ],
        what="the answer to /t",
    )
    return posts[0]


async def test_t_shows_the_shipped_templates_as_buttons_and_a_press_answers_the_customer(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 611, "Сколько идёт доставка в Казань?", name="Анна")
    thread = int(appeal.staff_thread)
    command = fake.group_message(STAFF_CHAT, AGENT_ID, "/t", thread)
    post = await template_post(fake, thread, command["message"]["message_id"])

    buttons = buttons_of(post)
    assert set(buttons) >= SHIPPED, buttons
    titles = [b["text"] for row in post.reply_markup["inline_keyboard"] for b in row]
    assert "Сроки и стоимость доставки" in titles  # the staff group's language
    assert "Шаблоны ответов" in (post.body or "")

    fake.callback(AGENT_ID, STAFF_CHAT, post.message_id, buttons["delivery"])
    got = await eventually(
        lambda: [t for t in texts_in(fake, 611) if "СДЭК" in t], what="the delivery answer"
    )
    assert got[0].startswith("Рассказываем о доставке, Анна:")
    assert got[0].rstrip().endswith("— Ирина")  # signed like the agent's own answers
    stored = await Message.get(appeal_id=appeal.id, direction=Direction.OUT)
    assert "СДЭК" in stored.text and stored.author == "Ирина"
    sent = await Event.get(appeal_id=appeal.id, kind="message.sent")
    assert sent.data["source"] == "template" and sent.actor == "Ирина"
    # The colleagues see in the topic what went out; the presser gets a short notice.
    await eventually(
        lambda: any(
            "Ответ клиенту" in t and "СДЭК" in t for t in texts_in(fake, STAFF_CHAT, thread)
        ),
        what="the answer shown in the topic",
    )
    notices = await eventually(lambda: list(fake.callback_answers.values()))
    assert any("Отправлено клиенту" in (n.get("text") or "") for n in notices)


async def test_a_stranger_pressing_a_template_is_refused_and_nothing_is_sent(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    appeal = await open_appeal(fake, 612, "Нужен гарантийный талон")
    thread = int(appeal.staff_thread)
    command = fake.group_message(STAFF_CHAT, AGENT_ID, "/t", thread)
    post = await template_post(fake, thread, command["message"]["message_id"])

    fake.callback(STRANGER_ID, STAFF_CHAT, post.message_id, buttons_of(post)["documents"])
    answer = await eventually(lambda: list(fake.callback_answers.values()), what="the refusal")
    assert "Только сотрудники" in (answer[0].get("text") or "")
    assert answer[0].get("show_alert") in (True, "true")
    # An agent's later answer arrives alone: the stranger's press queued nothing before it.
    fake.group_message(STAFF_CHAT, AGENT_ID, "Пришлём талон сегодня", thread)
    await eventually(lambda: any("талон сегодня" in t for t in texts_in(fake, 612)))
    assert not any("УПД" in t for t in texts_in(fake, 612))
    assert await Message.filter(appeal_id=appeal.id, direction=Direction.OUT).count() == 1


async def test_t_name_sends_a_repeated_press_sends_once_and_an_unknown_name_offers_the_list(
    tdesk: Desk, fake: FakeTelegram
) -> None:
    fake.add_private_chat(613, "John", language_code="en")
    appeal = await open_appeal(fake, 613, "How do I return a kettle?")
    thread = int(appeal.staff_thread)

    fake.group_message(STAFF_CHAT, AGENT_ID, "/t returns", thread)
    got = await eventually(
        lambda: [t for t in texts_in(fake, 613) if "within 7 days" in t], what="/t returns"
    )
    assert appeal.number in got[0]  # the customer's language, placeholders filled

    unknown = fake.group_message(STAFF_CHAT, AGENT_ID, "/t скидки", thread)
    post = await template_post(fake, thread, unknown["message"]["message_id"])
    assert "«скидки» нет" in (post.body or "")
    assert set(buttons_of(post)) >= SHIPPED

    # Telegram delivers the same press twice, and answering it fails (too old): one answer.
    fake.fail_next("answerCallbackQuery", 400, description="Bad Request: query is too old")
    press = fake.callback(AGENT_ID, STAFF_CHAT, post.message_id, buttons_of(post)["closing"])
    fake.redeliver(press)
    await eventually(lambda: any("Glad we could help" in t for t in texts_in(fake, 613)))
    fake.group_message(STAFF_CHAT, AGENT_ID, "Anything else?", thread)
    await eventually(lambda: any("Anything else?" in t for t in texts_in(fake, 613)))
    assert sum("Glad we could help" in t for t in texts_in(fake, 613)) == 1
    assert await Message.filter(appeal_id=appeal.id, direction=Direction.OUT).count() == 3


async def test_api_lists_the_templates_with_their_texts_per_language(desk: Desk) -> None:
    status, body = await desk.get("/api/v1/answers")
    assert status == 200, body
    by_name = {a["name"]: a for a in body["answers"]}
    assert set(by_name) >= SHIPPED
    returns = by_name["returns"]
    assert returns["title"] == {"ru": "Возврат и обмен", "en": "Returns and exchanges"}
    assert "7 дней" in returns["texts"]["ru"] and "7 days" in returns["texts"]["en"]
    assert "{{ number }}" in returns["texts"]["ru"]
    assert body["placeholders"] == ["customer", "number", "agent", "company"]
    status, body = await desk.get("/api/v1/answers", auth=False)
    assert status == 401 and body["error"]["code"] == "unauthorized"


BROKEN_ANSWERS = """\
delivery:
  title: Доставка
  ru: "{{ customer }}, доставка {% if %} 2 дня"
returns:
  ru: "Возврат: {{ order_total }}"
  colour: red
"скидки на всё!":
  ru: "Скидка"
closing: "Спасибо"
"""


async def test_a_broken_answers_file_stops_the_start_with_file_key_and_reason(
    tmp_path: Path, start_desk: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "answers.yaml"
    path.write_text(BROKEN_ANSWERS, encoding="utf-8")
    expected = [
        f"{path}:delivery.ru: template syntax error (line 1)",
        f"{path}:returns.ru: unknown placeholder order_total",
        f"{path}:returns.colour: unknown key",
        f"{path}:скидки на всё!: a name is letters, digits",
        f"{path}:closing: expected a mapping with title, ru and en",
    ]
    with pytest.raises(ConfigError) as raised:
        await start_desk(answers_file=str(path))
    for line in expected:
        assert any(p.startswith(line) for p in raised.value.problems), raised.value.problems

    config = tmp_path / "appeal-desk.yaml"
    config.write_text(f"answers_file: {path}\n", encoding="utf-8")
    assert main(["check-config", str(config)]) == 1
    err = capsys.readouterr().err
    assert all(line in err for line in expected) and "Traceback" not in err
    config.write_text(f"answers_file: {tmp_path / 'nope.yaml'}\n", encoding="utf-8")
    assert main(["check-config", str(config)]) == 1
    assert "nope.yaml: file not found" in capsys.readouterr().err
