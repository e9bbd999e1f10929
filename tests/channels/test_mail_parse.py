"""The mail parser on a corpus of real-client mails, plus focused edge cases."""

from __future__ import annotations

import base64
import email
import email.policy
import random
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
import yaml

from channels.email.parse import MailParseError, ParsedMail, parse_mail
from channels.email.text import html_to_text, new_text, unflow
from tests import DATA

pytestmark = pytest.mark.backend_agnostic

CORPUS = DATA / "mail"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "expected.yaml").read_text("utf-8"))
CAP = 1024 * 1024
OWN = ("support@desk.example",)
MAILS = sorted(p.name for p in CORPUS.glob("*.eml"))


def parse_file(name: str, **kwargs: Any) -> ParsedMail:
    return parse_mail(
        (CORPUS / name).read_bytes(),
        **{"max_attachment_bytes": CAP, "own_addresses": OWN, **kwargs},
    )


def test_corpus_and_expectations_match() -> None:
    assert len(MAILS) >= 32
    assert sorted(EXPECTED) == MAILS


@pytest.mark.parametrize("name", MAILS)
def test_corpus_mail(name: str) -> None:
    mail = parse_file(name)
    want = EXPECTED[name]
    assert mail.subject == want["subject"]
    assert mail.from_address == want["from_address"]
    assert mail.text == want["text"]
    assert mail.automatic == want["automatic"]
    assert mail.in_reply_to == want.get("in_reply_to", "")
    assert list(mail.references) == want.get("references", [])
    for key in ("from_name", "reply_to"):
        if key in want:
            assert getattr(mail, key) == want[key]
    if "to" in want:
        assert list(mail.to) == want["to"]
    if "date" in want:
        assert mail.date == datetime.fromisoformat(want["date"])
    assert mail.date is not None and mail.date.tzinfo is not None
    assert mail.message_id.startswith("<") and mail.message_id.endswith(">")
    got = [(a.name, a.skipped) for a in mail.attachments]
    assert got == [(a["name"], a.get("skipped", False)) for a in want.get("attachments", [])]
    for att, spec in zip(mail.attachments, want.get("attachments", []), strict=True):
        assert att.mime == spec["mime"]
        assert att.inline == spec.get("inline", False)
        if "size" in spec:
            assert att.size == spec["size"] == len(att.content)
        assert att.content == b"" if att.skipped else len(att.content) == att.size
    expected_problems = want.get("problems", [])
    for fragment in expected_problems:
        assert any(fragment in problem for problem in mail.problems), (fragment, mail.problems)
    if not expected_problems:
        assert mail.problems == ()
    assert all(line in mail.body for line in mail.text.splitlines())


@pytest.mark.parametrize("name", MAILS)
def test_line_endings_do_not_matter(name: str) -> None:
    raw = (CORPUS / name).read_bytes()
    lf = raw.replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    a = parse_mail(lf, max_attachment_bytes=CAP, own_addresses=OWN)
    b = parse_mail(crlf, max_attachment_bytes=CAP, own_addresses=OWN)
    assert (a.subject, a.from_name, a.text, a.body, a.automatic, a.references) == (
        b.subject,
        b.from_name,
        b.text,
        b.body,
        b.automatic,
        b.references,
    )
    assert [x.name for x in a.attachments] == [x.name for x in b.attachments]


def _html_alternatives() -> list[str]:
    found = []
    for name in MAILS:
        msg = email.message_from_bytes((CORPUS / name).read_bytes(), policy=email.policy.default)
        if any(p.get_content_type() == "multipart/alternative" for p in msg.walk()):
            found.append(name)
    return found


@pytest.mark.parametrize("name", _html_alternatives())
def test_html_alternative_gives_the_same_new_text(name: str) -> None:
    msg = email.message_from_bytes((CORPUS / name).read_bytes(), policy=email.policy.default)
    html = next(
        p for p in msg.walk() if p.get_content_type() == "text/html" and not p.get_filename()
    )
    from_html = new_text(html_to_text(html.get_content()))
    if name.startswith("09-"):  # Apple Mail splits its HTML around the attachment
        from_html = "\n\n".join(
            html_to_text(p.get_content()) for p in msg.walk() if p.get_content_type() == "text/html"
        )
        from_html = new_text(from_html)
    assert from_html.split() == parse_file(name).text.split()


@pytest.mark.parametrize("name", MAILS)
def test_damaged_copies_never_raise(name: str) -> None:
    raw = (CORPUS / name).read_bytes()[:20000]
    rnd = random.Random(name)
    for _ in range(12):
        damaged = bytearray(raw[: rnd.randrange(1, len(raw) + 1)])
        for _ in range(rnd.randrange(0, 6)):
            if damaged:
                damaged[rnd.randrange(len(damaged))] = rnd.randrange(256)
        try:
            mail = parse_mail(bytes(damaged))
        except MailParseError:
            continue
        assert isinstance(mail.text, str)


# --- size cap, own addresses ----------------------------------------------------------------


def test_attachment_over_the_cap_is_listed_without_content() -> None:
    mail = parse_file("20-thunderbird-over-cap.eml")
    log = mail.attachments[1]
    assert log.skipped and log.content == b"" and log.size > CAP
    whole = parse_file("20-thunderbird-over-cap.eml", max_attachment_bytes=10 * CAP)
    assert not whole.attachments[1].skipped
    assert len(whole.attachments[1].content) == whole.attachments[1].size == log.size
    assert whole.attachments[1].content.startswith(b"2025-03-02 00:00:01")


def test_generated_big_attachment_over_a_small_cap() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg["Subject"] = "big"
    msg.set_content("see attached")
    msg.add_attachment(b"\0" * 300_000, maintype="video", subtype="mp4", filename="clip.mp4")
    mail = parse_mail(msg.as_bytes(), max_attachment_bytes=100_000)
    assert [(a.name, a.size, a.skipped, a.content) for a in mail.attachments] == [
        ("clip.mp4", 300_000, True, b"")
    ]
    assert mail.text == "see attached"


def test_own_address_is_matched_case_insensitively() -> None:
    assert parse_file("34-own-address-loop.eml").automatic == "own"
    assert (
        parse_file("34-own-address-loop.eml", own_addresses=["SUPPORT@desk.example "]).automatic
        == "own"
    )
    assert parse_file("34-own-address-loop.eml", own_addresses=()).automatic == ""


# --- not a mail -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"", b"   \r\n\r\n", b"just a line of text\n", b"\x89PNG\r\n\x1a\n\0\0"]
)
def test_not_a_mail(raw: bytes) -> None:
    with pytest.raises(MailParseError):
        parse_mail(raw)


# --- charsets -------------------------------------------------------------------------------


def _mail(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode() + b"\r\n" + body


def test_unknown_charset_falls_back_to_utf8_then_cp1251() -> None:
    head = "From: a@example.com\nSubject: x\nContent-Type: text/plain; charset=x-klingon\n"
    utf = parse_mail(_mail(head, "Привет, мир".encode()))
    assert utf.text == "Привет, мир"
    assert utf.problems == ("text/plain body: unknown charset 'x-klingon'; read as utf-8",)
    cyr = parse_mail(_mail(head, "Привет, мир".encode("cp1251")))
    assert cyr.text == "Привет, мир"
    assert "read as windows-1251" in cyr.problems[0]


def test_koi8_without_charset_is_told_from_cp1251() -> None:
    raw = _mail(
        "From: a@example.com\nSubject: x\n", "Здравствуйте, посылка не пришла".encode("koi8_r")
    )
    assert parse_mail(raw).text == "Здравствуйте, посылка не пришла"


def test_latin1_label_on_cyrillic_text_is_repaired() -> None:
    head = "From: a@example.com\nSubject: x\nContent-Type: text/plain; charset=iso-8859-1\n"
    mail = parse_mail(_mail(head, "Где мой заказ? Жду уже неделю.".encode("cp1251")))
    assert mail.text == "Где мой заказ? Жду уже неделю."
    assert "declared for Cyrillic text" in mail.problems[0]
    german = parse_mail(_mail(head, "Grüße aus München, Straße 5".encode("latin-1")))
    assert german.text == "Grüße aus München, Straße 5" and german.problems == ()


def test_encoded_words_split_inside_a_character_and_mixed_charsets() -> None:
    word = "Привет".encode()
    a = base64.b64encode(word[:5]).decode()
    b = base64.b64encode(word[5:]).decode()
    head = (
        f"From: =?koi8-r?B?{base64.b64encode('Иван'.encode('koi8_r')).decode()}?= <I@Ex.com>\n"
        f"Subject: =?utf-8?B?{a}?= =?utf-8?B?{b}?= =?windows-1251?Q?=EC=E8=F0?=  again\n"
    )
    mail = parse_mail(_mail(head, b"hi"))
    assert mail.subject == "Приветмир again"
    assert (mail.from_name, mail.from_address) == ("Иван", "i@ex.com")


def test_folded_subject_keeps_the_space_at_the_fold() -> None:
    # Python's email package folds a long subject between «сверки и» and «счёт-фактуру» and
    # writes the space between them after the fold's own, outside the encoded-words.
    head = (
        "From: a@example.com\n"
        "Subject: =?utf-8?b?0JTQvtC60YPQvNC10L3RgtGLOiDQsNC60YIg0YHQstC10YDQutC4INC4?=\n"
        "  =?utf-8?b?0YHRh9GR0YIt0YTQsNC60YLRg9GA0YMg0LfQsCDQvdC+0Y/QsdGA0Yw=?= 2026\n"
    )
    mail = parse_mail(_mail(head, b"hi"))
    assert mail.subject == "Документы: акт сверки и счёт-фактуру за ноябрь 2026"
    # A plain fold is unfolded by removing the line break only; the whitespace stays.
    plain = parse_mail(_mail("From: a@example.com\nSubject: Акт сверки и\n\tсчёт\n", b"hi"))
    assert plain.subject == "Акт сверки и счёт"
    # The one whitespace that separates (or folds) two encoded-words is not text (RFC 2047).
    split = "=?utf-8?Q?=D0=B0=D0=BA=D1=82?=\n =?utf-8?Q?_=D1=81=D0=B2=D0=B5=D1=80=D0=BA=D0=B8?="
    assert parse_mail(_mail(f"From: a@example.com\nSubject: {split}\n", b"x")).subject == (
        "акт сверки"
    )


# --- broken MIME ----------------------------------------------------------------------------


def test_multipart_without_boundary_parameter_is_recovered() -> None:
    raw = _mail(
        "From: a@example.com\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed\n",
        b"--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1\r\n"
        b"Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERg==\r\n--b1--\r\n",
    )
    mail = parse_mail(raw)
    assert mail.text == "hello"
    assert [(a.name, a.content) for a in mail.attachments] == [("a.pdf", b"%PDF")]
    assert "'b1' found in it" in mail.problems[0]


def test_wrong_boundary_and_no_parts_reads_the_body_as_text() -> None:
    raw = _mail(
        "From: a@example.com\nSubject: x\nContent-Type: multipart/alternative; boundary=zz\n",
        b"plain words only\r\n",
    )
    mail = parse_mail(raw)
    assert mail.text == "plain words only"
    assert any("could not be split" in p for p in mail.problems)


def test_no_content_type_plain_ascii() -> None:
    mail = parse_mail(_mail("From: Bob <bob@example.com>\nSubject: hi\n", b"Hello there\r\n"))
    assert mail.text == "Hello there"
    assert mail.problems == ("no Content-Type header; read as text/plain",)


def test_base64_body_with_missing_padding() -> None:
    head = (
        "From: a@example.com\nSubject: x\nContent-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: base64\n"
    )
    mail = parse_mail(_mail(head, b"0J/RgNC40LLQtdGC"[:-2] + b"\r\n"))
    assert mail.text.startswith("Приве")
    assert any("base64" in p for p in mail.problems)


def test_raw_8bit_in_rfc2231_name_and_nonsense_charsets() -> None:
    raw = _mail(
        "From: a@example.com\nSubject: =?x\x00y?B?0J/RgA==?=\n"
        "Content-Type: multipart/mixed; boundary=b\n",
        b"--b\r\nContent-Type: text/plain; charset=idna\r\n\r\n"
        b"\xcf\xf0\xe8\xe2\xe5\xf2\r\n--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''\xd0\x94%D0%BE.pdf\r\n\r\n"
        b"x\r\n--b--\r\n",
    )
    mail = parse_mail(raw)
    assert (mail.subject, mail.text) == ("Пр", "Привет")
    assert [a.name for a in mail.attachments] == ["До.pdf"]


def test_date_missing_or_broken() -> None:
    head = (
        "Received: from x by y; Mon, 3 Mar 2025 10:00:00 +0300\nFrom: a@example.com\nSubject: x\n"
    )
    mail = parse_mail(_mail(head + "Date: someday\n", b"hi"))
    assert mail.date == datetime(2025, 3, 3, 7, 0, tzinfo=UTC)
    assert "unreadable Date header 'someday'; taken from Received" in mail.problems
    naive = parse_mail(_mail("From: a@example.com\nDate: Mon, 3 Mar 2025 10:00:00 -0000\n", b"hi"))
    assert naive.date == datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


def test_message_id_without_brackets_and_messy_references() -> None:
    head = (
        "From: a@example.com\nMessage-ID: abc123@host\nIn-Reply-To: <x@y> (sent by Bob)\n"
        "References: <1@d>,<2@d>\n <1@d>   <3@d>\n"
    )
    mail = parse_mail(_mail(head, b"hi"))
    assert mail.message_id == "<abc123@host>"
    assert mail.in_reply_to == "<x@y>"
    assert mail.references == ("<1@d>", "<2@d>", "<3@d>")


def test_forwarded_mail_attachment_is_a_mail_of_its_own() -> None:
    mail = parse_file("21-forwarded-as-attachment.eml")
    inner = parse_mail(mail.attachments[0].content)
    assert inner.subject == "Ваш заказ №4512 оплачен"
    assert [a.name for a in inner.attachments] == ["receipt-4512.pdf"]
    assert inner.text == "Заказ №4512 оплачен. Сумма: 3 490 ₽.\nСпасибо за покупку!"


def test_bounce_keeps_the_returned_mail() -> None:
    mail = parse_file("22-bounce-mailer-daemon.eml")
    returned = parse_mail(mail.attachments[1].content)
    assert returned.message_id == "<A-000130.1740985200.c0ffee@desk.example>"
    assert b"Status: 5.1.1" in mail.attachments[0].content


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-generated", "auto-submitted"),
        ("Auto-Submitted: no", ""),
        ("X-Autorespond: yes", "auto-reply"),
        ("X-Auto-Response-Suppress: DR, OOF", "auto-reply"),
        ("X-Auto-Response-Suppress: DR, RN", ""),
        ("Precedence: junk", "bulk"),
        ("Precedence: list", "list"),
        ("List-Unsubscribe: <mailto:u@example.com>", "list"),
        ("Return-Path: <>", "bounce"),
        ("Subject: Out of Office: back on Monday", "auto-reply"),
        ("Subject: Auto: Re: order", "auto-reply"),
        ("Subject: Автоответ", "auto-reply"),
        ("Subject: Undeliverable: [A-000123] hello", "bounce"),
        ("Subject: Re: Out of office problems", ""),
    ],
)
def test_automatic_reasons(header: str, reason: str) -> None:
    head = "From: someone@example.com\n" + header + "\n"
    if not header.startswith("Subject"):
        head += "Subject: Re: order\n"
    assert parse_mail(_mail(head, b"text")).automatic == reason


def test_postmaster_sender_is_a_bounce() -> None:
    raw = _mail("From: Postmaster <postmaster@example.com>\nSubject: Delivery has failed\n", b"x")
    assert parse_mail(raw).automatic == "bounce"


# --- HTML to text ---------------------------------------------------------------------------


def test_html_to_text_blocks_lists_links_entities() -> None:
    html = """<html><head><title>t</title><style>p{color:red}</style>
    <script>alert(1)</script></head>
    <body><h2>Order&nbsp;&#8470;&nbsp;5</h2><p>Line one<br>line&nbsp;two &amp; more</p>
    <ul><li>first</li><li>second<ul><li>inner</li></ul></li></ul>
    <ol><li>numbered</li></ol>
    <p>See <a href="https://shop.example/o/5">your order</a>, mail
    <a href="mailto:help@shop.example">help@shop.example</a> or <a href="#top">top</a>.</p>
    <pre>  keep   spaces
  here</pre><div style="display:none">hidden preheader</div>
    <p>&laquo;end&raquo;</p></body></html>"""
    assert html_to_text(html) == (
        "Order № 5\n\nLine one\nline two & more\n\n- first\n- second\n  - inner\n- numbered\n\n"
        "See your order (https://shop.example/o/5), mail help@shop.example or top.\n\n"
        "  keep   spaces\n  here\n\n«end»"
    )


def test_html_blockquote_becomes_quoted_lines() -> None:
    html = (
        '<div dir="ltr">Thanks!</div><div class="gmail_quote"><div class="gmail_attr">'
        "On Mon, 3 Mar 2025 at 10:00, Desk &lt;d@desk.example&gt; wrote:<br></div>"
        "<blockquote>Hello<br><blockquote>older</blockquote></blockquote></div>"
    )
    text = html_to_text(html)
    assert text == (
        "Thanks!\nOn Mon, 3 Mar 2025 at 10:00, Desk <d@desk.example> wrote:\n> Hello\n> > older"
    )
    assert new_text(text) == "Thanks!"


def test_html_table_rows() -> None:
    html = "<table><tr><th>A</th><td>1</td></tr><tr><td></td><td>2</td></tr></table>"
    assert html_to_text(html) == "A | 1\n2"


def test_broken_html_does_not_raise() -> None:
    assert html_to_text("<div><p>open <b>bold <a href='x'>link") == "open bold link (x)"
    assert html_to_text("<head><title>x") == ""
    assert html_to_text("<<<>>> &bogus; </p></div>") == "<<<>>> &bogus;"


# --- quotes and signatures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Да.\n\n-----Original Message-----\nFrom: x\nSent: y\nTo: z\n\nold", "Да."),
        ("Ok\n\nОт: Desk\nОтправлено: 3 марта\nКому: я\nТема: Re\n\nold", "Ok"),
        ("Ok\n\nFrom: Desk <d@x>\nDate: Monday\nSubject: x\nTo: me\n\nold", "Ok"),
        ("Готово\n\nпн, 3 мар. 2025 г. в 10:00, Имя <a@b.c>:\n\n> old\n", "Готово"),
        ('Готово\n\n03.03.2025, 10:00, "Desk" <a@b.c>:\nold unquoted text\n', "Готово"),
        ("Yes\n\nOn Mon, Mar 3, 2025 at 10:00 AM Desk <d@x>\nwrote:\n\n> old", "Yes"),
        ("Yes\nOn 3/3/25 Desk wrote:\nold, not prefixed", "Yes"),
        ("Short answer\n\nSent from my iPhone", "Short answer"),
        ("Ответ\n\nОтправлено с iPhone", "Ответ"),
        ("Ответ\n\nС уважением,\nИван\n+7 900 000-00-00", "Ответ"),
        ("Ответ\nС уважением, Иван Петров", "Ответ"),
        ("Text\n-- \nsig", "Text"),
    ],
)
def test_new_text(body: str, expected: str) -> None:
    assert new_text(body) == expected


LONG_COMPLAINT = (
    "С уважением, отношусь к вашей работе.\n"
    "Но заказ не пришёл, а прошло 10 дней, и никто не звонит.\n"
    "Что делать дальше?\nЖду.\nИ ещё.\nИ ещё раз.\nВсё."
)


@pytest.mark.parametrize(
    "body",
    [
        "Text\n\nBest regards,\nJohn\nP.S. the order is 4512",
        LONG_COMPLAINT,
        "Отправлено с опозданием на три дня, прошу компенсацию.",
        "My colleague wrote:\nthe app is broken",
        "a\n--\n" + "\n".join(f"line {i}" for i in range(12)),
    ],
)
def test_new_text_keeps_what_only_looks_like_a_quote_or_signature(body: str) -> None:
    assert new_text(body) == body


def test_forwarded_text_is_kept() -> None:
    body = (
        "See below\n\nFrom: Shop <s@x>\nSent: Sunday\nTo: me\nSubject: Cancelled\n\n"
        "Your order is cancelled"
    )
    assert new_text(body, forwarded=True) == body
    assert new_text(body) == "See below"


def test_unflow() -> None:
    text = "one \ntwo\n> quoted \n> more\n-- \nsig"
    assert unflow(text, delsp=False) == "one two\n> quoted more\n-- \nsig"
    assert unflow("ab \ncd", delsp=True) == "abcd"
