"""TCP for SIP: a listener, outbound connections, and connection reuse (RFC 3261 18).

Connections are kept in one table keyed by the remote ``(host, port)``: an inbound
connection under the peer's address, an outbound one under the address it was
opened to. A message for a TCP address goes on the connection in the table when
there is one (so a response goes back on the connection its request came in on,
18.2.2) and on a new outbound connection otherwise.

Each connection cuts its byte stream with the parser's ``StreamFramer``. A framing
error is handed to the driver (the core answers 400/513 when it can), the answer is
written, and the connection is closed: after a framing error the stream position is
lost and nothing further on it can be trusted (18.3).

Limits (see limits.py and docs/limits.md): total connections, connections per IP,
an idle timeout, bytes queued per connection.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..sip.errors import SipError
from ..sip.events import Address
from ..sip.parser import FramingError, StreamFramer
from .limits import TransportLimits
from .udp import is_ip_literal

MessageHandler = Callable[[bytes, Address], None]
InvalidHandler = Callable[[bytes, Address, SipError], None]

Key = tuple[str, int]


@dataclass(slots=True)
class TcpStatistics:
    connections_open: int = 0
    accepted: int = 0
    connected: int = 0
    refused_limit: int = 0
    connect_failures: int = 0
    unresolved_dropped: int = 0
    idle_closed: int = 0
    framing_errors: int = 0
    overflow_closed: int = 0
    messages_in: int = 0
    messages_out: int = 0
    dropped_out: int = 0
    pings: int = 0
    pongs: int = 0


class TcpConnection(asyncio.Protocol):
    """One TCP connection: framing in, writes out, idle timer."""

    def __init__(self, manager: TcpTransport, key: Key | None = None) -> None:
        self._manager = manager
        self.key = key
        """Remote (host, port); set from the peer name for inbound connections."""
        self.outbound = key is not None
        self._transport: asyncio.Transport | None = None
        self._framer = StreamFramer(manager.limits.max_message_size)
        self._pings = 0
        self._pongs = 0
        self._pending: list[bytes] = []  # queued while connecting
        self._pending_size = 0
        self._closing = False
        self._failed = False
        self._last_activity = manager.loop.time()
        self._idle_handle: asyncio.TimerHandle | None = None
        self.registered = False

    @property
    def address(self) -> Address:
        assert self.key is not None
        return Address(self._manager.name, self.key[0], self.key[1])

    # --- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if not self.outbound:
            peer = transport.get_extra_info("peername")
            self.key = (peer[0], peer[1])
            if not self._manager._register(self):
                self._closing = True
                transport.abort()
                return
            self._manager.stats.accepted += 1
        else:
            self._manager.stats.connected += 1
            for data in self._pending:
                self._transport.write(data)
            self._pending.clear()
            self._pending_size = 0
        self._touch()

    def data_received(self, data: bytes) -> None:
        if self._closing or self._failed:
            return
        self._touch()
        try:
            messages = self._framer.feed(data)
        except FramingError as error:
            self._framing_error(error)
            return
        self._answer_pings()
        address = self.address
        for message in messages:
            self._manager.stats.messages_in += 1
            self._manager._on_message(message, address)
            if self._closing:
                return

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._transport = None
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self._manager._unregister(self)

    # --- used by the transport ---------------------------------------------------------
    def write(self, data: bytes) -> bool:
        limit = self._manager.limits.tcp_max_pending
        if self._closing:
            return False
        if self._transport is None:  # still connecting
            if self._pending_size + len(data) > limit:
                self._manager.stats.overflow_closed += 1
                self.close()
                return False
            self._pending.append(data)
            self._pending_size += len(data)
            return True
        if self._transport.get_write_buffer_size() + len(data) > limit:
            # the peer does not read: do not let it grow our memory
            self._manager.stats.overflow_closed += 1
            self._transport.abort()
            return False
        self._transport.write(data)
        self._touch()
        return True

    def close(self) -> None:
        """Close after the queued bytes are written."""
        self._closing = True
        if self._transport is not None:
            self._transport.close()
        else:
            self._manager._unregister(self)

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()
        else:
            self._manager._unregister(self)

    # --- internals ---------------------------------------------------------------------
    def _framing_error(self, error: FramingError) -> None:
        """Deliver what framed before the error, then answer the bad bytes, then close."""
        self._manager.stats.framing_errors += 1
        address = self.address
        for message in error.messages:
            self._manager.stats.messages_in += 1
            self._manager._on_message(message, address)
            if self._closing:
                return
        self._answer_pings()
        self._failed = True  # read nothing more; writes still go out (the answer)
        self._manager._on_invalid(error.data, address, error)
        self.close()  # after the answer written above

    def _answer_pings(self) -> None:
        # RFC 5626 4.4.1: a double-CRLF ping is answered with a single CRLF pong
        self._manager.stats.pongs += self._framer.pongs - self._pongs
        self._pongs = self._framer.pongs
        pings = self._framer.pings
        if pings != self._pings and self._transport is not None:
            self._manager.stats.pings += pings - self._pings
            self._transport.write(b"\r\n" * (pings - self._pings))
            self._pings = pings

    def _touch(self) -> None:
        self._last_activity = self._manager.loop.time()
        if self._idle_handle is None and not self._closing:
            self._arm_idle(self._manager.limits.tcp_idle_timeout)

    def _arm_idle(self, delay: float) -> None:
        self._idle_handle = self._manager.loop.call_later(delay, self._on_idle)

    def _on_idle(self) -> None:
        # one timer per connection, re-armed lazily for the remaining idle time
        self._idle_handle = None
        if self._closing:
            return
        remaining = self._last_activity + self._manager.limits.tcp_idle_timeout
        remaining -= self._manager.loop.time()
        if remaining > 0:
            self._arm_idle(remaining)
            return
        self._manager.stats.idle_closed += 1
        self.close()


class TcpTransport:
    """The TCP side of an endpoint: one listener and a table of connections.

    TLS (tls.py) is this class with an SSL context: ``name`` and the two option
    hooks below are all a subclass changes."""

    name = "tcp"
    """``Address.transport`` of what arrives on (and is sent through) these connections."""

    def __init__(
        self,
        on_message: MessageHandler,
        on_invalid: InvalidHandler,
        limits: TransportLimits,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._on_message = on_message
        self._on_invalid = on_invalid
        self.limits = limits
        self.loop = loop
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[Key, TcpConnection] = {}
        self._per_ip: Counter[str] = Counter()
        self._connecting: set[asyncio.Task[None]] = set()
        self.stats = TcpStatistics()
        self.on_unreachable: Callable[[Address], None] | None = None
        """Told the address an outbound connection could not be opened to (the driver
        passes it to the core: a transport error, RFC 3261 17.1.4)."""

    async def listen(self, host: str, port: int) -> None:
        self._server = await self.loop.create_server(
            lambda: TcpConnection(self), host, port, reuse_address=True,
            **self._server_options(),
        )

    @property
    def local_address(self) -> Address | None:
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return Address(self.name, host, port)

    def send(self, data: bytes, destination: Address) -> None:
        """Write on the connection to ``destination``, opening one when there is none."""
        key = (destination.host, destination.port)
        connection = self._connections.get(key)
        if connection is None:
            if not is_ip_literal(destination.host):
                self.stats.unresolved_dropped += 1  # no DNS yet (RFC 3263 comes later)
                return
            connection = TcpConnection(self, key)
            if not self._register(connection):
                self.stats.dropped_out += 1
                return
            task = self.loop.create_task(self._connect(connection, destination.name))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
        if connection.write(data):
            self.stats.messages_out += 1
        else:
            self.stats.dropped_out += 1

    def connection(self, destination: Address) -> TcpConnection | None:
        return self._connections.get((destination.host, destination.port))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connecting):
            task.cancel()
        for connection in list(self._connections.values()):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        # let close() flush and connection_lost run, bounded
        for _ in range(50):
            if not self._connections:
                break
            await asyncio.sleep(0.01)
        for connection in list(self._connections.values()):
            connection.abort()

    # --- internals ---------------------------------------------------------------------
    async def _connect(self, connection: TcpConnection, name: str | None = None) -> None:
        assert connection.key is not None
        host, port = connection.key
        try:
            async with asyncio.timeout(self.limits.tcp_connect_timeout):
                await self.loop.create_connection(
                    lambda: connection, host, port, **self._connect_options(host, name)
                )
        except (OSError, TimeoutError) as error:
            self._connect_failed(host, port, name, error)
            self.stats.connect_failures += 1
            connection.abort()
            if self.on_unreachable is not None:
                self.on_unreachable(Address(self.name, host, port))
        except asyncio.CancelledError:
            connection.abort()
            raise

    def _server_options(self) -> dict[str, Any]:
        """Extra ``create_server`` arguments (TLS: the server SSL context)."""
        return {}

    def _connect_options(self, host: str, name: str | None) -> dict[str, Any]:
        """Extra ``create_connection`` arguments for ``host``, located from ``name``
        (TLS: context, SNI)."""
        return {}

    def _connect_failed(self, host: str, port: int, name: str | None, error: BaseException) -> None:
        """Told why an outbound connection failed (TLS logs a failed handshake's reason)."""

    def _register(self, connection: TcpConnection) -> bool:
        assert connection.key is not None
        host = connection.key[0]
        if (
            len(self._connections) >= self.limits.max_tcp_connections
            or self._per_ip[host] >= self.limits.max_tcp_connections_per_ip
            or connection.key in self._connections
        ):
            self.stats.refused_limit += 1
            return False
        self._connections[connection.key] = connection
        self._per_ip[host] += 1
        connection.registered = True
        self.stats.connections_open = len(self._connections)
        return True

    def _unregister(self, connection: TcpConnection) -> None:
        if not connection.registered or connection.key is None:
            return
        connection.registered = False
        if self._connections.get(connection.key) is connection:
            del self._connections[connection.key]
        self._per_ip[connection.key[0]] -= 1
        if self._per_ip[connection.key[0]] <= 0:
            del self._per_ip[connection.key[0]]
        self.stats.connections_open = len(self._connections)

