"""One continuous outgoing RTP stream across changes of source (bot -> ringback ->
agent), as a B2BUA must present it to the caller.

RFC 3550 section 8.2 lets a receiver treat a new SSRC as a new participant, and many
carrier SBCs and phones reset their jitter buffer, or mute for a while, when the SSRC,
sequence or timestamp jumps. So once the source of a stream has changed, every packet
towards that receiver is rewritten: SSRC set to the stream's stable one, sequence and
timestamp shifted by offsets chosen at the change so that the first packet of the new
source follows the last one sent (sequence + 1; timestamp + the wall-clock gap), with
the marker bit set (RFC 3551 section 4.1: first packet after a silence).

Pure: the caller passes the current time; nothing here reads a clock.
"""

from __future__ import annotations

import random
import struct

from voicegw.media.rtp import RTP_HEADER_SIZE

_SEQ_TS_SSRC = struct.Struct("!HII")


class StreamContinuity:
    """The rewrite state of one outgoing stream. Inactive (and never consulted on the
    relay's fast path) until the first change of source."""

    __slots__ = (
        "_in_ssrc",
        "_last_out_at",
        "_seq",
        "_seq_off",
        "_switch_at",
        "_ts",
        "_ts_off",
        "active",
        "clock_rate",
        "frame",
        "ssrc",
    )

    def __init__(self, clock_rate: int = 8000, frame: int = 160) -> None:
        self.clock_rate = clock_rate
        self.frame = frame
        self.active = False
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._in_ssrc: int | None = None
        self._seq_off = 0
        self._ts_off = 0
        self._switch_at: float | None = None
        self._last_out_at: float | None = None

    @property
    def ts_offset(self) -> int:
        """Added to the current source's timestamps (for its RTCP SR, 6.4.1)."""
        return self._ts_off

    def begin_source(self, last_sent: bytes | None, now: float,
                     last_sent_at: float | None = None) -> None:
        """A new source is about to feed this stream.

        ``last_sent`` is the last packet the receiver got while the stream was passed
        through untouched (None if it got nothing or rewriting is already on). On the
        first change it fixes the stable SSRC and the numbering to continue from.
        """
        if not self.active:
            self.active = True
            if last_sent is not None and len(last_sent) >= RTP_HEADER_SIZE:
                self._seq, self._ts, self.ssrc = _SEQ_TS_SSRC.unpack_from(last_sent, 2)
                self._last_out_at = last_sent_at if last_sent_at is not None else now
            else:
                # Nothing was sent yet: the first packet needs no gap.
                self._last_out_at = None
        self._in_ssrc = None
        self._switch_at = now

    def rewrite(self, buf: bytearray, now: float) -> None:
        """Rewrite one packet in place (SSRC, sequence, timestamp, maybe marker)."""
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(buf, 2)
        if ssrc != self._in_ssrc:
            self._remap(seq, ts, ssrc, now)
            buf[1] |= 0x80  # marker: a talkspurt starts (RFC 3551 4.1)
        out_seq = (seq + self._seq_off) & 0xFFFF
        out_ts = (ts + self._ts_off) & 0xFFFFFFFF
        _SEQ_TS_SSRC.pack_into(buf, 2, out_seq, out_ts, self.ssrc)
        self._seq = out_seq
        self._ts = out_ts
        self._last_out_at = now

    def _remap(self, seq: int, ts: int, ssrc: int, now: float) -> None:
        if self._last_out_at is None:
            gap = 0
            next_seq = self._seq
        else:
            # Advance the timestamp by the wall-clock time since the last packet went
            # out, in whole frames and at least one, so the receiver's playout clock
            # stays in step with real time (RFC 3550 5.1, timestamp semantics).
            elapsed = max(0.0, now - self._last_out_at)
            frames = max(1, round(elapsed * self.clock_rate / self.frame))
            gap = frames * self.frame
            next_seq = self._seq + 1
        self._seq_off = (next_seq - seq) & 0xFFFF
        self._ts_off = (self._ts + gap - ts) & 0xFFFFFFFF
        self._in_ssrc = ssrc
        self._switch_at = None
