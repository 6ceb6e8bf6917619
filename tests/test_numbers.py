"""voicegw/numbers.py: the one phone-number normaliser (config checks and engine)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicegw.numbers import is_number, normalise_number


@pytest.mark.parametrize(("text", "country_code", "expected"), [
    ("+49 30 1234", "", "+49301234"),
    ("+49 (30) 12-34.5", "1", "+493012345"),
    ("0049 30 1234", "", "+49301234"),
    ("030 1234", "49", "+49301234"),
    (" 030-1234\n", "49", "+49301234"),
    ("030 1234", "", "0301234"),  # national, no country code: stays digits (refused by patterns)
    ("1234", "49", "1234"),  # no prefix: a short/internal number, as written
    # not written as a number
    ("sip:agent@192.0.2.1", "49", None),
    ("alice", "49", None),
    ("+", "49", None),
    ("", "49", None),
    ("49 30 + 1234", "49", None),
    ("٣٠١٢", "49", None),  # digits outside 0-9 are not dialable
    # written as a number, but not a valid E.164 one (these used to come out as "+",
    # "+49", "+0..." or a 16-digit "number")
    ("00", "", None),
    ("0", "49", None),
    ("+0 30 1234", "49", None),
    ("000 30 1234", "49", None),
    ("+1234567890123456", "", None),
    ("0 12345678901234", "49", None),
])
def test_normalise_number(text: str, country_code: str, expected: str | None) -> None:
    assert normalise_number(text, country_code) == expected


def test_fifteen_digits_is_the_e164_limit() -> None:
    assert normalise_number("+123456789012345", "") == "+123456789012345"
    assert normalise_number("0 12345678901", "4930") == "+493012345678901"


@given(st.text(alphabet="+0123456789 ().-", max_size=24), st.sampled_from(["", "1", "49", "358"]))
def test_a_result_is_e164_or_the_national_digits_as_written(text: str, country_code: str) -> None:
    result = normalise_number(text, country_code)
    if result is None:
        return
    assert is_number(text)
    if result.startswith("+"):
        assert result[1:].isdigit() and result[1] != "0" and len(result) <= 16
    else:
        assert result.isdigit() and not (country_code and result.startswith("0"))
