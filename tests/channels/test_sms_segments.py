"""SMS parts: GSM-7 160/153, UCS-2 70/67, and texts shortened to a parts cap with links kept."""

from __future__ import annotations

import pytest

from channels.sms.segments import count, fit, fits, is_gsm7

pytestmark = pytest.mark.backend_agnostic

LINK = "https://desk.example.com/feedback/eyJhIjoxfQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize(
    ("text", "encoding", "parts"),
    [
        ("", "gsm7", 0),
        ("a" * 160, "gsm7", 1),
        ("a" * 161, "gsm7", 2),
        ("a" * 306, "gsm7", 2),
        ("a" * 307, "gsm7", 3),
        ("[]" * 40, "gsm7", 1),  # extension characters take two places
        ("[]" * 41, "gsm7", 2),
        ("€" * 80, "gsm7", 1),
        ("я" * 70, "ucs2", 1),
        ("я" * 71, "ucs2", 2),
        ("я" * 134, "ucs2", 2),
        ("я" * 135, "ucs2", 3),
        ("a" * 69 + "я", "ucs2", 1),  # one Cyrillic letter makes the whole text UCS-2
        ("😀" * 35, "ucs2", 1),  # two UTF-16 units each
        ("😀" * 36, "ucs2", 2),
        ("x" * 66 + "😀" + "x" * 66, "ucs2", 3),  # the pair does not fit the first part's last unit
    ],
)
def test_parts_by_encoding(text: str, encoding: str, parts: int) -> None:
    got = count(text)
    assert (got.encoding, got.parts) == (encoding, parts)


def test_a_character_never_straddles_two_parts() -> None:
    # 152 septets then a two-septet character: it opens the second part of 153.
    text = "a" * 152 + "€" + "a" * 160
    assert count(text).units == 314 and count(text).parts == 3


def test_gsm_alphabet() -> None:
    assert is_gsm7("Hello @ £ $ ¥ è Ä ß {}[]~\\|^€")
    assert not is_gsm7("Привет") and not is_gsm7("«quotes»") and not is_gsm7("…")


def test_a_text_that_fits_is_only_squeezed() -> None:
    assert fit("  Заказ   № 5:\n\n\n готов.  ", 1) == "Заказ № 5:\n\nготов."


def test_a_long_notice_is_cut_before_its_link_which_stays_whole() -> None:
    prose = "Ирина, заказ № 5512 передан в доставку. " * 6
    text = f"{prose}\n{LINK}"
    out = fit(text, 3)
    assert fits(out, 3) and not fits(text, 3)
    assert out.endswith(LINK)
    head = out[: -len(LINK)].rstrip()
    assert head.endswith("…") and prose.startswith(head[:-1].rstrip(" ,"))


def test_links_that_cannot_all_fit_are_dropped_from_the_end() -> None:
    text = "Выберите время:\nУтром: " + LINK + "a\nВечером: " + LINK + "b"
    out = fit(text, 2)
    assert fits(out, 2)
    assert LINK + "a" in out and LINK + "b" not in out


def test_a_latin_text_is_cut_with_three_dots_and_stays_gsm() -> None:
    out = fit("Your order " + "is on its way " * 20, 1)
    assert out.endswith("...") and count(out).encoding == "gsm7" and count(out).parts == 1


def test_one_unbroken_word_is_cut_between_characters() -> None:
    out = fit("я" * 500, 1)
    assert out == "я" * 69 + "…" and count(out).parts == 1


def test_no_parts_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fit("text", 0)
