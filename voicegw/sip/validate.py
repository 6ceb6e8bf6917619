"""What a UAS checks before it acts on a request (RFC 3261 8.2, 16.3).

``check_request`` raises a :class:`~voicegw.sip.errors.SipError` whose ``status``
is the response to send; its ``reason`` names the problem and goes into the
reason phrase, so a peer's engineer can tell what was wrong from a trace.
"""

from __future__ import annotations

from .errors import ParseError, ProtocolViolation
from .grammar import CALLID_RE
from .message import Request
from .uri import AbsoluteUri, parse_uri

#: Headers a request carries exactly once (8.1.1); Max-Forwards may be absent for
#: RFC 2543 peers (RFC 4475 3.1.1.13) but never repeated.
_SINGLE = ("call-id", "cseq", "from", "to")


def check_request(request: Request) -> None:
    headers = request.headers
    keys = headers.keys()
    for key in _SINGLE:
        n = keys.count(key)
        if n == 0:
            raise ParseError(f"missing {_pretty(key)}")
        if n > 1:
            raise ParseError(f"more than one {_pretty(key)}")
    if keys.count("max-forwards") > 1:
        raise ParseError("more than one Max-Forwards")
    if "via" not in keys:
        raise ParseError("missing Via")

    request.vias  # noqa: B018 - parses every Via element, raising on a bad one
    # parsed once here and kept in the message's cache for the core and dialog layers
    request.from_  # noqa: B018
    request.to  # noqa: B018
    if not CALLID_RE.match(request.call_id):
        raise ParseError("bad Call-ID")
    cseq = request.cseq
    if cseq.method != request.method:
        raise ProtocolViolation("CSeq method does not match the request")
    request.max_forwards  # noqa: B018 - range check 0..255

    # 8.2.2.1: a Request-URI scheme we do not understand gets 416
    uri = parse_uri(request.uri)
    if isinstance(uri, AbsoluteUri):
        raise ProtocolViolation("unsupported URI scheme", status=416)

    if request.body and "content-type" not in headers:
        raise ParseError("body without Content-Type")


def _pretty(key: str) -> str:
    return {"call-id": "Call-ID", "cseq": "CSeq"}.get(key, key.title())
