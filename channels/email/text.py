"""Text of mails: charsets, HTML to readable text, format=flowed, cutting quotes and signatures."""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from html.parser import HTMLParser

from models import storable

# --- charsets -------------------------------------------------------------------------------

_ASCII_NAMES = frozenset({"us-ascii", "ascii", "ansi_x3.4-1968", "us", "iso646-us", "646"})
_GUESS_NAMES = frozenset({"unknown-8bit", "x-unknown", "unknown", "default", "x-user-defined"})
_ALIASES = {
    "win-1251": "cp1251",
    "cp-1251": "cp1251",
    "x-cp1251": "cp1251",
    "windows1251": "cp1251",
    "win1251": "cp1251",
    "koi8r": "koi8_r",
    "koi-8-r": "koi8_r",
    "x-mac-cyrillic": "mac_cyrillic",
    "unicode-1-1-utf-7": "utf-7",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso-8859-8-i": "iso8859_8",
    "windows-874": "cp874",
}
_LATIN1_CODECS = frozenset({"iso8859-1", "iso8859-15", "cp1252"})
_HIGH = re.compile(rb"[\x80-\xff]")
_HIGH_BY_LATIN = re.compile(rb"(?<=[A-Za-z])[\x80-\xff]|[\x80-\xff](?=[A-Za-z])")
_CYR_LOWER = re.compile(r"[а-яёіїєґў]")
_CYR_UPPER = re.compile(r"[А-ЯЁІЇЄҐЎ]")


def _codec(charset: str) -> str | None:
    """The Python codec name for a MIME charset, or None when Python has no text codec for it."""
    name = charset.strip().strip("\"'").lower()
    name = _ALIASES.get(name, name)
    if not name.isascii():
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # unknown, or not a name at all (NUL, …)
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _latin_like(data: bytes) -> bool:
    """True when the 8-bit bytes sit inside Latin words (accents), not in runs of their own."""
    high = len(_HIGH.findall(data))
    return high > 0 and len(_HIGH_BY_LATIN.findall(data)) / high > 0.25


def guess_8bit(data: bytes) -> tuple[str, str]:
    """Text and charset name for undeclared 8-bit bytes: UTF-8, else Cyrillic, else Latin."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if _latin_like(data):
        return data.decode("cp1252", "replace"), "windows-1252"
    best = ("", "", -(10**9))
    for codec, label in (("cp1251", "windows-1251"), ("koi8_r", "koi8-r")):
        text = data.decode(codec, "replace")
        score = len(_CYR_LOWER.findall(text)) - 2 * len(_CYR_UPPER.findall(text))
        if score > best[2]:
            best = (text, label, score)
    return best[0], best[1]


def decode_text(data: bytes, charset: str, problems: list[str], where: str) -> str:
    """``data`` as text in its declared ``charset``, repaired (and noted) when it is wrong;
    storable (NUL bytes and unpaired surrogates, as UTF-7 can make, are not text)."""
    return storable(_decode(data, charset, problems, where))


def _decode(data: bytes, charset: str, problems: list[str], where: str) -> str:
    declared = charset.strip().strip("\"'").lower()
    if not declared or declared in _ASCII_NAMES or declared in _GUESS_NAMES:
        if data.isascii():
            return data.decode("ascii")
        text, used = guess_8bit(data)
        said = f"charset {declared}" if declared else "no charset"
        problems.append(f"{where}: {said} declared for 8-bit text; read as {used}")
        return text
    codec = _codec(declared)
    if codec is None:
        text, used = guess_8bit(data)
        problems.append(f"{where}: unknown charset {declared!r}; read as {used}")
        return text
    try:
        text = data.decode(codec)
    except (UnicodeError, ValueError):  # UnicodeDecodeError, or codecs like idna complaining
        text, used = guess_8bit(data)
        problems.append(f"{where}: text is not valid {declared}; read as {used}")
        return text
    if codec in _LATIN1_CODECS and not data.isascii() and not _latin_like(data):
        text, used = guess_8bit(data)
        problems.append(f"{where}: charset {declared} declared for Cyrillic text; read as {used}")
    return text


def fix_8bit(value: str, problems: list[str], where: str) -> str:
    """A header string whose raw 8-bit bytes (surrogate escapes) are decoded by guessing;
    storable."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return storable(value)
    text, used = guess_8bit(value.encode("utf-8", "surrogateescape"))
    problems.append(f"{where}: unencoded 8-bit characters; read as {used}")
    return storable(text)


# --- header words and base64 ---------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def unbase64(text: str, problems: list[str], where: str) -> bytes:
    """Lenient base64: junk skipped, padding repaired, each repair noted in ``problems``."""
    if re.search(r"[^A-Za-z0-9+/=\s]", text):
        problems.append(f"{where}: invalid characters in base64 data skipped")
    out = b""
    for chunk in re.split(r"(?<==)\s*(?=[A-Za-z0-9+/])", text.strip()):
        core = re.sub(r"[^A-Za-z0-9+/]", "", chunk)
        if len(core) % 4 == 1:
            problems.append(f"{where}: truncated base64 data; the last bits dropped")
            core = core[:-1]
        elif len(core) % 4 and not chunk.rstrip().endswith("="):
            problems.append(f"{where}: base64 padding missing; repaired")
        out += base64.b64decode(core + "=" * (-len(core) % 4))
    return out


def decode_words(value: str, problems: list[str], where: str) -> str:
    """A header value (unfolded: only its CRLFs removed) with its RFC 2047 encoded words and
    stray 8-bit bytes decoded.

    The one whitespace character between two adjacent encoded-words separates them and is
    dropped (RFC 2047, 6.2); more than one is a space the sender meant: Python's folder, for
    one, writes the fold's whitespace and then the space between the words outside them, and
    «сверки и» + «счёт-фактуру» must not read «сверки исчёт-фактуру»."""
    out: list[str] = []
    pos = 0
    pending: tuple[str, bytes] | None = None
    for match in _ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        if pending is not None and not gap.strip() and len(gap) > 1:
            out.append(decode_text(pending[1], pending[0], problems, where))
            pending = None
            gap = " "
        if gap.strip() or pending is None:
            if pending is not None:
                out.append(decode_text(pending[1], pending[0], problems, where))
                pending = None
            out.append(fix_8bit(gap, problems, where))
        charset = match.group(1).split("*", 1)[0]
        chunk = _word_bytes(match.group(2).lower(), match.group(3), problems, where)
        if pending is not None and pending[0].lower() == charset.lower():
            pending = (pending[0], pending[1] + chunk)
        else:
            if pending is not None:
                out.append(decode_text(pending[1], pending[0], problems, where))
            pending = (charset, chunk)
        pos = match.end()
    if pending is not None:
        out.append(decode_text(pending[1], pending[0], problems, where))
    out.append(fix_8bit(value[pos:], problems, where))
    return "".join(out)


def _word_bytes(kind: str, text: str, problems: list[str], where: str) -> bytes:
    if kind == "q":
        return binascii.a2b_qp(text.encode("ascii", "replace"), header=True)
    return unbase64(text, problems, where)


# --- HTML -----------------------------------------------------------------------------------

_SKIP = frozenset({"script", "style", "head", "title", "noscript", "template", "xml", "svg"})
_VOID = frozenset(
    {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "wbr", "source", "embed"}
)
_BLOCK = frozenset(
    {
        "address", "article", "aside", "center", "dd", "div", "dl", "dt", "fieldset", "figure",
        "footer", "form", "header", "main", "nav", "section", "table", "tbody", "thead", "tfoot",
        "caption", "tr",
    }
)  # fmt: skip
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre"})
_QUOTE_IN, _QUOTE_OUT, _CELL = "\x01", "\x02", "\x03"
_HIDDEN = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip: list[str] = []
        self.hidden: list[str] = []
        self.pre = 0
        self.lists = 0
        self.links: list[tuple[str, int]] = []
        self.paragraphs: list[int] = []  # blank lines after each open <p>: Outlook's take none

    def _tail(self) -> str:
        return "".join(self.out[-3:])[-2:] if self.out else "\n\n"

    def _newlines(self, count: int) -> None:
        tail = self._tail()
        have = len(tail) - len(tail.rstrip("\n"))
        if self.out and count > have:
            self.out.append("\n" * (count - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open an element: skipped, hidden, or laid out by ``_open``."""
        attr = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.skip.clear()
        if self.hidden:
            if tag == self.hidden[0] and tag not in _VOID:
                self.hidden.append(tag)
            return
        if tag in _SKIP:
            self.skip.append(tag)
            return
        if self.skip:
            return
        if tag not in _VOID and _HIDDEN.search(attr.get("style", "")):
            self.hidden.append(tag)
            return
        self._open(tag, attr)

    def _open(self, tag: str, attr: dict[str, str]) -> None:
        if tag == "br":
            self.out.append("\n")
        elif tag == "p":
            gap = 1 if "msonormal" in attr.get("class", "").lower() else 2
            self.paragraphs.append(gap)
            self._newlines(gap)
        elif tag in _PARAGRAPH:
            self._newlines(2)
            self.pre += tag == "pre"
        elif tag in ("ul", "ol"):
            self._newlines(1)
            self.lists += 1
        elif tag == "li":
            self._newlines(1)
            self.out.append("  " * max(self.lists - 1, 0) + "- ")
        elif tag == "blockquote":
            self._newlines(1)
            self.out.append(_QUOTE_IN + "\n")
        elif tag in _BLOCK:
            self._newlines(1)
        elif tag == "a":
            self.links.append((attr.get("href", "").strip(), len(self.out)))

    def handle_endtag(self, tag: str) -> None:
        """Close an element: line breaks, cell markers, quote markers, link targets."""
        if self.hidden:
            if tag == self.hidden[0]:
                self.hidden.pop()
            return
        if self.skip:
            if tag in self.skip:
                del self.skip[self.skip.index(tag) :]
            return
        if tag in ("td", "th"):
            self.out.append(_CELL)
        elif tag == "p":
            self._newlines(self.paragraphs.pop() if self.paragraphs else 2)
        elif tag in _PARAGRAPH or tag in _BLOCK or tag == "li":
            self._newlines(2 if tag in _PARAGRAPH else 1)
            self.pre -= tag == "pre" and self.pre > 0
        elif tag in ("ul", "ol"):
            self.lists = max(self.lists - 1, 0)
            self._newlines(1)
        elif tag == "blockquote":
            self._newlines(1)
            self.out.append(_QUOTE_OUT + "\n")
        elif tag == "a" and self.links:
            self.close_link(*self.links.pop())

    def close_link(self, href: str, start: int) -> None:
        """Append " (url)" after a link's text unless the text already is the url."""
        label = "".join(self.out[start:]).strip()
        url = href[7:] if href.lower().startswith("mailto:") else href
        if not label or not url or href.lower().startswith(("#", "javascript:", "cid:", "data:")):
            return
        if url.rstrip("/") not in (label.rstrip("/"), "http://" + label, "https://" + label):
            self.out.append(f" ({url})")

    def handle_data(self, data: str) -> None:
        """Text: whitespace collapsed as a browser would, kept as is inside <pre>."""
        if self.skip or self.hidden:
            return
        if self.pre:
            self.out.append(data.replace("\r\n", "\n").replace("\t", "    "))
            return
        text = re.sub(r"[ \t\r\n\f]+", " ", data)
        tail = self._tail()
        if text.startswith(" ") and (not tail or tail[-1] in " \n"):
            text = text[1:]
        if text:
            self.out.append(text)


def _finish_html(raw: str) -> str:
    lines: list[str] = []
    depth = 0
    for line in raw.replace("\xa0", " ").split("\n"):
        if line.strip() == _QUOTE_IN:
            depth += 1
            continue
        if line.strip() == _QUOTE_OUT:
            depth = max(depth - 1, 0)
            continue
        cells = [c.strip() for c in line.split(_CELL)]
        text = " | ".join(c for c in cells if c) if len(cells) > 1 else line.rstrip()
        lines.append(("> " * depth + text).rstrip())
    return normalise("\n".join(lines))


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML mail body."""
    parser = _HtmlText()
    try:
        parser.feed(html)
        parser.close()
        while parser.links:
            parser.close_link(*parser.links.pop())
    except Exception:  # html.parser is lenient; this is a last resort for pathological input
        return normalise(re.sub(r"<[^>]*>", " ", html))
    return _finish_html("".join(parser.out))


# --- plain text -----------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Unix newlines, no trailing spaces, at most one blank line in a row, trimmed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    lines = [line.rstrip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if not line and out and not out[-1]:
            continue
        out.append(line)
    return "\n".join(out).strip("\n").strip()


def unflow(text: str, *, delsp: bool) -> str:
    """Text/plain format=flowed (RFC 3676) with its soft line breaks joined."""
    out: list[str] = []
    current: str | None = None
    depth = 0

    def flush() -> None:
        nonlocal current
        if current is not None:
            out.append(("> " * depth if depth else "") + current)
            current = None

    for line in text.split("\n"):
        level = len(line) - len(line.lstrip(">"))
        content = line[level:]
        content = content.removeprefix(" ")
        if current is not None and (level != depth or content == "-- "):
            flush()
        if current is None:
            current, depth = "", level
        current += content
        if content.endswith(" ") and content != "-- ":
            if delsp:
                current = current[:-1]
            continue
        flush()
    flush()
    return "\n".join(out)


# --- the new text: quotes and signatures cut off --------------------------------------------

_I = re.IGNORECASE
_WROTE = re.compile(
    r"\b(wrote|writes|schrieb|a écrit|escribió|ha scritto|написал\(а\)|написала?|"
    r"написав(\(ла\))?|пишет|пише)\s*:\s*$",
    _I,
)
_ADDRESS_COLON = re.compile(r"<[^<>\s]+@[^<>\s]+>\s*:\s*$")  # "пн, 3 мар. … г. в 10:00, Имя <a@b>:"
_TIME = re.compile(r"\d{1,2}:\d{2}")
_HEADER_START = re.compile(
    r"^(on|am|le|el|il|op|em|в сообщении от|\d|[^\W\d]{2,3}\.?,|[^\W\d]{4,12},\s*\d|\"|«)", _I
)
_ORIGINAL = re.compile(
    r"^-{2,}\s*(original message|исходное сообщение|оригинальное сообщение|"
    r"початкове повідомлення|вихідне повідомлення|ursprüngliche nachricht|message d'origine)"
    r"\s*-{2,}$",
    _I,
)
_FORWARD = re.compile(
    r"^(-{2,}\s*(forwarded message|пересылаемое сообщение|перенаправленное сообщение|"
    r"переслане повідомлення|weitergeleitete nachricht|message transféré)\s*-{2,}|"
    r"begin forwarded message:|начало переадресованного сообщения:)$",
    _I,
)
_FROM_LINE = re.compile(r"^\*?(from|от|від|von|de)\s*:", _I)
_SENT_LINE = re.compile(
    r"^\*?(sent|date|отправлено|дата|надіслано|gesendet|envoyé|enviado)\s*:", _I
)
_TO_LINE = re.compile(r"^\*?(to|cc|subject|кому|копия|тема|копія|an|betreff|à|objet|para)\s*:", _I)
_RULE = re.compile(r"^[_\-=*~]{4,}$")
_MOBILE = re.compile(
    r"^(sent from (my \S.{0,40}|(mail|outlook|yahoo|yandex|proton|gmail|aol|samsung|zoho|"
    r"thunderbird|bluemail|spark)\b.{0,40})|get outlook for (ios|android)\b.{0,60}|"
    r"(отправлено|послано) (с|со|из) (моего |мобильн\w+ )?(iphone|ipad|android|samsung|galaxy|"
    r"huawei|xiaomi|honor|redmi|телефона|смартфона|планшета|устройства|яндекс|почты|приложения|"
    r"mail\.ru|outlook|mymail)\b.{0,40}|(получено|отправлено) с помощью .{2,40}|"
    r"(скачайте|получите|получить) outlook для .{2,60}|"
    r"надіслано (з|із|зі) (мого )?(iphone|ipad|android|samsung|телефону|смартфона|пристрою)"
    r"\b.{0,40}|"
    r"von meinem .{2,40} gesendet|envoyé de mon .{2,40})$",
    _I,
)
_CLOSING = re.compile(
    r"^(с уважением|с наилучшими пожеланиями|всего (доброго|хорошего|наилучшего)|"
    r"best regards|kind regards|warm regards|best wishes|regards|sincerely|yours sincerely|"
    r"yours faithfully|cheers|з повагою|з найкращими побажаннями|mit freundlichen grüßen|"
    r"cordialement)\b[,.!]?(\s+\S.{0,40})?$",
    _I,
)
_CID = re.compile(r"\[cid:[^\]\s]+\]")  # Outlook's placeholder for an inline image
_POSTSCRIPT = re.compile(r"^(p\.?\s?s\b|п\.?\s?с\b)", _I)
_FORWARD_SUBJECT = re.compile(r"^\s*(fwd?|пересл\w*|tr|wg)\s*:", _I)


def is_forward_subject(subject: str) -> bool:
    """True for a subject that marks a forwarded mail ("Fwd:", "FW:", "Пересл:")."""
    return bool(_FORWARD_SUBJECT.match(subject))


def _quoted(line: str) -> bool:
    return line.lstrip(" ").startswith(">")


def _header_start(lines: list[str], end: int) -> int | None:
    """Where a quote header ("On … wrote:", "…, Имя <a@b>:") ending at ``end`` starts."""
    last = lines[end].strip()
    if not (_WROTE.search(last) or _ADDRESS_COLON.search(last)):
        return None
    fallback: int | None = None
    for start in range(end, max(end - 3, -1), -1):
        chunk = lines[start : end + 1]
        if any(not line.strip() or _quoted(line) for line in chunk):
            break
        joined = " ".join(line.strip() for line in chunk)
        if len(joined) > 300:
            break
        wrote = _WROTE.search(joined) and re.search(r"\d|@", joined)
        addressed = _ADDRESS_COLON.search(joined) and _TIME.search(joined)
        if not (wrote or addressed):
            continue
        if _HEADER_START.match(chunk[0].strip()):
            return start
        if fallback is None:
            fallback = start
    return fallback


def _outlook_block(lines: list[str], start: int) -> bool:
    """True when ``start`` opens Outlook's "From: / Sent: / To: / Subject:" quote block."""
    if not _FROM_LINE.match(lines[start].strip()):
        return False
    keys: set[str] = set()
    for line in lines[start + 1 : start + 7]:
        text = line.strip()
        if _SENT_LINE.match(text):
            keys.add("sent")
        elif _TO_LINE.match(text):
            keys.add("to")
    return keys == {"sent", "to"}


def _strip_quotes(lines: list[str]) -> list[str]:
    drop: set[int] = set()
    cut = len(lines)
    for i, line in enumerate(lines):
        text = line.strip()
        if _quoted(line):
            drop.add(i)
            continue
        if _ORIGINAL.match(text) or _outlook_block(lines, i):
            cut = i
            break
        start = _header_start(lines, i)
        if start is None:
            continue
        following = next((rest for rest in lines[i + 1 :] if rest.strip()), "")
        if not _quoted(following):
            cut = start
            break
        drop.update(range(start, i + 1))
    kept = [line for i, line in enumerate(lines[:cut]) if i not in drop]
    while kept and (not kept[-1].strip() or _RULE.match(kept[-1].strip())):
        kept.pop()
    return kept


def _signature_start(lines: list[str]) -> int | None:
    filled = [i for i, line in enumerate(lines) if line.strip()]
    for i in filled[-3:]:
        if _MOBILE.match(lines[i].strip()):
            return i
    for i in filled:
        if lines[i].strip() == "--" and len([k for k in filled if k > i]) <= 10:
            return i
    for i in filled[-5:]:
        if not _CLOSING.match(lines[i].strip()):
            continue
        after = [lines[k].strip() for k in filled if k > i]
        if len(after) <= 4 and all(
            len(a) <= 60 and not a.endswith("?") and not _POSTSCRIPT.match(a) for a in after
        ):
            return i
    return None


def _strip_signature(lines: list[str]) -> list[str]:
    while True:
        while lines and (not lines[-1].strip() or _RULE.match(lines[-1].strip())):
            lines = lines[:-1]
        start = _signature_start(lines)
        if start is None:
            return lines
        lines = lines[:start]


def new_text(body: str, *, forwarded: bool = False) -> str:
    """The new text of a mail body: quoted earlier mails and the sender's signature cut off."""
    lines = normalise(body).split("\n")
    mark = next((i for i, line in enumerate(lines) if _FORWARD.match(line.strip())), len(lines))
    head, rest = lines[:mark], lines[mark:]
    if not forwarded:
        head = _strip_quotes(head)
    text = "\n".join(_strip_signature(head))
    if rest:
        text = (text + "\n\n" if text.strip() else "") + "\n".join(rest)
    return normalise(_CID.sub("", text))
