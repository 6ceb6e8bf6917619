"""Bytes to messages: datagram parsing and stream framing (RFC 3261 7, 18.3).

Limits are security limits, stated here and in docs/limits.md:

- a message (header section plus body) is at most ``MAX_MESSAGE_SIZE`` bytes;
  over UDP a larger datagram is dropped, over a stream it closes the connection
  after a 513 (Message Too Large);
- at most ``MAX_HEADERS`` header fields (400 past it);
- Content-Length at most ``MAX_MESSAGE_SIZE``.

Parsing is shallow on purpose: the start line and the header names are checked,
values are unfolded and kept as text, and structured values are parsed on first
read (see :mod:`voicegw.sip.headers`). :func:`voicegw.sip.validate.check_request`
does the semantic checks a UAS needs before acting on a request.
"""

from __future__ import annotations

import re

from .errors import ParseError
from .grammar import COMPACT_FORMS, TOKEN_FULL_RE, is_digits
from .message import Headers, Message, Request, Response

MAX_MESSAGE_SIZE = 65_535
MAX_HEADERS = 256

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT   (case-insensitive, 7.1)
_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)\Z", re.IGNORECASE | re.ASCII)
# Status-Code = 3DIGIT ; Reason-Phrase = *(reserved / unreserved / escaped / UTF8 / SP / HTAB)
_STATUS_RE = re.compile(r"(SIP/\d+\.\d+) ([1-6]\d\d) ([^\r\n]*)\Z", re.IGNORECASE | re.ASCII)

_name_keys: dict[str, str] = {}


def _name_key(name: str) -> str | None:
    """Lookup key of a header name, or None when the name is not a token."""
    key = _name_keys.get(name)
    if key is None:
        if not TOKEN_FULL_RE.match(name):
            return None
        lower = name.lower()
        key = COMPACT_FORMS.get(lower, lower)
        if len(_name_keys) < 4096:
            _name_keys[name] = key
    return key


def _split_head(data: bytes) -> tuple[str, bytes]:
    """Split at the empty line; tolerate leading CRLFs (7.5) and bare-LF line ends."""
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, body = data[:end], data[end + 4 :]
        text = head.decode("utf-8", "surrogateescape")
        return text, body
    end = data.find(b"\n\n")
    if end >= 0:
        head, body = data[:end], data[end + 2 :]
        return head.decode("utf-8", "surrogateescape").replace("\r\n", "\n"), body
    raise ParseError("no empty line after the header section")


def _parse_fields(lines: list[str]) -> list[tuple[str, str, str]]:
    if len(lines) > MAX_HEADERS:
        raise ParseError("too many header fields")
    fields: list[tuple[str, str, str]] = []
    cached_key = _name_keys.get  # hot loop: skip a call per known header name
    for line in lines:
        if not line:
            raise ParseError("empty header line")
        if line[0] in " \t":
            # 7.3.1: a line starting with whitespace continues the previous field
            if not fields:
                raise ParseError("continuation line before any header")
            key, name, value = fields[-1]
            fields[-1] = (key, name, f"{value} {line.strip()}" if value else line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ParseError("header line without colon")
        name = name.rstrip(" \t")
        key = cached_key(name) or _name_key(name)
        if key is None:
            raise ParseError("bad header name")
        fields.append((key, name, value.strip(" \t")))
    return fields


def parse_start_line(line: str) -> tuple[str, str, str] | tuple[str, int, str]:
    """Parse a Request-Line to ``(method, uri, version)`` or a Status-Line to ``(version, status, reason)``."""
    if line[:4].upper() == "SIP/":
        match = _STATUS_RE.match(line)
        if match is None:
            raise ParseError("bad status line")
        version = match.group(1)
        _check_version(version)
        return version.upper(), int(match.group(2)), match.group(3)
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise ParseError("bad request line")
    method, uri, version = parts
    if not TOKEN_FULL_RE.match(method):
        raise ParseError("bad method")
    _check_version(version)
    return method, uri, version.upper()


def _check_version(version: str) -> None:
    match = _VERSION_RE.match(version)
    if match is None:
        raise ParseError("bad SIP version")
    if (int(match.group(1)), int(match.group(2))) != (2, 0):
        raise ParseError("SIP version not supported", status=505)


def _content_length(fields: list[tuple[str, str, str]]) -> int | None:
    values = [value for key, _, value in fields if key == "content-length"]
    if not values:
        return None
    if len(values) > 1:
        raise ParseError("more than one Content-Length")
    value = values[0]
    if not is_digits(value) or len(value) > 9:
        raise ParseError("bad Content-Length")
    # No size check here: in a datagram a length past its end is a short body (400, RFC
    # 3261 18.3), on a stream the framer checks the whole message against its limit (513).
    return int(value)


def _build(start: str, fields: list[tuple[str, str, str]], body: bytes) -> Message:
    parsed = parse_start_line(start)
    headers = Headers._from_parsed(fields)
    if isinstance(parsed[1], int):
        version, status, reason = parsed  # type: ignore[misc]
        return Response(status, reason, headers, body, version)  # type: ignore[arg-type]
    method, uri, version = parsed  # type: ignore[misc]
    return Request(method, uri, headers, body, version)  # type: ignore[arg-type]


def parse_message(data: bytes) -> Message:
    """Parse one whole message, as received in a UDP datagram (18.3).

    The body is framed by Content-Length when present: octets past it are
    discarded, fewer octets than it announces make the message invalid. Without
    Content-Length the body runs to the end of the datagram.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise ParseError("message too large", status=513)
    head, body = _split_head(data)
    crlf = head.count("\r\n")
    if crlf:
        # A bare CR or LF is not allowed anywhere in the header section; passing
        # one on would let a peer that splits lines on it see injected fields.
        if head.count("\r") != crlf or head.count("\n") != crlf:
            raise ParseError("bare CR or LF in the header section")
        lines = head.split("\r\n")
    else:
        if "\r" in head:
            raise ParseError("bare CR in the header section")
        lines = head.split("\n")
    fields = _parse_fields(lines[1:])
    length = _content_length(fields)
    if length is not None:
        if length > len(body):
            raise ParseError("Content-Length larger than the body")
        body = body[:length]
    return _build(lines[0], fields, body)


def is_keepalive(data: bytes) -> bool:
    """A datagram of only CR/LF (RFC 5626 keep-alive ping): no message, no answer."""
    return not data.strip(b"\r\n")


def salvage(data: bytes) -> tuple[bool, Headers]:
    """Best-effort read of a message that failed to parse.

    Returns whether it looked like a request and whatever header fields could be
    read, so the UA core can copy Via, From, To, Call-ID and CSeq into a 400 (8.2.6.2).
    Never raises.
    """
    text = data[:MAX_MESSAGE_SIZE].decode("utf-8", "replace").lstrip("\r\n")
    head = text.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    lines = head.replace("\r\n", "\n").split("\n")
    is_request = not lines[0][:4].upper().startswith("SIP/")
    fields: list[tuple[str, str]] = []
    for line in lines[1 : MAX_HEADERS + 1]:
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if colon and _name_key(name) is not None:
            fields.append((name, value.strip()))
    return is_request, Headers(fields)


class FramingError(ParseError):
    """A stream that cannot be cut into messages any more.

    ``messages`` are the whole messages framed before the bad one in the same
    ``feed`` call (deliver them first: a good request pipelined ahead of a bad one
    is not lost); ``data`` is the bad message's bytes as far as they arrived, for
    the answer (:func:`salvage` reads its headers).
    """

    def __init__(self, error: ParseError, messages: list[bytes], data: bytes) -> None:
        super().__init__(error.reason, error.status)
        self.messages = messages
        self.data = data


class StreamFramer:
    """Cuts a byte stream (TCP, TLS) into messages, by Content-Length (18.3).

    ``feed(data)`` returns whole messages as bytes, ready for :func:`parse_message`.
    A framing error raises ParseError; the connection is then unusable and must be
    closed after answering (if the bad message looked like a request).
    Keep-alive CRLFs between messages are skipped; ``pings`` counts double-CRLF
    pings (RFC 5626 4.4.1) so the transport can answer each with a single CRLF, and
    ``pongs`` the single-CRLF pongs (the answers to our own pings, 3.5.1).

    A ping split inside a CRLF ("\\r\\n\\r" then "\\n") is still one ping, but a read that
    ends on a whole CRLF closes the run: two single-CRLF pongs arriving one after the
    other are two pongs, not a ping to be answered (4.4.1: only a double CRLF is a
    ping; answering pongs would echo between two stacks).
    """

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max = max_message_size
        self.pings = 0
        self.pongs = 0
        self._crlf_run = 0  # CR/LF octets of the current run, carried over a split CRLF

    def feed(self, data: bytes) -> list[bytes]:
        """Whole messages completed by ``data``; raises :class:`FramingError`."""
        self._buffer += data
        messages: list[bytes] = []
        try:
            self._cut(messages)
        except ParseError as error:
            bad = bytes(self._buffer[: self._max])
            self._buffer.clear()
            raise FramingError(error, messages, bad) from None
        return messages

    def _cut(self, messages: list[bytes]) -> None:
        buf = self._buffer
        while buf:
            # skip CRLF keep-alives between messages
            skip = 0
            while skip < len(buf) and buf[skip] in (13, 10):
                skip += 1
            if skip:
                # a ping is a double CRLF (RFC 5626 4.4.1): count whole runs of four
                # octets, carried over a read that ends inside a CRLF
                run = self._crlf_run + skip
                self.pings += run // 4 - self._crlf_run // 4
                self._crlf_run = run
                ends_on_lf = buf[skip - 1] == 10
                del buf[:skip]
                if not buf and ends_on_lf:
                    self._close_run()  # a whole CRLF ends the read: a pong, not half a ping
                continue
            self._close_run()
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self._max:
                    raise ParseError("header section too large", status=513)
                break
            head = bytes(buf[:end]).decode("utf-8", "surrogateescape")
            fields = _parse_fields(head.split("\r\n")[1:])
            length = _content_length(fields)
            if length is None:
                raise ParseError("missing Content-Length on a stream transport")
            total = end + 4 + length
            if total > self._max:
                raise ParseError("message too large", status=513)
            if len(buf) < total:
                break
            messages.append(bytes(buf[:total]))
            del buf[:total]

    def _close_run(self) -> None:
        if self._crlf_run % 4 == 2:
            self.pongs += 1
        self._crlf_run = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)
