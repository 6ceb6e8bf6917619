"""Transport limits: security limits, stated once here and in docs/limits.md.

Every number bounds what one peer (or many) can make the process hold in memory or
file descriptors. The message size comes from the parser, so framing and parsing
agree on what "too large" means.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sip.parser import MAX_MESSAGE_SIZE


@dataclass(frozen=True, slots=True)
class TransportLimits:
    max_message_size: int = MAX_MESSAGE_SIZE
    """Largest SIP message, in bytes. A larger UDP datagram is dropped unread; a TCP
    stream that announces or buffers more is answered 513 (when it looked like a
    request) and closed."""
    max_tcp_connections: int = 1024
    """Open TCP connections, both directions. Past it new inbound connections are
    closed at once; outbound sends to a new peer are dropped."""
    max_tcp_connections_per_ip: int = 32
    """Open TCP connections from (or to) one IP address."""
    tcp_idle_timeout: float = 300.0
    """Seconds a TCP connection may carry no bytes before it is closed (RFC 5626
    keep-alive CRLFs count as traffic). Longer than Timer J/H (32 s) so a
    transaction never loses its connection to this timer."""
    tcp_connect_timeout: float = 5.0
    """Seconds an outbound TCP connect may take before its queued messages are dropped."""
    tcp_max_pending: int = 256 * 1024
    """Bytes queued for a connection that is still connecting or whose kernel buffer
    is full; past it the connection is closed (a slow reader cannot grow our memory)."""
