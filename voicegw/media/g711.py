"""G.711 mu-law (PCMU, PT 0) and A-law (PCMA, PT 8), RFC 3551 section 4.5.14.

Decoding is a 256-entry table; encoding is a 65536-entry table indexed by the int16
sample reinterpreted as uint16, so both directions are one numpy fancy-index. The
tables are computed once at import from the ITU-T G.711 reference algorithms (the same
bit manipulations as Sun's public-domain g711.c), so they can be checked against it.

Transcoding between the two laws needs no numpy at run time: it is a 256-octet
translation table for ``bytes.translate``, which runs in C with one allocation.
"""

from __future__ import annotations

import numpy as np

PCMU = 0
PCMA = 8
CLOCK_RATE = 8000

_BIAS = 0x84  # mu-law bias, 132 (G.711 section 3.2)


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = ((mantissa << 3) + _BIAS) << exponent
    value = magnitude - _BIAS
    return np.where(u & 0x80, -value, value).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55  # even bits are inverted on the wire
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    value = np.where(exponent == 0, (mantissa << 4) + 8,
                     ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, value, -value).astype(np.int16)


def _ulaw_encode_table() -> np.ndarray:
    x = np.arange(65536, dtype=np.int32)
    x = np.where(x >= 32768, x - 65536, x)  # index is the int16 seen as uint16
    # G.711 mu-law works on 14-bit samples: shift first (arithmetic, as the reference
    # code does), then take the magnitude, clip and add the bias (33 at 14 bits).
    x = x >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    # 8159 + 33 = 8192 overflows the last segment; the reference answers the
    # largest code there, which clipping at 8191 gives.
    mag = np.minimum(np.minimum(np.abs(x), 8159) + (_BIAS >> 2), 8191)
    # segment = position of the highest set bit among bits 5..12
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 5, 0, 7)
    mantissa = (mag >> (exponent + 1)) & 0x0F
    return (((exponent << 4) | mantissa) ^ mask).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    x = np.arange(65536, dtype=np.int32)
    x = np.where(x >= 32768, x - 65536, x)
    sign = np.where(x >= 0, 0x80, 0)
    # A-law works on 13-bit magnitudes; -1 maps like 0 after the one's complement.
    mag = np.where(x >= 0, x, -x - 1) >> 3
    mag = np.minimum(mag, 0xFFF)
    exponent = np.where(mag >= 32, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4, 0)
    exponent = np.clip(exponent, 0, 7)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> exponent) & 0x0F
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8)


ULAW_DECODE = _ulaw_decode_table()
ALAW_DECODE = _alaw_decode_table()
ULAW_ENCODE = _ulaw_encode_table()
ALAW_ENCODE = _alaw_encode_table()

# Law-to-law translation tables: decode with one law, re-encode with the other.
ULAW_TO_ALAW: bytes = ALAW_ENCODE[ULAW_DECODE.view(np.uint16)].tobytes()
ALAW_TO_ULAW: bytes = ULAW_ENCODE[ALAW_DECODE.view(np.uint16)].tobytes()

# Silence: the code each law decodes as (near) zero.
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def ulaw_decode(data: bytes) -> np.ndarray:
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> np.ndarray:
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: np.ndarray) -> bytes:
    return ULAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes()


def alaw_encode(samples: np.ndarray) -> bytes:
    return ALAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes()


def ulaw_to_alaw(payload: bytes) -> bytes:
    return payload.translate(ULAW_TO_ALAW)


def alaw_to_ulaw(payload: bytes) -> bytes:
    return payload.translate(ALAW_TO_ULAW)


def encoder_for(payload_type: int):  # -> Callable[[np.ndarray], bytes]
    """The encoder for a static payload type (RFC 3551 table 4)."""
    if payload_type == PCMU:
        return ulaw_encode
    if payload_type == PCMA:
        return alaw_encode
    raise ValueError(f"payload type {payload_type} is not G.711")


def decoder_for(payload_type: int):  # -> Callable[[bytes], np.ndarray]
    if payload_type == PCMU:
        return ulaw_decode
    if payload_type == PCMA:
        return alaw_decode
    raise ValueError(f"payload type {payload_type} is not G.711")


def transcode_table(from_pt: int, to_pt: int) -> bytes | None:
    """The ``bytes.translate`` table from one G.711 payload type to another; None when
    they are the same law (nothing to do)."""
    if from_pt == to_pt:
        return None
    if (from_pt, to_pt) == (PCMU, PCMA):
        return ULAW_TO_ALAW
    if (from_pt, to_pt) == (PCMA, PCMU):
        return ALAW_TO_ULAW
    raise ValueError(f"cannot transcode payload type {from_pt} to {to_pt}")


def silence(payload_type: int, n: int = 160) -> bytes:
    return bytes([ULAW_SILENCE if payload_type == PCMU else ALAW_SILENCE]) * n
