"""The driver: the one place where the sans-I/O UA core meets asyncio.

Modelled on aioquic's ``asyncio/protocol.py``. The core takes bytes and the time in
and gives bytes, events and the time of its next timer out; this driver

- feeds it every datagram and every framed TCP message, with ``loop.time()``;
- after every input drains ``datagrams_to_send`` to the right socket (the output's
  ``Address.transport`` picks UDP or TCP) and re-arms exactly one ``loop.call_at``
  timer from ``get_timer()``;
- hands every ``next_event()`` to the application callback, which answers through
  ``send_response`` / ``send_request`` (the same drain-and-re-arm follows).

It interprets nothing: no header is read here. An exception from the core or the
application is logged and counted, never allowed to stop the endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from ..sip.errors import SipError
from ..sip.events import Address, Event
from ..sip.message import Request, Response
from .guard import Guard, GuardStatistics, LoopLagProbe
from .limits import TransportLimits
from .tcp import TcpStatistics, TcpTransport
from .tls import TlsConfig, TlsTransport
from .udp import UdpEndpoint, UdpStatistics, open_udp

log = structlog.get_logger("voicegw.transport")

DRAIN_LIMIT = 256
"""Datagrams read before a timer is handled (bounded: a flood must not starve the timers)."""

EventHandler = Callable[[Event], None]
TraceHook = Callable[[str, bytes, Address, float], None]
"""Called with ("in" | "out", the message's bytes, the peer's address, loop time)."""


class SipCore(Protocol):
    """What the driver needs of ``voicegw.sip.core.UserAgentCore``."""

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None: ...
    def receive_invalid(
        self, data: bytes, addr: Address, error: SipError, now: float
    ) -> None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def transport_failed(self, destination: Address, now: float) -> None: ...
    def next_event(self) -> Event | None: ...
    def send_response(self, transaction_id: str, response: Response, now: float) -> None: ...
    def send_request(self, request: Request, destination: Address, now: float) -> str: ...
    def statistics(self) -> Any: ...


@dataclass(slots=True)
class EndpointStatistics:
    """A snapshot for the control API and the logs."""

    core: Any
    udp: UdpStatistics
    tcp: TcpStatistics
    events: int = 0
    timer_fires: int = 0
    core_errors: int = 0
    application_errors: int = 0
    unroutable: int = 0
    dropped_no_core: int = 0
    trace_errors: int = 0
    addresses: list[str] = field(default_factory=list)
    guard: GuardStatistics | None = None
    """The guard's counters (None when the endpoint has no guard)."""
    tls: TcpStatistics | None = None
    """The TLS connections' counters (None when TLS is off)."""


class SipEndpoint:
    """Owns the core, the UDP socket, the TCP listener and connections, and the timer."""

    def __init__(
        self,
        core: SipCore | None = None,
        on_event: EventHandler | None = None,
        limits: TransportLimits | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.core: SipCore | None = core
        """May be set after ``start`` (when the core's config needs the bound ports);
        input that arrives before is dropped and counted."""
        self.on_event: EventHandler | None = on_event
        """The application: called with every event, in order. Replaceable at any time."""
        self.trace: TraceHook | None = None
        """The SIP trace tap (control API ladders, response counts): every message in
        (before the core sees it, invalid ones too) and out. None costs one check."""
        self.limits = limits or TransportLimits()
        self.guard = guard
        """Consulted for every message before the core (guard.py): rate limits, bans,
        scanners. None: everything goes to the core."""
        self._lag_probe: LoopLagProbe | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: UdpEndpoint | None = None
        self._tcp: TcpTransport | None = None
        self._tls: TlsTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._servicing = False
        self._again = False
        self._closed = False
        self._counts = {"events": 0, "timer_fires": 0, "core_errors": 0,
                        "application_errors": 0, "unroutable": 0,
                        "dropped_no_core": 0, "trace_errors": 0}

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self, host: str, udp_port: int | None, tcp_port: int | None, *,
                    lag_probe: bool = True) -> None:
        """Bind UDP and/or TCP (port 0: any free port). OSError when a port is taken.
        ``lag_probe=False``: the guard's loop-lag probe waits for :meth:`start_lag_probe`
        (the daemon starts it once its own start-up, which blocks the loop, is over)."""
        self._loop = asyncio.get_running_loop()
        try:
            if udp_port is not None:
                self._udp = await open_udp(
                    host, udp_port, self._on_datagram, self.limits.max_message_size
                )
            if tcp_port is not None:
                self._tcp = TcpTransport(
                    self._on_datagram, self._on_invalid, self.limits, self._loop
                )
                self._tcp.on_unreachable = self._on_unreachable
                await self._tcp.listen(host, tcp_port)
        except BaseException:
            await self.close()
            raise
        if lag_probe:
            self.start_lag_probe()

    def start_lag_probe(self) -> None:
        """Measure the loop's lateness for the guard's overload check (when it has one)."""
        if self._lag_probe is None and self._loop is not None and self.guard is not None \
                and self.guard.config.max_loop_lag:
            self._lag_probe = LoopLagProbe(self._loop, self.guard)
            self._lag_probe.start()

    async def start_tls(self, host: str, config: TlsConfig) -> None:
        """Listen for SIP over TLS on ``config.port`` (after ``start``); outbound
        ``tls`` addresses use the same transport. OSError when the port is taken,
        ``TlsConfigError`` when a certificate or key cannot be loaded."""
        self._loop = self._loop or asyncio.get_running_loop()
        tls = TlsTransport(self._on_datagram, self._on_invalid, self.limits, self._loop, config)
        tls.on_unreachable = self._on_unreachable
        await tls.listen(host, config.port)
        self._tls = tls

    async def close(self) -> None:
        """Stop the timer, close the sockets (TCP writes are flushed, bounded)."""
        self._closed = True
        if self._lag_probe is not None:
            self._lag_probe.stop()
            self._lag_probe = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            await self._tcp.close()
        if self._tls is not None:
            await self._tls.close()

    @property
    def next_timer(self) -> float | None:
        """When the one armed timer fires (loop time), or None when none is armed."""
        return self._timer_at if self._timer is not None else None

    @property
    def udp_address(self) -> Address | None:
        return self._udp.local_address if self._udp else None

    @property
    def tcp_address(self) -> Address | None:
        return self._tcp.local_address if self._tcp else None

    @property
    def tls_address(self) -> Address | None:
        return self._tls.local_address if self._tls else None

    # --- the application's side ------------------------------------------------------
    def send_response(self, transaction_id: str, response: Response) -> None:
        assert self.core is not None
        self.core.send_response(transaction_id, response, self._now())
        self._service()

    def send_request(self, request: Request, destination: Address) -> str:
        assert self.core is not None
        transaction_id = self.core.send_request(request, destination, self._now())
        self._service()
        return transaction_id

    def send_ping(self, data: bytes, destination: Address) -> bool:
        """Write ``data`` (a CRLF keep-alive, RFC 5626 3.5.1) on the TCP/TLS connection
        to ``destination``, opening one when there is none; False: no such transport."""
        stream = {"tcp": self._tcp, "tls": self._tls}.get(destination.transport)
        if stream is None:
            return False
        stream.send(data, destination)
        return True

    def connected(self, destination: Address) -> bool:
        """A TCP/TLS connection to ``destination`` is open (or being opened)."""
        stream = {"tcp": self._tcp, "tls": self._tls}.get(destination.transport)
        return stream is not None and stream.connection(destination) is not None

    def statistics(self) -> EndpointStatistics:
        addresses = [str(a) for a in (self.udp_address, self.tcp_address, self.tls_address)
                     if a is not None]
        return EndpointStatistics(
            core=self.core.statistics() if self.core is not None else None,
            udp=self._udp.stats if self._udp else UdpStatistics(),
            tcp=self._tcp.stats if self._tcp else TcpStatistics(),
            addresses=addresses,
            guard=self.guard.statistics(self._loop.time() if self._loop else None)
            if self.guard is not None else None,
            tls=self._tls.stats if self._tls else None,
            **self._counts,
        )

    # --- inputs ------------------------------------------------------------------------
    def _admit(self, data: bytes, source: Address) -> SipCore | None:
        """The core to hand an incoming message to (traced first, when tracing), or
        None when it is dropped: the endpoint is closed, the guard refuses it, or there
        is no core yet (counted). Valid and invalid messages pass the same gate."""
        if self._closed:
            return None
        if self.guard is not None and not self.guard.check(data, source.host, self._now()):
            return None  # dropped unread: banned, over its rate, or a scanner (guard.py)
        if self.core is None:
            self._counts["dropped_no_core"] += 1
            return None
        if self.trace is not None:
            self._tap("in", data, source)
        return self.core

    def _on_datagram(self, data: bytes, source: Address) -> None:
        core = self._admit(data, source)
        if core is None:
            return
        try:
            core.receive_datagram(data, source, self._now())
        except Exception:
            self._counts["core_errors"] += 1
            log.exception("sip.core_error", source=str(source), size=len(data))
        self._service()

    def _on_invalid(self, data: bytes, source: Address, error: SipError) -> None:
        core = self._admit(data, source)
        if core is None:
            return
        try:
            core.receive_invalid(data, source, error, self._now())
        except Exception:
            self._counts["core_errors"] += 1
            log.exception("sip.core_error", source=str(source), size=len(data))
        self._service()

    def _on_unreachable(self, destination: Address) -> None:
        """A connection to ``destination`` could not be opened: the core ends the
        client transactions waiting on it (RFC 3261 17.1.4) instead of Timer B/F."""
        if self._closed or self.core is None:
            return
        try:
            self.core.transport_failed(destination, self._now())
        except Exception:
            self._counts["core_errors"] += 1
            log.exception("sip.core_error", input="transport_failed", peer=str(destination))
        self._service()

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed or self.core is None:
            return
        self._counts["timer_fires"] += 1
        due = self._timer_at or 0.0
        if self._udp is not None:
            # what has arrived first: a response waiting in the socket stops Timer A/E
            # before it resends the request (udp.py: uvloop runs timers before input)
            self._udp.drain(DRAIN_LIMIT)
            if self.core is None or self._closed:
                return
        # call_at may run a callback up to the clock resolution early; never hand the
        # core a time before the deadline it asked for, or it would ask again at once
        now = max(self._now(), due)
        try:
            self.core.handle_timer(now)
        except Exception:
            self._counts["core_errors"] += 1
            log.exception("sip.core_error", input="timer")
        self._service()

    # --- outputs -----------------------------------------------------------------------
    def _service(self) -> None:
        """Deliver events, send what is pending, re-arm the timer.

        Re-entrant calls (the application answering from inside its callback) only
        mark that another round is needed, so events stay in order.
        """
        if self._servicing:
            self._again = True
            return
        if self.core is None:
            return
        self._servicing = True
        try:
            while True:
                self._again = False
                self._transmit()
                self._deliver_events()
                self._transmit()
                if not self._again:
                    break
        finally:
            self._servicing = False
        self._arm_timer()

    def _deliver_events(self) -> None:
        core = self.core
        assert core is not None
        while (event := core.next_event()) is not None:
            self._counts["events"] += 1
            handler = self.on_event
            if handler is None:
                continue
            try:
                handler(event)
            except Exception:
                self._counts["application_errors"] += 1
                log.exception("app.error", event_type=type(event).__name__)

    def _transmit(self) -> None:
        assert self.core is not None
        for data, destination in self.core.datagrams_to_send(self._now()):
            if self.trace is not None:
                self._tap("out", data, destination)
            transport = destination.transport
            if transport == "udp" and self._udp is not None:
                self._udp.send(data, destination)
            elif transport == "tcp" and self._tcp is not None:
                self._tcp.send(data, destination)
            elif transport == "tls" and self._tls is not None:
                self._tls.send(data, destination)
            else:
                self._counts["unroutable"] += 1

    def _tap(self, direction: str, data: bytes, peer: Address) -> None:
        try:
            self.trace(direction, data, peer, self._now())  # type: ignore[misc]
        except Exception:  # a broken tap never costs a message
            self._counts["trace_errors"] += 1
            log.exception("sip.trace_error", direction=direction)

    def _arm_timer(self) -> None:
        if self._closed or self._loop is None or self.core is None:
            return
        when = self.core.get_timer()
        if self._timer is not None:
            if when == self._timer_at:
                return
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()
