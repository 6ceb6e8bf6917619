"""The media bridge: relays RTP and RTCP between two legs' endpoints.

Fast path (a direction whose source is latched, whose destination address is known,
with the same payload types on both sides, no DTMF detection and no source change
behind it): the receive callback compares the source address, counts, and calls
``sendto`` with the datagram untouched. Everything else (latching, transcoding PCMU <->
PCMA, payload type mapping, SSRC/sequence/timestamp rewriting after a far-side swap,
DTMF detection, drops) is the slow path, chosen per direction whenever the state
changes, never tested per packet beyond the one address comparison.

SRTP (srtp.py): a direction from or to a leg with an ``SrtpContext`` is always the
slow path. It unprotects what the source leg sent (a packet that fails authentication
or the replay check is dropped before it can latch an address, and counted in
``srtp_failures``), does what the plain slow path does on the clear packet, and
protects it for the destination leg. SRTP caller <-> RTP bot is the usual carrier
case; SRTP on both legs works too (decrypted and re-encrypted, keys differ per leg).
A bridge with no SRTP leg keeps its fast path untouched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from voicegw.media import g711
from voicegw.media.endpoint import Addr, MediaEndpoint
from voicegw.media.mixer import TapMixer
from voicegw.media.rtp import RTCP_RR, RTCP_SR, RTP_HEADER_SIZE, RtpError, payload_bounds

__all__ = ["Bridge", "BridgeStatistics", "EarlyMedia", "FlowStatistics"]

_DROP = (-1, None)


@dataclass(frozen=True, slots=True)
class FlowStatistics:
    """One direction of one protocol (RTP or RTCP) through a bridge."""

    packets_in: int
    octets_in: int
    packets_out: int
    octets_out: int
    dropped: int
    srtp_failures: int = 0
    """Of ``dropped``: packets that failed SRTP/SRTCP authentication or replay checks
    (or could not be protected). With SRTP, octets out count the octets in."""


@dataclass(frozen=True, slots=True)
class BridgeStatistics:
    a_to_b: FlowStatistics
    b_to_a: FlowStatistics
    rtcp_a_to_b: FlowStatistics
    rtcp_b_to_a: FlowStatistics
    swaps: int
    transcoding: bool


class _Direction:
    """RTP from ``src`` to ``dst``. Holds its own counters: the fast path touches
    only this object. Packets out = packets in - dropped (one out per accepted in;
    transcoding and rewriting keep the size), so only three counters move."""

    __slots__ = (
        "clock",
        "dropped",
        "dropped_octets",
        "dst",
        "expect",
        "last",
        "octets",
        "packets",
        "pt_map",
        "sendto",
        "src",
        "srtp_failures",
        "tap",
        "to",
    )

    def __init__(self, src: MediaEndpoint, dst: MediaEndpoint, clock) -> None:
        self.src, self.dst, self.clock = src, dst, clock
        self.expect: Addr | None = None  # None sends every packet to the slow path
        self.to: Addr | None = None
        self.sendto = None
        self.last: bytes | None = None
        self.pt_map: dict[int, tuple[int, bytes | None]] = {}
        self.packets = self.octets = self.dropped = self.dropped_octets = 0
        self.srtp_failures = 0
        self.tap: TapMixer | None = None  # a listener (a transcribing bot) hears us too

    def refresh(self) -> None:
        src, dst = self.src, self.dst
        if dst.writer is None:
            dst.claim(self)  # re-enters refresh() through the bridge; harmless
        self.pt_map = _payload_map(src, dst)
        self.to = dst.remote_rtp
        self.sendto = dst.rtp.transport.sendto if dst.rtp.transport else None
        fast = (src.latched and self.to is not None and self.sendto is not None
                and dst.writer is self and not self.pt_map and not dst.continuity.active
                and (src.on_dtmf is None or src.dtmf_payload_type is None)
                and src.srtp is None and dst.srtp is None and self.tap is None)
        self.expect = src.remote_rtp if fast else None

    def forward(self, data: bytes, addr: Addr) -> None:
        # The hot path: one comparison, three counter updates, one store, sendto.
        self.packets += 1
        self.octets += len(data)
        if addr == self.expect:
            self.last = data
            self.sendto(data, self.to)
        else:
            self._slow(data, addr)

    def _slow(self, raw: bytes, addr: Addr) -> None:
        src, dst = self.src, self.dst
        data = raw
        if src.srtp is not None:  # RFC 3711 3.3: authenticate (and replay-check) first
            data = src.srtp.unprotect_rtp(raw)  # type: ignore[assignment]
            if data is None:
                self.srtp_failures += 1
                self._drop(raw)
                return
        if not src.accept_rtp(addr) or len(data) < RTP_HEADER_SIZE or data[0] >> 6 != 2:
            self._drop(raw)
            return
        src.check_dtmf(data)
        if self.tap is not None:
            self.tap.feed(src, data)
        if self.to is None or self.sendto is None or dst.writer is not self:
            self._drop(raw)  # nowhere to send yet, or a player holds the leg
            return
        out_pt, table = self.pt_map.get(data[1] & 0x7F, (None, None))
        if out_pt == -1:  # e.g. telephone-event towards a leg that did not offer it
            self._drop(raw)
            return
        if out_pt is None and not dst.continuity.active:
            self.last = data
            if dst.srtp is None:
                self.sendto(data, self.to)
            else:
                self._send_srtp(data, raw)
            return
        buf = bytearray(data)
        if out_pt is not None:
            if table is not None:
                try:
                    start, end = payload_bounds(buf)
                except RtpError:
                    self._drop(raw)
                    return
                buf[start:end] = buf[start:end].translate(table)
            buf[1] = (buf[1] & 0x80) | out_pt
        if dst.continuity.active:
            dst.continuity.rewrite(buf, self.clock())
        else:
            self.last = bytes(buf)
        if dst.srtp is None:
            self.sendto(buf, self.to)
        else:
            self._send_srtp(buf, raw)

    def _send_srtp(self, data: bytes | bytearray, raw: bytes) -> None:
        protected = self.dst.srtp.protect_rtp(data)  # type: ignore[union-attr]
        if protected is None:
            self.srtp_failures += 1
            self._drop(raw)
            return
        self.sendto(protected, self.to)  # type: ignore[misc]

    def _drop(self, data: bytes) -> None:
        self.dropped += 1
        self.dropped_octets += len(data)

    def yield_output(self) -> None:
        """The direction stops feeding ``dst`` (a player took it, or a swap): leave it
        what it last sent so the next source can continue the numbering."""
        if self.last is not None and not self.dst.continuity.active:
            self.dst.last_sent = self.last
        self.last = None
        self.expect = None  # off the fast path until refresh() says otherwise

    def statistics(self) -> FlowStatistics:
        return FlowStatistics(self.packets, self.octets, self.packets - self.dropped,
                              self.octets - self.dropped_octets, self.dropped,
                              self.srtp_failures)


def _payload_map(src: MediaEndpoint, dst: MediaEndpoint) -> dict[int, tuple[int, bytes | None]]:
    """Payload types that must change from ``src`` to ``dst``: audio (transcoded when
    the laws differ, RFC 3551 4.5.14) and telephone-event (dynamic, RFC 4733 7.1.1,
    so each side may have picked its own number; dropped if ``dst`` has none)."""
    m: dict[int, tuple[int, bytes | None]] = {}
    if src.payload_type != dst.payload_type:
        m[src.payload_type] = (dst.payload_type,
                               g711.transcode_table(src.payload_type, dst.payload_type))
    if src.dtmf_payload_type is not None and src.dtmf_payload_type != dst.dtmf_payload_type:
        m[src.dtmf_payload_type] = (_DROP if dst.dtmf_payload_type is None
                                    else (dst.dtmf_payload_type, None))
    return m


class _RtcpDirection:
    """RTCP from ``src`` to ``dst``: always the slow path (a packet every ~5 s,
    RFC 3550 6.2). After a swap, report senders' SSRC and SR timestamps are mapped
    onto the stable stream the receiver knows."""

    __slots__ = (
        "dropped",
        "dropped_octets",
        "dst",
        "octets",
        "packets",
        "src",
        "srtp_failures",
    )

    def __init__(self, src: MediaEndpoint, dst: MediaEndpoint) -> None:
        self.src, self.dst = src, dst
        self.packets = self.octets = self.dropped = self.dropped_octets = 0
        self.srtp_failures = 0

    def forward(self, raw: bytes, addr: Addr) -> None:
        self.packets += 1
        self.octets += len(raw)
        dst = self.dst
        data: bytes | bytearray | None = raw
        if self.src.srtp is not None:
            data = self.src.srtp.unprotect_rtcp(raw)
            if data is None:
                self._drop(raw, srtp=True)
                return
        to, transport = dst.remote_rtcp, dst.rtcp.transport
        if not self.src.accept_rtcp(addr) or to is None or transport is None or len(data) < 8:
            self._drop(raw)
            return
        if dst.continuity.active:
            data = _rewrite_rtcp(data, dst.continuity.ssrc, dst.continuity.ts_offset)
        if dst.srtp is not None and (data := dst.srtp.protect_rtcp(data)) is None:
            self._drop(raw, srtp=True)
            return
        transport.sendto(data, to)

    def _drop(self, raw: bytes, srtp: bool = False) -> None:
        self.dropped += 1
        self.dropped_octets += len(raw)
        self.srtp_failures += srtp

    statistics = _Direction.statistics


def _rewrite_rtcp(data: bytes, ssrc: int, ts_offset: int) -> bytearray:
    buf = bytearray(data)
    pos = 0
    while pos + 8 <= len(buf):
        pt = buf[pos + 1]
        words = (buf[pos + 2] << 8) | buf[pos + 3]
        if pt in (RTCP_SR, RTCP_RR):
            struct.pack_into("!I", buf, pos + 4, ssrc)
            if pt == RTCP_SR and pos + 20 <= len(buf):
                ts = struct.unpack_from("!I", buf, pos + 16)[0]
                struct.pack_into("!I", buf, pos + 16, (ts + ts_offset) & 0xFFFFFFFF)
        pos += 4 * (words + 1)
    return buf


class Bridge:
    """Relays media between leg ``a`` (the one that stays, usually the caller) and leg
    ``b`` (bot, then agent). ``replace_b`` swaps the far side while ``a`` hears one
    continuous stream."""

    def __init__(self, a: MediaEndpoint, b: MediaEndpoint) -> None:
        self.a, self.b = a, b
        clock = a._loop.time
        self._ab, self._ba = _Direction(a, b, clock), _Direction(b, a, clock)
        self._rtcp_ab, self._rtcp_ba = _RtcpDirection(a, b), _RtcpDirection(b, a)
        self.swaps = 0
        self.closed = False
        self._attach(a)
        self._attach(b)
        # Each direction claims its leg unless a player holds it; then it waits and
        # takes over when the player ends (refresh() on the leg's release).
        self.refresh()

    def _attach(self, ep: MediaEndpoint) -> None:
        ep._on_change = self.refresh
        out, rtcp = (self._ab, self._rtcp_ab) if ep is self.a else (self._ba, self._rtcp_ba)
        ep.rtp.set_receiver(out.forward)
        ep.rtcp.set_receiver(rtcp.forward)

    @staticmethod
    def _detach(ep: MediaEndpoint) -> None:
        ep._on_change = None
        ep.rtp.set_receiver(None)
        ep.rtcp.set_receiver(None)

    def refresh(self) -> None:
        """Re-choose fast or slow path per direction (after latching, a remote address,
        payload type, DTMF subscription or writer change)."""
        if not self.closed:
            self._ab.refresh()
            self._ba.refresh()

    def set_tap(self, mixer: TapMixer | None) -> None:
        """Let ``mixer`` hear both directions (off the fast path while it listens)."""
        self._ab.tap = self._ba.tap = mixer
        self.refresh()

    def replace_b(self, new: MediaEndpoint) -> MediaEndpoint:
        """Swap the far side (bot -> agent); returns the old endpoint, unbridged and
        still open (the engine closes it after its BYE). ``a`` keeps hearing one
        continuous stream, and a player holding ``a`` (ringback) is stopped."""
        if self.closed:
            raise RuntimeError("bridge is closed")
        old = self.b
        self._detach(old)
        old.release(self._ab)
        self.b = new
        self._ab.dst = self._rtcp_ab.dst = new
        self._ba.src = self._rtcp_ba.src = new
        self._attach(new)
        self.a.claim(self._ba, new_source=True)
        self.swaps += 1
        self.refresh()
        return old

    @property
    def transcoding(self) -> bool:
        return self.a.payload_type != self.b.payload_type

    def packets_from(self, ep: MediaEndpoint) -> int:
        """RTP packets this bridge received from ``ep`` (0 if ``ep`` is neither side):
        the counters its hot path keeps anyway, read by the inactivity check."""
        return sum(d.packets for d in (self._ab, self._ba) if d.src is ep)

    def statistics(self) -> BridgeStatistics:
        return BridgeStatistics(self._ab.statistics(), self._ba.statistics(),
                                self._rtcp_ab.statistics(), self._rtcp_ba.statistics(),
                                self.swaps, self.transcoding)

    def close(self) -> None:
        """Unbridge both legs (they stay open: players or a new bridge may use them)."""
        if self.closed:
            return
        self._detach(self.a)
        self._detach(self.b)
        self.closed = True
        self.b.release(self._ab)
        self.a.release(self._ba)
        for direction in (self._ab, self._ba):
            # a bound ``sendto`` keeps the (closed) socket's transport alive, and with it
            # the context it was opened in, as long as the API keeps the ended call
            direction.sendto = direction.expect = None



class EarlyMedia:
    """One way, ``src`` -> ``dst``: a ringing leg's early media (its 183 with SDP,
    RFC 3960 3) relayed to the caller in place of local ringback, which it displaces
    as the leg's writer (a player yields at once). Only RTP, only towards ``dst``:
    what the caller says keeps going where its bridge sends it (the bot), and its RTCP
    too. It ends when ``close()``d, or when another writer takes ``dst`` (the bridge's
    swap to the answered leg takes ``src``'s receive path over as well)."""

    def __init__(self, src: MediaEndpoint, dst: MediaEndpoint) -> None:
        self.src, self.dst = src, dst
        self._direction = _Direction(src, dst, dst._loop.time)
        self.closed = False
        src._on_change = self.refresh
        src.rtp.set_receiver(self._direction.forward)
        dst.claim(self._direction)
        self.refresh()

    def refresh(self) -> None:
        """``src`` latched or was re-pointed: re-choose the direction's path, as long
        as it still feeds ``dst`` (once displaced it does not claim it back)."""
        if not self.closed and self.dst.writer is self._direction:
            self._direction.refresh()

    @property
    def packets(self) -> int:
        """RTP packets received from ``src`` while relaying."""
        return self._direction.packets

    def close(self) -> None:
        """Stop relaying: ``src``'s packets are its own again (unless a bridge took it
        over) and ``dst`` goes back to whoever waits for it (the caller's bridge)."""
        if self.closed:
            return
        self.closed = True
        src, direction = self.src, self._direction
        if src._on_change == self.refresh:
            src._on_change = None
            src.rtp.set_receiver(None)
        self.dst.release(direction)
        direction.sendto = direction.expect = None
