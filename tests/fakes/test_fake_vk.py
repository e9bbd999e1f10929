"""The fake VK API (tests/fakes/vk.py) answers vkbottle's real client like VK does."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pydantic
import pytest
from aiohttp import web
from vkbottle import (
    API,
    Bot,
    Callback,
    DocMessagesUploader,
    GroupEventType,
    Keyboard,
    PhotoMessageUploader,
    VKAPIError,
    VoiceMessageUploader,
)
from vkbottle.bot import Message, MessageEvent

from tests.fakes.vk import DEFAULT_GROUP_ID, DEFAULT_TOKEN, TINY_PNG, FakeVk

pytestmark = pytest.mark.backend_agnostic

USER = 1001
OTHER = 1002
GROUP = DEFAULT_GROUP_ID
PDF = b"%PDF-1.4 fake"
OGG = b"OggS\x00fake-voice"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # BotPolling writes ./.vkbottle/bot-polling/<group>.json.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeVk]:
    async with FakeVk(clock=clock) as server:
        server.add_user(USER, "Alice", "Smith", phone="+79990001122")
        yield server


@pytest.fixture
async def api(fake: FakeVk) -> AsyncIterator[API]:
    client = fake.make_api()
    yield client
    await client.http_client.close()


@contextlib.asynccontextmanager
async def polling(fake: FakeVk, bot: Bot) -> AsyncIterator[None]:
    task = asyncio.create_task(bot.run_polling())
    try:
        await fake.wait_polling()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A local HTTP endpoint (for Callback API deliveries); yields its URL."""
    app = web.Application()
    app.router.add_post("/vk", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/vk"
    finally:
        await runner.cleanup()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def download(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        return await resp.read()


# --------------------------------------------------------------------------- basics


async def test_groups_and_users(fake: FakeVk, api: API) -> None:
    groups = await api.groups.get_by_id()
    assert groups.groups is not None
    assert groups.groups[0].id == GROUP
    server = await api.groups.get_long_poll_server(group_id=GROUP)
    assert server.server == fake.long_poll_server
    assert server.ts == "1"

    users = await api.users.get(user_ids=[USER, 999], fields=["contacts", "screen_name"])
    assert (users[0].first_name, users[0].last_name) == ("Alice", "Smith")
    assert users[0].mobile_phone == "+79990001122"
    assert users[0].screen_name == f"id{USER}"
    assert users[1].first_name == "DELETED"
    plain = await api.users.get(user_ids=[USER])
    assert plain[0].mobile_phone is None

    call = fake.calls("users.get")[0]
    assert call.token == DEFAULT_TOKEN
    assert call.version == "5.199"
    assert call.params["user_ids"] == f"{USER},999"


async def test_protocol_errors(fake: FakeVk, api: API) -> None:
    with pytest.raises(VKAPIError[3], match="Unknown method passed"):
        await api.request("messages.noSuchMethod", {})
    with pytest.raises(VKAPIError[100], match="group_id is undefined"):
        await api.request("groups.getLongPollServer", {})
    fake.revoke_token(DEFAULT_TOKEN)
    with pytest.raises(VKAPIError[5], match="invalid access_token") as caught:
        await api.groups.get_by_id()
    assert caught.value.request_params["method"] == "groups.getById"
    assert "access_token" not in caught.value.request_params

    async with aiohttp.ClientSession() as session:
        async with session.post(fake.api_url + "users.get", data={"v": "5.199"}) as resp:
            body = await resp.json()
        assert body["error"]["error_code"] == 5
        async with session.post(fake.api_url + "users.get", data={"access_token": "t"}) as resp:
            body = await resp.json()
        assert body["error"]["error_code"] == 8


# --------------------------------------------------------------------------- messages.send


async def test_send_by_peer_id_and_peer_ids(fake: FakeVk, api: API) -> None:
    keyboard = Keyboard(inline=True).add(Callback("Take", payload={"cmd": "take"})).get_json()
    message_id = await api.messages.send(
        peer_id=USER, message="hello", random_id=0, keyboard=keyboard
    )
    assert isinstance(message_id, int)

    items = await api.messages.send(
        peer_ids=[USER], message="again", random_id=0, attachment="photo-1_2,doc-1_3"
    )
    assert items[0].peer_id == USER
    assert items[0].message_id == message_id + 1
    assert items[0].conversation_message_id == 2

    first, second = fake.sent_to(USER)
    assert (first.text, first.message_id, first.conversation_message_id) == ("hello", 1, 1)
    assert first.keyboard is not None
    assert first.keyboard["buttons"][0][0]["action"]["payload"] == {"cmd": "take"}
    assert second.attachments == ["photo-1_2", "doc-1_3"]
    assert second.attachment == "photo-1_2,doc-1_3"
    stored = fake.messages_in(USER)
    assert stored[0]["keyboard"]["author_id"] == -GROUP
    assert stored[0]["from_id"] == -GROUP


async def test_random_id_deduplicates_per_peer(fake: FakeVk, api: API) -> None:
    fake.add_user(OTHER, "Bob")
    first = await api.messages.send(peer_id=USER, message="once", random_id=77)
    again = await api.messages.send(peer_id=USER, message="once", random_id=77)
    listed = await api.messages.send(peer_ids=[USER], message="once", random_id=77)
    elsewhere = await api.messages.send(peer_id=OTHER, message="once", random_id=77)
    assert first == again == listed[0].message_id
    assert elsewhere != first
    assert len(fake.sent_to(USER)) == 1
    await api.messages.send(peer_id=USER, message="zero", random_id=0)
    await api.messages.send(peer_id=USER, message="zero", random_id=0)
    assert len(fake.sent_to(USER)) == 3


async def test_send_validation(fake: FakeVk, api: API) -> None:
    with pytest.raises(VKAPIError[914], match="Message is too long"):
        await api.messages.send(peer_id=USER, message="x" * 4097, random_id=0)
    await api.messages.send(peer_id=USER, message="x" * 4096, random_id=0)
    with pytest.raises(VKAPIError[100], match="random_id"):
        await api.messages.send(peer_id=USER, message="no random id")
    with pytest.raises(VKAPIError[100], match="message is empty"):
        await api.messages.send(peer_id=USER, message=" ", random_id=0)
    too_many = Keyboard(inline=True)
    for n in range(11):
        too_many.add(Callback(f"b{n}", payload={"n": n})).row()
    with pytest.raises(VKAPIError[911]):
        await api.messages.send(
            peer_id=USER, message="k", random_id=0, keyboard=too_many.get_json()
        )
    with pytest.raises(VKAPIError[911]):
        await api.messages.send(peer_id=USER, message="k", random_id=0, keyboard="{not json")
    assert len(fake.sent) == 1


async def test_denied_and_unknown_users(fake: FakeVk, api: API) -> None:
    fake.deny_messages(USER)
    with pytest.raises(VKAPIError[901], match="without permission"):
        await api.messages.send(peer_id=USER, message="hi", random_id=0)
    with pytest.raises(VKAPIError[901]):
        await api.messages.send(peer_id=424242, message="never wrote", random_id=0)

    # With peer_ids VK reports a refused peer inside its item, without message ids...
    raw = await api.request("messages.send", {"peer_ids": USER, "message": "hi", "random_id": 0})
    assert raw["response"] == [
        {
            "peer_id": USER,
            "error": {
                "code": 901,
                "description": "Can't send messages for users without permission",
            },
        }
    ]
    # ...which vkbottle's model (message_id required) cannot parse: Message.answer() raises this.
    with pytest.raises(pydantic.ValidationError):
        await api.messages.send(peer_ids=[USER], message="hi", random_id=0)

    fake.allow_messages(USER)
    assert await api.messages.send(peer_id=USER, message="hi", random_id=0)
    assert [s.text for s in fake.sent] == ["hi"]


# --------------------------------------------------------------------------- faults and limits


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (6, "Too many requests per second"),
        (9, "Flood control"),
        (10, "Internal server error"),
        (901, "Can't send messages for users without permission"),
    ],
)
async def test_fail_next(fake: FakeVk, api: API, code: int, text: str) -> None:
    fake.fail_next("messages.send", code)
    with pytest.raises(VKAPIError[code]) as caught:
        await api.messages.send(peer_id=USER, message="hi", random_id=1)
    assert caught.value.error_msg == text
    assert caught.value.request_params["peer_id"] == str(USER)
    assert fake.sent == []
    assert await api.messages.send(peer_id=USER, message="hi", random_id=1)


async def test_fail_next_any_method_with_message_and_count(fake: FakeVk, api: API) -> None:
    fake.fail_next("*", 10, "Internal server error: try later", count=2)
    for _ in range(2):
        with pytest.raises(VKAPIError[10], match="try later"):
            await api.users.get(user_ids=[USER])
    assert (await api.users.get(user_ids=[USER]))[0].id == USER


async def test_rate_limit_per_token(fake: FakeVk, api: API, clock: Clock) -> None:
    for _ in range(20):
        await api.users.get(user_ids=[USER])
    with pytest.raises(VKAPIError[6], match="Too many requests per second"):
        await api.users.get(user_ids=[USER])
    other = fake.make_api("vk1.a.another-token")
    try:
        await other.users.get(user_ids=[USER])
    finally:
        await other.http_client.close()
    clock.advance(1.0)
    await api.users.get(user_ids=[USER])
    fake.limits_enabled = False
    for _ in range(30):
        await api.users.get(user_ids=[USER])


async def test_http_error_is_retried_by_vkbottle(fake: FakeVk, api: API) -> None:
    fake.http_error_next("users.get", 502)
    users = await api.users.get(user_ids=[USER])
    assert users[0].id == USER
    assert [c.http_status for c in fake.calls("users.get")] == [502, 200]


async def test_lost_answer_and_random_id(fake: FakeVk, api: API) -> None:
    # VK sent the message, the client saw a 502 and vkbottle retried the call.
    fake.http_error_next("messages.send", 503, executed=True)
    await api.messages.send(peer_id=USER, message="safe", random_id=5)
    assert [s.text for s in fake.sent] == ["safe"]
    fake.http_error_next("messages.send", 503, executed=True)
    await api.messages.send(peer_id=USER, message="twice", random_id=0)
    assert [s.text for s in fake.sent] == ["safe", "twice", "twice"]


# --------------------------------------------------------------------------- edit, get


async def test_edit_and_get(fake: FakeVk, api: API) -> None:
    keyboard = Keyboard(inline=True).add(Callback("Go", payload={"go": 1})).get_json()
    sent = await api.messages.send(peer_ids=[USER], message="v1", random_id=0, keyboard=keyboard)
    cmid = sent[0].conversation_message_id
    assert await api.messages.edit(peer_id=USER, conversation_message_id=cmid, message="v2") == 1
    got = await api.messages.get_by_conversation_message_id(
        peer_id=USER, conversation_message_ids=[cmid]
    )
    assert got.items[0].text == "v2"
    assert got.items[0].keyboard is None
    assert fake.sent[-1].method == "messages.edit"

    update = fake.user_message(USER, "mine")
    user_message_id = update["object"]["message"]["id"]
    with pytest.raises(VKAPIError[15]):
        await api.messages.edit(peer_id=USER, message_id=user_message_id, message="no")
    with pytest.raises(VKAPIError[100]):
        await api.messages.edit(peer_id=USER, message_id=9999, message="no")
    by_id = await api.messages.get_by_id(message_ids=[sent[0].message_id, user_message_id])
    assert [m.text for m in by_id.items] == ["v2", "mine"]
    assert [m.out for m in by_id.items] == [True, False]

    later = fake.wall_clock() + 25 * 3600
    fake.wall_clock = lambda: later
    with pytest.raises(VKAPIError[909], match="too old"):
        await api.messages.edit(peer_id=USER, conversation_message_id=cmid, message="v3")


# --------------------------------------------------------------------------- uploads and files


async def test_photo_upload_send_and_download(fake: FakeVk, api: API) -> None:
    attachment = await PhotoMessageUploader(api).upload(TINY_PNG, peer_id=USER)
    assert attachment.startswith(f"photo-{GROUP}_")
    await api.messages.send(peer_id=USER, attachment=attachment, random_id=0)
    photo = fake.messages_in(USER)[0]["attachments"][0]["photo"]
    assert photo["owner_id"] == -GROUP
    assert {s["type"] for s in photo["sizes"]} == {"s", "m", "x", "y"}
    assert await download(photo["sizes"][-1]["url"]) == TINY_PNG
    assert fake.sent[0].attachments == [attachment]


async def test_doc_and_voice_upload(fake: FakeVk, api: API) -> None:
    doc = await DocMessagesUploader(api).upload(PDF, peer_id=USER, title="report.pdf")
    assert doc.startswith(f"doc-{GROUP}_")
    voice = await VoiceMessageUploader(api).upload(OGG, peer_id=USER)
    assert voice.startswith(f"audio_message-{GROUP}_")
    await api.messages.send(peer_id=USER, attachment=f"{doc},{voice}", random_id=0)
    saved_doc, saved_voice = fake.messages_in(USER)[0]["attachments"]
    assert saved_doc["doc"]["title"] == "report.pdf"
    assert saved_doc["doc"]["ext"] == "pdf"
    assert await download(saved_doc["doc"]["url"]) == PDF
    assert await download(saved_voice["audio_message"]["link_ogg"]) == OGG
    with pytest.raises(VKAPIError[100]):
        await api.request("docs.save", {"file": "forged"})


# --------------------------------------------------------------------------- long poll


async def test_bot_long_poll_messages_and_attachments(fake: FakeVk, api: API) -> None:
    bot = fake.make_bot(api, wait=1)
    received: asyncio.Queue[Message] = asyncio.Queue()

    @bot.on.message()
    async def on_message(message: Message) -> None:
        await received.put(message)
        await message.answer(f"got {message.text}")

    async with polling(fake, bot):
        fake.user_message(USER, "hello", payload={"button": "start"})
        message = await asyncio.wait_for(received.get(), 5)
        assert (message.text, message.from_id, message.peer_id) == ("hello", USER, USER)
        assert message.group_id == GROUP
        assert json.loads(message.payload or "") == {"button": "start"}
        assert message.client_info is not None and message.client_info.inline_keyboard

        fake.user_message(
            USER,
            "files",
            photo=TINY_PNG,
            doc=PDF,
            doc_name="scan.pdf",
            voice=OGG,
            sticker_id=9,
        )
        message = await asyncio.wait_for(received.get(), 5)
        photo, doc, voice, sticker = (a for a in message.attachments or [])
        assert photo.photo is not None and photo.photo.sizes is not None
        assert await download(photo.photo.sizes[-1].url or "") == TINY_PNG
        assert doc.doc is not None and doc.doc.title == "scan.pdf"
        assert await download(doc.doc.url or "") == PDF
        assert voice.audio_message is not None
        assert await download(voice.audio_message.link_mp3) == OGG
        assert sticker.sticker is not None and sticker.sticker.images
        assert await download(sticker.sticker.images[0].url) == TINY_PNG
        assert message.get_attachment_strings() is not None

        await until(lambda: len(fake.sent_to(USER)) == 2)
        answer_id = fake.sent_to(USER)[0].message_id
        fake.user_message(USER, "a reply", reply_to=answer_id)
        message = await asyncio.wait_for(received.get(), 5)
        assert message.reply_message is not None
        assert message.reply_message.text == "got hello"
        assert message.reply_message.from_id == -GROUP
        await until(lambda: len(fake.sent_to(USER)) == 3)
    assert [s.text for s in fake.sent_to(USER)] == ["got hello", "got files", "got a reply"]
    assert (Path.cwd() / ".vkbottle" / "bot-polling" / f"{GROUP}.json").exists()


async def test_callback_button_message_event(fake: FakeVk, api: API) -> None:
    bot = fake.make_bot(api, wait=1)
    pressed: asyncio.Queue[MessageEvent] = asyncio.Queue()

    @bot.on.raw_event(GroupEventType.MESSAGE_EVENT, dataclass=MessageEvent)
    async def on_press(event: MessageEvent) -> None:
        await event.show_snackbar("Taken")
        await event.edit_message("Taken by agent")
        await pressed.put(event)

    keyboard = Keyboard(inline=True).add(Callback("Take", payload={"cmd": "take"})).get_json()
    sent = await api.messages.send(peer_ids=[USER], message="New", random_id=0, keyboard=keyboard)
    async with polling(fake, bot):
        update = fake.button_press(USER, {"cmd": "take"}, sent[0].conversation_message_id)
        event = await asyncio.wait_for(pressed.get(), 5)
    assert event.payload == {"cmd": "take"}
    assert event.conversation_message_id == sent[0].conversation_message_id
    assert event.event_id == update["object"]["event_id"]
    (answer,) = fake.event_answers
    assert answer.event_data == {"type": "show_snackbar", "text": "Taken"}
    assert (answer.user_id, answer.peer_id) == (USER, USER)
    assert fake.messages_in(USER)[0]["text"] == "Taken by agent"
    with pytest.raises(ValueError, match="no message"):
        fake.button_press(USER, None, 99)


async def test_long_poll_wire_format_and_waiting(fake: FakeVk, api: API) -> None:
    server = await api.groups.get_long_poll_server(group_id=GROUP)
    query = {"act": "a_check", "key": server.key, "ts": server.ts, "wait": "1"}
    async with aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with session.get(server.server, params=query) as resp:
            assert await resp.json() == {"ts": "1", "updates": []}
        assert loop.time() - started >= 0.9

        async def press_soon() -> None:
            await asyncio.sleep(0.1)
            fake.user_message(USER, "wake up")

        task = asyncio.create_task(press_soon())
        started = loop.time()
        async with session.get(server.server, params={**query, "wait": "25"}) as resp:
            body = await resp.json()
        await task
        assert loop.time() - started < 2
        assert body["ts"] == "2"
        (update,) = body["updates"]
        assert update["type"] == "message_new"
        assert update["group_id"] == GROUP
        assert len(update["event_id"]) == 40
        assert update["object"]["message"]["text"] == "wake up"
        assert update["object"]["client_info"]["keyboard"] is True

        async with session.get(server.server, params={**query, "ts": "9"}) as resp:
            assert await resp.json() == {"failed": 1, "ts": "2"}
        fake.expire_key()
        async with session.get(server.server, params={**query, "ts": "2"}) as resp:
            assert await resp.json() == {"failed": 2}
        fake.long_poll_fail_next(3)
        async with session.post(server.server, params={**query, "ts": "2"}) as resp:
            assert await resp.json() == {"failed": 3}


async def test_bot_recovers_from_long_poll_failures(fake: FakeVk, api: API) -> None:
    bot = fake.make_bot(api, wait=1)
    texts: asyncio.Queue[str] = asyncio.Queue()

    @bot.on.message()
    async def on_message(message: Message) -> None:
        await texts.put(message.text)

    async with polling(fake, bot):
        fake.user_message(USER, "one")
        assert await asyncio.wait_for(texts.get(), 5) == "one"
        fake.expire_key()  # failed: 2, new key, same ts: nothing is lost
        fake.user_message(USER, "two")
        assert await asyncio.wait_for(texts.get(), 5) == "two"
        await fake.wait_polling(fresh=True)
        fake.user_message(USER, "three")
        fake.long_poll_fail_next(1)  # failed: 1 with the current ts: "three" is skipped
        await fake.wait_polling(fresh=True)
        fake.http_error_next("longpoll", 502)  # hits the poll after the parked one
        fake.user_message(USER, "four")
        assert await asyncio.wait_for(texts.get(), 5) == "four"
        await fake.wait_polling(fresh=True)
        fake.user_message(USER, "five")
        assert await asyncio.wait_for(texts.get(), 5) == "five"
    assert texts.empty()
    assert len(fake.calls("groups.getLongPollServer")) == 2


async def test_redeliver_keeps_event_id(fake: FakeVk, api: API) -> None:
    bot = fake.make_bot(api, wait=1)
    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @bot.on.raw_event(GroupEventType.MESSAGE_NEW)
    async def on_raw(event: dict[str, Any]) -> None:
        await seen.put(event)

    async with polling(fake, bot):
        update = fake.user_message(USER, "dup")
        fake.redeliver(update)
        first = await asyncio.wait_for(seen.get(), 5)
        second = await asyncio.wait_for(seen.get(), 5)
    assert first["event_id"] == second["event_id"] == update["event_id"]


# --------------------------------------------------------------------------- Callback API


async def test_callback_confirmation_and_delivery(fake: FakeVk, api: API) -> None:
    bot = Bot(api=api)
    texts: asyncio.Queue[str] = asyncio.Queue()
    bodies: list[dict[str, Any]] = []

    @bot.on.message()
    async def on_message(message: Message) -> None:
        await texts.put(message.text)

    async def endpoint(request: web.Request) -> web.Response:
        event = await request.json()
        bodies.append(event)
        if event["type"] == "confirmation":
            return web.Response(text="c0de")
        if event.get("secret") != "s3cret":
            return web.Response(status=403)
        await bot.process_event(event)
        return web.Response(text="ok")

    async with serve(endpoint) as url:
        fake.set_callback(url, "s3cret", "c0de")
        update = fake.user_message(USER, "via callback")
        assert await asyncio.wait_for(texts.get(), 5) == "via callback"
        await fake.wait_callback_idle()
    assert bodies[0] == {"type": "confirmation", "group_id": GROUP}
    assert bodies[1] == {**update, "secret": "s3cret"}
    assert fake.callback is not None and fake.callback.status == "ok"
    assert [(a.type, a.ok) for a in fake.callback_attempts] == [
        ("confirmation", True),
        ("message_new", True),
    ]


async def test_callback_retries_then_drops(fake: FakeVk) -> None:
    fake.callback_retry_delay = 0.01
    answers = iter(["wrong", "oops", "ok"])

    async def endpoint(request: web.Request) -> web.Response:
        event = await request.json()
        if event["type"] == "confirmation":
            return web.Response(text=fake.confirmation_code)
        return web.Response(text=next(answers, "nope"))

    async with serve(endpoint) as url:
        fake.set_callback(url)
        fake.user_message(USER, "retried")
        await fake.wait_callback_idle()
        fake.user_message(USER, "dropped")
        await fake.wait_callback_idle()
    kinds = [(a.type, a.attempt, a.ok) for a in fake.callback_attempts]
    assert kinds == [
        ("confirmation", 1, True),
        ("message_new", 1, False),
        ("message_new", 2, False),
        ("message_new", 3, True),
        ("message_new", 1, False),
        ("message_new", 2, False),
        ("message_new", 3, False),
    ]
    assert [u["object"]["message"]["text"] for u in fake.callback_dropped] == ["dropped"]


async def test_callback_wrong_confirmation_fails_server(fake: FakeVk) -> None:
    fake.callback_retry_delay = 0.01

    async def endpoint(request: web.Request) -> web.Response:
        return web.Response(text="not the code")

    async with serve(endpoint) as url:
        fake.set_callback(url, confirmation_code="right")
        fake.user_message(USER, "never delivered")
        await fake.wait_callback_idle()
    assert fake.callback is not None and fake.callback.status == "failed"
    assert {a.type for a in fake.callback_attempts} == {"confirmation"}


async def test_bot_setup_webhook_enables_only_message_new(fake: FakeVk, api: API) -> None:
    bot = Bot(api=api)
    received: list[str] = []

    async def endpoint(request: web.Request) -> web.Response:
        event = await request.json()
        if event["type"] == "confirmation":
            return web.Response(text=fake.confirmation_code)
        received.append(event["type"])
        return web.Response(text="ok")

    async with serve(endpoint) as url:
        bot.callback.url = url  # type: ignore[attr-defined]
        code, secret = await bot.setup_webhook()
        assert code == fake.confirmation_code
        assert fake.callback is not None and fake.callback.secret_key == secret
        sent = await api.messages.send(peer_ids=[USER], message="m", random_id=0)
        fake.button_press(USER, {"a": 1}, sent[0].conversation_message_id)
        fake.user_message(USER, "only this one")
        await fake.wait_callback_idle()
        assert received == ["message_new"]
        # Running setup again finds the server by URL and edits it instead of adding another.
        await bot.setup_webhook()
    servers = await api.groups.get_callback_servers(group_id=GROUP)
    assert servers.count == 1
    assert servers.items[0].url == url
