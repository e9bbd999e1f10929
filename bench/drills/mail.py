"""Drill 5: the IMAP connection dropped in the middle of a FETCH, and an SMTP server that
refuses (421/451) for a while; then the audit (every mail stored once by its Message-ID, every
answer accepted by the SMTP server once).

The drill needs Dovecot and an SMTP capture: it runs under pytest, whose fixtures start them
(tests/fakes/mailserver.py). Short form (CI):
``.venv/bin/pytest tests/desk/runtime/test_drills_mail.py``; full form, refusing for a whole
minute with more mail:
``DESK_DRILL_FULL=1 .venv/bin/pytest tests/desk/runtime/test_drills_mail.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid

from bench.drills.audit import AuditReport, audit_mail
from bench.drills.proxy import CuttingProxy
from models import Appeal, Message, OutboxItem, OutboxStatus


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
