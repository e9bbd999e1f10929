"""The support mailbox over IMAP: new mails by UID (IDLE when offered, polling otherwise), each
flagged as handled only after it was stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aioimaplib

from channels.base import wait_or_stop
from channels.email.mail import EmailSettings, mail_inbound
from channels.email.parse import MailParseError, ParsedMail, parse_mail
from models import KeyValue

log = logging.getLogger(__name__)

HANDLED_FLAG = "\\Seen"
FETCH_BATCH = 50
_FETCH_HEAD = re.compile(rb"UID (\d+)")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")


@dataclass(frozen=True, slots=True)
class Fetched:
    """One mail as the server gave it."""

    uid: int
    raw: bytes


class MailboxError(Exception):
    """The IMAP server refused something the reader needs (login, select, fetch)."""


MailHandler = Callable[[ParsedMail, bytes], Awaitable[None]]


async def open_mailbox(
    s: EmailSettings, on_lost: Callable[[Exception | None], None] | None = None
) -> aioimaplib.IMAP4:
    """An IMAP session logged in to the support mailbox; ``on_lost`` hears when the connection
    drops."""
    timeout = s.timeout_s
    if s.imap_tls == "ssl":
        imap: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
            s.imap_host, s.imap_port, timeout=timeout, ssl_context=ssl.create_default_context()
        )
    else:
        imap = aioimaplib.IMAP4(s.imap_host, s.imap_port, timeout=timeout)
    if on_lost is not None:
        imap.protocol.conn_lost_cb = on_lost  # IMAP4_SSL takes no callback argument
    await imap.wait_hello_from_server()
    password = s.imap_password.get_secret_value() if s.imap_password else ""
    response = await imap.login(s.imap_user or s.address, password)
    if response.result != "OK":
        raise MailboxError(f"IMAP login refused: {_text(response.lines)}")
    return imap


async def ping_mailbox(settings: EmailSettings) -> None:
    """Log in to the support mailbox and NOOP; raise when that fails."""
    imap = await open_mailbox(settings)
    try:
        response = await imap.noop()
        if response.result != "OK":
            raise MailboxError(f"IMAP NOOP refused: {_text(response.lines)}")
    finally:
        with contextlib.suppress(Exception):  # short: a probe must not hang on a goodbye
            await asyncio.wait_for(imap.logout(), 1)


class MailboxReader:
    """Reads new mails in UID order; the last handled UID and the UIDVALIDITY are kept in the
    database, so a restart neither skips nor repeats a mail."""

    def __init__(self, settings: EmailSettings, handle: MailHandler) -> None:
        self._settings = settings
        self._handle = handle
        self._key = f"email.mailbox.{settings.imap_user or settings.address}.{settings.imap_folder}"

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop``; a lost connection is made again with a growing pause."""
        pause = 1.0
        while not stop.is_set():
            try:
                await self._session(stop)
                pause = 1.0
            except Exception as exc:  # a task root: log, wait, connect again
                log.warning(
                    "mailbox session ended", extra={"reason": f"{type(exc).__name__}: {exc}"}
                )
                await wait_or_stop(stop, pause)
                pause = min(pause * 2, 60.0)

    async def _session(self, stop: asyncio.Event) -> None:
        # aioimaplib leaves a command waiting for its timeout when the connection drops in
        # the middle of an answer: end the session as soon as the connection is gone.
        lost = asyncio.Event()
        imap = await self._connect(lost)
        work = asyncio.ensure_future(self._read_loop(imap, stop))
        gone = asyncio.ensure_future(lost.wait())
        try:
            await asyncio.wait([work, gone], return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                raise ConnectionError("the IMAP connection was lost")
            work.result()
        finally:
            gone.cancel()
            if not lost.is_set():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(imap.logout(), 5)

    async def _read_loop(self, imap: aioimaplib.IMAP4, stop: asyncio.Event) -> None:
        validity = await self._select(imap)
        while not stop.is_set():
            if await self.read_new(imap, validity):
                # A mail that arrived while these were read was announced then (an EXISTS the
                # client drops outside IDLE), and IDLE does not announce it again: it would wait
                # for the next mail or the IDLE renewal (``idle_s``). Look again first.
                continue
            await self._wait_for_mail(imap, stop)

    async def _connect(self, lost: asyncio.Event) -> aioimaplib.IMAP4:
        def on_lost(exc: Exception | None) -> None:
            lost.set()

        return await open_mailbox(self._settings, on_lost)

    async def _select(self, imap: aioimaplib.IMAP4) -> int:
        response = await imap.select(self._settings.imap_folder)
        if response.result != "OK":
            raise MailboxError(f"cannot open {self._settings.imap_folder}: {_text(response.lines)}")
        for line in response.lines:
            if isinstance(line, bytes | bytearray) and (found := _UIDVALIDITY.search(line)):
                return int(found.group(1))
        return 0

    async def read_new(self, imap: aioimaplib.IMAP4, validity: int) -> int:
        """Handle every mail after the last handled UID; returns how many were handled."""
        state = await self._state()
        if state.get("uidvalidity") != validity:
            # A new UIDVALIDITY means old UIDs mean nothing: read again from the start; mails
            # already stored are recognised by their Message-ID and not stored twice.
            state = {"uidvalidity": validity, "last_uid": 0}
            await self._save(state)
        handled = 0
        # Servers may list the last mail even when its UID is below the range: filter.
        uids = [u for u in await self._uids(imap, int(state["last_uid"])) if u > state["last_uid"]]
        for start in range(0, len(uids), FETCH_BATCH):
            chunk = uids[start : start + FETCH_BATCH]
            for mail in sorted(await self._fetch(imap, chunk), key=lambda m: m.uid):
                await self._one(imap, mail)
                state["last_uid"] = mail.uid
                await self._save(state)
                handled += 1
        return handled

    async def _uids(self, imap: aioimaplib.IMAP4, last: int) -> list[int]:
        response = await imap.uid("fetch", f"{last + 1}:*", "(UID)")
        if response.result != "OK":
            raise MailboxError(f"UID FETCH failed: {_text(response.lines)}")
        found = [
            int(head.group(1))
            for line in response.lines
            if isinstance(line, bytes | bytearray) and (head := _FETCH_HEAD.search(line))
        ]
        return sorted(set(found))

    async def _one(self, imap: aioimaplib.IMAP4, mail: Fetched) -> None:
        try:
            parsed = parse_mail(
                mail.raw,
                max_attachment_bytes=self._settings.max_attachment_bytes,
                own_addresses=[self._settings.address],
            )
        except MailParseError as exc:  # not a mail at all: it stays on the server, flagged
            log.warning("mail skipped", extra={"uid": mail.uid, "reason": str(exc)})
        else:
            await self._handle(parsed, mail.raw)
        # Only now, with the mail stored (or deliberately skipped), is it marked handled.
        await imap.uid("store", str(mail.uid), "+FLAGS", f"({HANDLED_FLAG})")

    async def _fetch(self, imap: aioimaplib.IMAP4, uids: list[int]) -> list[Fetched]:
        wanted = set(uids)
        response = await imap.uid("fetch", ",".join(map(str, uids)), "(UID BODY.PEEK[])")
        if response.result != "OK":
            raise MailboxError(f"UID FETCH failed: {_text(response.lines)}")
        mails: list[Fetched] = []
        lines = response.lines
        for i, line in enumerate(lines):
            if not isinstance(line, bytes) or b"FETCH" not in line:
                continue
            head = _FETCH_HEAD.search(line)
            body = lines[i + 1] if i + 1 < len(lines) else None
            if head is not None and isinstance(body, bytearray) and int(head.group(1)) in wanted:
                mails.append(Fetched(int(head.group(1)), bytes(body)))
        return mails

    async def _wait_for_mail(self, imap: aioimaplib.IMAP4, stop: asyncio.Event) -> None:
        """IDLE until the server says something changed (or a while passes); else a poll pause."""
        s = self._settings
        stopping = asyncio.ensure_future(stop.wait())
        try:
            if imap.has_capability("IDLE"):
                idle = await imap.idle_start(timeout=s.idle_s)
                push = asyncio.ensure_future(imap.wait_server_push(timeout=s.idle_s))
                await asyncio.wait([push, stopping], return_when=asyncio.FIRST_COMPLETED)
                if not push.done():
                    push.cancel()
                imap.idle_done()
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(idle, 10)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), s.poll_s)
        finally:
            stopping.cancel()

    async def _state(self) -> dict[str, Any]:
        row = await KeyValue.get_or_none(key=self._key)
        loaded = json.loads(row.value) if row is not None else {}
        return loaded if isinstance(loaded, dict) else {}

    async def _save(self, state: dict[str, Any]) -> None:
        await KeyValue.update_or_create(key=self._key, defaults={"value": json.dumps(state)})


def _text(lines: list[Any]) -> str:
    return " ".join(
        line.decode(errors="replace") if isinstance(line, bytes | bytearray) else str(line)
        for line in lines
    )[:300]


async def store_mail(
    parsed: ParsedMail,
    raw: bytes,
    ingest: Callable[[Any], Awaitable[Any]],
    *,
    max_chars: int,
    on_skipped: Callable[[ParsedMail], Awaitable[None]] | None = None,
) -> None:
    """Store a customer's mail through ``ingest``; automatic mails (bounces, auto-replies,
    lists, our own) open nothing and get no answer."""
    if parsed.automatic:
        log.info("automatic mail skipped", extra={"reason": parsed.automatic})
        if on_skipped is not None:
            await on_skipped(parsed)
        return
    if not parsed.from_address:
        log.warning("mail without a sender skipped")
        return
    await ingest(await mail_inbound(parsed, raw, max_chars=max_chars))
