"""The mail-server fixtures themselves: a real Dovecot over IMAP, an aiosmtpd capture over SMTP."""

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import pytest
from aioimaplib import IMAP4

from tests.fakes.mailserver import Dovecot, MailAccount, SmtpCapture

pytestmark = pytest.mark.second_pass


def customer_mail(subject: str = "My order never arrived", to: str = "support@desk.test") -> bytes:
    return (
        "From: Customer <customer@example.org>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: {make_msgid(domain='example.org')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Hello,\r\nwhere is order 1234?\r\n"
    ).encode()


async def login(account: MailAccount) -> IMAP4:
    imap = IMAP4(host=account.host, port=account.port, timeout=10)
    await imap.wait_hello_from_server()
    response = await imap.login(account.user, account.password)
    assert response.result == "OK", response
    return imap


def exists(lines: list[bytes]) -> int | None:
    for line in lines:
        if line.endswith(b" EXISTS"):
            return int(line.split()[0])
    return None


async def test_login_and_select_sees_delivered_mail(mailbox: MailAccount) -> None:
    imap = await login(mailbox)
    try:
        selected = await imap.select("INBOX")
        assert selected.result == "OK"
        assert exists(selected.lines) == 0

        await mailbox.deliver(customer_mail())
        await mailbox.deliver(customer_mail("Second"))

        await imap.close()
        selected = await imap.select("INBOX")
        assert exists(selected.lines) == 2
    finally:
        await imap.logout()


async def test_accounts_are_fresh_per_test(mailbox: MailAccount) -> None:
    assert await mailbox.fetch_all() == []
    assert mailbox.address == f"{mailbox.user}@desk.test"


async def test_uid_fetch_returns_the_appended_bytes(mailbox: MailAccount) -> None:
    raw = customer_mail("Refund, please")
    uid = await mailbox.deliver(raw)

    imap = await login(mailbox)
    try:
        await imap.select("INBOX")
        response = await imap.uid("fetch", f"{uid}:*", "(UID FLAGS BODY.PEEK[])")
        assert response.result == "OK"
        assert any(f"UID {uid} ".encode() in line for line in response.lines)
        assert raw in response.lines  # the literal comes back as one line of bytes
    finally:
        await imap.logout()
    assert await mailbox.fetch_all() == [raw]


async def test_deliver_accepts_an_email_message_and_lf_line_ends(mailbox: MailAccount) -> None:
    msg = EmailMessage()
    msg["From"] = "customer@example.org"
    msg["To"] = mailbox.address
    msg["Subject"] = "Привет"
    msg.set_content("Line one\nline two\n")
    await mailbox.deliver(msg)
    await mailbox.deliver(b"Subject: bare LF\n\nbody\n")

    first, second = await mailbox.fetch_all()
    assert b"\r\n\r\n" in first and b"\n" not in first.replace(b"\r\n", b"")
    assert b"Line one\r\nline two\r\n" in first
    assert second == b"Subject: bare LF\r\n\r\nbody\r\n"


async def test_idle_push_arrives_after_a_delivery(mailbox: MailAccount) -> None:
    imap = await login(mailbox)
    try:
        await imap.select("INBOX")
        idle = await imap.idle_start(timeout=10)
        started = time.monotonic()
        await mailbox.deliver(customer_mail())  # from another connection
        pushed = await imap.wait_server_push(timeout=5)
        elapsed = time.monotonic() - started
        imap.idle_done()
        await asyncio.wait_for(idle, 5)
        assert any(line.endswith(b"EXISTS") for line in pushed), pushed
        assert elapsed < 3
    finally:
        await imap.logout()


async def test_flags_are_stored_and_read_back(mailbox: MailAccount) -> None:
    first = await mailbox.deliver(customer_mail())
    second = await mailbox.deliver(customer_mail("Already read"), flags=("\\Flagged",))
    assert await mailbox.flags() == {first: set(), second: {"\\Flagged"}}

    imap = await login(mailbox)
    try:
        await imap.select("INBOX")
        stored = await imap.uid("store", str(first), "+FLAGS.SILENT", r"(\Seen)")
        assert stored.result == "OK"
    finally:
        await imap.logout()
    assert await mailbox.flags() == {first: {"\\Seen"}, second: {"\\Flagged"}}


async def test_uidvalidity_is_stable_and_uids_grow(mailbox: MailAccount) -> None:
    before = await mailbox.uidvalidity()
    first = await mailbox.deliver(customer_mail())
    second = await mailbox.deliver(customer_mail())
    assert second > first
    assert await mailbox.uidvalidity() == before > 0

    imap = await login(mailbox)
    try:
        selected = await imap.select("INBOX")
        assert f"[UIDVALIDITY {before}]".encode() in b"\n".join(selected.lines)
    finally:
        await imap.logout()


async def test_two_accounts_do_not_share_mail(mailbox: MailAccount, dovecot: Dovecot) -> None:
    other = MailAccount(dovecot.host, dovecot.port, "other-account", "pw", "other@desk.test")
    dovecot.add_user(other.user, other.password)
    await mailbox.deliver(customer_mail())
    assert await other.fetch_all() == []
    assert len(await mailbox.fetch_all()) == 1


def outgoing(to: str = "customer@example.org") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Support <support@desk.test>"
    msg["To"] = to
    msg["Subject"] = "Re: My order never arrived"
    msg["Message-ID"] = make_msgid(domain="desk.test")
    msg["In-Reply-To"] = "<parent@example.org>"
    msg["References"] = "<root@example.org> <parent@example.org>"
    msg.set_content("We are on it.\n")
    return msg


async def test_smtp_send_is_captured_with_headers(smtp_capture: SmtpCapture) -> None:
    msg = outgoing()
    await aiosmtplib.send(msg, hostname=smtp_capture.host, port=smtp_capture.port, timeout=5)

    (got,) = await smtp_capture.wait_for(1)
    assert got.mail_from == "support@desk.test"
    assert got.rcpt_tos == ["customer@example.org"]
    for name in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "References"):
        assert got.message[name] == msg[name], name
    assert got.message.get_content() == "We are on it.\n"
    assert got.raw.startswith(b"From: Support <support@desk.test>\r\n")


async def test_refuse_next_gives_451_then_accepts(smtp_capture: SmtpCapture) -> None:
    smtp_capture.refuse_next(1)
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await aiosmtplib.send(
            outgoing(), hostname=smtp_capture.host, port=smtp_capture.port, timeout=5
        )
    assert refused.value.code == 451
    assert smtp_capture.messages == []

    await aiosmtplib.send(outgoing(), hostname=smtp_capture.host, port=smtp_capture.port)
    assert len(await smtp_capture.wait_for(1)) == 1
    assert smtp_capture.refused == 1


async def test_refuse_at_rcpt_and_for_a_while(smtp_capture: SmtpCapture) -> None:
    smtp_capture.refuse_next(1, 450, "4.2.0 Mailbox busy", at="RCPT")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await aiosmtplib.send(outgoing(), hostname=smtp_capture.host, port=smtp_capture.port)
    assert refused.value.recipients[0].code == 450

    smtp_capture.refuse_for(0.3)
    with pytest.raises(aiosmtplib.SMTPResponseException):
        await aiosmtplib.send(outgoing(), hostname=smtp_capture.host, port=smtp_capture.port)
    await asyncio.sleep(0.35)
    await aiosmtplib.send(outgoing(), hostname=smtp_capture.host, port=smtp_capture.port)
    await smtp_capture.wait_for(1)
    assert smtp_capture.refused == 2


async def test_wait_for_times_out_with_a_clear_message(smtp_capture: SmtpCapture) -> None:
    with pytest.raises(TimeoutError, match="expected 1 message"):
        await smtp_capture.wait_for(1, timeout=0.1)
