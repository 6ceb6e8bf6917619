"""The UDP endpoint: one socket, datagrams in and out, nothing interpreted.

A datagram larger than the message-size limit is dropped before it reaches the
core (RFC 3261 18.1.1 leaves such messages to TCP; voicegw/sip/parser.py states
the same limit). ICMP errors reported by the kernel are counted, never raised:
a peer that went away must not stop the endpoint.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from ..sip.events import Address

DatagramHandler = Callable[[bytes, Address], None]

RECEIVE_BUFFER = 4 * 1024 * 1024
"""SO_RCVBUF asked for the SIP socket (the kernel caps it at net.core.rmem_max).
Linux's default (~208 KiB, some 100 datagrams as it counts them) overflows while the
loop is held up for a second (a full garbage collection over a big heap, a loaded
box): the lost responses turned into retransmissions peers do not expect (a REFER
resent after its 202 was dropped made sipp's carrier abort its call; issue 16)."""


RECEIVE_SIZE = 65_535
"""The largest datagram read by :meth:`UdpEndpoint.drain` (larger ones are cut and
then dropped as oversized: the size limit is below this)."""


@dataclass(slots=True)
class UdpStatistics:
    datagrams_in: int = 0
    datagrams_out: int = 0
    oversized_dropped: int = 0
    send_errors: int = 0
    unresolved_dropped: int = 0
    """Sends to a host name: no DNS here yet (RFC 3263 comes later), and a blocking
    lookup inside ``sendto`` would stall the loop."""


class UdpEndpoint(asyncio.DatagramProtocol):
    """Calls ``on_datagram(data, source)`` for every datagram within the size limit."""

    def __init__(self, on_datagram: DatagramHandler, max_size: int) -> None:
        self._on_datagram = on_datagram
        self._max_size = max_size
        self._transport: asyncio.DatagramTransport | None = None
        self._reader: socket.socket | None = None
        self.stats = UdpStatistics()

    # --- asyncio.DatagramProtocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # our own handle on the same socket, for drain(): uvloop hands out a
            # pseudo-socket that cannot receive
            self._reader = socket.socket(sock.family, socket.SOCK_DGRAM, fileno=os.dup(sock.fileno()))
            self._reader.setblocking(False)

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        if len(data) > self._max_size:
            self.stats.oversized_dropped += 1
            return
        self.stats.datagrams_in += 1
        self._on_datagram(data, Address("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like, for an earlier sendto
        self.stats.send_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._close_reader()

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # --- used by the driver ---------------------------------------------------------------
    def send(self, data: bytes, destination: Address) -> None:
        if self._transport is None:
            return
        if not is_ip_literal(destination.host):
            self.stats.unresolved_dropped += 1
            return
        try:
            self._transport.sendto(data, (destination.host, destination.port))
        except (OSError, ValueError):
            self.stats.send_errors += 1
            return
        self.stats.datagrams_out += 1

    def drain(self, limit: int) -> int:
        """Hand on the datagrams already waiting in the socket (at most ``limit``), now;
        returns how many. The driver calls it before acting on a timer: libuv (uvloop)
        runs due timers before it polls for input, so after a stall of the loop
        Timer A/E would resend requests whose answers are already here (asyncio's own
        loop runs the input first)."""
        count = 0
        while count < limit and self._reader is not None:
            try:
                data, addr = self._reader.recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # an ICMP error queued for an earlier sendto
                self.stats.send_errors += 1
                break
            count += 1
            self.datagram_received(data, addr)
        return count

    @property
    def local_address(self) -> Address | None:
        if self._transport is None:
            return None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return Address("udp", host, port)

    def close(self) -> None:
        self._close_reader()
        if self._transport is not None:
            self._transport.close()


_literal_cache: set[str] = set()


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (no brackets), cached."""
    if host in _literal_cache:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    if len(_literal_cache) < 4096:
        _literal_cache.add(host)
    return True


async def open_udp(
    host: str, port: int, on_datagram: DatagramHandler, max_size: int
) -> UdpEndpoint:
    """Bind a UDP socket and return its endpoint (OSError when the address is taken)."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpEndpoint(on_datagram, max_size), local_addr=(host, port)
    )
    sock = protocol._transport.get_extra_info("socket") if protocol._transport is not None else None
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError:
            pass  # the default buffer still works, with less slack
    return protocol
