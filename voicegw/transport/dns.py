"""DNS for SIP targets: the asyncio side of RFC 3263 (the procedure is sip/locate.py).

dnspython's asyncio resolver asks the questions: it is pure Python (no native library to
build or to ship), parses NAPTR and SRV itself, follows CNAMEs (and stops a CNAME loop),
and reports each answer's TTL, which the cache below honours. aiodns would add c-ares
for no gain at SIP's query rates: one lookup per new target, then the cache.

A lookup never hangs: each question has ``timeout`` seconds in all, and every failure
(NXDOMAIN for the whole chain, no usable record, a timeout, a server failure, a CNAME
loop) is one :class:`DnsError`, which the engine reports as a transfer failure with
status ``dns``.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from voicegw.sip.events import Address
from voicegw.sip.locate import (
    DEFAULT_PORTS,
    LocateError,
    Locator,
    Naptr,
    Query,
    Record,
    Srv,
    Target,
)
from voicegw.sip.uri import SipUri

# a negative answer (NXDOMAIN, no data) is kept this long when the zone's SOA gives none
NEGATIVE_TTL = 30.0
# an answer is never kept longer than this, whatever its TTL (a bad TTL must not pin a
# dead server for a day)
MAX_TTL = 3600.0
MAX_CACHE = 10_000


class DnsError(Exception):
    """The target could not be located; ``reason`` says why (for the log and the record)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """Daemon ``dns:`` section: empty ``servers`` means the system's resolver."""

    servers: tuple[str, ...] = ()
    port: int = 53
    timeout: float = 2.0


class Resolver:
    """RFC 3263 lookups with a TTL-respecting cache. ``clock`` is the loop's clock."""

    def __init__(self, settings: DnsSettings, clock: Callable[[], float],
                 draw: Callable[[int], int] | None = None) -> None:
        if settings.servers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = list(settings.servers)
            self._resolver.port = settings.port
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = settings.timeout
        self._resolver.cache = None  # ours below: it also keeps negative answers
        self._clock = clock
        self.draw = draw or (lambda n: random.randint(0, n))
        """RFC 2782's weighted draw: a random integer in 0..n (injected by tests)."""
        self._cache: dict[Query, tuple[float, list[Record]]] = {}
        self.queries = 0  # questions actually sent (the bench checks 0 per call when warm)

    async def locate(self, uri: SipUri, transports: Sequence[str] = ("udp", "tcp", "tls")) -> list[Target]:
        """The servers to try for ``uri``, in order; DnsError when there is none."""
        try:
            locator = Locator(uri, transports, self.draw)
            while (query := locator.next_query()) is not None:
                locator.answer(query, await self._ask(query))
        except LocateError as error:
            raise DnsError(uri.host, str(error)) from None
        return locator.targets

    async def addresses(self, uri: SipUri, transport: str | None = None) -> list[Address]:
        """Where to send to reach ``uri``, in order: what the dial path, the gateway
        pings and the keep-alives all ask. ``transport`` (a profile's, a gateway's)
        applies when the URI names none (no ``;transport=``, not ``sips:``): only its
        SRV records are asked, and the host itself is reached over it. Each address
        keeps the name it was located from (TLS SNI and the certificate check, RFC 5922
        4); an IP literal asks no DNS. DnsError when there is none."""
        name = None if _is_literal(uri.host.strip("[]")) else uri.host
        if transport is not None and uri.transport is None and uri.scheme == "sip":
            return [Address(transport, t.address, t.port if t.transport == transport
                            else uri.port or DEFAULT_PORTS[transport], name=name)
                    for t in await self.locate(uri, (transport,))]
        return [Address(t.transport, t.address, t.port, name=name) for t in await self.locate(uri)]

    async def _ask(self, query: Query) -> list[Record]:
        now = self._clock()
        cached = self._cache.get(query)
        if cached is not None and cached[0] > now:
            return cached[1]
        self.queries += 1
        try:
            answer = await self._resolver.resolve(query.name, query.type.value, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            self._keep(query, [], NEGATIVE_TTL, now)
            return []
        except dns.resolver.LifetimeTimeout:
            raise DnsError(query.name, f"{query.type.value} query timed out") from None
        except dns.resolver.NoNameservers as error:
            raise DnsError(query.name, f"{query.type.value} query failed: {error}") from None
        except dns.exception.DNSException as error:  # CNAME loops, bad names, ...
            raise DnsError(query.name, f"{query.type.value} query: {error}") from None
        records = [_record(rdata) for rdata in answer]
        self._keep(query, records, float(answer.rrset.ttl if answer.rrset else NEGATIVE_TTL), now)
        return records

    def _keep(self, query: Query, records: list[Record], ttl: float, now: float) -> None:
        if len(self._cache) >= MAX_CACHE:
            self._cache = {q: v for q, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= MAX_CACHE:
                self._cache.clear()
        self._cache[query] = (now + min(ttl, MAX_TTL), records)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _record(rdata: object) -> Record:
    kind = rdata.rdtype  # type: ignore[attr-defined]
    if kind == dns.rdatatype.NAPTR:
        return Naptr(rdata.order, rdata.preference, rdata.flags.decode(),  # type: ignore[attr-defined]
                     rdata.service.decode(), rdata.replacement.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
    if kind == dns.rdatatype.SRV:
        target = rdata.target  # type: ignore[attr-defined]
        name = "." if target == dns.name.root else target.to_text(omit_final_dot=True)
        return Srv(rdata.priority, rdata.weight, rdata.port, name)  # type: ignore[attr-defined]
    return rdata.address  # type: ignore[attr-defined]


__all__ = ["DnsError", "DnsSettings", "Resolver"]
