"""Phone numbers as transfer targets: the one normaliser that both the config checks
(``voicegw check``, at load) and the engine (when it dials) use, so a number the
check accepts is the number the engine dials.

A target is *written as a number* when it is digits with spaces, dots, dashes or
brackets, optionally after one ``+`` (``+49 30 1234``, ``030-1234``, ``0049 (30)
1234``). It becomes E.164 (``+CC...``): ``+`` is kept, the international prefix
``00`` becomes ``+``, the national prefix ``0`` becomes ``+`` and the country code
when one is configured. Only these two prefixes are known (config/checks.py refuses
others). Pure: no I/O.
"""

from __future__ import annotations

import re

_NUMBER_RE = re.compile(r"\+?[0-9][0-9 ().\-]*\Z")
_SEPARATORS = re.compile(r"[ ().\-]")
MAX_E164_DIGITS = 15
"""ITU-T E.164 section 6: at most 15 digits, country code included."""


def is_number(text: str) -> bool:
    """Whether ``text`` is written as a phone number (rather than a SIP URI or a name)."""
    return bool(_NUMBER_RE.match(text.strip()))


def normalise_number(text: str, country_code: str) -> str | None:
    """``text`` as E.164 (``+4930...``), or None when it is not a dialable number.

    None when it is not written as a number, and when it is but cannot be E.164:
    nothing after the prefix (``+``, ``00``, ``0``), a country code starting with 0,
    more than 15 digits. A national number with no ``country_code`` configured stays
    as its digits (``0301234``): it cannot be made E.164, and allow-list patterns
    are written over E.164, so it is refused there.
    """
    if not is_number(text):
        return None
    digits = _SEPARATORS.sub("", text.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    elif digits.startswith("0") and country_code:
        digits = country_code + digits[1:]
        if digits == country_code:
            return None  # "0" alone: no subscriber number
    else:
        return digits or None
    if not digits or digits[0] == "0" or len(digits) > MAX_E164_DIGITS:
        return None
    return "+" + digits
