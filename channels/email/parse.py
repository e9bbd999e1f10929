"""Parsing an inbound mail: addresses, thread ids, new text, attachments, automatic or not."""

from __future__ import annotations

import binascii
import contextlib
import email
import email.generator
import email.policy
import mimetypes
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import errors
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from io import BytesIO
from urllib.parse import unquote_to_bytes

from channels.base import file_name
from channels.email.text import (
    decode_text,
    decode_words,
    fix_8bit,
    html_to_text,
    is_forward_subject,
    new_text,
    normalise,
    unbase64,
    unflow,
)
from models import storable

DEFAULT_MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MailAttachment:
    """A file from a mail; ``content`` is empty and ``skipped`` set when it was over the cap."""

    name: str
    mime: str
    size: int
    content: bytes
    inline: bool = False
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """What the desk needs from one mail; ``automatic`` is "" for a mail a human wrote."""

    message_id: str  # "<…>" as in the header, or ""
    in_reply_to: str  # the first id in In-Reply-To, or ""
    references: tuple[str, ...]  # the ids in References, in order, without repeats
    from_name: str
    from_address: str  # lower-case, "" when the From header has no address
    reply_to: str  # lower-case, or ""
    to: tuple[str, ...]  # lower-case addresses from To and Cc
    subject: str  # decoded, whitespace collapsed
    date: datetime | None  # aware; from the first Received header when Date is unreadable
    text: str  # the new text: quotes of earlier mails and the signature cut off
    body: str  # all readable text (text/plain preferred, HTML converted)
    attachments: tuple[MailAttachment, ...]
    automatic: str  # "", or own / bounce / auto-submitted / auto-reply / bulk / list
    problems: tuple[str, ...]  # what was broken in the mail and how it was read anyway


class MailParseError(ValueError):
    """The input is not a mail at all (empty, or no header in it)."""


def parse_mail(
    raw: bytes,
    *,
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES,
    own_addresses: Collection[str] = (),
) -> ParsedMail:
    """Parse a raw RFC 5322 mail; broken MIME is read as far as possible and noted in problems."""
    data = bytes(raw)
    if not data.strip():
        raise MailParseError("empty mail")
    problems: list[str] = []
    msg = _load(data, problems)
    head = _Headers(msg, problems)
    if not head.values:
        raise MailParseError("no mail headers found")
    subject = " ".join(head.text("subject").split())
    senders = head.addresses("from")
    from_name, from_address = senders[0] if senders else ("", "")
    reply_to = next((a for _, a in head.addresses("reply-to") if a), "")
    to = tuple(dict.fromkeys(a for _, a in head.addresses("to", "cc") if a))
    walker = _Walker(max_attachment_bytes, problems)
    if not head.first("content-type"):
        problems.append("no Content-Type header; read as text/plain")
    walker.visit(msg, text_wanted=True)
    body = normalise("\n\n".join(t for t in walker.texts if t))
    ids = _ids(storable(head.first("message-id")))
    message_id = ids[0] if ids else _bare_id(storable(head.first("message-id")), problems)
    own = {a.strip().lower() for a in own_addresses}
    return ParsedMail(
        message_id=message_id,
        in_reply_to=next(iter(_ids(storable(head.first("in-reply-to")))), ""),
        references=tuple(dict.fromkeys(_ids(storable(" ".join(head.all("references")))))),
        from_name=from_name,
        from_address=from_address,
        reply_to=reply_to,
        to=to,
        subject=subject,
        date=_date(head, problems),
        text=new_text(body, forwarded=is_forward_subject(subject)),
        body=body,
        attachments=tuple(walker.attachments),
        automatic=_automatic(msg, head, subject, from_name, from_address, own),
        problems=tuple(dict.fromkeys(problems)),
    )


# --- headers --------------------------------------------------------------------------------

_MSG_ID = re.compile(r"<[^<>\s]+>")


def _load(data: bytes, problems: list[str]) -> Message:
    try:
        return email.message_from_bytes(data, policy=email.policy.default)
    except Exception as exc:  # the parser is lenient; a crash gets the old policy a second try
        problems.append(f"mail parser failed ({type(exc).__name__}); read with the compat parser")
        return email.message_from_bytes(data, policy=email.policy.compat32)


def _raw_value(value: object) -> str:
    text = str(value)
    return re.sub(r"\r?\n(?=[ \t])", "", text).replace("\r", "").replace("\n", " ")


class _Headers:
    """Raw header values by lower-cased name, decoded on demand."""

    def __init__(self, msg: Message, problems: list[str]) -> None:
        self.values: dict[str, list[str]] = {}
        self.problems = problems
        for name, value in msg.raw_items():
            self.values.setdefault(name.strip().lower(), []).append(_raw_value(value))

    def all(self, name: str) -> list[str]:
        """Every raw value of header ``name`` (lower-case)."""
        return self.values.get(name, [])

    def first(self, name: str) -> str:
        """The first raw value of header ``name``, or ""."""
        found = self.values.get(name)
        return found[0].strip() if found else ""

    def text(self, name: str) -> str:
        """The first value of header ``name`` with encoded words decoded."""
        return decode_words(self.first(name), self.problems, f"{name.title()} header")

    def addresses(self, *names: str) -> list[tuple[str, str]]:
        """(display name, lower-cased address) pairs; the address is "" when there is none."""
        found: list[tuple[str, str]] = []
        for name in names:
            where = f"{name.title()} header"
            for display, address in getaddresses(self.all(name)):
                display = " ".join(decode_words(display, self.problems, where).split())
                address = fix_8bit(address, self.problems, where).strip().lower()
                if "@" not in address:
                    display, address = display or address, ""
                if display or address:
                    found.append((display.strip("'\" "), address))
        return found


def _ids(value: str) -> list[str]:
    return _MSG_ID.findall(value)


def _bare_id(value: str, problems: list[str]) -> str:
    value = value.strip()
    if not value or re.search(r"\s", value):
        return ""
    problems.append("Message-ID without angle brackets; brackets added")
    return f"<{value}>"


def _date(head: _Headers, problems: list[str]) -> datetime | None:
    raw = head.first("date")
    found = _parse_date(raw)
    if found is None:
        received = next((r.rsplit(";", 1)[1] for r in head.all("received") if ";" in r), "")
        found = _parse_date(received)
        if raw or found:
            taken = "taken from Received" if found else "left empty"
            problems.append(
                f"unreadable Date header {raw!r}; {taken}" if raw else "no Date header; " + taken
            )
    return found


def _parse_date(value: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        found = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


# --- MIME parts -----------------------------------------------------------------------------

_NAME_CHARS = r"[a-z0-9!#$&^_.+-]+"
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)')
_BOUNDARY_LINE = re.compile(
    rb"^--([0-9A-Za-z'()+_,./:=?-][0-9A-Za-z'()+_,./:=? -]{0,69}?)\s*$", re.M
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", re.I)


def _header(part: Message, name: str) -> str:
    for key, value in part.raw_items():
        if key.strip().lower() == name:
            return _raw_value(value).strip()
    return ""


def _content_type(part: Message) -> str:
    value = _header(part, "content-type").split(";", 1)[0].strip().lower()
    if re.fullmatch(f"{_NAME_CHARS}/{_NAME_CHARS}", value):
        return value
    return part.get_default_type()


def _params(value: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, raw in _PARAM.findall(value):
        raw = raw.strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:].removesuffix('"'))
        found.setdefault(name.lower(), raw)
    return found


def _mime_param(part: Message, header: str, name: str, problems: list[str]) -> str:
    """A Content-Type / Content-Disposition parameter, RFC 2231 and RFC 2047 decoded."""
    params = _params(_header(part, header))
    where = f"{header.title()} {name}"
    pieces: list[tuple[int, bool, str]] = []
    for key, value in params.items():
        match = re.fullmatch(rf"{re.escape(name)}\*(\d+)?(\*)?", key)
        if match:
            encoded = match.group(1) is None or match.group(2) is not None
            pieces.append((int(match.group(1) or 0), encoded, value))
    if not pieces:
        return decode_words(params.get(name, ""), problems, where)
    charset, data = "", b""
    for index, encoded, value in sorted(pieces):
        if encoded and index == 0 and value.count("'") >= 2:
            charset, _, value = value.split("'", 2)
        raw = value.encode("utf-8", "surrogateescape")
        data += unquote_to_bytes(raw) if encoded else raw
    return decode_text(data, charset, problems, where)


def _unqp(text: str, problems: list[str], where: str) -> bytes:
    if re.search(r"=(?![0-9A-Fa-f]{2}|[ \t]*\r?$)", text, re.M):
        problems.append(f"{where}: invalid quoted-printable sequences kept as they are")
    data = text.encode("utf-8", "surrogateescape").replace(b"\r\n", b"\n")
    return binascii.a2b_qp(data)


def _payload(part: Message, problems: list[str], where: str) -> bytes:
    cte = _header(part, "content-transfer-encoding").lower().strip("\"' ")
    if cte in ("base64", "quoted-printable"):
        text = part.get_payload()
        if not isinstance(text, str):
            return b""
        if cte == "base64":
            return unbase64(text, problems, where)
        return _unqp(text, problems, where)
    if cte not in ("", "7bit", "8bit", "binary", "x-uuencode", "uuencode", "uue", "x-uue"):
        problems.append(f"{where}: unknown transfer encoding {cte!r}; read as it is")
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _parts(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _message_bytes(msg: Message) -> bytes:
    out = BytesIO()
    writer = email.generator.BytesGenerator(out, mangle_from_=False, policy=email.policy.compat32)
    with contextlib.suppress(Exception):  # a mail too broken to write back keeps what was written
        writer.flatten(msg)
    return out.getvalue()


_DEFECTS: dict[type[errors.MessageDefect], str] = {
    errors.CloseBoundaryNotFoundDefect: "missing final MIME boundary; read to the end of the mail",
    errors.MissingHeaderBodySeparatorDefect: "no blank line after the headers; the rest is body",
    errors.FirstHeaderLineIsContinuationDefect: "first header line is a continuation; skipped",
    errors.MisplacedEnvelopeHeaderDefect: "misplaced 'From ' envelope line; skipped",
    errors.InvalidMultipartContentTransferEncodingDefect: "multipart part with a transfer encoding",
}
_HANDLED = (
    errors.NoBoundaryInMultipartDefect,
    errors.StartBoundaryNotFoundDefect,
    errors.MultipartInvariantViolationDefect,
    errors.InvalidBase64PaddingDefect,
    errors.InvalidBase64CharactersDefect,
    errors.InvalidBase64LengthDefect,
    errors.HeaderDefect,
)


@dataclass
class _Walker:
    """Collects body texts and attachments while walking the MIME tree."""

    cap: int
    problems: list[str]
    texts: list[str] = field(default_factory=list)
    attachments: list[MailAttachment] = field(default_factory=list)
    decoded: dict[int, str] = field(default_factory=dict)

    def visit(
        self, part: Message, *, text_wanted: bool, inline: bool = False, depth: int = 0
    ) -> None:
        """Read ``part``: its text into ``texts`` when wanted, its files into ``attachments``."""
        for defect in part.defects:
            if not isinstance(defect, _HANDLED):
                self.problems.append(
                    _DEFECTS.get(type(defect), f"MIME defect: {type(defect).__name__}")
                )
        ctype = _content_type(part)
        if ctype in ("message/rfc822", "message/global"):
            self._forwarded(part, inline)
        elif part.is_multipart() and ctype.startswith("multipart/"):
            self._multipart(ctype, _parts(part), text_wanted, depth)
        elif ctype.startswith("multipart/"):
            self._unsplit(part, ctype, text_wanted, depth)
        elif ctype in ("text/plain", "text/html") and not self._is_file(part):
            if text_wanted:  # else: the other rendering of a body already read
                self.texts.append(self._text(part, ctype))
        else:
            self._attach(part, ctype, inline)

    def _multipart(
        self, ctype: str, children: list[Message], text_wanted: bool, depth: int
    ) -> None:
        kind = ctype.split("/", 1)[1]
        if kind == "alternative" and text_wanted:
            chosen = self._best_alternative(children)
            for child in children:
                self.visit(child, text_wanted=child is chosen, depth=depth + 1)
        elif kind == "related":
            root = children[0] if children else None
            for child in children:
                self.visit(
                    child,
                    text_wanted=text_wanted and child is root,
                    inline=child is not root,
                    depth=depth + 1,
                )
        else:
            if kind == "encrypted":
                self.problems.append("encrypted mail (multipart/encrypted); kept as attachments")
                text_wanted = False
            for child in children:
                self.visit(child, text_wanted=text_wanted, depth=depth + 1)

    def _best_alternative(self, children: list[Message]) -> Message | None:
        for child in children:
            if _content_type(child) == "text/plain" and not self._is_file(child):
                if self._text(child, "text/plain"):
                    return child
                break
        richer = [c for c in children if _content_type(c) == "text/html" or c.is_multipart()]
        return richer[-1] if richer else (children[0] if children else None)

    def _unsplit(self, part: Message, ctype: str, text_wanted: bool, depth: int) -> None:
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        found = [m.group(1).rstrip() for m in _BOUNDARY_LINE.finditer(data)]
        found = [b.removesuffix(b"--") for b in found]
        boundary = max(set(found), key=found.count) if found else b""
        if boundary and depth < 20:
            found_text = boundary.decode("ascii", "replace")
            self.problems.append(f"{ctype} without a usable boundary; {found_text!r} found in it")
            rebuilt = b'Content-Type: %s; boundary="%s"\n\n' % (ctype.encode(), boundary) + data
            inner = email.message_from_bytes(rebuilt, policy=email.policy.default)
            if inner.is_multipart():
                self.visit(inner, text_wanted=text_wanted, depth=depth + 1)
                return
        self.problems.append(f"{ctype} body could not be split into parts; read as plain text")
        if text_wanted:
            self.texts.append(normalise(decode_text(data, "", self.problems, ctype)))

    def _is_file(self, part: Message) -> bool:
        disposition = _header(part, "content-disposition").split(";", 1)[0].strip().lower()
        return disposition == "attachment" or bool(self._name(part))

    def _name(self, part: Message) -> str:
        name = _mime_param(part, "content-disposition", "filename", self.problems)
        return file_name(name or _mime_param(part, "content-type", "name", self.problems))

    def _text(self, part: Message, ctype: str) -> str:
        if id(part) in self.decoded:
            return self.decoded[id(part)]
        where = f"{ctype} body"
        data = _payload(part, self.problems, where)
        charset = _mime_param(part, "content-type", "charset", self.problems)
        if ctype == "text/html" and not charset:
            meta = _META_CHARSET.search(data[:4096])
            charset = meta.group(1).decode("ascii") if meta else ""
        text = decode_text(data, charset, self.problems, where).replace("\r\n", "\n")
        if ctype == "text/html":
            text = html_to_text(text)
        elif _mime_param(part, "content-type", "format", self.problems).lower() == "flowed":
            delsp = _mime_param(part, "content-type", "delsp", self.problems).lower() == "yes"
            text = unflow(text, delsp=delsp)
        self.decoded[id(part)] = text = normalise(text)
        return text

    def _forwarded(self, part: Message, inline: bool) -> None:
        parsed = _parts(part)
        encoded = _header(part, "content-transfer-encoding").lower()
        if parsed and encoded not in ("base64", "quoted-printable"):
            inner = parsed[0]
            data = _message_bytes(inner)
        else:
            data = _payload(part, self.problems, "forwarded mail")
            inner = email.message_from_bytes(data, policy=email.policy.default)
        subject = " ".join(_Headers(inner, self.problems).text("subject").split())
        self._add(
            file_name(subject) or "message",
            ".eml",
            "message/rfc822",
            data,
            inline or self._inline(part),
        )

    def _inline(self, part: Message) -> bool:
        return _header(part, "content-disposition").split(";", 1)[0].strip().lower() == "inline"

    def _attach(self, part: Message, ctype: str, inline: bool) -> None:
        name = self._name(part)
        if part.is_multipart():  # message/delivery-status and kin: header blocks
            data = b"".join(_message_bytes(p) for p in _parts(part))
        else:
            data = _payload(part, self.problems, name or ctype)
        if name:
            self._add(name, "", ctype, data, inline or self._inline(part))
            return
        maintype, subtype = ctype.split("/", 1)
        guessed = mimetypes.guess_extension(ctype) or ""
        if maintype in ("text", "message"):
            stem, guessed = subtype, ".txt"
        elif maintype in ("image", "audio", "video"):
            stem = f"{maintype}-{len(self.attachments) + 1}"
        else:
            stem, guessed = f"attachment-{len(self.attachments) + 1}", guessed or ".bin"
        self._add(stem, guessed, ctype, data, inline or self._inline(part))

    def _add(self, stem: str, suffix: str, mime: str, data: bytes, inline: bool) -> None:
        skipped = len(data) > self.cap
        self.attachments.append(
            MailAttachment(
                name=stem + suffix,
                mime=mime,
                size=len(data),
                content=b"" if skipped else data,
                inline=inline,
                skipped=skipped,
            )
        )


# --- automatic mail -------------------------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^\s*\[?(automatic reply|auto[- ]?reply|auto[- ]?response|autoresponse|out of (the )?office|"
    r"auto|автоответ|автоматический ответ|автоматична відповідь|abwesenheitsnotiz|"
    r"automatische antwort|réponse automatique|respuesta automática|risposta automatica)\]?"
    r"\s*(autoreply\s*)?(:|$)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(undeliverable|undelivered mail returned to sender|delivery status notification "
    r"\(failure\)|mail delivery failed|returned mail|delivery failure|failure notice|"
    r"недоставленное сообщение|не удалось доставить)\b",
    re.IGNORECASE,
)


def _automatic(
    msg: Message, head: _Headers, subject: str, name: str, address: str, own: set[str]
) -> str:
    if address and address in own:
        return "own"
    local = address.split("@", 1)[0]
    report = (
        _content_type(msg) == "multipart/report"
        and "delivery-status" in _header(msg, "content-type").lower()
    )
    if report or local in ("mailer-daemon", "postmaster") or name.lower() == "mail delivery system":
        return "bounce"
    submitted = head.first("auto-submitted").split(";", 1)[0].strip().lower()
    if submitted and submitted != "no":
        return "auto-submitted"
    suppress = {v.strip().lower() for v in head.first("x-auto-response-suppress").split(",")}
    precedence = head.first("precedence").lower()
    flagged = any(
        head.first(h).lower() not in ("", "no", "false")
        for h in ("x-autoreply", "x-autorespond", "x-auto-reply")
    )
    if (
        flagged
        or suppress & {"all", "oof"}
        or precedence == "auto_reply"
        or _AUTO_SUBJECT.match(subject)
    ):
        return "auto-reply"
    if _BOUNCE_SUBJECT.match(subject) or (
        "return-path" in head.values and head.first("return-path") in ("<>", "")
    ):
        return "bounce"
    if precedence in ("bulk", "junk"):
        return "bulk"
    if precedence == "list" or head.first("list-id") or head.first("list-unsubscribe"):
        return "list"
    return ""
