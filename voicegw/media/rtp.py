"""RTP and RTCP packets (RFC 3550 sections 5.1 and 6.4-6.6): parse and serialize.

Pure: bytes in, objects out, and back with ``bytes(packet)``. aiortc's ``rtp.py`` is the
model for the parse()/bytes() pairing, but aiortc itself is not a dependency: it drags in
av (FFmpeg), cryptography, pylibsrtp and pyee for what is here a 12-byte header read with
``struct``. The relay's hot path does not use these classes at all (it forwards the
datagram untouched); they serve the slow paths, the players and the tests.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
# 0xFFFF / 0xFFFFFFFF: sequence numbers and timestamps wrap (RFC 3550 5.1).
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32

_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")

# RTCP packet types (RFC 3550 section 12.1).
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
_RTCP_HEADER = struct.Struct("!BBHI")


class RtpError(Exception):
    """A datagram is not a valid RTP or RTCP packet; the relay counts and drops it."""


@dataclass(slots=True)
class HeaderExtension:
    """The one header extension an RTP packet may carry (RFC 3550 5.3.1)."""

    profile: int
    """16-bit profile-defined value (0xBEDE for RFC 8285 one-byte headers)."""
    data: bytes
    """Extension body; its length is a multiple of 4 octets."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 5.1)."""

    payload_type: int = 0
    sequence: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension: HeaderExtension | None = None
    padding: int = 0
    """Number of padding octets after the payload; 0 means the P bit is clear."""
    version: int = RTP_VERSION

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < RTP_HEADER_SIZE:
            raise RtpError(f"RTP packet too short: {len(data)} octets")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        version = b0 >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTP version {version}, expected 2")
        cc = b0 & 0x0F
        pos = RTP_HEADER_SIZE + 4 * cc
        if len(data) < pos:
            raise RtpError("RTP CSRC list truncated")
        csrc = list(struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE)) if cc else []
        extension = None
        if b0 & 0x10:
            if len(data) < pos + 4:
                raise RtpError("RTP header extension truncated")
            profile, words = _EXT_HEADER.unpack_from(data, pos)
            pos += 4
            end = pos + 4 * words
            if len(data) < end:
                raise RtpError("RTP header extension truncated")
            extension = HeaderExtension(profile, bytes(data[pos:end]))
            pos = end
        end = len(data)
        padding = 0
        if b0 & 0x20:
            # "The last octet of the padding contains a count of how many padding
            # octets should be ignored, including itself" (RFC 3550 5.1).
            padding = data[-1]
            if padding == 0 or pos + padding > end:
                raise RtpError(f"RTP padding count {padding} invalid")
            end -= padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(b1 & 0x80),
            csrc=csrc,
            extension=extension,
            padding=padding,
            version=version,
        )

    def __bytes__(self) -> bytes:
        b0 = (self.version << 6) | len(self.csrc)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [_HEADER.pack(b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF,
                              self.ssrc & 0xFFFFFFFF)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            data = self.extension.data
            if len(data) % 4:
                raise RtpError("RTP header extension length must be a multiple of 4")
            parts.append(_EXT_HEADER.pack(self.extension.profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def build_rtp(payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes,
              marker: bool = False) -> bytes:
    """The common case (no CSRC, extension or padding) without building an object."""
    b1 = (0x80 if marker else 0) | payload_type
    return _HEADER.pack(0x80, b1, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def payload_bounds(data: bytes | bytearray) -> tuple[int, int]:
    """(start, end) of the payload inside a raw RTP datagram, skipping CSRCs, the
    extension and padding, for slow paths that rewrite a payload in place."""
    n = len(data)
    if n < RTP_HEADER_SIZE or data[0] >> 6 != RTP_VERSION:
        raise RtpError("not an RTP packet")
    b0 = data[0]
    pos = RTP_HEADER_SIZE + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if n < pos + 4:
            raise RtpError("RTP header extension truncated")
        pos += 4 + 4 * ((data[pos + 2] << 8) | data[pos + 3])
    end = n - data[-1] if b0 & 0x20 else n
    if end < pos:
        raise RtpError("RTP packet truncated")
    return pos, end


@dataclass(slots=True)
class RtcpPacket:
    """One packet of an RTCP compound packet (RFC 3550 6.4-6.6), parsed only as far as a
    relay needs: its type, the SSRC it comes from and the rest as opaque octets.

    For SR and RR ``ssrc`` is the sender's SSRC; for SDES and BYE it is the first
    chunk/source SSRC (0 when the count is 0).
    """

    packet_type: int
    count: int
    """RC, SC or the subtype: the low 5 bits of the first octet."""
    ssrc: int
    body: bytes
    """Everything after the SSRC word, padding included."""
    padding: bool = False

    @property
    def rtp_timestamp(self) -> int | None:
        """The SR sender info's RTP timestamp (RFC 3550 6.4.1), else None."""
        if self.packet_type != RTCP_SR or len(self.body) < 12:
            return None
        return int.from_bytes(self.body[8:12], "big")

    @classmethod
    def parse_compound(cls, data: bytes) -> list[RtcpPacket]:
        packets: list[RtcpPacket] = []
        pos = 0
        while pos < len(data):
            if len(data) - pos < 4:
                raise RtpError("RTCP header truncated")
            b0, pt, words = struct.unpack_from("!BBH", data, pos)
            if b0 >> 6 != RTP_VERSION:
                raise RtpError(f"RTCP version {b0 >> 6}, expected 2")
            # The length field is in 32-bit words minus one (RFC 3550 6.4.1).
            end = pos + 4 * (words + 1)
            if end > len(data):
                raise RtpError("RTCP packet truncated")
            ssrc = int.from_bytes(data[pos + 4:pos + 8], "big") if end - pos >= 8 else 0
            body = bytes(data[pos + 8:end]) if end - pos >= 8 else b""
            packets.append(cls(pt, b0 & 0x1F, ssrc, body, bool(b0 & 0x20)))
            pos = end
        if not packets:
            raise RtpError("empty RTCP datagram")
        # "The first RTCP packet in the compound packet MUST always be a report
        # packet" (RFC 3550 6.1); reduced-size RTCP (RFC 5506) relaxes it, so a
        # relay only checks the type range (RFC 5761 section 4: 192-223).
        first = packets[0].packet_type
        if first not in (RTCP_SR, RTCP_RR) and not 192 <= first <= 223:
            raise RtpError(f"RTCP packet type {first} out of range")
        return packets

    def __bytes__(self) -> bytes:
        if self.packet_type in (RTCP_SDES, RTCP_BYE) and self.count == 0 and not self.body:
            return struct.pack("!BBH", 0x80, self.packet_type, 0)
        size = 8 + len(self.body)
        if size % 4:
            raise RtpError("RTCP packet length must be a multiple of 4")
        b0 = 0x80 | (0x20 if self.padding else 0) | (self.count & 0x1F)
        return _RTCP_HEADER.pack(b0, self.packet_type, size // 4 - 1, self.ssrc) + self.body
