"""Drill 5: the IMAP connection dropped in the middle of a FETCH, and an SMTP server that
refuses (421/451) for a while; then the audit (every mail stored once by its Message-ID, every
answer accepted by the SMTP server once).

The drill needs Dovecot and an SMTP capture: it runs under pytest, whose fixtures start them
(tests/mailserver.py). Short form (CI): ``.venv/bin/pytest tests/test_drills_mail.py``; full
form, refusing for a whole minute with more mail:
``DESK_DRILL_FULL=1 .venv/bin/pytest tests/test_drills_mail.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid

from bench.drills.audit import AuditReport, audit_mail
from models import Appeal, Message, OutboxItem, OutboxStatus


class CuttingProxy:
    """A TCP proxy in front of the IMAP server that can drop a connection in the middle of
    an answer: ``cut_after(n)`` closes the next connection that has passed ``n`` more bytes
    from the server to the client."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._cut_after: int | None = None
        self.cuts = 0
        self.port = 0

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()

    def cut_after(self, count: int) -> None:
        """Drop the connection once ``count`` more bytes came from the server."""
        self._cut_after = count

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self._target)

        async def pipe(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, downstream: bool
        ) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await reader.read(4096):
                    if downstream and self._cut_after is not None:
                        self._cut_after -= len(data)
                        if self._cut_after <= 0:
                            self._cut_after = None
                            self.cuts += 1
                            writer.write(data[: len(data) // 2])  # half an answer, then nothing
                            await writer.drain()
                            break
                    writer.write(data)
                    await writer.drain()
            for w in (client_w, server_w):
                w.close()

        await asyncio.gather(pipe(client_r, server_w, False), pipe(server_r, client_w, True))


def customer_mail(n: int) -> EmailMessage:
    """The n-th customer's mail, big enough that a FETCH of it takes several reads."""
    mail = EmailMessage()
    mail["From"] = f"Клиент {n} <c{n}@example.com>"
    mail["To"] = "support@desk.example"
    mail["Subject"] = f"Вопрос {n}"
    mail["Message-ID"] = make_msgid(idstring=f"drill{n}", domain="example.com")
    mail.set_content(f"Здравствуйте! Вопрос номер {n}.\n\n" + "Подробности заказа. " * 800)
    return mail


async def mail_drill(
    deliver: Callable[[EmailMessage], object],
    proxy: CuttingProxy,
    captured_ids: Callable[[], list[str]],
    refuse: Callable[[float], None],
    *,
    mails: int,
    refuse_s: float,
    say: Callable[[str], None] = print,
    timeout_s: float = 60.0,
) -> AuditReport:
    """Deliver ``mails`` into the mailbox (the IMAP connection is cut in the middle of the
    first FETCH), answer each appeal while the SMTP server refuses for ``refuse_s``; audit."""
    accepted: list[str] = []
    refuse(refuse_s)
    proxy.cut_after(20_000)
    for n in range(mails):
        mail = customer_mail(n)
        outcome = deliver(mail)
        if asyncio.iscoroutine(outcome):
            await outcome
        accepted.append(str(mail["Message-ID"]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        stored = await Message.filter(channel="email", direction="in").count()
        waiting = await OutboxItem.filter(
            channel="email", status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING]
        ).count()
        if stored >= mails and waiting == 0 and await Appeal.filter(channel="email").count():
            break
        await asyncio.sleep(0.25)
    report = await audit_mail(accepted, captured_ids())
    say(
        f"mail: {mails} mails, IMAP cut {proxy.cuts} time(s) mid-answer, SMTP refused "
        f"for {refuse_s:.0f} s"
    )
    say(report.summary())
    return report
