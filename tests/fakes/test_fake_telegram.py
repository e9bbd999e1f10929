"""The fake Telegram Bot API (bench/fakes/telegram.py) answers aiogram like Telegram does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto
from aiohttp import web

from bench.fakes.telegram import DEFAULT_TOKEN, GENERAL_TOPIC_ID, FakeTelegram

pytestmark = pytest.mark.backend_agnostic

USER = 1001
OTHER_USER = 1002
GROUP = -1001234567890


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=clock) as server:
        server.add_private_chat(USER, "Alice", username="alice")
        server.add_group(GROUP, "Support", members=[OTHER_USER])
        yield server


class _QuickSession(AiohttpSession):
    """aiogram's session without the 250 ms grace sleep on close (meant for TLS, not localhost)."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    client = Bot(DEFAULT_TOKEN, session=_QuickSession(api=fake.api_server))
    yield client
    await client.session.close()


# --------------------------------------------------------------------------- basics


async def test_get_me(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == int(DEFAULT_TOKEN.split(":")[0])
    assert me.is_bot
    assert me.username == "desk_test_bot"


async def test_make_bot_and_explicit_api_server(fake: FakeTelegram) -> None:
    session = _QuickSession(api=TelegramAPIServer.from_base(fake.url))
    for client in (fake.make_bot(), Bot(DEFAULT_TOKEN, session=session)):
        try:
            assert (await client.get_me()).username == "desk_test_bot"
        finally:
            await client.session.close()


async def test_send_message_is_recorded(fake: FakeTelegram, bot: Bot) -> None:
    message = await bot.send_message(USER, "hello")
    assert message.chat.id == USER
    assert message.text == "hello"
    assert message.from_user is not None and message.from_user.is_bot
    [sent] = fake.sent
    assert (sent.method, sent.chat_id, sent.message_id, sent.text) == (
        "sendMessage",
        USER,
        message.message_id,
        "hello",
    )
    assert fake.sent_to(USER) == [sent]
    assert [m["text"] for m in fake.messages_in(USER)] == ["hello"]
    assert len(fake.calls("sendmessage")) == 1


async def test_get_updates_confirms_with_offset_and_redelivers(
    fake: FakeTelegram, bot: Bot
) -> None:
    pushed = fake.user_message(USER, "/start now")
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [pushed["update_id"]]
    message = updates[0].message
    assert message is not None and message.text == "/start now"
    assert message.from_user is not None and message.from_user.id == USER
    assert message.entities is not None and message.entities[0].type == "bot_command"

    offset = updates[0].update_id + 1
    assert await bot.get_updates(offset=offset) == []
    assert await bot.get_updates(offset=offset) == []

    fake.redeliver(pushed)
    again = await bot.get_updates(offset=offset)
    assert [u.update_id for u in again] == [pushed["update_id"]]
    assert again[0].message is not None and again[0].message.text == "/start now"
    assert await bot.get_updates(offset=offset) == []


async def test_get_updates_long_poll_wakes_on_new_update(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.05)
    fake.user_message(USER, "late")
    updates = await asyncio.wait_for(poll, 2)
    assert [u.message.text for u in updates if u.message] == ["late"]


# --------------------------------------------------------------------------- text checks


async def test_html_parse_mode_entities_and_errors(fake: FakeTelegram, bot: Bot) -> None:
    message = await bot.send_message(USER, "<b>hi</b> &amp; <i>you</i>", parse_mode="HTML")
    assert message.text == "hi & you"
    assert message.entities is not None
    assert [(e.type, e.offset, e.length) for e in message.entities] == [
        ("bold", 0, 2),
        ("italic", 5, 3),
    ]
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(USER, "<b>unclosed", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "foo"'):
        await bot.send_message(USER, "a <foo>b</foo>", parse_mode="HTML")
    assert len(fake.sent) == 1


async def test_text_length_limit(fake: FakeTelegram, bot: Bot) -> None:
    fake.limits_enabled = False
    await bot.send_message(USER, "a" * 4096)
    # The limit applies to the text after parsing: tags do not count.
    await bot.send_message(USER, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER, "a" * 4097)
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(USER, "   ")
    assert len(fake.sent) == 2


async def test_caption_length_limit(fake: FakeTelegram, bot: Bot) -> None:
    fake.add_file("photo-1", b"\xff\xd8jpeg", kind="photo")
    await bot.send_photo(USER, "photo-1", caption="c" * 1024)
    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        await bot.send_photo(USER, "photo-1", caption="c" * 1025)
    assert len(fake.sent) == 1


# --------------------------------------------------------------------------- forum topics


async def test_create_forum_topic_ids(fake: FakeTelegram, bot: Bot) -> None:
    before = await bot.send_message(GROUP, "in General")
    assert before.message_thread_id is None
    topic = await bot.create_forum_topic(GROUP, "Appeal #1")
    assert topic.name == "Appeal #1"
    assert topic.message_thread_id != GENERAL_TOPIC_ID
    assert topic.message_thread_id > before.message_id
    # The topic's id is the id of its forum_topic_created service message.
    created = fake.chat(GROUP).messages[topic.message_thread_id]
    assert created["forum_topic_created"]["name"] == "Appeal #1"

    second = await bot.create_forum_topic(GROUP, "Appeal #2")
    assert second.message_thread_id not in (GENERAL_TOPIC_ID, topic.message_thread_id)
    after = await bot.send_message(GROUP, "General again")
    assert after.message_id > second.message_thread_id


async def test_group_message_in_topic_and_bot_reply(fake: FakeTelegram, bot: Bot) -> None:
    topic = await bot.create_forum_topic(GROUP, "Appeal #7")
    thread = topic.message_thread_id
    fake.group_message(GROUP, OTHER_USER, "agent here", message_thread_id=thread)
    [update] = await bot.get_updates()
    message = update.message
    assert message is not None
    assert message.chat.id == GROUP and message.chat.is_forum
    assert message.message_thread_id == thread
    assert message.is_topic_message is True
    assert message.reply_to_message is not None
    assert message.reply_to_message.message_id == thread
    assert message.reply_to_message.forum_topic_created is not None
    assert message.reply_to_message.forum_topic_created.name == "Appeal #7"

    sent = await bot.send_message(GROUP, "bot answer", message_thread_id=thread)
    assert sent.message_thread_id == thread
    assert sent.is_topic_message is True
    assert [s.text for s in fake.sent_to(GROUP, thread)] == ["bot answer"]
    assert [m.get("text") for m in fake.messages_in(GROUP, thread)] == [
        None,  # forum_topic_created
        "agent here",
        "bot answer",
    ]
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(GROUP, "nowhere", message_thread_id=thread + 100)


async def test_close_reopen_and_rename_topic(fake: FakeTelegram, bot: Bot) -> None:
    topic = fake.add_topic(GROUP, "Customer topic", creator_id=OTHER_USER)
    thread = topic.message_thread_id
    assert await bot.close_forum_topic(GROUP, thread) is True
    assert topic.closed
    with pytest.raises(TelegramBadRequest, match="TOPIC_NOT_MODIFIED"):
        await bot.close_forum_topic(GROUP, thread)

    # Admins with can_manage_topics still write in closed topics; others get TOPIC_CLOSED.
    await bot.send_message(GROUP, "admin note", message_thread_id=thread)
    fake.set_bot_rights(GROUP, admin=True, can_manage_topics=False)
    with pytest.raises(TelegramBadRequest, match="TOPIC_CLOSED"):
        await bot.send_message(GROUP, "closed", message_thread_id=thread)
    fake.set_bot_rights(GROUP, admin=True, can_manage_topics=True)

    assert await bot.reopen_forum_topic(GROUP, thread) is True
    assert not topic.closed
    fake.set_bot_rights(GROUP, admin=True, can_manage_topics=False)
    await bot.send_message(GROUP, "open again", message_thread_id=thread)
    fake.set_bot_rights(GROUP, admin=True, can_manage_topics=True)

    assert await bot.edit_forum_topic(GROUP, thread, name="Renamed") is True
    assert topic.name == "Renamed"
    events = [m for m in fake.messages_in(GROUP, thread) if "forum_topic_edited" in m]
    assert events[-1]["forum_topic_edited"] == {"name": "Renamed"}
    assert [s.text for s in fake.sent_to(GROUP, thread)] == ["admin note", "open again"]


async def test_topic_creator_writes_in_own_closed_topic(fake: FakeTelegram, bot: Bot) -> None:
    fake.set_bot_rights(GROUP, admin=True, can_manage_topics=False)
    with pytest.raises(TelegramBadRequest, match="not enough rights"):
        await bot.create_forum_topic(GROUP, "No rights")
    fake.set_bot_rights(GROUP, admin=True, can_manage_topics=True)
    topic = await bot.create_forum_topic(GROUP, "Mine")
    fake.set_bot_rights(GROUP, admin=True, can_manage_topics=False)
    assert await bot.close_forum_topic(GROUP, topic.message_thread_id)
    await bot.send_message(GROUP, "still mine", message_thread_id=topic.message_thread_id)


# --------------------------------------------------------------------------- errors and faults


async def test_blocked_user_and_unknown_chat(fake: FakeTelegram, bot: Bot) -> None:
    fake.block_user(USER)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(USER, "hi")
    fake.unblock_user(USER)
    await bot.send_message(USER, "hi again")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(424242, "who?")
    assert [s.text for s in fake.sent] == ["hi again"]


async def test_fail_next_server_error_and_retry_after(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", 500)
    with pytest.raises(TelegramServerError):
        await bot.send_message(USER, "one")
    fake.fail_next("sendMessage", 429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(USER, "two")
    assert caught.value.retry_after == 7
    await bot.send_message(USER, "three")
    assert [s.text for s in fake.sent] == ["three"]
    assert [r.status for r in fake.calls("sendMessage")] == [500, 429, 200]


async def test_timeout_next_sends_but_answer_is_lost(fake: FakeTelegram, bot: Bot) -> None:
    fake.timeout_next("sendMessage", 5)
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(USER, "sent anyway", request_timeout=0.2)
    assert [s.text for s in fake.sent] == ["sent anyway"]


# --------------------------------------------------------------------------- flood limits


async def test_group_flood_limit(fake: FakeTelegram, bot: Bot, clock: Clock) -> None:
    # The topic's creation counts too (at +0 s), as Telegram counts it.
    thread = (await bot.create_forum_topic(GROUP, "Busy")).message_thread_id
    for i in range(19):
        clock.advance(0.5)
        # Topics share the group's budget.
        await bot.send_message(GROUP, f"m{i}", message_thread_id=thread if i % 2 else None)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(GROUP, "m19")
    assert caught.value.retry_after > 0
    assert len(fake.sent) == 19
    # The topic was made at +0 s; now is +9.5 s: it leaves the window at +60 s.
    assert caught.value.retry_after == 51
    clock.advance(caught.value.retry_after)
    await bot.send_message(GROUP, "m19")
    assert len(fake.sent) == 20


async def test_private_chat_limit(fake: FakeTelegram, bot: Bot, clock: Clock) -> None:
    for i in range(3):
        await bot.send_message(USER, f"burst {i}")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(USER, "too fast")
    assert caught.value.retry_after == 1
    clock.advance(1.0)
    await bot.send_message(USER, "after a second")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(USER, "too fast again")
    # Another private chat has its own budget.
    fake.add_private_chat(OTHER_USER, "Bob")
    await bot.send_message(OTHER_USER, "hello Bob")
    assert len(fake.sent) == 5


async def test_edits_cost_less_than_sends(fake: FakeTelegram, bot: Bot, clock: Clock) -> None:
    first = await bot.send_message(USER, "v0")
    await bot.send_message(USER, "other")
    # One message of budget left: three edits fit where one send would.
    for i in range(1, 4):
        await bot.edit_message_text(f"v{i}", chat_id=USER, message_id=first.message_id)
    with pytest.raises(TelegramRetryAfter):
        await bot.edit_message_text("v4", chat_id=USER, message_id=first.message_id)
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(USER, "send")
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("v3", chat_id=USER, message_id=first.message_id)
    assert fake.chat(USER).messages[first.message_id]["text"] == "v3"
    clock.advance(1.0)
    await bot.send_message(USER, "send")


async def test_media_group_counts_as_one_message(
    fake: FakeTelegram, bot: Bot, clock: Clock
) -> None:
    for name in ("p1", "p2", "p3"):
        fake.add_file(name, name.encode(), kind="photo")
    album = await bot.send_media_group(
        USER, [InputMediaPhoto(media=n, caption=f"cap {n}") for n in ("p1", "p2", "p3")]
    )
    assert len(album) == 3
    assert len({m.media_group_id for m in album}) == 1 and album[0].media_group_id
    assert [m.caption for m in album] == ["cap p1", "cap p2", "cap p3"]
    await bot.send_message(USER, "two")
    await bot.send_message(USER, "three")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(USER, "four")
    assert len(fake.sent) == 5


# --------------------------------------------------------------------------- files and media


async def test_send_photo_by_file_id_and_download(fake: FakeTelegram, bot: Bot) -> None:
    content = b"\xff\xd8\xff\xe0fake-jpeg-bytes"
    fake.add_file("AgACphoto", content, kind="photo")
    message = await bot.send_photo(USER, "AgACphoto", caption="<b>look</b>", parse_mode="HTML")
    assert message.photo is not None
    assert message.photo[-1].file_id == "AgACphoto"
    assert message.caption == "look"
    assert fake.sent[0].media_type == "photo" and fake.sent[0].file_id == "AgACphoto"

    file = await bot.get_file("AgACphoto")
    assert file.file_path and file.file_size == len(content)
    downloaded = await bot.download(file)
    assert downloaded is not None and downloaded.read() == content
    url = f"{fake.url}/file/bot{DEFAULT_TOKEN}/{file.file_path}"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == content

    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(USER, "unknown-id")


async def test_user_photo_can_be_downloaded(fake: FakeTelegram, bot: Bot) -> None:
    fake.user_message(USER, photo=b"user-photo", caption="receipt")
    [update] = await bot.get_updates()
    assert update.message is not None and update.message.photo
    assert update.message.caption == "receipt"
    downloaded = await bot.download(update.message.photo[-1].file_id)
    assert downloaded is not None and downloaded.read() == b"user-photo"


async def test_copy_message(fake: FakeTelegram, bot: Bot) -> None:
    topic = await bot.create_forum_topic(GROUP, "Copies")
    original = fake.user_message(USER, "please help")["message"]
    copied = await bot.copy_message(
        GROUP, USER, original["message_id"], message_thread_id=topic.message_thread_id
    )
    stored = fake.chat(GROUP).messages[copied.message_id]
    assert stored["text"] == "please help"
    assert stored["message_thread_id"] == topic.message_thread_id
    assert "forward_origin" not in stored
    assert stored["from"]["id"] == fake.bot.id
    with pytest.raises(TelegramBadRequest, match="message to copy not found"):
        await bot.copy_message(GROUP, USER, 9999)


# --------------------------------------------------------------------------- interaction


async def test_callback_query(fake: FakeTelegram, bot: Bot) -> None:
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Close", callback_data="close:1")]]
    )
    message = await bot.send_message(USER, "Done?", reply_markup=markup)
    fake.callback(USER, USER, message.message_id, "close:1")
    [update] = await bot.get_updates()
    query = update.callback_query
    assert query is not None
    assert query.data == "close:1"
    assert query.from_user.id == USER
    assert query.message is not None and query.message.message_id == message.message_id
    assert await bot.answer_callback_query(query.id, text="Closed") is True
    assert fake.callback_answers[query.id]["text"] == "Closed"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)


async def test_pin_chat_message(fake: FakeTelegram, bot: Bot) -> None:
    message = await bot.send_message(GROUP, "rules")
    assert await bot.pin_chat_message(GROUP, message.message_id) is True
    assert fake.chat(GROUP).pinned == [message.message_id]
    chat = await bot.get_chat(GROUP)
    assert chat.pinned_message is not None
    assert chat.pinned_message.message_id == message.message_id
    with pytest.raises(TelegramBadRequest, match="message to pin not found"):
        await bot.pin_chat_message(GROUP, 9999)


async def test_user_edit_and_contact(fake: FakeTelegram, bot: Bot) -> None:
    original = fake.user_message(USER, "typo")["message"]
    fake.user_edit(USER, original["message_id"], "fixed")
    fake.user_contact(USER, "+79990001122")
    updates = await bot.get_updates()
    assert [u.event_type for u in updates] == ["message", "edited_message", "message"]
    edited = updates[1].edited_message
    assert edited is not None
    assert edited.message_id == original["message_id"]
    assert edited.text == "fixed" and edited.edit_date is not None
    contact = updates[2].message
    assert contact is not None and contact.contact is not None
    assert contact.contact.phone_number == "+79990001122"
    assert contact.contact.user_id == USER
    assert contact.contact.first_name == "Alice"


# --------------------------------------------------------------------------- webhook


async def test_webhook_delivery_and_get_updates_conflict(fake: FakeTelegram, bot: Bot) -> None:
    received: asyncio.Queue[tuple[dict[str, str], dict[str, object]]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put((dict(request.headers), await request.json()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        url = f"http://127.0.0.1:{port}/hook"
        assert await bot.set_webhook(url, secret_token="s3cret-Token_1") is True
        info = await bot.get_webhook_info()
        assert info.url == url

        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()

        pushed = fake.user_message(USER, "via webhook")
        headers, body = await asyncio.wait_for(received.get(), 5)
        assert headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret-Token_1"
        assert body == pushed
        assert fake.webhook_attempts[-1].status == 200

        assert await bot.delete_webhook() is True
        assert await bot.get_updates() == []
    finally:
        await runner.cleanup()
