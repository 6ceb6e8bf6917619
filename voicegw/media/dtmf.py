"""DTMF as RTP telephone-events (RFC 4733): payload parse/build, sender-side event
sequences and a receiver-side detector that yields one digit per key press.

Pure: the detector is fed RTP timestamps and payloads; it never reads a clock.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

# RFC 4733 section 3.2, table 1: DTMF named events.
EVENT_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11,
               "A": 12, "B": 13, "C": 14, "D": 15}
EVENT_NAMES = {code: name for name, code in EVENT_CODES.items()}

_PAYLOAD = struct.Struct("!BBH")


class DtmfError(Exception):
    """A telephone-event payload is malformed."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-octet telephone-event payload (RFC 4733 section 2.3)."""

    event: int
    """Event code, 0-15 for DTMF digits (section 3.2)."""
    end: bool = False
    """E bit: this packet reports the end of the event (2.5.1.4)."""
    volume: int = 10
    """Power level in -dBm0, 0-63 (2.3.4); 10 is the customary default."""
    duration: int = 0
    """Duration so far, in timestamp units (2.3.5); the event starts at the RTP
    timestamp, which stays the same for every packet of one event (2.3.1)."""

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        # A packet may carry several 4-octet blocks (redundancy, 2.5.1.5); the first
        # one is the current event, which is all a detector needs.
        if len(data) < 4:
            raise DtmfError(f"telephone-event payload too short: {len(data)} octets")
        event, flags, duration = _PAYLOAD.unpack_from(data)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        flags = (0x80 if self.end else 0) | (self.volume & 0x3F)
        return _PAYLOAD.pack(self.event, flags, min(self.duration, 0xFFFF))

    @property
    def digit(self) -> str | None:
        return EVENT_NAMES.get(self.event)


def event_payloads(digit: str, duration: int = 1600, step: int = 160, volume: int = 10,
                   end_repeats: int = 3) -> list[tuple[bytes, bool]]:
    """The payloads a sender emits for one key press, as (payload, marker) pairs.

    All share one RTP timestamp (the event start). The first has the marker bit
    (2.5.1.3); updates follow every ``step`` timestamp units; the final packet,
    with the E bit, is sent ``end_repeats`` times (3 is the RFC's advice, 2.5.1.4).
    """
    code = EVENT_CODES.get(digit.upper())
    if code is None:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    out: list[tuple[bytes, bool]] = []
    elapsed = step
    while elapsed < duration:
        out.append((bytes(TelephoneEvent(code, False, volume, elapsed)), not out))
        elapsed += step
    final = bytes(TelephoneEvent(code, True, volume, duration))
    out.extend((final, not out and i == 0) for i in range(end_repeats))
    return out


class DtmfDetector:
    """Turns a stream of telephone-event packets into exactly one digit per press.

    One press is identified by its RTP timestamp (RFC 4733 2.3.1: all packets of an
    event carry its start timestamp). A digit is reported at the first end packet;
    retransmitted end packets (same timestamp) are ignored. If every end packet is
    lost, the press is reported when a packet with a new timestamp arrives, or on
    ``flush()`` (which the adapter calls after a silence timeout).
    """

    __slots__ = ("_current", "_done", "_memory")  # one per media endpoint

    def __init__(self, memory: int = 16) -> None:
        # Timestamps of presses already reported: late duplicates or reordered
        # packets of a finished event must not report it again. A deque is created
        # only at the first press: every media endpoint has a detector, few calls
        # press keys, and an empty deque costs ~600 bytes (issue 16).
        self._memory = memory
        self._done: deque[int] | tuple[()] = ()
        self._current: tuple[int, str] | None = None

    def feed(self, timestamp: int, payload: bytes) -> str:
        """Feed one telephone-event packet; return the digits of the presses it
        completes: usually "" or one digit, two when it also reveals that the previous
        press lost all its end packets."""
        try:
            ev = TelephoneEvent.parse(payload)
        except DtmfError:
            return ""
        digit = ev.digit
        if digit is None or timestamp in self._done:
            return ""  # not DTMF (e.g. a flash hook, section 3.2), or already reported
        reported = ""
        if self._current is not None and self._current[0] != timestamp:
            # A new event started while the previous one never ended: its end
            # packets were lost, report it now.
            reported = self._finish()
        if ev.end:
            self._current = None
            self._remember(timestamp)
            return reported + digit
        self._current = (timestamp, digit)
        return reported

    def flush(self) -> str:
        """Report a press whose end was never seen (all end packets lost)."""
        return self._finish() if self._current is not None else ""

    def _finish(self) -> str:
        assert self._current is not None
        ts, digit = self._current
        self._current = None
        self._remember(ts)
        return digit

    def _remember(self, timestamp: int) -> None:
        if not self._done:
            self._done = deque(maxlen=self._memory)
        self._done.append(timestamp)  # type: ignore[union-attr]
