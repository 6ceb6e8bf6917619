"""A carrier's own list of gateways (profile ``gateways:``), sans-I/O: what one entry
says and the order a call tries them in.

An entry is an address as an operator types it (``203.0.113.10``, ``gw1.carrier.example:5080``,
``[2001:db8::1]``, or a ``sip:``/``sips:`` URI with ``;transport=``), a transport, and
SRV's ``priority`` and ``weight`` (RFC 2782). :func:`order` is RFC 2782's selection,
the same draw as SRV records (sip/locate.py ``order_srv``): lowest priority first,
inside one priority a weighted random order. Each entry is then located on its own
(an IP literal as it is, a name by RFC 3263: transport/dns.py), so one entry may
stand for several addresses, tried in the order DNS gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import SipError
from .locate import DEFAULT_PORTS, Srv, order_srv
from .uri import SipUri, parse_uri


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    """One entry of a carrier profile's ``gateways:``, plain."""

    uri: str
    """``sip:host[:port]`` (``sips:`` for TLS): where the INVITE goes and the OPTIONS
    ping's Request-URI."""
    transport: str
    """``udp``, ``tcp`` or ``tls``."""
    priority: int = 10
    """RFC 2782: lower is tried first."""
    weight: int = 10
    """RFC 2782: the share among the entries of one priority."""

    @property
    def sip_uri(self) -> SipUri:
        uri = parse_uri(self.uri)
        assert isinstance(uri, SipUri)
        return uri


def typed_uri(text: str) -> SipUri:
    """An address as typed, as a URI; a ValueError says what is wrong with it."""
    typed = text.strip()
    uri_text = typed if typed.lower().startswith(("sip:", "sips:")) else f"sip:{typed}"
    try:
        uri = parse_uri(uri_text)
    except SipError as error:
        raise ValueError(f"{text!r}: not HOST, HOST:PORT or a SIP URI ({error.reason})") from None
    if not isinstance(uri, SipUri):
        raise ValueError(f"{text!r}: not HOST, HOST:PORT or a SIP URI")  # noqa: TRY004 - pydantic reports a ValueError
    if uri.user is not None or uri.headers or set(uri.params) - {"transport"}:
        raise ValueError(f"{text!r}: a gateway is a host (and port, transport), no user, parameters or headers")
    named = named_transport(uri)
    if named is not None and named not in DEFAULT_PORTS:
        raise ValueError(f"{text!r}: transport {named!r} is not udp, tcp or tls")
    if uri.scheme == "sips" and uri.transport not in (None, "tls", "tcp"):
        raise ValueError(f"{text!r}: a sips: gateway is reached over TLS only")
    return uri


def named_transport(uri: SipUri) -> str | None:
    """The transport the address itself names: ``sips:`` is TLS (RFC 3261 26.2.2)."""
    return "tls" if uri.scheme == "sips" else uri.transport


def parse_gateway(text: str, transport: str) -> GatewaySpec:
    """An address as typed -> its spec (over ``transport`` when the text names none)."""
    uri = typed_uri(text)
    named = named_transport(uri) or transport
    port = f":{uri.port}" if uri.port is not None else ""
    return GatewaySpec(f"{uri.scheme}:{uri.host}{port}", named)


def order(gateways: Sequence[GatewaySpec], draw: Callable[[int], int]) -> list[GatewaySpec]:
    """RFC 2782's order of ``gateways`` (``draw(n)``: a random integer in 0..n)."""
    records = [Srv(g.priority, g.weight, index, g.uri) for index, g in enumerate(gateways)]
    return [gateways[record.port] for record in order_srv(records, draw)]  # port: the index


__all__ = ["GatewaySpec", "named_transport", "order", "parse_gateway", "typed_uri"]
