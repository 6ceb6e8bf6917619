"""Which of our addresses a peer is told (NAT): one decision, one place.

voicegw may sit behind a NAT: it binds private addresses (``sip.host``,
``media.host``) but a peer outside the private network must be told the public
ones (``sip.external_host``, ``media.external_host``), or it sends its in-dialog
requests (RFC 3261 12.1.1: the remote target is our Contact), its responses (18.2.2:
Via sent-by) and its RTP (RFC 4566 c=) to an address it cannot reach. Peers in
``local_nets`` share our network and get the private addresses. Every place that
writes our address (Contact, Via, SDP o=/c=) asks :meth:`AddressPolicy.advertised`.
Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Advertised:
    sip_host: str
    """Our address in Contact, Via sent-by and Record-Route."""
    media_host: str
    """Our address in SDP o= and c=."""


@dataclass(frozen=True)
class AddressPolicy:
    sip_host: str = "127.0.0.1"
    """The address SIP is bound to (the private one behind a NAT)."""
    media_host: str | None = None
    """The address RTP is bound to; None: ``sip_host``."""
    sip_external_host: str | None = None
    """Told to peers outside ``local_nets``; None: no NAT, everyone gets ``sip_host``."""
    media_external_host: str | None = None
    """Told to peers outside ``local_nets`` in SDP; None: ``sip_external_host``."""
    local_nets: tuple[str, ...] = ()
    """CIDRs of peers that get the private addresses."""
    _nets: tuple[Network, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_nets", tuple(ipaddress.ip_network(n, strict=False) for n in self.local_nets))

    @property
    def rtp_host(self) -> str:
        """The address RTP sockets bind to."""
        return self.media_host or self.sip_host

    @property
    def private(self) -> Advertised:
        return Advertised(self.sip_host, self.rtp_host)

    def advertised(self, peer_host: str) -> Advertised:
        """Our addresses as ``peer_host`` must see them. A peer that is not an IP
        literal (a name, unresolved here) counts as outside: a carrier's name is
        public, and the external address reaches a local peer through the NAT's
        hairpin more often than the private one reaches a remote one."""
        public = self.sip_external_host or self.media_external_host
        if public is None or self._local(peer_host):
            return self.private
        return Advertised(self.sip_external_host or self.sip_host,
                          self.media_external_host or self.sip_external_host or self.rtp_host)

    def _local(self, peer_host: str) -> bool:
        try:
            address = ipaddress.ip_address(peer_host.strip("[]"))
        except ValueError:
            return False
        return any(address in net for net in self._nets)


__all__ = ["AddressPolicy", "Advertised"]
