"""Locating SIP servers (RFC 3263), sans-I/O: which DNS questions to ask, in which order,
and what the answers mean.

How to read it: a :class:`Locator` is built for one target URI. The caller asks it for
the next question (:meth:`Locator.next_query`), puts that question to DNS however it
likes (the asyncio adapter is ``voicegw/transport/dns.py``) and hands the answer back
(:meth:`Locator.answer`), until ``next_query()`` returns None. Then
:attr:`Locator.targets` holds the servers to try, in order: each a transport, a host
name, a port and one address. A caller fails over to the next target only on 408, 503,
a timeout or a transport error (RFC 3263 4.3); anything else ends the attempt.

The steps (RFC 3263 4.1 transport, 4.2 port and address):
1. a numeric host: no DNS at all; the transport is the URI's, else UDP (TLS for sips);
2. a transport parameter or a port in the URI: that transport, no NAPTR; with a port,
   only A/AAAA; without, SRV for that transport, then A/AAAA at the default port;
3. otherwise NAPTR: the records whose service is one we support (SIP+D2U, SIP+D2T,
   SIPS+D2T; only SIPS+D2T for a sips URI), by order then preference, each naming an SRV
   domain; no usable NAPTR: SRV for each supported transport in our order of preference;
   no SRV either: A/AAAA at the default port over UDP (TLS for sips);
4. SRV records sort by priority, and inside one priority by the weighted random draw of
   RFC 2782 (the draw is injected, so tests are exact);
5. each SRV target (or the host itself) is resolved to A, then AAAA records.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from .events import Address
from .uri import SipUri

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}

# RFC 3263 4.1: NAPTR service field -> transport; sips only over TLS
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
SRV_PREFIXES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}


class LocateError(Exception):
    """The URI cannot be located: a bad transport for its scheme, or nothing usable in DNS."""


class QueryType(Enum):
    NAPTR = "NAPTR"
    SRV = "SRV"
    A = "A"
    AAAA = "AAAA"


@dataclass(frozen=True, slots=True)
class Query:
    """One DNS question the locator wants answered."""

    name: str
    type: QueryType


@dataclass(frozen=True, slots=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Target:
    """One server to try: where to send, and over what."""

    transport: str
    host: str
    port: int
    address: str


Record = Naptr | Srv | str  # A/AAAA answers are address strings


@dataclass(slots=True)
class _Hop:
    """A host still to resolve to addresses (from SRV, or the URI itself)."""

    transport: str
    host: str
    port: int
    pending: list[QueryType] = field(default_factory=lambda: [QueryType.A, QueryType.AAAA])


class Locator:
    """The RFC 3263 procedure for one URI; see the module docstring."""

    def __init__(self, uri: SipUri, transports: Sequence[str] = ("udp", "tcp", "tls"),
                 draw: Callable[[int], int] | None = None) -> None:
        """``transports``: what this client can use, in its order of preference.
        ``draw(n)``: a uniform integer in [0, n] for the SRV weight draw (RFC 2782); the
        default always draws n, so the heaviest record of a priority comes first."""
        self.uri = uri
        self.secure = uri.scheme == "sips"
        self.transports = [t for t in transports if t == "tls" or not self.secure]
        self.draw = draw or (lambda n: n)
        self.targets: list[Target] = []
        self._queue: list[Query] = []
        self._hops: list[_Hop] = []
        self._srv_left: list[tuple[str, str]] = []  # (transport, SRV name) still to ask
        self._start()

    # ------------------------------------------------------------------ the procedure
    def _start(self) -> None:
        uri = self.uri
        transport = uri.transport
        if transport is not None and transport not in DEFAULT_PORTS:
            raise LocateError(f"unsupported transport {transport!r}")
        if self.secure and transport not in (None, "tls", "tcp"):
            raise LocateError(f"sips URI over {transport}: TLS only (RFC 3261 26.2.2)")
        if self.secure and transport is not None:
            transport = "tls"  # sips with transport=tcp means TLS over TCP
        default = "tls" if self.secure else "udp"
        if _is_numeric(uri.host):
            chosen = transport or default
            address = uri.host.strip("[]")
            self.targets.append(Target(chosen, address, uri.port or DEFAULT_PORTS[chosen], address))
            return
        if uri.port is not None:  # 4.2: a port means A/AAAA only
            self._add_hop(transport or default, uri.host, uri.port)
            return
        if transport is not None:  # 4.2: SRV for that transport only
            self._srv_left = [(transport, f"{SRV_PREFIXES[transport]}.{uri.host}")]
            self._ask_next_srv()
            return
        self._queue.append(Query(uri.host, QueryType.NAPTR))

    def next_query(self) -> Query | None:
        """The next question to put to DNS, or None when :attr:`targets` is final."""
        return self._queue[0] if self._queue else None

    def answer(self, query: Query, records: Sequence[Record]) -> None:
        """The answer to ``query`` (an empty list for NXDOMAIN or no data)."""
        if not self._queue or self._queue[0] != query:
            raise ValueError(f"not the pending query: {query}")
        self._queue.pop(0)
        if query.type is QueryType.NAPTR:
            self._on_naptr([r for r in records if isinstance(r, Naptr)])
        elif query.type is QueryType.SRV:
            self._on_srv([r for r in records if isinstance(r, Srv)])
        else:
            self._on_addresses(query, [r for r in records if isinstance(r, str)])
        if not self._queue and not self.targets:
            raise LocateError(f"no usable DNS records for {self.uri.host}")

    def _on_naptr(self, records: list[Naptr]) -> None:
        usable = sorted(
            (r for r in records
             if r.flags.lower() == "s" and NAPTR_SERVICES.get(r.service.upper()) in self.transports),
            key=lambda r: (r.order, r.preference))
        if usable:
            self._srv_left = [(NAPTR_SERVICES[r.service.upper()], r.replacement.rstrip("."))
                              for r in usable]
        else:  # 4.1: no NAPTR, SRV for each supported transport in our order
            self._srv_left = [(t, f"{SRV_PREFIXES[t]}.{self.uri.host}") for t in self.transports]
        self._ask_next_srv()

    def _ask_next_srv(self) -> None:
        if self._srv_left:
            self._queue.append(Query(self._srv_left[0][1], QueryType.SRV))
            return
        # no SRV at all: the host itself at the default port (4.2)
        transport = "tls" if self.secure else (self.uri.transport or "udp")
        self._add_hop(transport, self.uri.host, DEFAULT_PORTS[transport])

    def _on_srv(self, records: list[Srv]) -> None:
        transport, _ = self._srv_left.pop(0)
        usable = [r for r in records if r.target not in (".", "")]  # "." = not offered here
        if not usable:
            self._ask_next_srv()
            return
        self._srv_left = []  # 4.1: the first transport with SRV records is the one used
        for record in order_srv(usable, self.draw):
            self._add_hop(transport, record.target.rstrip("."), record.port)

    def _add_hop(self, transport: str, host: str, port: int) -> None:
        hop = _Hop(transport, host, port)
        self._hops.append(hop)
        if len(self._hops) == 1:
            self._queue.append(Query(host, hop.pending[0]))

    def _on_addresses(self, query: Query, addresses: list[str]) -> None:
        hop = self._hops[0]
        hop.pending.pop(0)
        self.targets.extend(Target(hop.transport, hop.host, hop.port, a) for a in addresses)
        if hop.pending:
            self._queue.append(Query(hop.host, hop.pending[0]))
            return
        self._hops.pop(0)
        if self._hops:
            self._queue.append(Query(self._hops[0].host, self._hops[0].pending[0]))


def order_srv(records: Sequence[Srv], draw: Callable[[int], int]) -> list[Srv]:
    """RFC 2782: lowest priority first; inside a priority, repeatedly pick a record with
    probability proportional to its weight (zero-weight records first in the running
    sum, so they are picked rarely but not never)."""
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            pick = draw(total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered


def literal_hop(uri: object, fallback: Address) -> Address:
    """Where an in-dialog request goes: its next hop (12.2.1.1) when that is an IP
    literal, else ``fallback``, the address the peer used (no DNS in a dialog yet)."""
    if isinstance(uri, SipUri) and _is_numeric(uri.host):
        return Address(uri.transport or fallback.transport, uri.host.strip("[]"), uri.port or 5060)
    return fallback


def _is_numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
