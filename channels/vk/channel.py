"""VK channel: community messages in (Bots Long Poll or Callback API), answers out, via vkbottle."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from vkbottle import API, VKAPIError
from vkbottle.http import AiohttpClient
from vkbottle.tools import DocMessagesUploader, PhotoMessageUploader

from channels.base import PHONE_CHANNEL as PHONE
from channels.base import (
    Attachment,
    BadInbound,
    ChannelKind,
    ContactHint,
    DeliveryFailed,
    InboundMessage,
    OutboundMessage,
    RateLimited,
    Rejected,
    Unreachable,
    file_name,
    wait_or_stop,
)
from channels.settings import VkSettings
from channels.stream import AppealStream
from channels.textsplit import split_text
from channels.window import CallWindow
from models import MAX_ID, KeyValue, StoredFile, storable

log = logging.getLogger(__name__)

API_VERSION = "5.199"
TEXT_LIMIT = 4096
RATE_LIMITED = {6, 9, 29}  # too many requests per second, flood control, rate limit reached
UNREACHABLE = {7, 900, 901, 902}  # no permission, blacklisted, messages not allowed, privacy
PROFILES = 10_000  # users whose name and phone a process keeps
EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


def make_api(settings: VkSettings) -> API:
    """vkbottle's API client for these settings, talking to ``api_url``."""
    if settings.token is None:
        raise ValueError("DESK_VK__TOKEN is not set")
    api = API(settings.token.get_secret_value(), http_client=AiohttpClient())
    api.API_URL = settings.api_url.rstrip("/") + "/method/"
    api.API_VERSION = API_VERSION
    return api


class VkChannel:
    """Everything VK: updates in, names of users, files stored, messages out."""

    kind: str = ChannelKind.VK

    def __init__(self, settings: VkSettings, api: API | None = None) -> None:
        self.settings = settings
        self.api = api or make_api(settings)
        # VK's limit for a community token, about 20 calls a second: for every call and every
        # user alike, and it frees up within a second, so a full second is waited out.
        self._limiter = CallWindow(settings.calls_per_second, 1.0)
        self._profiles: dict[int, tuple[str, str]] = {}
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP sessions."""
        await self.api.http_client.close()
        if self._http is not None:
            await self._http.close()

    async def ping(self) -> None:
        """Raise a delivery error when VK does not answer groups.getById for our community."""
        await self.whoami()

    async def whoami(self) -> str:
        """The community as VK names it (groups.getById with the token): a wrong token or
        group id raises a delivery error."""
        answer = await self.call("groups.getById", group_id=self.settings.group_id)
        groups = answer.get("groups") if isinstance(answer, dict) else answer
        first = groups[0] if isinstance(groups, list) and groups else {}
        name = first.get("name") if isinstance(first, dict) else None
        return (
            f"«{name}» (club{self.settings.group_id})" if name else f"club{self.settings.group_id}"
        )

    # -- calls --------------------------------------------------------------------------------

    async def call(self, method: str, **params: Any) -> Any:
        """One API call within the limits; VK's errors become delivery errors."""
        try:
            async with self._limiter.calling():
                answer = await asyncio.wait_for(
                    self.api.request(method, params), self.settings.timeout_s
                )
        except VKAPIError as exc:
            code = int(getattr(exc, "code", 0) or 0)
            text = f"{code} {exc.error_msg}"
            if code in RATE_LIMITED:
                raise RateLimited(1.0) from exc
            if code in UNREACHABLE:
                raise Unreachable(ChannelKind.VK, text) from exc
            if code in (100, 914, 911, 913):
                raise Rejected(ChannelKind.VK, text) from exc
            raise DeliveryFailed(ChannelKind.VK, text) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryFailed(ChannelKind.VK, f"{type(exc).__name__}: {exc}") from exc
        return answer.get("response") if isinstance(answer, dict) else answer

    # -- messages in --------------------------------------------------------------------------

    async def inbound(self, message: Any, *, edited: bool = False) -> InboundMessage:
        """A ``message_new`` (or ``message_edit``) object as an InboundMessage; files stored.
        A message without its ids, or with nothing we can keep, is BadInbound."""
        if not isinstance(message, dict):
            raise BadInbound(f"a VK message is an object, not {type(message).__name__}")
        peer = vk_id(message.get("peer_id"))
        sender = vk_id(message.get("from_id", peer))
        number = vk_id(message.get("conversation_message_id") or message.get("id"))
        if peer is None or sender is None or number is None:
            raise BadInbound("malformed VK message: peer_id, from_id or id missing or not ids")
        items = [_object(item) for item in _list(message.get("attachments"))]
        files = tuple([a for item in items if (a := await self._file(item)) is not None])
        text = _text(message.get("text"))
        if not text and not files:
            raise BadInbound("a VK message with nothing we can keep")
        key = f"{peer}:{number}"
        name, phone = await self.profile(sender)
        digits = sum(c.isdigit() for c in phone)
        stamp = message.get("update_time") if edited else message.get("date")
        when = _moment(stamp) or _moment(message.get("date")) or datetime.now(UTC)
        return InboundMessage(
            channel=ChannelKind.VK,
            external_id=f"{key}:e{int(when.timestamp())}" if edited else key,
            address=str(peer),
            text=text,
            sender_name=name,
            contacts=(ContactHint(PHONE, phone),) if digits >= 10 else (),
            language="",  # VK does not tell; the customer gets the company's language
            sent_at=when,
            attachments=files,
            edit_of=key if edited else "",
        )

    async def profile(self, user_id: int) -> tuple[str, str]:
        """A user's name and, where their profile shows it, phone (cached per process for the
        last PROFILES users). A failed lookup gives empty strings and is not cached: the next
        message asks again, and the customer gets their name then."""
        cached = self._profiles.get(user_id)
        if cached is not None:
            return cached
        try:
            users = await self.call("users.get", user_ids=str(user_id), fields="contacts")
        except (RateLimited, DeliveryFailed, Unreachable, Rejected):
            return "", ""
        first = _object(users[0]) if isinstance(users, list) and users else {}
        name = f"{_text(first.get('first_name'))} {_text(first.get('last_name'))}".strip()
        phone = first.get("mobile_phone") or first.get("home_phone")
        phone = _text(str(phone)) if phone else ""
        if len(self._profiles) >= PROFILES:  # the oldest goes: memory stays bounded
            del self._profiles[next(iter(self._profiles))]
        self._profiles[user_id] = (name or f"id{user_id}", phone)
        return self._profiles[user_id]

    async def _file(self, item: dict[str, Any]) -> Attachment | None:
        kind = item.get("type")
        if not isinstance(kind, str) or not kind:
            return None
        body = _object(item.get(kind))
        if kind == "photo":
            sizes = [_object(s) for s in _list(body.get("sizes"))]
            best = max(sizes, key=lambda s: _area(s.get("width"), s.get("height")), default={})
            return await self._download("photo", _text(best.get("url")), "photo.jpg", "image/jpeg")
        if kind == "doc":
            ext = file_name(_text(body.get("ext"))) or "bin"
            name = file_name(_text(body.get("title"))) or f"file.{ext}"
            return await self._download("document", _text(body.get("url")), name, "")
        if kind == "audio_message":
            url = _text(body.get("link_ogg")) or _text(body.get("link_mp3"))
            return await self._download("voice", url, "voice.ogg", "audio/ogg")
        if kind == "sticker":
            images = [_object(i) for i in _list(body.get("images"))]
            url = _text(images[-1].get("url")) if images else ""
            return await self._download("sticker", url, "sticker.png", "image/png")
        return Attachment("file", "", name=file_name(kind))

    async def _download(self, kind: str, url: str, name: str, mime: str) -> Attachment:
        """Keep the file's bytes: VK's links do not live for ever."""
        if not url:
            return Attachment(kind, "", name=name, mime=mime)
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s * 3)
            )
        cap = self.settings.max_file_bytes
        try:
            async with self._http.get(url) as response:
                response.raise_for_status()
                mime = mime or response.content_type
                content = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    content += chunk
                    if len(content) > cap:  # never more than the cap in memory
                        log.warning("VK file over the size cap kept as a link")
                        return Attachment(kind, url, name=name, mime=mime)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:  # ValueError: not a URL
            log.warning("VK file not downloaded", extra={"reason": str(exc)[:200]})
            return Attachment(kind, url, name=name, mime=mime)
        stored = await StoredFile.keep(bytes(content), name=name, mime=mime)
        return Attachment(kind, stored.ref, name=name, mime=mime, size=len(content))

    # -- messages out -------------------------------------------------------------------------

    async def deliver(self, out: OutboundMessage) -> str:
        """Send an outbox row: text split at 4096, files uploaded, keyboard on the last part.

        ``random_id`` comes from the outbox id, so VK drops a repeated send of the same part.
        """
        peer = int(out.address)
        if edit_of := out.extra.get("edit_of"):
            await self.call(
                "messages.edit",
                peer_id=peer,
                message_id=int(edit_of),
                message=out.text[:TEXT_LIMIT],
            )
            return str(edit_of)
        uploaded = [a for item in out.attachments if (a := await self._upload(peer, item))]
        parts = split_text(out.text, TEXT_LIMIT) if out.text.strip() else [""]
        keyboard = out.extra.get("keyboard")
        first = ""
        for i, part in enumerate(parts):
            params: dict[str, Any] = {
                "peer_id": peer,
                "random_id": out.outbox_id * 100 + i,
                "message": part,
            }
            if i == 0 and uploaded:
                params["attachment"] = ",".join(uploaded)
            if i == len(parts) - 1 and keyboard:
                params["keyboard"] = json.dumps(keyboard, ensure_ascii=False)
            if not part and "attachment" not in params:
                continue
            sent = await self.call("messages.send", **params)
            first = first or str(sent)
        return first

    async def _upload(self, peer: int, item: Attachment) -> str | None:
        stored = await StoredFile.by_ref(item.ref)
        if stored is None:
            return None
        try:
            if item.kind == "photo":
                return str(
                    await PhotoMessageUploader(self.api).upload(
                        file_source=stored.content, peer_id=peer
                    )
                )
            return str(
                await DocMessagesUploader(self.api).upload(
                    file_source=stored.content, peer_id=peer, title=item.name or stored.name
                )
            )
        except VKAPIError as exc:
            raise DeliveryFailed(ChannelKind.VK, f"upload failed: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryFailed(ChannelKind.VK, f"upload failed: {exc}") from exc

    async def answer_event(self, event: dict[str, Any], text: str = "") -> None:
        """Answer a callback button press (``message_event``) so the button stops spinning."""
        data = {"type": "show_snackbar", "text": text[:90]} if text else None
        params: dict[str, Any] = {
            "event_id": event.get("event_id"),
            "user_id": event.get("user_id"),
            "peer_id": event.get("peer_id"),
        }
        if data is not None:
            params["event_data"] = json.dumps(data, ensure_ascii=False)
        await self.call("messages.sendMessageEventAnswer", **params)


def vk_id(value: Any) -> int | None:
    """An id VK sent (a number, or digits in a string), or None when it is not one."""
    if isinstance(value, bool):
        return None
    digits = value.removeprefix("-") if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= len(str(MAX_ID)):
        value = int(value)
    return value if isinstance(value, int) and abs(value) <= MAX_ID else None


def _moment(stamp: Any) -> datetime | None:
    """A VK unix time as an aware datetime; None when it is missing or no real moment."""
    seconds = vk_id(stamp)
    if not seconds:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return storable(value) if isinstance(value, str) else ""


def _area(width: Any, height: Any) -> int:
    return (vk_id(width) or 0) * (vk_id(height) or 0)


class CommunityMessages:
    """The channel's own way into the stream: a customer's message to the community (new or
    edited, with no button payload) becomes an ``InboundMessage`` and is appended, durably,
    before VK hears "ok"; other events (button presses, «Начать», what VK echoes of our own
    messages) go to ``converse``, the VK bot."""

    def __init__(self, channel: VkChannel, stream: AppealStream, converse: EventHandler) -> None:
        self._channel = channel
        self._stream = stream
        self._converse = converse

    async def __call__(self, update: dict[str, Any]) -> None:
        kind = update.get("type") if isinstance(update, dict) else None
        message = update.get("object") if kind in ("message_new", "message_edit") else None
        if kind == "message_new" and isinstance(message, dict):
            message = message.get("message", message)
        if (
            isinstance(message, dict)
            and vk_id(message.get("out")) != 1
            and not message.get("payload")
        ):
            try:
                inbound = await self._channel.inbound(message, edited=kind == "message_edit")
            except BadInbound:
                pass  # the bot logs why it is not kept
            else:
                await self._stream.publish(inbound)  # intake decides whether it opens an appeal
                return
        await self._converse(update)


class VkPoller:
    """Bots Long Poll that moves ``ts`` on only after every update of a batch was handled."""

    def __init__(self, channel: VkChannel, handle: EventHandler) -> None:
        self._channel = channel
        self._handle = handle
        self._server: dict[str, Any] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ts_key = f"vk.longpoll.ts.{channel.settings.group_id}"

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``; errors are logged and retried after a pause."""
        pause = 1.0
        timeout = aiohttp.ClientTimeout(total=self._channel.settings.wait_s + 15)
        self._http = aiohttp.ClientSession(timeout=timeout)
        try:
            while not stop.is_set():
                try:
                    await self._once(stop)
                    pause = 1.0
                except Exception as exc:  # a task root: log, wait, poll again
                    log.warning(
                        "VK polling failed", extra={"reason": f"{type(exc).__name__}: {exc}"}
                    )
                    await wait_or_stop(stop, pause)
                    pause = min(pause * 2, 30.0)
        finally:
            await self._http.close()

    async def _once(self, stop: asyncio.Event) -> None:
        if self._server is None:
            self._server = await self._new_server()
        server = self._server
        assert self._http is not None
        params = {
            "act": "a_check",
            "key": server["key"],
            "ts": server["ts"],
            "wait": self._channel.settings.wait_s,
        }
        request = asyncio.ensure_future(self._http.get(str(server["server"]), params=params))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([request, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not request.done():
            request.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await request
            return
        async with request.result() as response:
            data = await response.json(content_type=None)
        failed = data.get("failed")
        if failed == 1:  # our ts is too old or too new: VK says where to go on from
            await self._moved_to(str(data.get("ts", server["ts"])))
            return
        if failed == 2:  # the key expired: a new key, the same ts (nothing is skipped)
            self._server = await self._new_server(keep_ts=True)
            return
        if failed == 3:  # the history is gone: a new key and ts
            self._server = await self._new_server(keep_ts=False)
            return
        for update in data.get("updates") or []:
            await self._handle(update)
        await self._moved_to(str(data.get("ts", server["ts"])))

    async def _new_server(self, *, keep_ts: bool = True) -> dict[str, Any]:
        """A long poll key; the ts kept in the database is used again after a restart, so
        messages written while the service was down are read too."""
        group = self._channel.settings.group_id
        server = dict(await self._channel.call("groups.getLongPollServer", group_id=group))
        saved = await KeyValue.get_or_none(key=self._ts_key)
        if keep_ts and saved is not None:
            server["ts"] = saved.value
        elif self._server is not None and keep_ts:
            server["ts"] = self._server["ts"]
        return server

    async def _moved_to(self, ts: str) -> None:
        assert self._server is not None
        if self._server["ts"] != ts:
            self._server["ts"] = ts
            await KeyValue.update_or_create(key=self._ts_key, defaults={"value": ts})


def callback_view(
    settings: VkSettings, handle: EventHandler
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The Callback API endpoint: the confirmation code, the secret checked, each event handled
    before "ok" (VK sends it again otherwise)."""
    secret = settings.secret.get_secret_value() if settings.secret else ""

    async def view(request: web.Request) -> web.Response:
        try:
            event = json.loads(await request.read())
        except (ValueError, RecursionError):  # not JSON, or nested deeper than we follow
            return web.Response(status=400, text="bad request")
        if not isinstance(event, dict):
            return web.Response(status=400, text="bad request")
        if event.get("type") == "confirmation":
            if event.get("group_id") != settings.group_id:
                return web.Response(status=403, text="unknown community")
            return web.Response(text=settings.confirmation)
        given = str(event.get("secret", ""))
        if not hmac.compare_digest(given.encode(), secret.encode()):
            log.warning("VK callback with a wrong secret")
            return web.Response(status=403, text="forbidden")
        try:
            await handle(event)
        except Exception:
            log.exception("VK event not handled")
            return web.Response(status=500, text="try again")
        return web.Response(text="ok")

    return view
