"""The context a bot hands over with its REFER, as context keys (TRANSFERS.md: context
handed to the agent). Pure: header pairs in, a dict out.

A bot passes its session and IVR properties in headers of the REFER or embedded in its
Refer-To URI (RFC 3261 19.1.5), the embedded ones winning:

- ``User-to-User`` (RFC 7433) -> ``bot_session``: the UUI data, hex-decoded when it
  says ``encoding=hex`` (4.1); the profile's ``User-to-User`` mapping encodes it again,
- ``X-<Name>`` -> ``ivr.<name>`` (lower case, ``-`` as ``_``), and all of them as
  ``ivr`` (``name=value;...``).

The profile (``context_headers``) then decides which of these reach the agent and in
which headers; a key it does not map goes nowhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_X_HEADER = re.compile(r"X-([A-Za-z0-9_-]{1,64})\Z", re.IGNORECASE)


def uui_data(value: str) -> str:
    """The data of a User-to-User value (RFC 7433 4.1: ``uui-data *(SEMI uui-param)``),
    hex-decoded when ``encoding=hex`` and it decodes to UTF-8; otherwise as written."""
    data, _, params = value.strip().partition(";")
    data = data.strip().strip('"')
    encodings = [p.split("=", 1)[1].strip().lower() for p in params.split(";") if p.strip().lower().startswith("encoding=")]
    if encodings and encodings[0] == "hex":
        try:
            return bytes.fromhex(data).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return data
    return data


def context_from_bot(refer_headers: Iterable[tuple[str, str]],
                     embedded_headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Context keys from the REFER's own headers and its Refer-To's embedded ones."""
    context: dict[str, str] = {}
    ivr: dict[str, str] = {}
    for name, value in [*refer_headers, *embedded_headers]:  # embedded last: they win
        if name.lower() == "user-to-user":
            context["bot_session"] = uui_data(value)
        elif (match := _X_HEADER.match(name)) is not None:
            ivr[match.group(1).lower().replace("-", "_")] = value.strip()
    for key, value in ivr.items():
        context[f"ivr.{key}"] = value
    if ivr:
        context["ivr"] = ";".join(f"{key}={value}" for key, value in ivr.items())
    return context


__all__ = ["context_from_bot", "uui_data"]
