"""A call leg's media endpoint: an RTP socket on an even port and RTCP on port + 1.

The asyncio adapter for one leg. It knows its remote address (from SDP, then latched
from the first packet received: symmetric RTP for callers behind NAT, RFC 4961 and
the common SBC practice of "comedia"), its negotiated payload types, and the stream
continuity state of what it sends. When nothing is bridged to it, packets received
are counted, checked for DTMF and discarded; a ``Bridge`` takes the receive path over.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from voicegw.media.continuity import StreamContinuity
from voicegw.media.dtmf import DtmfDetector
from voicegw.media.ports import PortPool, PortPoolExhausted
from voicegw.media.rtp import RTP_HEADER_SIZE

if TYPE_CHECKING:
    from voicegw.media.srtp import SrtpContext, SrtpStatistics

Addr = tuple[str, int]
_STALE_PACKETS = 25
"""After a re-point, packets (0.5 s at 20 ms) from the old source dropped before it may latch again."""
Receiver = Callable[[bytes, Addr], None]


class Writer(Protocol):
    """Something that sends RTP to a leg (a player, a bridge direction)."""

    def yield_output(self) -> None:
        """Another writer took the leg over: stop sending to it."""


class RtpSocket(asyncio.DatagramProtocol):
    """One bound UDP socket.

    Whoever consumes its packets installs a receiver with ``set_receiver``, which
    replaces ``datagram_received`` on the instance: the loop then calls the consumer's
    method directly, one Python call per packet instead of two.
    """

    __slots__ = ("datagram_received", "default", "errors", "transport")  # two per leg

    def __init__(self, default: Receiver) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.default = default
        self.datagram_received = default  # type: ignore[method-assign]
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: count, keep the socket.
        self.errors += 1

    def set_receiver(self, receiver: Receiver | None) -> None:
        self.datagram_received = receiver or self.default  # type: ignore[method-assign]

    def detach(self) -> None:
        """Forget every receiver (the socket is closed). They are bound methods of the
        endpoint or a bridge, which hold this socket: a reference cycle per socket that
        only the cyclic collector would free, so it is cut here."""
        self.default = self.datagram_received = _discard  # type: ignore[method-assign]


def _discard(data: bytes, addr: Addr) -> None:
    """The receiver of a closed socket (a datagram already queued by the loop)."""


@dataclass(frozen=True, slots=True)
class EndpointStatistics:
    """Traffic an endpoint handled itself (unbridged receive, players' sends)."""

    local_port: int
    remote_rtp: Addr | None
    latched: bool
    packets_in: int
    octets_in: int
    packets_out: int
    octets_out: int
    dropped: int
    dtmf_digits: int
    srtp: SrtpStatistics | None = None
    """SRTP counters when the leg uses SRTP (auth_failures: packets dropped unread)."""


class MediaEndpoint:
    """One leg's RTP/RTCP socket pair. Create with ``await open_endpoint(...)``."""

    # one per leg: slots instead of an instance dict (~800 bytes less per endpoint)
    __slots__ = (
        "_loop", "_on_change", "_pool", "_rtcp_latched", "_stale", "_stale_left", "closed", "continuity",
        "dropped", "dtmf", "dtmf_digits", "dtmf_payload_type", "host", "last_sent", "latch", "latched",
        "octets_in", "octets_out", "on_close", "on_dtmf", "packets_in", "packets_out", "payload_type", "port",
        "remote_rtcp", "remote_rtp", "rtcp", "rtp", "srtp", "strict_source", "writer",
    )

    def __init__(self, host: str, port: int, *, latch: bool = True,
                 payload_type: int = 0, dtmf_payload_type: int | None = 101,
                 pool: PortPool | None = None) -> None:
        self.host, self.port = host, port
        self.latch = latch
        """Learn the remote address from the first packet received (symmetric RTP)."""
        self.strict_source = latch
        """Drop packets from any other address than the remote one (anti-hijack)."""
        self.payload_type = payload_type
        """The negotiated audio payload type towards this leg: 0 (PCMU) or 8 (PCMA)."""
        self.dtmf_payload_type = dtmf_payload_type
        """The negotiated telephone-event payload type, None if the leg has none."""
        self.remote_rtp: Addr | None = None
        self.remote_rtcp: Addr | None = None
        self.latched = False
        self._rtcp_latched = False
        self._stale: Addr | None = None
        self._stale_left = 0
        self.on_dtmf: Callable[[str], None] | None = None
        """Called with each digit the leg sends as RFC 4733 events."""
        self.dtmf = DtmfDetector()
        self.continuity = StreamContinuity()
        self.last_sent: bytes | None = None
        """Last RTP packet sent while not rewriting; seeds continuity at a change."""
        self.writer: Writer | None = None
        """What currently feeds this leg: a bridge direction or a player. One at a
        time, so a prompt never mixes with relayed audio."""
        self.srtp: SrtpContext | None = None
        """SRTP with this leg (RFC 3711, keys by SDES): what it sends is unprotected,
        what we send it protected. None: plain RTP (and the relay's fast path)."""
        self.rtp = RtpSocket(self._receive_rtp)
        self.rtcp = RtpSocket(self._receive_rtcp)
        self._pool = pool
        self._on_change: Callable[[], None] | None = None
        self.on_close: Callable[[], None] | None = None
        """Told once when the endpoint closes: the desk's agent leg (voicegw/desk/) has
        no SIP session, and every way the engine ends an agent leg closes its endpoint."""
        self._loop = asyncio.get_running_loop()
        self.packets_in = self.octets_in = self.packets_out = self.octets_out = 0
        self.dropped = self.dtmf_digits = 0
        self.closed = False

    # -- addresses ---------------------------------------------------------------
    def set_remote(self, host: str, port: int, rtcp_port: int | None = None) -> None:
        """The address from the remote SDP (c= and m=, a=rtcp of RFC 3605)."""
        if not self.latched:
            self.remote_rtp = (host, port)
        if not self._rtcp_latched:
            self.remote_rtcp = (host, rtcp_port if rtcp_port is not None else port + 1)
        if not self.latch:
            self.latched = True  # no learning: the SDP address is final
        self._changed()

    def relatch(self) -> None:
        """Learn the address again from the next packet (after a re-INVITE)."""
        self.latched = self._rtcp_latched = False
        self._changed()

    def repoint(self, host: str, port: int, rtcp_port: int | None = None) -> None:
        """The peer's media moved before it was settled: another fork's 183, or a 2xx
        whose SDP differs from the 183's (RFC 3960 3: the 2xx's is the answer). Take the
        new SDP address and learn again, but not from the old one (latched, or the
        old SDP's), which may go on sending for a moment (the other fork, the
        announcement server): its packets are dropped unlatched, and after
        ``_STALE_PACKETS`` of them with no other source it is taken after all (a NAT
        that kept the mapping)."""
        old = self.remote_rtp
        if self.latch and old is not None and old != (host, port):
            self._stale, self._stale_left = old, _STALE_PACKETS
        self.latched = self._rtcp_latched = False
        self.set_remote(host, port, rtcp_port)

    def accept_rtp(self, addr: Addr) -> bool:
        """Whether a packet from ``addr`` belongs to this leg; latches on the first."""
        if addr == self.remote_rtp and self.latched:
            return True
        if self.latch and not self.latched:
            if addr == self._stale and self._stale_left > 0:
                self._stale_left -= 1
                return False
            self._stale = None
            self.remote_rtp = addr
            self.latched = True
            if not self._rtcp_latched:
                self.remote_rtcp = (addr[0], addr[1] + 1)
            self._changed()
            return True
        return not self.strict_source

    def accept_rtcp(self, addr: Addr) -> bool:
        if addr == self.remote_rtcp and (self._rtcp_latched or not self.latch):
            return True
        if self.latch and not self._rtcp_latched:
            self.remote_rtcp = addr
            self._rtcp_latched = True
            return True
        return not self.strict_source

    def set_srtp(self, inbound_key: bytes | None, outbound_key: bytes | None = None,
                 suite: str = "AES_CM_128_HMAC_SHA1_80") -> None:
        """Use SRTP with this leg: ``inbound_key`` is the peer's master key || salt
        (from its ``a=crypto``), ``outbound_key`` ours (from our ``a=crypto``), RFC
        4568 6.1. ``set_srtp(None)`` goes back to plain RTP. A bridge re-chooses its
        paths at once (SRTP directions leave the fast path). Calling it again with the
        same keys (a re-INVITE that kept them) keeps the running context."""
        if inbound_key is None:
            self.srtp = None
        else:
            from voicegw.media.srtp import SrtpContext

            if outbound_key is None:
                raise ValueError("set_srtp: both keys are needed")
            if self.srtp is not None and self.srtp.keyed_with(inbound_key, outbound_key, suite):
                return
            self.srtp = SrtpContext(inbound_key, outbound_key, suite)
        self._changed()

    # -- sending -----------------------------------------------------------------
    def claim(self, writer: Writer, new_source: bool = False) -> None:
        """Make ``writer`` the one source feeding this leg; the previous one yields
        (a player stops, a bridge direction goes quiet until it can reclaim).
        ``new_source`` tells that the same writer now relays someone else."""
        if self.writer is writer:
            if new_source:
                writer.yield_output()
                self.begin_source()
            return
        old, self.writer = self.writer, writer
        if old is not None:
            old.yield_output()
        self.begin_source()
        self._changed()

    def release(self, writer: Writer) -> None:
        """``writer`` stops feeding the leg; a bridge waiting for it takes over."""
        if self.writer is writer:
            writer.yield_output()
            self.writer = None
            self._changed()

    def begin_source(self) -> None:
        """Something new starts sending to this leg (a bridge, a player): keep the
        leg's stream continuous if it has already received something from us."""
        if self.continuity.active or self.last_sent is not None:
            self.continuity.begin_source(self.last_sent, self._loop.time())
            self.last_sent = None

    def send_rtp(self, data: bytes | bytearray) -> None:
        """Send one RTP packet to the leg (players' path; rewrites when needed)."""
        to = self.remote_rtp
        transport = self.rtp.transport
        if to is None or transport is None:
            self.dropped += 1
            return
        if self.continuity.active:
            data = bytearray(data)
            self.continuity.rewrite(data, self._loop.time())
        else:
            self.last_sent = bytes(data)
        if self.srtp is not None:
            data = self.srtp.protect_rtp(data)  # type: ignore[assignment]
            if data is None:
                self.dropped += 1
                return
        transport.sendto(data, to)
        self.packets_out += 1
        self.octets_out += len(data)

    # -- receiving while unbridged -----------------------------------------------
    def _receive_rtp(self, data: bytes, addr: Addr) -> None:
        self.packets_in += 1
        self.octets_in += len(data)
        if self.srtp is not None:  # authenticated before it may latch the address
            plain = self.srtp.unprotect_rtp(data)
            if plain is None:
                self.dropped += 1
                return
            data = plain
        if not self.accept_rtp(addr):
            self.dropped += 1
            return
        self.check_dtmf(data)

    def _receive_rtcp(self, data: bytes, addr: Addr) -> None:
        if self.srtp is None or self.srtp.unprotect_rtcp(data) is not None:
            self.accept_rtcp(addr)

    def check_dtmf(self, data: bytes | bytearray) -> None:
        """Feed a received packet to the DTMF detector if it is a telephone-event."""
        if (self.on_dtmf is None or len(data) < RTP_HEADER_SIZE + 4
                or data[1] & 0x7F != self.dtmf_payload_type):
            return
        offset = RTP_HEADER_SIZE + 4 * (data[0] & 0x0F)
        ts = int.from_bytes(data[4:8], "big")
        for digit in self.dtmf.feed(ts, bytes(data[offset:offset + 4])):
            self.dtmf_digits += 1
            self.on_dtmf(digit)

    # -- life cycle ----------------------------------------------------------------
    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def statistics(self) -> EndpointStatistics:
        return EndpointStatistics(self.port, self.remote_rtp, self.latched, self.packets_in,
                                  self.octets_in, self.packets_out, self.octets_out,
                                  self.dropped, self.dtmf_digits,
                                  self.srtp.statistics() if self.srtp is not None else None)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.rtp, self.rtcp):
            if sock.transport is not None:
                sock.transport.close()
                sock.transport = None  # anything still writing (a player) now drops
            sock.detach()
        if self._pool is not None:
            self._pool.release(self.port)
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.yield_output()  # a player stops instead of ticking on a closed port
        # what was installed on it (a bridge's refresh, the flow's DTMF handler) holds
        # the call's objects: dropped, so the endpoint holds nothing of the call
        self._on_change = self.on_dtmf = None
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()


async def open_endpoint(host: str, pool: PortPool, **options: object) -> MediaEndpoint:
    """Bind an RTP/RTCP pair on ``host`` at the pool's next free even port.

    A port some other process holds is skipped (and kept out of the pool until the
    next release cycle); after as many attempts as the pool has ports, the pool is
    reported exhausted.
    """
    loop = asyncio.get_running_loop()
    family = _family(host) if _uvloop(loop) else None
    busy: list[int] = []
    try:
        for _ in range(pool.statistics().size):
            port = pool.allocate()
            ep = MediaEndpoint(host, port, pool=pool, **options)  # type: ignore[arg-type]
            try:
                await _bind(loop, ep.rtp, host, port, family)
                await _bind(loop, ep.rtcp, host, port + 1, family)
            except OSError as exc:
                _abandon(ep)
                if not _in_use(exc):
                    pool.release(port)
                    raise
                busy.append(port)
                continue
            except BaseException:  # cancelled while binding (the call is gone)
                _abandon(ep)
                pool.release(port)
                raise
            return ep
        raise PortPoolExhausted(f"no bindable RTP port in {pool.low}-{pool.high}")
    finally:
        for port in busy:
            pool.release(port)


async def _bind(loop: asyncio.AbstractEventLoop, protocol: RtpSocket, host: str, port: int,
                family: socket.AddressFamily | None) -> None:
    """Bind ``protocol``'s socket to ``host``:``port``. On uvloop an address literal is
    bound here and handed to the loop (``sock=``): its ``local_addr=`` resolves even a
    literal through getaddrinfo, 70-90 us per socket against ~30 (scripts/bench's
    call_cpu profile: opening media endpoints was the engine's largest share).
    ``family`` None: the loop binds (a host name; asyncio's own loop, which takes a
    literal as it is; the tests' virtual loop, whose network is not the kernel's)."""
    if family is None:
        await loop.create_datagram_endpoint(lambda: protocol, local_addr=(host, port))
        return
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
        await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    except BaseException:
        sock.close()
        raise


def _uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.partition(".")[0] == "uvloop"


@functools.cache
def _family(host: str) -> socket.AddressFamily | None:
    """AF_INET or AF_INET6 for an address literal, None for a host name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


def _abandon(ep: MediaEndpoint) -> None:
    """An endpoint that could not be opened whole: close what was bound and cut the
    socket <-> endpoint cycles (as close() does, but the port goes back to the pool by
    the caller's rules: a port another process holds stays out for a while)."""
    for sock in (ep.rtp, ep.rtcp):
        if sock.transport is not None:
            sock.transport.close()
            sock.transport = None
        sock.detach()


def _in_use(error: OSError) -> bool:
    """EADDRINUSE, also as uvloop reports it (no errno; the cause carries it)."""
    cause = error.__cause__
    return error.errno == errno.EADDRINUSE or (
        isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE)
