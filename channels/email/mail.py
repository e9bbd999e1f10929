"""Email channel: settings, mails in as InboundMessage (threaded), answers out through SMTP."""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import TYPE_CHECKING, Literal

import aiosmtplib
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from channels.base import (
    STAFF_MAIL_CHANNEL,
    Attachment,
    ChannelKind,
    DeliveryFailed,
    InboundMessage,
    OutboundMessage,
    Rejected,
    Unreachable,
)
from models import StoredFile

if TYPE_CHECKING:
    from channels.email.parse import ParsedMail

NUMBER_IN_SUBJECT = re.compile(r"\[(A-\d{6,})\]")
REPLY_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|отв|ответ|пересл)\s*(\[\d+\])?\s*:\s*)+", re.I)
MAX_REFERENCES = 20  # of a mail's References: enough to find the thread, not a long list
Render = Callable[..., str]
StatusLink = Callable[[str], str]  # an appeal number -> the customer's signed status page link


class EmailSettings(BaseModel):
    """``DESK_EMAIL__*``: the support mailbox (IMAP in, SMTP out) and the desk's address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = ""
    name: str = Field(default="", description="display name of the desk's address")
    imap_host: str = ""
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_user: str = ""
    imap_password: SecretStr | None = None
    imap_tls: Literal["ssl", "none"] = "ssl"
    imap_folder: str = "INBOX"
    smtp_host: str = ""
    smtp_port: int = Field(default=465, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["ssl", "starttls", "none"] = "ssl"
    max_attachment_bytes: int = Field(default=10_485_760, ge=0)
    poll_s: float = Field(default=60.0, gt=0, description="polling interval without IDLE")
    idle_s: float = Field(default=600.0, gt=0, description="renew IDLE this often")
    timeout_s: float = Field(default=30.0, gt=0)

    def disabled_reason(self) -> str | None:
        """Why the channel cannot run with these settings, or None when it can."""
        if not self.address:
            return "DESK_EMAIL__ADDRESS is not set"
        if not self.imap_host or not self.smtp_host:
            return "DESK_EMAIL__IMAP_HOST and DESK_EMAIL__SMTP_HOST are needed"
        return None

    def sending_disabled_reason(self) -> str | None:
        """Why the desk cannot send mail (the managers' alerts need SMTP only), or None."""
        if not self.address or not self.smtp_host:
            return "DESK_EMAIL__ADDRESS and DESK_EMAIL__SMTP_HOST are needed"
        return None

    @property
    def domain(self) -> str:
        """The desk's mail domain, for Message-IDs."""
        return self.address.rpartition("@")[2] or "appeal-desk.local"


def clean_subject(subject: str) -> str:
    """The subject without Re:/Fwd: prefixes and our ``[A-000123]`` mark."""
    subject = NUMBER_IN_SUBJECT.sub("", subject)
    return " ".join(REPLY_PREFIX.sub("", subject).split())


async def mail_inbound(parsed: ParsedMail, raw: bytes, *, max_chars: int) -> InboundMessage:
    """A parsed customer mail as an InboundMessage: files stored, the raw mail kept, the
    Message-IDs it answers and the ``[A-000123]`` of its subject for intake to thread it by."""
    files: list[Attachment] = []
    for item in parsed.attachments:
        if item.skipped:
            files.append(Attachment("skipped", "", name=item.name, mime=item.mime, size=item.size))
            continue
        stored = await StoredFile.keep(item.content, name=item.name, mime=item.mime)
        kind = "photo" if item.mime.startswith("image/") and not item.inline else "document"
        files.append(Attachment(kind, stored.ref, name=item.name, mime=item.mime, size=item.size))
    original = await StoredFile.keep(raw, name="original.eml", mime="message/rfc822")
    files.append(
        Attachment("email", original.ref, name="original.eml", mime="message/rfc822", size=len(raw))
    )
    external_id = parsed.message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    address = parsed.reply_to or parsed.from_address
    text = parsed.text or parsed.body
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"  # the whole mail stays in original.eml
    return InboundMessage(
        channel=ChannelKind.EMAIL,
        external_id=external_id[:200],
        address=address,
        text=text,
        sender_name=parsed.from_name,
        language="ru" if re.search("[а-яёіїєґ]", parsed.body + parsed.subject, re.I) else "en",
        sent_at=parsed.date or datetime.now(UTC),
        subject=clean_subject(parsed.subject),
        attachments=tuple(files),
        appeal_number=match.group(1) if (match := NUMBER_IN_SUBJECT.search(parsed.subject)) else "",
        replies_to=replies_to(parsed),
    )


def replies_to(parsed: ParsedMail) -> tuple[str, ...]:
    """The Message-IDs a mail answers, newest first: In-Reply-To, then References from the
    end (at most ``MAX_REFERENCES``)."""
    ids = [parsed.in_reply_to, *reversed(parsed.references)]
    return tuple(dict.fromkeys(i[:200] for i in ids if i))[:MAX_REFERENCES]


class MailSender:
    """Delivers answers by SMTP, threaded so the customer's mail client shows one conversation."""

    kind: str = ChannelKind.EMAIL
    wants_conversation = True  # the appeal's number, subject, language and mail ids

    def __init__(
        self,
        settings: EmailSettings,
        render: Render,
        company: str,
        status_link: StatusLink | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._settings = settings
        self._render = render
        self._company = company
        self._status_link = status_link
        self._clock = clock or (lambda: datetime.now(UTC))

    async def ping(self) -> None:
        """Connect to the SMTP server and say EHLO (no login, nothing sent), then QUIT."""
        s = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            use_tls=s.smtp_tls == "ssl",
            start_tls=s.smtp_tls == "starttls",
            timeout=s.timeout_s,
        )
        await smtp.connect()
        try:
            await smtp.ehlo()
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()

    async def deliver(self, out: OutboundMessage) -> str:
        """Send one mail; returns its Message-ID (our external id, used to thread replies)."""
        mail = await self.compose(out)
        await send_mail(self._settings, mail)
        return str(mail["Message-ID"])

    async def compose(self, out: OutboundMessage) -> EmailMessage:
        """The mail for an outbox row: From the desk, Date and Message-ID, the appeal number in
        the subject, text and HTML parts (with the appeal's status link), and
        In-Reply-To/References to the conversation so far. Every mail the desk sends is built
        here."""
        s = self._settings
        number = out.appeal_number
        subject = out.subject or out.appeal_subject or self._company
        if number and number not in subject:
            subject = f"[{number}] {subject}"
        mail = EmailMessage()
        mail["From"] = formataddr((s.name or self._company, s.address))
        mail["To"] = _address(out.address)
        mail["Reply-To"] = s.address
        set_subject(mail, subject if out.subject else f"Re: {subject}")
        mail["Date"] = format_datetime(self._clock().astimezone(UTC))
        mail["Message-ID"] = make_msgid(idstring=number or None, domain=s.domain)
        mail["Auto-Submitted"] = "auto-replied" if out.extra.get("automatic") else "no"
        mail_ids = [i for i in out.thread if i.startswith("<")]  # ours and the customer's
        if mail_ids:  # the customer's latest mail, else our latest, and the chain before it
            mail["In-Reply-To"] = mail_ids[-1]
            mail["References"] = " ".join(mail_ids[-MAX_REFERENCES:])
        lang = out.language or "ru"
        link = self._status_link(number) if number and self._status_link is not None else ""
        text = self._render(
            "email/message.txt.j2", lang, text=out.text, number=number, status_url=link
        )
        body = out.extra.get("html") or html.escape(out.text).replace("\n", "<br>\n")
        mail.set_content(text)
        mail.add_alternative(
            self._render("email/message.html.j2", lang, body=body, number=number, status_url=link),
            subtype="html",
        )
        for item in out.attachments:
            stored = await StoredFile.by_ref(item.ref)
            if stored is not None:
                maintype, _, subtype = (stored.mime or "application/octet-stream").partition("/")
                mail.add_attachment(
                    stored.content,
                    maintype=maintype,
                    subtype=subtype or "octet-stream",
                    filename=item.name or stored.name or "file",
                )
        return mail


class PlainMailSender:
    """Delivers mails that belong to no conversation (the managers' alerts) through the desk's
    SMTP: the row's subject, its text and, when given, ``extra["html"]`` as the HTML part."""

    kind: str = STAFF_MAIL_CHANNEL

    def __init__(
        self, settings: EmailSettings, company: str, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._settings = settings
        self._company = company
        self._clock = clock or (lambda: datetime.now(UTC))

    async def deliver(self, out: OutboundMessage) -> str:
        """Send one mail; returns its Message-ID."""
        mail = self.compose(out)
        await send_mail(self._settings, mail, channel=self.kind)
        return str(mail["Message-ID"])

    def compose(self, out: OutboundMessage) -> EmailMessage:
        """From the desk to ``out.address``; the Message-ID is the outbox row's own, so a mail
        sent again (a process died between the send and its record) is the same mail, which
        mail systems show once."""
        s = self._settings
        mail = EmailMessage()
        mail["From"] = formataddr((s.name or self._company, s.address))
        mail["To"] = _address(out.address, self.kind)
        set_subject(mail, out.subject or self._company)
        mail["Date"] = format_datetime(self._clock().astimezone(UTC))
        row = hashlib.sha256(f"{out.outbox_id}|{out.address}|{out.subject}".encode()).hexdigest()
        mail["Message-ID"] = f"<desk-{out.outbox_id}.{row[:16]}@{s.domain}>"
        mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(out.text)
        page = out.extra.get("html")
        if isinstance(page, str) and page:
            mail.add_alternative(page, subtype="html")
        return mail


async def send_mail(
    settings: EmailSettings, mail: EmailMessage, *, channel: str = ChannelKind.EMAIL
) -> None:
    """Hand one mail to the SMTP server; its refusals become the delivery errors (a 5xx is
    for good, a 4xx or a connection failure is retried)."""
    s = settings
    try:
        await aiosmtplib.send(
            mail,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_user or None,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_tls == "ssl",
            start_tls=s.smtp_tls == "starttls",
            timeout=s.timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        if all(500 <= c < 600 for c in codes):
            raise Unreachable(channel, f"recipient refused: {exc}") from exc
        raise DeliveryFailed(channel, f"recipient deferred: {exc}") from exc
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            raise Rejected(channel, f"{exc.code} {exc.message}") from exc
        raise DeliveryFailed(channel, f"{exc.code} {exc.message}") from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise DeliveryFailed(channel, f"{type(exc).__name__}: {exc}") from exc


def set_subject(mail: EmailMessage, subject: str) -> None:
    """Set the Subject so that every reader decodes it with its spaces: the standard library's
    folder puts the space between two words outside the encoded-words it folds into, where
    RFC 2047 readers drop it («сверки и» + «счёт» read as «сверки исчёт»); the older encoder
    keeps each space inside an encoded-word."""
    subject = " ".join(subject.split())  # no line breaks: they would make a header of their own
    if subject.isascii():
        mail["Subject"] = subject
        return
    folded = Header(subject, "utf-8", header_name="Subject").encode(linesep="\n")
    mail.set_raw("Subject", folded)


def _address(value: str, channel: str = ChannelKind.EMAIL) -> str:
    try:
        return str(Address(addr_spec=value))
    except (ValueError, IndexError):  # IndexError: the stdlib's parser on some broken input
        raise Rejected(channel, f"not an email address: {value!r}") from None
