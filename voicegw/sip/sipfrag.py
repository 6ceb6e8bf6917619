"""message/sipfrag (RFC 3420), as carried in the NOTIFYs of a REFER (RFC 3515 2.4.5).

RFC 3420 section 2::

    sipfrag = [ start-line ] *message-header [ CRLF [ message-body ] ]

A fragment is a SIP message with any part left out: RFC 3515 wants NOTIFY bodies that
"begin with a SIP Response Status-Line" ("SIP/2.0 180 Ringing"), optionally followed
by headers. Peers are sloppy here, so parsing tolerates what shows up in traces:
bare-LF line ends, no final CRLF at all, trailing whitespace, a lower-case
``sip/2.0``, several spaces after the version, and a status line with no reason
phrase. ``bytes(frag)`` writes the canonical form, which parses back to an equal frag.

Rejected: a first line of only whitespace (it is neither a start line nor a header
field nor the empty line before a body). A fragment that is only a body has no
unambiguous form here, since CRLFs before the first line are skipped as before a
message (7.5); ``parse()`` never returns one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .build import reason_phrase
from .errors import ParseError, ProtocolViolation
from .message import SIP_VERSION, Headers
from .parser import MAX_MESSAGE_SIZE, _parse_fields, parse_start_line

#: A fragment never legitimately exceeds a whole message (parser.MAX_MESSAGE_SIZE).
MAX_SIPFRAG_SIZE = MAX_MESSAGE_SIZE

# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF (25.1), loosened:
# any run of SP/HTAB between the parts, and the reason phrase (with its SP) optional.
_LOOSE_STATUS_RE = re.compile(r"(SIP/\d+\.\d+)[ \t]+(\d{3})(?:[ \t]+(.*))?\Z", re.IGNORECASE | re.DOTALL | re.ASCII)
# message-header = field-name ":" ... ; field-name is a token
_HEADER_START_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+[ \t]*:")
_UNSAFE_REASON = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(eq=True, slots=True)
class SipFrag:
    """A parsed fragment: an optional start line, header fields, and a body.

    A status-line fragment has ``status`` and ``reason``; a request-line fragment has
    ``method`` and ``uri``; a fragment may also have neither (RFC 3420 allows it).
    """

    status: int | None = None
    reason: str | None = None
    method: str | None = None
    uri: str | None = None
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    @property
    def is_response(self) -> bool:
        return self.status is not None

    @property
    def is_request(self) -> bool:
        return self.method is not None

    @property
    def is_final(self) -> bool:
        """A final status: RFC 3515 2.4.5, the NOTIFY carrying it ends the subscription."""
        return self.status is not None and self.status >= 200

    @classmethod
    def status_line(cls, status: int, reason: str | None = None) -> SipFrag:
        """The fragment a REFER NOTIFY carries, e.g. ``SIP/2.0 180 Ringing``.

        ``reason`` defaults to the standard phrase; control characters are removed.
        """
        if not 100 <= status <= 699:
            raise ProtocolViolation(f"bad status code {status}", status=500)
        if reason is None:
            reason = reason_phrase(status)
        return cls(status=status, reason=_UNSAFE_REASON.sub("", reason).strip())

    @classmethod
    def parse(cls, data: bytes) -> SipFrag:
        """Parse a message/sipfrag body; ParseError (400) when it is not one."""
        if len(data) > MAX_SIPFRAG_SIZE:
            raise ParseError("sipfrag too large", status=513)
        text = data.decode("utf-8", "surrogateescape")
        # Leading CRLFs are tolerated as before a message (7.5).
        text = text.lstrip("\r\n")
        if not text.strip():
            raise ParseError("empty sipfrag")
        newline = "\r\n" if "\r\n" in text else "\n"
        head, sep, body_text = text.partition(newline + newline)
        lines = head.split(newline)
        if newline == "\r\n":
            # a peer mixing bare LF into a CRLF fragment
            lines = [part for line in lines for part in line.split("\n")]
        lines = [line.rstrip(" \t\r") for line in lines]
        # RFC 3420 2: a fragment opens with a start line, a header field, or the CRLF
        # before a body. A first line of only whitespace is none of these. Read as that
        # CRLF it would make a body-only fragment, whose canonical form (CRLF, body)
        # reads back as a leading CRLF (skipped, 7.5) before a bad start line.
        if not lines[0]:
            raise ParseError("sipfrag starts with a whitespace-only line")
        # After that, a whitespace-only line ends the header section, like an empty one.
        for index, line in enumerate(lines):
            if not line:
                rest = newline.join(lines[index + 1 :])
                body_text = rest + (newline + newline + body_text if sep else "")
                sep = sep or newline
                lines = lines[:index]
                break
        frag = cls()
        first = lines[0] if lines else ""
        if first and not _HEADER_START_RE.match(first):
            frag._set_start_line(first)
            lines = lines[1:]
        if lines:
            fields = _parse_fields(lines)
            frag.headers = Headers._from_parsed(fields)
        if sep:
            frag.body = body_text.encode("utf-8", "surrogateescape")
            # trailing whitespace after the header section is not a body
            if not frag.body.strip():
                frag.body = b""
        return frag

    def _set_start_line(self, line: str) -> None:
        if line[:4].upper() == "SIP/":
            match = _LOOSE_STATUS_RE.match(line)
            if match is None:
                raise ParseError("bad status line in sipfrag")
            line = f"{match.group(1)} {match.group(2)} {match.group(3) or ''}"
            version, status, reason = parse_start_line(line)
            assert isinstance(status, int)
            self.version, self.status, self.reason = version, status, reason.strip()
        else:
            method, uri, version = parse_start_line(line)
            assert isinstance(uri, str)
            self.method, self.uri, self.version = method, uri, version

    def start_line(self) -> str | None:
        if self.status is not None:
            return f"{self.version} {self.status} {self.reason or ''}"
        if self.method is not None:
            return f"{self.method} {self.uri} {self.version}"
        return None

    def __bytes__(self) -> bytes:
        start = self.start_line()
        out = b"" if start is None else start.encode("utf-8", "surrogateescape") + b"\r\n"
        out += self.headers.encode()
        if self.body:
            out += b"\r\n" + self.body
        return out

    def with_headers(self, fields: Iterable[tuple[str, str]]) -> SipFrag:
        """A copy with ``fields`` appended (e.g. a Subscription-State hint, Contact)."""
        headers = self.headers.copy()
        for name, value in fields:
            headers.add(name, value)
        return SipFrag(self.status, self.reason, self.method, self.uri, headers, self.body,
                       self.version)


__all__ = ["MAX_SIPFRAG_SIZE", "SipFrag"]
