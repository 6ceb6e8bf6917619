"""Where an outgoing INVITE goes, and with what: the profile a dialled URI belongs to
(its digest account, its outbound proxy, its gateways' health) and the ordered list of
transport addresses to try (RFC 3263).

- ``PeerPolicies`` (voicegw/settings.py: plain data the config builds once) maps a
  dialled URI's host (and port) to the ``PeerPolicy`` of the profile that names it;
  the dial path asks it per INVITE.
- :func:`locate` resolves the URI (or the outbound proxy, RFC 3261 8.1.2: the request
  goes to the first Route) with transport/dns.py; a carrier whose gateways are pinged
  (``health:``) has the gateways marked down skipped (voicegw/gateways.py).
- :data:`FAILOVER` is when the next target is tried (RFC 3263 4.3): 408, 503 (a
  transport error is a 503, RFC 3261 8.1.3.1) and a timeout; nothing else.
"""

from __future__ import annotations

from typing import Any

from ..settings import PeerPolicy
from ..sip.events import Address
from ..sip.gateway_health import Health
from ..sip.locate import DEFAULT_PORTS
from ..sip.uri import SipUri, parse_uri
from ..transport.dns import Resolver
from ..transport.udp import is_ip_literal

#: failures after which the next located target is tried (RFC 3263 4.3)
FAILOVER = frozenset({408, 503, "timeout"})


class GatewaysDown(Exception):
    """Every located gateway of the carrier is marked down by its pings."""


async def locate(resolver: Resolver, gateways: Any, uri: SipUri,
                 policy: PeerPolicy | None, transport: str | None = None) -> list[Address]:
    """The transport addresses to try for ``uri`` (over ``transport``, the profile's,
    when the URI names none), in order; DnsError when there is
    none (no record, NXDOMAIN, a timeout, a CNAME loop); GatewaysDown when the
    health checks marked every one down (the attempt fails with 503)."""
    where = uri
    if policy is not None and policy.outbound_proxy is not None:
        proxy = parse_uri(policy.outbound_proxy)
        assert isinstance(proxy, SipUri)
        where = proxy
    # the name TLS sends as SNI and checks the certificate against: the domain of the URI
    # located (RFC 5922 4), not the SRV target's host; none for an IP literal
    name = None if is_ip_literal(where.host.strip("[]")) else where.host
    if transport is not None and where.transport is None and where.scheme == "sip":
        # the profile's transport: only its SRV records, and the host itself over it
        targets = [Address(transport, t.address, t.port if t.transport == transport
                           else where.port or DEFAULT_PORTS[transport], name=name)
                   for t in await resolver.locate(where, (transport,))]
    else:
        targets = [Address(t.transport, t.address, t.port, name=name) for t in await resolver.locate(where)]
    if policy is not None and policy.gateways is not None and gateways is not None:
        up = [a for a in targets if gateways.state(policy.gateways, a) is not Health.DOWN]
        if not up:
            raise GatewaysDown(f"every gateway of {policy.gateways} is down")
        targets = up
    return targets


__all__ = ["FAILOVER", "GatewaysDown", "locate"]
