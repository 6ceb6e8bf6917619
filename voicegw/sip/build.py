"""Building messages: responses to requests (8.2.6), and the identifiers RFC 3261 wants.

Randomness is the caller's: tags, branches and Call-IDs come from ``os.urandom`` in
the functions below, which is fine for a sans-I/O core (no clock, no I/O) and lets
tests pass their own values where they need determinism.
"""

from __future__ import annotations

import os
import re

from .headers import MAGIC_COOKIE
from .message import Headers, Request, Response

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

# Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
_UNSAFE_REASON = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def reason_phrase(status: int, detail: str | None = None) -> str:
    """The standard phrase, with ``detail`` in parentheses (control characters removed)."""
    phrase = REASON_PHRASES.get(status) or {1: "Progress", 2: "OK", 3: "Redirect"}.get(
        status // 100, "Error"
    )
    if detail:
        phrase = f"{phrase} ({_UNSAFE_REASON.sub('', detail)[:120]})"
    return phrase


# Tags, branches and Call-IDs come from the OS's CSPRNG (RFC 3261 19.3: tags
# "cryptographically random"), read 4 KiB at a time: one getrandom() per ~140 calls
# instead of one per token (a few per call; 2% of the daemon's CPU per call). The
# pool is dropped in a forked child, which must not repeat its parent's tokens.
_POOL_SIZE = 4096
_pool = b""
_pos = 0


def _drop_pool() -> None:
    global _pool, _pos
    _pool, _pos = b"", 0


os.register_at_fork(after_in_child=_drop_pool)


def _token_hex(nbytes: int) -> str:
    global _pool, _pos
    start = _pos
    end = start + nbytes
    if end > len(_pool):
        _pool, start, end = os.urandom(_POOL_SIZE), 0, nbytes
    _pos = end
    return _pool[start:end].hex()


def new_tag() -> str:
    return _token_hex(6)


def new_branch() -> str:
    return MAGIC_COOKIE + _token_hex(10)


def new_call_id(host: str) -> str:
    return f"{_token_hex(12)}@{host}"


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Headers | None = None,
) -> Response:
    """A response to ``request`` per 8.2.6.2: Via, From, Call-ID and CSeq copied; To
    copied with ``to_tag`` added when it has none (never on 100 Trying). Works on a
    request whose headers only partly parse (for 400s): it copies text, it never parses.
    """
    source = request.headers
    copied = Headers()
    for name, value in source:
        key = name.lower()
        if key in ("via", "v", "from", "f", "call-id", "i", "cseq"):
            copied.add(name, value)
        elif key in ("to", "t"):
            if to_tag and status != 100 and not _has_tag(value):
                value = f"{value};tag={to_tag}"
            copied.add(name, value)
        elif key == "timestamp" and status == 100:
            copied.add(name, value)  # 8.2.6.1
        elif key == "record-route" and 100 < status < 300:
            copied.add(name, value)  # 12.1.1: the UAS copies Record-Route into 18x/2xx
    if headers is not None:
        for name, value in headers:
            copied.add(name, value)
    if "content-length" not in copied:
        copied.add("Content-Length", "0")
    return Response(status, reason or reason_phrase(status), copied)


_TAG_RE = re.compile(r";\s*tag\s*=", re.IGNORECASE)
_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"')


def _has_tag(value: str) -> bool:
    # A ';tag=' inside the display name or <...> is not the header's tag; strip both
    # (quoted strings first: a display name may contain '<').
    outside = re.sub(r"<[^>]*>", "", _QUOTED_RE.sub("", value))
    return bool(_TAG_RE.search(outside))
