"""SDP session descriptions (RFC 4566, obsoleted by RFC 8866): model, parser, serializer.

``SessionDescription.parse(data)`` and ``bytes(sd)`` are a pair. The model keeps
every line in the order it arrived: the fields voicegw interprets (o=, c=, t=, m=,
a=) become small frozen dataclasses, every other line (i=, u=, e=, p=, b=, r=, z=,
k=) and every attribute, known or not, is kept as it came. So
``bytes(SessionDescription.parse(x)) == x`` for any SDP that follows the grammar with
CRLF line ends, and ``parse(bytes(sd)) == sd`` for any model.

The field types, their grammar and the codec tables are in
:mod:`voicegw.sip.sdp_fields` (import them from there); this module holds the media and
session descriptions, the parser, and the builder of voicegw's own descriptions.

Policy: strict on what voicegw interprets, lenient on the rest.

* Rejected (``ParseError``, status 488 Not Acceptable Here, RFC 3261 21.4.26): a first
  line other than ``v=0``, o= or s= missing from lines 2 and 3, a type letter outside
  RFC 8866 section 5's set ("an SDP parser MUST completely ignore or reject any session
  description that contains a type letter that it does not understand"), a session-only
  line inside a media section, a malformed o=, c=, t=, m=, rtpmap, fmtp or ptime, two
  direction attributes at one level, an IPv6 address in brackets (RFC 5118 4.6: SDP
  carries IPv6 addresses bare), NUL or a lone CR, and anything past the limits below.
* Tolerated: the order of lines after s= (RFC 8866 prescribes it; real peers swap c=
  and b=, or put a= before t=), a missing t= or c=, an empty s=, an m= line with no
  fmt, LF-only line ends ("parsers SHOULD be tolerant and also accept records
  terminated with a single newline character", RFC 8866 5) and trailing empty lines.
  These are normalised on output: CRLF, no trailing empty lines.
* Integers (session id and version, ports, times) are kept as ``int``, so leading zeros
  are not preserved.
* Text is decoded as UTF-8 with ``surrogateescape``: bytes that are not UTF-8 (an
  ``a=charset`` other than UTF-8) survive the round trip as lone surrogates.

Limits, a defence against hostile bodies (each breach is a 488):

* ``MAX_SDP_SIZE`` = 64 KiB per body (a UDP SIP message cannot carry more);
* ``MAX_LINES`` = 1024 lines;
* ``MAX_MEDIA`` = 32 media sections.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from voicegw.sip.sdes import CryptoAttribute, crypto_lines
from voicegw.sip.sdp_fields import (
    _BYTE_STRING,
    _DIRECTIONS,
    _FMTP_RE,
    _PTIME_RE,
    _RTPMAP_RE,
    _TOKEN,
    DEFAULT_PAYLOADS,
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Codec,
    Connection,
    Direction,
    Field,
    Line,
    Origin,
    Timing,
    _fail,
)

MAX_SDP_SIZE = 64 * 1024
MAX_LINES = 1024
MAX_MEDIA = 32

# type = %x61-7A (a-z; RFC 8866 5: "<type> MUST be exactly one case-significant character")
# Each record is "<type>=<value>" with no whitespace around the "=".
_LINE_RE = re.compile(r"([a-z])=(" + _BYTE_STRING + r")")
# media-field = %s"m" "=" media SP port ["/" integer] SP proto 1*(SP fmt) CRLF
# proto = token *("/" token) ; fmt = token
# (voicegw also accepts an empty fmt list; see the module docstring)
_MEDIA_RE = re.compile(
    rf"({_TOKEN}) ([0-9]+)(?:/([0-9]+))? ({_TOKEN}(?:/{_TOKEN})*)((?: {_TOKEN})*)"
)

_RECENT_SIZE = 64
_recent: dict[bytes, SessionDescription] = {}
"""The last bodies parsed and their descriptions. One offer is read several times on a
call's way in (the admission check, the engine, the INVITE session: ~200 us each) and the
descriptions are frozen, so the same bytes share one. Failures are not kept (they raise)."""

_SESSION_ONLY = frozenset("vosuepztr")
_MEDIA_LEVEL = frozenset("icbka")
_KNOWN_TYPES = frozenset("vosiuepcbtrzkam")


def _parse_line(letter: str, value: str) -> Line:
    if letter == "c":
        return Connection.parse(value)
    if letter == "t":
        return Timing.parse(value)
    if letter == "a":
        return Attribute.parse(value)
    return Field(letter, value)


def _single_direction(lines: Iterable[Line]) -> Direction | None:
    found = [Direction(a.name) for a in lines if isinstance(a, Attribute) and a.name in _DIRECTIONS]
    return found[0] if found else None


def _check_one_direction(lines: Sequence[Line]) -> None:
    count = sum(1 for a in lines if isinstance(a, Attribute) and a.name in _DIRECTIONS)
    if count > 1:
        raise _fail("conflicting SDP direction attributes")


class _Attributes:
    """The a= lines of a level, for both levels: session and media (RFC 8866 5.13)."""

    lines: tuple[Line, ...]  # a field of each dataclass below; not one of this class

    @property
    def attributes(self) -> tuple[Attribute, ...]:
        return tuple(a for a in self.lines if isinstance(a, Attribute))

    def attribute(self, name: str) -> str | None:
        """The value of the first a=name (None if absent or a property attribute)."""
        for attr in self.attributes:
            if attr.name == name:
                return attr.value
        return None


@dataclass(frozen=True)
class MediaDescription(_Attributes):
    """One m= section and the i=, c=, b=, k=, a= lines under it, in order.

    ``session_connection`` and ``session_direction`` are the session-level defaults,
    filled in by the enclosing ``SessionDescription``; they take no part in equality.
    """

    media: str
    port: int
    proto: str
    fmts: tuple[str, ...]
    lines: tuple[Line, ...] = ()
    port_count: int | None = None
    session_connection: Connection | None = field(default=None, compare=False, repr=False)
    session_direction: Direction | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse_m_line(cls, value: str) -> MediaDescription:
        m = _MEDIA_RE.fullmatch(value)
        if m is None:
            raise _fail("bad SDP m= line")
        media, port, count, proto, fmts = m.groups()
        if int(port) > 65535 or (count is not None and not 1 <= int(count) <= 65535):
            raise _fail("bad port in SDP m= line")
        return cls(
            media, int(port), proto, tuple(fmts.split()), port_count=None if count is None else int(count)
        )

    def m_line(self) -> str:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        return " ".join((self.media, port, self.proto, *self.fmts))

    # -- attributes -----------------------------------------------------------------

    def has_attribute(self, name: str) -> bool:
        return any(a.name == name for a in self.attributes)

    def crypto(self) -> list[CryptoAttribute]:
        """The SDES keys (RFC 4568 ``a=crypto``) that parse, in the offerer's order."""
        return crypto_lines(a.value for a in self.attributes if a.name == "crypto")

    @property
    def is_srtp(self) -> bool:
        """RTP/SAVP (RFC 3711 12): SRTP, keyed here by SDES."""
        return self.proto.upper() == "RTP/SAVP"

    def fmtp(self) -> dict[str, str]:
        """fmt -> a=fmtp parameters (the first one given for each fmt)."""
        result: dict[str, str] = {}
        for attr in self.attributes:
            if attr.name == "fmtp" and attr.value is not None:
                m = _FMTP_RE.fullmatch(attr.value)
                if m is not None:
                    result.setdefault(m.group(1), m.group(2))
        return result

    def rtpmap(self, *, static: bool = True) -> dict[int, Codec]:
        """Payload type -> Codec for the RTP payload types in the fmt list, in fmt order.

        A payload type without a=rtpmap takes its RFC 3551 static meaning when
        ``static`` (and is left out when it has none); fmtp parameters are filled in.
        """
        mapped: dict[int, Codec] = {}
        for attr in self.attributes:
            if attr.name == "rtpmap" and attr.value is not None:
                m = _RTPMAP_RE.fullmatch(attr.value)
                if m is not None and int(m.group(1)) not in mapped:
                    channels = 1 if m.group(4) is None else int(m.group(4))
                    mapped[int(m.group(1))] = Codec(m.group(2), int(m.group(3)), channels)
        fmtps = self.fmtp()
        result: dict[int, Codec] = {}
        for fmt in self.fmts:
            if not fmt.isdigit() or int(fmt) > 127:
                continue
            pt = int(fmt)
            codec = mapped.get(pt) or (STATIC_PAYLOAD_TYPES.get(pt) if static else None)
            if codec is not None and pt not in result:
                result[pt] = replace(codec, fmtp=fmtps.get(fmt))
        return result

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        m = _PTIME_RE.fullmatch(value) if value is not None else None
        return int(m.group(1)) if m is not None else None

    @property
    def direction(self) -> Direction:
        """Media-level direction, else session-level, else sendrecv (RFC 3264 5.1)."""
        return _single_direction(self.lines) or self.session_direction or Direction.SENDRECV

    # -- connection -----------------------------------------------------------------

    @property
    def connection(self) -> Connection | None:
        """The first media-level c=, else the session-level one (RFC 8866 5.7)."""
        for line in self.lines:
            if isinstance(line, Connection):
                return line
        return self.session_connection

    @property
    def connection_address(self) -> str | None:
        """Where to send this stream's RTP (without any multicast /ttl)."""
        conn = self.connection
        return None if conn is None else conn.host

    @property
    def is_rejected(self) -> bool:
        """Port 0: the stream is rejected or removed (RFC 3264 6 and 8.2)."""
        return self.port == 0

    @property
    def is_rtp(self) -> bool:
        return self.proto.upper().startswith("RTP/")

    @property
    def is_hold(self) -> bool:
        """Hold as an offer signals it: sendonly or inactive (RFC 3264 8.4), or the
        RFC 2543 c=0.0.0.0."""
        conn = self.connection
        return self.direction in (Direction.SENDONLY, Direction.INACTIVE) or (
            conn is not None and conn.is_null
        )

    def with_direction(self, direction: Direction) -> MediaDescription:
        """A copy with its direction attribute replaced (or added at the end)."""
        new = Attribute(direction.value)
        lines = [new if isinstance(a, Attribute) and a.name in _DIRECTIONS else a for a in self.lines]
        if new not in lines:
            lines.append(new)
        return replace(self, lines=tuple(lines))

    def __str__(self) -> str:
        out = [f"m={self.m_line()}"]
        out.extend(f"{line.letter}={line}" for line in self.lines)
        return "\r\n".join(out) + "\r\n"


def _with_session_defaults(media: MediaDescription, conn: Connection | None,
                           direction: Direction | None) -> MediaDescription:
    """``replace(media, session_connection=..., session_direction=...)`` without its
    cost (it re-runs __init__ through keyword arguments: the costliest step of parsing
    an SDP); MediaDescription has no __post_init__ and caches nothing, so a shallow
    copy with the two defaults set is the same value."""
    new = object.__new__(MediaDescription)
    new.__dict__.update(media.__dict__)
    object.__setattr__(new, "session_connection", conn)
    object.__setattr__(new, "session_direction", direction)
    return new


@dataclass(frozen=True)
class SessionDescription(_Attributes):
    """A whole SDP body: v=0, o=, s=, the other session-level lines in order, media."""

    origin: Origin
    session_name: str = "-"
    lines: tuple[Line, ...] = (Timing(),)
    media: tuple[MediaDescription, ...] = ()

    def __post_init__(self) -> None:
        # Hand each media section the session-level defaults it falls back to.
        conn = self.connection
        direction = _single_direction(self.lines)
        media = tuple(
            _with_session_defaults(m, conn, direction)
            if m.session_connection is not conn or m.session_direction is not direction
            else m
            for m in self.media
        )
        object.__setattr__(self, "media", media)

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body; any defect raises ``ParseError`` with status 488."""
        if isinstance(data, str):
            try:
                data = data.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise _fail("SDP is not encodable text") from None
        if len(data) > MAX_SDP_SIZE:
            raise _fail("SDP body too large")
        if b"\x00" in data:
            raise _fail("NUL in SDP")
        if data.count(b"\n") > MAX_LINES:
            raise _fail("too many SDP lines")
        parsed = _recent.get(data)
        if parsed is not None:
            return parsed
        text = data.decode("utf-8", "surrogateescape")
        records = [r.removesuffix("\r") for r in text.split("\n")]
        while records and records[-1] == "":
            records.pop()
        parsed = _build(records)
        if len(_recent) >= _RECENT_SIZE:
            del _recent[next(iter(_recent))]  # the oldest: dicts keep insertion order
        _recent[data] = parsed
        return parsed

    @property
    def connection(self) -> Connection | None:
        """The session-level c= (the first, if several)."""
        for line in self.lines:
            if isinstance(line, Connection):
                return line
        return None

    @property
    def timing(self) -> Timing | None:
        for line in self.lines:
            if isinstance(line, Timing):
                return line
        return None

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, if any."""
        return _single_direction(self.lines)

    def __str__(self) -> str:
        out = ["v=0", f"o={self.origin}", f"s={self.session_name}"]
        out.extend(f"{line.letter}={line}" for line in self.lines)
        return "\r\n".join(out) + "\r\n" + "".join(str(m) for m in self.media)

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8", "surrogateescape")


def _build(records: list[str]) -> SessionDescription:
    parsed: list[tuple[str, str]] = []
    for record in records:
        m = _LINE_RE.fullmatch(record)
        if m is None:
            raise _fail("malformed SDP line")
        if m.group(1) not in _KNOWN_TYPES:
            raise _fail("unknown SDP line type")
        parsed.append((m.group(1), m.group(2)))
    # session-description = version-field origin-field session-name-field ...
    if len(parsed) < 3 or [t for t, _ in parsed[:3]] != ["v", "o", "s"]:
        raise _fail("SDP must start with v=, o=, s=")
    if parsed[0][1] != "0":
        raise _fail("unsupported SDP version")
    origin = Origin.parse(parsed[1][1])
    session_name = parsed[2][1]

    session_lines: list[Line] = []
    media: list[MediaDescription] = []
    current: MediaDescription | None = None
    media_lines: list[Line] = []
    for letter, value in parsed[3:]:
        if letter == "m":
            if current is not None:
                media.append(_finish_media(current, media_lines))
            if len(media) >= MAX_MEDIA:
                raise _fail("too many SDP media sections")
            current, media_lines = MediaDescription.parse_m_line(value), []
        elif letter in "vos":
            raise _fail(f"repeated SDP {letter}= line")
        elif current is None:
            session_lines.append(_parse_line(letter, value))
        elif letter in _MEDIA_LEVEL:
            media_lines.append(_parse_line(letter, value))
        else:
            raise _fail(f"SDP {letter}= line inside a media section")
    if current is not None:
        media.append(_finish_media(current, media_lines))
    _check_one_direction(session_lines)
    return SessionDescription(origin, session_name, tuple(session_lines), tuple(media))


def _finish_media(media: MediaDescription, lines: list[Line]) -> MediaDescription:
    _check_one_direction(lines)
    return replace(media, lines=tuple(lines))


# -- building voicegw's own descriptions ------------------------------------------------


def audio_media(
    port: int,
    payloads: Sequence[tuple[int, Codec]] = DEFAULT_PAYLOADS,
    *,
    direction: Direction = Direction.SENDRECV,
    ptime: int | None = 20,
    address: str | None = None,
    proto: str = "RTP/AVP",
    crypto: Sequence[CryptoAttribute] = (),
) -> MediaDescription:
    """An m=audio section with an rtpmap for every payload type (static ones too, as is
    common practice), their fmtp, ptime and an explicit direction.
    ``address`` adds a media-level c= line; ``crypto`` adds ``a=crypto`` lines (for
    ``proto="RTP/SAVP"``, RFC 4568)."""
    lines: list[Line] = []
    if address is not None:
        lines.append(Connection.for_host(address))
    for pt, codec in payloads:
        rtpmap = f"{pt} {codec.name}/{codec.clock_rate}"
        lines.append(Attribute("rtpmap", rtpmap if codec.channels == 1 else f"{rtpmap}/{codec.channels}"))
        if codec.fmtp is not None:
            lines.append(Attribute("fmtp", f"{pt} {codec.fmtp}"))
    if ptime is not None:
        lines.append(Attribute("ptime", str(ptime)))
    lines.extend(Attribute("crypto", str(c)) for c in crypto)
    lines.append(Attribute(direction.value))
    return MediaDescription("audio", port, proto, tuple(str(pt) for pt, _ in payloads), tuple(lines))


class SdpBuilder:
    """voicegw's side of one session's SDP: a fixed o= session id and a version that
    increments by one each time the description changes, and only then (RFC 3264 8:
    "the version in the origin field MUST increment by one from the previous SDP";
    an unchanged description keeps its version).

    The caller chooses the session id (for instance from its own random source) and
    the first version: nothing here reads a clock or a random generator.
    """

    def __init__(
        self,
        *,
        session_id: int,
        address: str,
        session_version: int = 0,
        username: str = "voicegw",
        session_name: str = "voicegw",
    ) -> None:
        conn = Connection.for_host(address)
        self.origin = Origin(username, session_id, session_version, "IN", conn.addrtype, address)
        self.address = address
        self.session_name = session_name
        self.last: SessionDescription | None = None

    def offer(
        self,
        *,
        port: int,
        payloads: Sequence[tuple[int, Codec]] = DEFAULT_PAYLOADS,
        direction: Direction = Direction.SENDRECV,
        ptime: int | None = 20,
        proto: str = "RTP/AVP",
        crypto: Sequence[CryptoAttribute] = (),
    ) -> SessionDescription:
        """Our offer: one audio stream on ``port`` at the builder's address. SRTP:
        ``proto="RTP/SAVP"`` with our key(s) in ``crypto`` (``media.srtp.new_crypto``)."""
        media = audio_media(port, payloads, direction=direction, ptime=ptime, proto=proto,
                            crypto=crypto)
        return self.stamp(
            SessionDescription(
                self.origin,
                self.session_name,
                (Connection.for_host(self.address), Timing()),
                (media,),
            )
        )

    def stamp(self, draft: SessionDescription) -> SessionDescription:
        """``draft`` under our o= line: the previous version if nothing else changed,
        otherwise the next one. Use it for answers made elsewhere too."""
        if self.last is not None:
            unchanged = replace(draft, origin=self.last.origin, session_name=self.session_name)
            if unchanged == self.last:
                return self.last
            self.origin = replace(self.origin, session_version=self.origin.session_version + 1)
        result = replace(draft, origin=self.origin, session_name=self.session_name)
        self.last = result
        return result


__all__ = [
    "MAX_LINES",
    "MAX_MEDIA",
    "MAX_SDP_SIZE",
    "MediaDescription",
    "SdpBuilder",
    "SessionDescription",
    "audio_media",
]
