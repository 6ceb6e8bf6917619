"""Keep-alives toward a profile's peer, decided without I/O (issue 12 item 3).

A peer behind a NAT (or voicegw behind one) loses the binding its calls come back on
when nothing crosses it for a while; a keep-alive every ``interval`` seconds holds it
open. What is sent depends on the transport:

- TCP and TLS: the double-CRLF ping of RFC 5626 3.5.1 on the connection to the peer
  (opened if there is none): the peer's stack answers a single CRLF (4.4.1) and needs
  no SIP transaction; a ping is failed when the connection is gone by ``timeout``;
- UDP: an OPTIONS (RFC 3261 11) - a CRLF datagram would keep the NAT binding but says
  nothing back; any final answer within ``timeout`` is a success, none (or an ICMP
  error, a transport failure) is a failure.

A failing keep-alive is logged, once per run of failures (and its end once), never
per ping: voicegw/keepalives.py does the I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .digest_client import Account

CRLF_PING = b"\r\n\r\n"
"""RFC 5626 3.5.1: the client's ping on a connection-oriented flow."""


class Kind(enum.Enum):
    CRLF = "crlf"
    OPTIONS = "options"


def kind_for(transport: str) -> Kind:
    """CRLF on a connection (TCP, TLS), OPTIONS on UDP."""
    return Kind.OPTIONS if transport == "udp" else Kind.CRLF


@dataclass(frozen=True, slots=True)
class KeepaliveConfig:
    """A profile's ``keepalive:`` with where it goes."""

    profile: str
    target: str
    """A ``sip:``/``sips:`` URI: the OPTIONS Request-URI, and the peer's address."""
    transport: str = "udp"
    interval: float = 30.0
    timeout: float = 5.0
    account: Account | None = field(default=None, repr=False)
    """The profile's ``auth``: a challenged OPTIONS is sent again with credentials."""


class Report(enum.Enum):
    NONE = "none"
    FAILING = "failing"  # the first failure of a run: log it
    RECOVERED = "recovered"  # the first success after failures: log it


@dataclass(slots=True)
class KeepaliveState:
    """One target's run of outcomes: what to log (a failure run once, its end once)."""

    failing: bool = False
    failures: int = 0

    def answered(self) -> Report:
        was = self.failing
        self.failing, self.failures = False, 0
        return Report.RECOVERED if was else Report.NONE

    def failed(self) -> Report:
        self.failures += 1
        if self.failing:
            return Report.NONE
        self.failing = True
        return Report.FAILING


__all__ = ["CRLF_PING", "KeepaliveConfig", "KeepaliveState", "Kind", "Report", "kind_for"]
