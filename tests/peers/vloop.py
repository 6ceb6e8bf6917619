"""An asyncio event loop on a virtual clock, with UDP as an in-memory network.

The in-process engine harness (tests/peers/inproc.py, tests/engine/) runs the daemon's
own code (SIP endpoint, UA core, engine, RTP endpoints, players, bridges) on this loop:

- ``loop.time()`` is virtual. When nothing is ready to run, the loop does not sleep
  until the next timer: the clock jumps to it. A call's 30 s ring timeout takes no
  wall time, and the order of everything is fixed by the timers' deadlines and the
  order of ``call_soon`` (deterministic: no thread, socket or real clock involved).
- ``create_datagram_endpoint`` binds on a :class:`Network` instead of the kernel.
  A datagram sent reaches the protocol bound at its destination with one
  ``call_soon`` (so, as over loopback, it arrives after the sender's callback
  returns; or ``Network.latency`` seconds later), or is counted as dropped when
  nothing is bound there. Every datagram is
  recorded as a :class:`Datagram` for the tests' media checks.

Anything that would block for real (a subprocess, a thread, a TCP socket) has no
place here: :meth:`VirtualLoop.run_until_complete` fails with a clear message when the
loop has nothing left to run but the awaited future is not done (a deadlock, which on
a real loop would hang the test).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import selectors
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Addr = tuple[str, int]


class Stalled(RuntimeError):
    """The loop has no ready callback and no timer, yet the awaited future is not done."""


@dataclass(frozen=True, slots=True)
class Datagram:
    at: float
    source: Addr
    destination: Addr
    data: bytes


class Network:
    """Who is bound where, and every datagram sent (``log``, bounded by ``keep``)."""

    def __init__(self, loop: VirtualLoop, keep: int = 200_000) -> None:
        self._loop = loop
        self.bound: dict[Addr, FakeDatagramTransport] = {}
        self.log: list[Datagram] = []
        self.keep = keep
        self.sent: Counter[tuple[Addr, Addr]] = Counter()
        """Datagrams sent, by (source, destination): the log may be trimmed, this not."""
        self.dropped = 0
        self._ephemeral = itertools.count(40000)
        self.tap: Callable[[Datagram], None] | None = None
        self.latency = 0.0
        """Seconds every datagram takes (0: delivered on the next loop turn). Above 0,
        messages sent by two sides at nearly the same time cross on the way (a CANCEL
        and a 200, two re-INVITEs)."""

    def bind(self, addr: Addr, protocol: asyncio.BaseProtocol) -> FakeDatagramTransport:
        host, port = addr
        if port == 0:
            port = next(p for p in self._ephemeral if (host, p) not in self.bound)
        if (host, port) in self.bound:
            raise OSError(errno.EADDRINUSE, f"address in use: {host}:{port}")
        transport = FakeDatagramTransport(self, (host, port), protocol)
        self.bound[(host, port)] = transport
        return transport

    def send(self, source: Addr, destination: Addr, data: bytes) -> None:
        datagram = Datagram(self._loop.time(), source, destination, bytes(data))
        self.sent[(source, destination)] += 1
        if len(self.log) < self.keep:
            self.log.append(datagram)
        if self.tap is not None:
            self.tap(datagram)
        target = self.bound.get(destination)
        if target is None:
            self.dropped += 1
            return
        if self.latency > 0:
            self._loop.call_later(self.latency, target.deliver, datagram.data, source)
        else:
            self._loop.call_soon(target.deliver, datagram.data, source)


class FakeDatagramTransport(asyncio.DatagramTransport):
    def __init__(self, network: Network, addr: Addr, protocol: asyncio.BaseProtocol) -> None:
        super().__init__(extra={"sockname": addr})
        self._network = network
        self.addr = addr
        self._protocol = protocol
        self._closing = False

    def sendto(self, data: bytes | bytearray | memoryview, addr: Addr | None = None) -> None:  # type: ignore[override]
        if self._closing:
            return
        assert addr is not None, "connected UDP sockets are not modelled"
        self._network.send(self.addr, (addr[0], addr[1]), bytes(data))

    def deliver(self, data: bytes, source: Addr) -> None:
        if not self._closing:
            self._protocol.datagram_received(data, source)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._network.bound.get(self.addr) is self:
            del self._network.bound[self.addr]
        self._network._loop.call_soon(self._protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self._closing

    def abort(self) -> None:
        self.close()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol


class _JumpingSelector(selectors.DefaultSelector):
    """The loop's selector: polls (the loop's own self-pipe only) and, instead of
    waiting ``timeout`` seconds, moves the virtual clock by that much."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise Stalled("nothing is scheduled: the awaited future can never finish")
        assert self.loop is not None
        self.loop.advance(timeout)
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    """``time()`` starts at ``start`` and only moves when the loop is idle."""

    def __init__(self, start: float = 1000.0) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self._virtual_now = start
        self.network = Network(self)
        self.set_debug(False)

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        # asyncio runs timers due before time() + clock_resolution: the jump lands
        # exactly on the next deadline
        self._virtual_now += max(seconds, 0.0)

    async def create_datagram_endpoint(  # type: ignore[override]
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], local_addr: Addr | None = None,
        remote_addr: Addr | None = None, **_options: Any,
    ) -> tuple[asyncio.DatagramTransport, asyncio.BaseProtocol]:
        assert local_addr is not None and remote_addr is None, "bind-only UDP is modelled"
        protocol = protocol_factory()
        transport = self.network.bind((local_addr[0], local_addr[1]), protocol)
        protocol.connection_made(transport)
        return transport, protocol

    def pending_timers(self) -> list[asyncio.TimerHandle]:
        """Timers still armed (not cancelled), soonest first."""
        return sorted((h for h in self._scheduled if not h.cancelled()), key=lambda h: h.when())  # type: ignore[attr-defined]

    def run_for(self, seconds: float) -> None:
        """Run everything due in the next ``seconds`` of virtual time."""
        self.run_until_complete(asyncio.sleep(seconds))
