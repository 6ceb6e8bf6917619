"""The fields of an SDP body (RFC 8866 section 5) and the RTP payload formats they name.

The lines voicegw interprets become small frozen dataclasses, each with its
``parse(value)`` and ``str()``: o= (:class:`Origin`), c= (:class:`Connection`), t=
(:class:`Timing`) and a= (:class:`Attribute`, whose rtpmap, fmtp, ptime and direction
values are checked); every other line is a :class:`Field`, kept verbatim. Also here:
the RFC 3264 :class:`Direction` attributes and :class:`Codec` with the RFC 3551
static payload types. The ABNF of each field stands above its regex.

Used by :mod:`voicegw.sip.sdp` (the model, parser and builder), whose
docstring states the parsing policy and limits; a defect is a ``ParseError`` with
status 488.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from voicegw.sip.errors import ParseError

#: What a UAS answers for an offer it cannot use (RFC 3261 21.4.26).
NOT_ACCEPTABLE_HERE = 488

# token-char = %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
# token      = 1*(token-char)
_TOKEN = r"[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7e]+"
# non-ws-string = 1*(VCHAR / %x80-FF)   (decoded bytes >= 0x80 are any char >= U+0080)
_NON_WS = r"[\x21-\x7e\x80-\U0010ffff]+"
# byte-string = 1*(%x01-09/%x0B-0C/%x0E-FF)   ; any byte except NUL, CR, or LF
_BYTE_STRING = r"[\x01-\x09\x0b\x0c\x0e-\U0010ffff]*"

# origin-field = %s"o" "=" username SP sess-id SP sess-version SP
#                nettype SP addrtype SP unicast-address CRLF
# sess-id = 1*DIGIT ; sess-version = 1*DIGIT
_ORIGIN_RE = re.compile(
    rf"({_NON_WS}) ([0-9]+) ([0-9]+) ({_TOKEN}) ({_TOKEN}) ({_NON_WS})"
)
# connection-field = %s"c" "=" nettype SP addrtype SP connection-address CRLF
_CONNECTION_RE = re.compile(rf"({_TOKEN}) ({_TOKEN}) ({_NON_WS})")
# time-field = %s"t" "=" start-time SP stop-time ; start-time = time / "0"
_TIMING_RE = re.compile(r"([0-9]+) ([0-9]+)")
# attribute = (attribute-name ":" attribute-value) / attribute-name
# attribute-name = token ; attribute-value = byte-string
_ATTRIBUTE_RE = re.compile(rf"({_TOKEN})(?::({_BYTE_STRING}))?")
# a=rtpmap:<payload type> <encoding name>/<clock rate> [/<encoding parameters>]
_RTPMAP_RE = re.compile(r"([0-9]{1,3}) ([^/ ]+)/([0-9]{1,9})(?:/([0-9]{1,3}))?")
# a=fmtp:<format> <format specific parameters>
_FMTP_RE = re.compile(rf"({_TOKEN}) ({_BYTE_STRING})")
# a=ptime:<packet time>  (milliseconds; a fraction is tolerated and truncated)
_PTIME_RE = re.compile(r"([0-9]{1,6})(?:\.[0-9]{1,6})?")
# IP4-address = b1 3("." decimal-uchar) ; IP4-multicast adds "/" ttl [ "/" integer ]
_IP4_RE = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,3}){3})(?:/[0-9]{1,3}(?:/[0-9]{1,5})?)?")
# IP6-multicast = IP6-address [ "/" integer ]
_IP6_RE = re.compile(r"([0-9A-Fa-f:.]+)(?:/[0-9]{1,5})?")
# FQDN = 4*(alpha-numeric / "-" / ".")
_FQDN_RE = re.compile(r"[A-Za-z0-9.-]{4,}")


def _fail(reason: str) -> ParseError:
    return ParseError(reason, status=NOT_ACCEPTABLE_HERE)


class Direction(Enum):
    """The RFC 3264 section 5.1 direction attributes."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @classmethod
    def from_flags(cls, send: bool, recv: bool) -> Direction:
        if send and recv:
            return cls.SENDRECV
        if send:
            return cls.SENDONLY
        return cls.RECVONLY if recv else cls.INACTIVE

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    def reversed(self) -> Direction:
        """The same stream seen from the other end (RFC 3264 6.1: a sendonly offer
        is answered recvonly, recvonly with sendonly, inactive with inactive)."""
        return Direction.from_flags(send=self.receives, recv=self.sends)

    def intersect(self, other: Direction) -> Direction:
        return Direction.from_flags(self.sends and other.sends, self.receives and other.receives)


_DIRECTIONS = frozenset(d.value for d in Direction)


@dataclass(frozen=True)
class Codec:
    """An RTP payload format: the rtpmap encoding name, clock rate and channels, and the
    fmtp parameters (which do not take part in ``matches``)."""

    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    def matches(self, other: Codec) -> bool:
        """Same format: encoding names compare case-insensitively (RFC 4855)."""
        return (
            self.name.lower() == other.name.lower()
            and self.clock_rate == other.clock_rate
            and self.channels == other.channels
        )

    @property
    def is_telephone_event(self) -> bool:
        return self.name.lower() == "telephone-event"


PCMU = Codec("PCMU", 8000)
PCMA = Codec("PCMA", 8000)
#: RFC 4733 events 0-15 are DTMF digits 0-9, *, #, A-D; 16 is flash.
TELEPHONE_EVENT = Codec("telephone-event", 8000, fmtp="0-16")
#: voicegw's own payload types: G.711 mu-law and A-law on their static numbers, DTMF on 101.
DEFAULT_PAYLOADS: tuple[tuple[int, Codec], ...] = ((0, PCMU), (8, PCMA), (101, TELEPHONE_EVENT))

# RFC 3551 table 4: static audio payload types an offer may use without an rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, Codec] = {
    0: PCMU,
    3: Codec("GSM", 8000),
    4: Codec("G723", 8000),
    5: Codec("DVI4", 8000),
    6: Codec("DVI4", 16000),
    7: Codec("LPC", 8000),
    8: PCMA,
    9: Codec("G722", 8000),
    10: Codec("L16", 44100, 2),
    11: Codec("L16", 44100),
    12: Codec("QCELP", 8000),
    13: Codec("CN", 8000),
    14: Codec("MPA", 90000),
    15: Codec("G728", 8000),
    16: Codec("DVI4", 11025),
    17: Codec("DVI4", 22050),
    18: Codec("G729", 8000),
}


@dataclass(frozen=True)
class Origin:
    """o=: who made the description; the version increments on every change (RFC 3264 8)."""

    letter: ClassVar[str] = "o"
    username: str
    session_id: int
    session_version: int
    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        m = _ORIGIN_RE.fullmatch(value)
        if m is None:
            raise _fail("bad SDP o= line")
        user, sid, version, nettype, addrtype, address = m.groups()
        return cls(user, int(sid), int(version), nettype, addrtype, address)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True)
class Connection:
    """c=: where media goes. ``address`` is the connection-address as written, which for
    multicast carries "/ttl[/count]"; ``host`` is the address alone."""

    letter: ClassVar[str] = "c"
    addrtype: str
    address: str
    nettype: str = "IN"

    @classmethod
    def parse(cls, value: str) -> Connection:
        m = _CONNECTION_RE.fullmatch(value)
        if m is None:
            raise _fail("bad SDP c= line")
        nettype, addrtype, address = m.groups()
        if nettype == "IN":
            _check_address(addrtype, address)
        return cls(addrtype, address, nettype)

    @classmethod
    def for_host(cls, host: str) -> Connection:
        """c=IN IP4 host or c=IN IP6 host, chosen by the address's form."""
        return cls("IP6" if ":" in host else "IP4", host)

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def is_null(self) -> bool:
        """c=IN IP4 0.0.0.0: RFC 2543 hold, still sent by old peers (RFC 3264 8.4)."""
        return self.host == "0.0.0.0"

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


def _check_address(addrtype: str, address: str) -> None:
    # unicast-address = IP4-address / IP6-address / FQDN / extn-addr
    if addrtype == "IP4":
        m = _IP4_RE.fullmatch(address)
        if m is not None:
            if all(int(octet) <= 255 for octet in m.group(1).split(".")):
                return
            raise _fail("bad IP4 address in SDP")
    elif addrtype == "IP6":
        # RFC 5118 4.6: SDP carries IPv6 addresses bare, never in [brackets]
        m = _IP6_RE.fullmatch(address)
        if m is not None and ":" in m.group(1):
            try:
                ipaddress.IPv6Address(m.group(1))
            except ValueError:
                raise _fail("bad IP6 address in SDP") from None
            return
    else:
        return  # extn-addr: an address type we do not know is kept as written
    if _FQDN_RE.fullmatch(address) is None or ":" in address:
        raise _fail("bad address in SDP c= line")


@dataclass(frozen=True)
class Timing:
    """t=: start and stop as NTP seconds; "t=0 0" is an unbounded session."""

    letter: ClassVar[str] = "t"
    start: int = 0
    stop: int = 0

    @classmethod
    def parse(cls, value: str) -> Timing:
        m = _TIMING_RE.fullmatch(value)
        if m is None:
            raise _fail("bad SDP t= line")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.start} {self.stop}"


@dataclass(frozen=True)
class Attribute:
    """a=name or a=name:value. ``value`` is None for a property attribute (a=sendrecv),
    "" for "a=name:"; unknown attributes are kept as they came."""

    letter: ClassVar[str] = "a"
    name: str
    value: str | None = None

    @classmethod
    def parse(cls, value: str) -> Attribute:
        m = _ATTRIBUTE_RE.fullmatch(value)
        if m is None:
            raise _fail("bad SDP a= line")
        attr = cls(m.group(1), m.group(2))
        _check_attribute(attr)
        return attr

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


def _check_attribute(attr: Attribute) -> None:
    """Reject malformed values of the attributes voicegw interprets."""
    checks = {"rtpmap": _RTPMAP_RE, "fmtp": _FMTP_RE, "ptime": _PTIME_RE}
    regex = checks.get(attr.name)
    if regex is not None and (attr.value is None or regex.fullmatch(attr.value) is None):
        raise _fail(f"bad SDP a={attr.name}")
    if attr.name in _DIRECTIONS and attr.value is not None:
        raise _fail("bad SDP direction attribute")


@dataclass(frozen=True)
class Field:
    """Any other line (i=, u=, e=, p=, b=, r=, z=, k=), kept verbatim."""

    type: str
    value: str

    def __post_init__(self) -> None:
        if len(self.type) != 1 or self.type not in "iuepbrzk":
            raise ValueError(f"Field cannot hold an {self.type}= line")

    @property
    def letter(self) -> str:
        return self.type

    def __str__(self) -> str:
        return self.value


Line = Connection | Timing | Attribute | Field


__all__ = [
    "DEFAULT_PAYLOADS",
    "NOT_ACCEPTABLE_HERE",
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT",
    "Attribute",
    "Codec",
    "Connection",
    "Direction",
    "Field",
    "Line",
    "Origin",
    "Timing",
]
