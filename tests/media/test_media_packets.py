"""RTP/RTCP packets, G.711 and the media purity rule."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import numpy as np
import pytest

from voicegw.media import g711
from voicegw.media.rtp import (
    RTCP_BYE,
    RTCP_RR,
    RTCP_SR,
    HeaderExtension,
    RtcpPacket,
    RtpError,
    RtpPacket,
    build_rtp,
    payload_bounds,
)

MEDIA = Path(__file__).resolve().parents[2] / "voicegw" / "media"
PURE = ["rtp.py", "g711.py", "dtmf.py", "tones.py", "wav.py", "continuity.py", "ports.py"]
FORBIDDEN = {"asyncio", "socket", "time", "pydantic", "structlog", "uvloop", "selectors"}


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_no_io(name: str) -> None:
    tree = ast.parse((MEDIA / name).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        else:
            continue
        assert not roots & FORBIDDEN, f"{name} imports {roots & FORBIDDEN}"


def test_rtp_round_trip_minimal() -> None:
    raw = build_rtp(0, 65535, 0xFFFFFFF0, 0x12345678, b"\xff" * 160, marker=True)
    assert len(raw) == 172
    p = RtpPacket.parse(raw)
    assert (p.version, p.payload_type, p.sequence, p.timestamp, p.ssrc, p.marker) == (
        2, 0, 65535, 0xFFFFFFF0, 0x12345678, True)
    assert p.payload == b"\xff" * 160 and p.csrc == [] and p.extension is None
    assert bytes(p) == raw


def test_rtp_round_trip_full_header() -> None:
    p = RtpPacket(payload_type=8, sequence=1, timestamp=2, ssrc=3, payload=b"abc",
                  csrc=[7, 8], extension=HeaderExtension(0xBEDE, b"\x10\x01\x00\x00"),
                  padding=4)
    raw = bytes(p)
    assert raw[0] == 0x80 | 0x20 | 0x10 | 2
    q = RtpPacket.parse(raw)
    assert q == p
    assert payload_bounds(raw) == (12 + 8 + 8, len(raw) - 4)
    assert raw[payload_bounds(raw)[0]:payload_bounds(raw)[1]] == b"abc"


@pytest.mark.parametrize("raw", [b"", b"\x80" * 11, b"\x40" + b"\x00" * 11,
                                 b"\x8f" + b"\x00" * 20, b"\xa0" + b"\x00" * 11])
def test_rtp_rejects_malformed(raw: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(raw)


def test_rtcp_compound_sr_sdes_bye() -> None:
    sr_body = struct.pack("!IIIII", 1, 2, 160_000, 50, 8000)  # NTP, RTP ts, counts
    sr = RtcpPacket(RTCP_SR, 0, 0xAABBCCDD, sr_body)
    rr = RtcpPacket(RTCP_RR, 0, 0x01020304, b"")
    bye = RtcpPacket(RTCP_BYE, 1, 0xAABBCCDD, b"")
    raw = bytes(sr) + bytes(rr) + bytes(bye)
    got = RtcpPacket.parse_compound(raw)
    assert [p.packet_type for p in got] == [RTCP_SR, RTCP_RR, RTCP_BYE]
    assert got[0].ssrc == 0xAABBCCDD and got[0].rtp_timestamp == 160_000
    assert got[2].count == 1
    assert b"".join(bytes(p) for p in got) == raw


def test_rtcp_rejects_truncated() -> None:
    raw = bytes(RtcpPacket(RTCP_RR, 0, 1, b""))
    with pytest.raises(RtpError):
        RtcpPacket.parse_compound(raw[:-1] + b"")
    with pytest.raises(RtpError):
        RtcpPacket.parse_compound(b"\x80\xc9\x00\x05" + b"\x00" * 4)


def test_g711_known_values() -> None:
    # Silence codes (G.711: mu-law 0xFF and A-law 0xD5 are the "zero" codes).
    assert g711.ULAW_DECODE[0xFF] == 0
    assert g711.ULAW_DECODE[0x7F] == 0
    assert g711.ALAW_DECODE[0xD5] == 8
    assert g711.ALAW_DECODE[0x55] == -8
    # Extremes: mu-law 0x00 is -32124, 0x80 is +32124; A-law 0xAA is +32256.
    assert g711.ULAW_DECODE[0x00] == -32124 and g711.ULAW_DECODE[0x80] == 32124
    assert g711.ALAW_DECODE[0xAA] == 32256 and g711.ALAW_DECODE[0x2A] == -32256
    assert g711.ulaw_encode(np.array([0], np.int16)) == b"\xff"
    assert g711.alaw_encode(np.array([0], np.int16)) == b"\xd5"
    assert g711.ulaw_encode(np.array([32767, -32768], np.int16)) == b"\x80\x00"


@pytest.mark.parametrize("encode,decode", [(g711.ulaw_encode, g711.ulaw_decode),
                                           (g711.alaw_encode, g711.alaw_decode)])
def test_g711_round_trip_error_bound(encode, decode) -> None:
    x = np.arange(-32768, 32768, dtype=np.int16)
    y = decode(encode(x)).astype(np.int32)
    err = np.abs(y - x.astype(np.int32))
    mag = np.abs(x.astype(np.int32))
    # Logarithmic quantiser: the error is within half a step, and a step is at most
    # 1/16 of the segment, i.e. about 3.2% of the magnitude (+ a small floor).
    assert np.all(err <= mag * 0.033 + 16), int(err.max())
    # Every code decodes and re-encodes to itself.
    codes = np.arange(256, dtype=np.uint8).tobytes()
    table = g711.ULAW_DECODE if encode is g711.ulaw_encode else g711.ALAW_DECODE
    assert np.array_equal(decode(encode(table)), table)
    assert len(set(encode(decode(codes)))) >= 255  # mu-law has two zeros


def test_transcoding_tables() -> None:
    codes = bytes(range(256))
    a = g711.ulaw_to_alaw(codes)
    assert len(a) == 256
    diff = np.abs(g711.alaw_decode(a).astype(int) - g711.ulaw_decode(codes).astype(int))
    assert diff.max() <= 1024  # within one A-law step at the top segment
    assert g711.ulaw_to_alaw(b"\xff") == b"\xd5"
    assert g711.ulaw_decode(g711.alaw_to_ulaw(b"\xd5"))[0] == 8  # A-law zero is +8
    assert g711.transcode_table(0, 0) is None
    assert g711.transcode_table(8, 0) == g711.ALAW_TO_ULAW
