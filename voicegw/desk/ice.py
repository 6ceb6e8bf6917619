"""ICE host candidates on the configured address only.

aioice (aiortc's ICE) gathers a host candidate on every local address but 127.0.0.1 and
has no option to choose them; the desk must offer the address the config names (the
one agents reach, loopback in a lab), so the gatherer's address function is replaced
for this process. No STUN or TURN server is used: the service passes
``RTCConfiguration(iceServers=[])`` (aiortc's default would ask Google's STUN server).
"""

from __future__ import annotations

import aioice.ice


def use_host_address(host: str) -> None:
    """Every RTCPeerConnection of this process gathers one host candidate, on ``host``."""

    def addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [host] if (":" in host and use_ipv6) or (":" not in host and use_ipv4) else []

    aioice.ice.get_host_addresses = addresses


__all__ = ["use_host_address"]
