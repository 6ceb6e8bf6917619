"""Where an outgoing INVITE goes, and with what: the profile a dialled URI belongs to
(its digest account, its outbound proxy, its gateways' health) and the ordered list of
transport addresses to try (RFC 3263).

- ``PeerPolicies`` (voicegw/settings.py: plain data the config builds once) maps a
  dialled URI's host (and port) to the ``PeerPolicy`` of the profile that names it;
  the dial path asks it per INVITE.
- :func:`locate` resolves the URI (or the outbound proxy, RFC 3261 8.1.2: the request
  goes to the first Route; or the carrier's ``gateways:`` list) with transport/dns.py;
  a carrier whose gateways are pinged (``health:``) has the gateways marked down
  skipped (voicegw/gateways.py).
- :data:`FAILOVER` is when the next target is tried (RFC 3263 4.3): 408, 503 (a
  transport error is a 503, RFC 3261 8.1.3.1) and a timeout; nothing else.
"""

from __future__ import annotations

from typing import Any

from ..settings import PeerPolicy
from ..sip.events import Address
from ..sip.gateway_health import Health
from ..sip.gateway_list import GatewaySpec, order
from ..sip.uri import SipUri, parse_uri
from ..transport.dns import DnsError, Resolver

#: failures after which the next located target is tried (RFC 3263 4.3)
FAILOVER = frozenset({408, 503, "timeout"})


class GatewaysDown(Exception):
    """Every located gateway of the carrier is marked down by its pings."""


async def locate(resolver: Resolver, gateways: Any, uri: SipUri,
                 policy: PeerPolicy | None, transport: str | None = None) -> list[Address]:
    """The transport addresses to try for ``uri`` (over ``transport``, the profile's,
    when the URI names none), in order; DnsError when there is
    none (no record, NXDOMAIN, a timeout, a CNAME loop); GatewaysDown when the
    health checks marked every one down (the attempt fails with 503).

    A carrier with a ``gateways:`` list is reached through it instead: the entries in
    RFC 2782 order (sip/gateway_list.py), each located on its own (a name that does not
    resolve is skipped; DnsError only when none does)."""
    if policy is not None and policy.gateway_list:
        targets = await _listed(resolver, policy.gateway_list)
    else:
        where = uri
        if policy is not None and policy.outbound_proxy is not None:
            proxy = parse_uri(policy.outbound_proxy)
            assert isinstance(proxy, SipUri)
            where = proxy
        targets = await resolver.addresses(where, transport)
    if policy is not None and policy.gateways is not None and gateways is not None:
        up = [a for a in targets if gateways.state(policy.gateways, a) is not Health.DOWN]
        if not up:
            raise GatewaysDown(f"every gateway of {policy.gateways} is down")
        targets = up
    return targets


async def _listed(resolver: Resolver, listed: tuple[GatewaySpec, ...]) -> list[Address]:
    targets: list[Address] = []
    failed: DnsError | None = None
    for spec in order(listed, resolver.draw):
        try:
            found = await resolver.addresses(spec.sip_uri, spec.transport)
        except DnsError as error:
            failed = error
            continue
        targets += [a for a in found if a not in targets]
    if not targets and failed is not None:
        raise failed
    return targets


__all__ = ["FAILOVER", "GatewaysDown", "locate"]
