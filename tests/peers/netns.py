"""Network namespaces a test makes for itself: voicegw on a private network behind a
MASQUERADE router, its peers on the public side (tests/wire/test_nat_netns_wire.py).

::

    [ private: voicegw 10.77.1.2 ] --veth-- [ router: 10.77.1.1 | 10.77.2.1 ] --veth-- [ public: 10.77.2.2, .3 ]

The router forwards, MASQUERADEs what leaves on the public side, and forwards voicegw's
SIP port and RTP range to it (DNAT), as an operator's NAT with port forwards would. The
public side has no route to 10.77.1.0/24: an address voicegw advertises wrongly (its
private one) is unreachable there, as behind a real NAT.

Everything is made with ``ip`` and ``iptables`` (scripts/bootstrap installs iproute2
and iptables); :meth:`NatNet.close` deletes the namespaces, which takes their links
and rules along. Sockets are opened inside a namespace by switching the calling
thread's network namespace (setns(2)) for the moment they are created: a socket stays
in the namespace it was made in.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
PRIVATE_NET, PUBLIC_NET = "10.77.1", "10.77.2"
VOICEGW = f"{PRIVATE_NET}.2"
ROUTER_PRIVATE, ROUTER_PUBLIC = f"{PRIVATE_NET}.1", f"{PUBLIC_NET}.1"
CALLER, AGENT = f"{PUBLIC_NET}.2", f"{PUBLIC_NET}.3"


def unavailable() -> str | None:
    """Why namespaces cannot be made here (for a skip), or None."""
    if shutil.which("ip") is None or shutil.which("iptables") is None:
        return "ip or iptables missing: run scripts/bootstrap"
    probe = f"vgprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"network namespaces not permitted: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


class NatNet:
    """Three namespaces named after this process (several test runs never share one)."""

    def __init__(self, sip_port: int, rtp_ports: tuple[int, int]) -> None:
        tag = f"vg{os.getpid()}"
        self.private, self.router, self.public = f"{tag}priv", f"{tag}rtr", f"{tag}pub"
        self.sip_port, self.rtp_ports = sip_port, rtp_ports
        self.made: list[str] = []

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def run(self, ns: str, *cmd: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True, text=True)

    def open(self) -> NatNet:
        for ns in (self.private, self.router, self.public):
            self._ip("netns", "add", ns)
            self.made.append(ns)
            self.run(ns, "ip", "link", "set", "lo", "up")
        self._ip("link", "add", "vpriv", "netns", self.private, "type", "veth", "peer", "name", "rin", "netns",
                 self.router)
        self._ip("link", "add", "rout", "netns", self.router, "type", "veth", "peer", "name", "vpub", "netns",
                 self.public)
        for ns, dev, addresses in ((self.private, "vpriv", (VOICEGW,)),
                                   (self.router, "rin", (ROUTER_PRIVATE,)),
                                   (self.router, "rout", (ROUTER_PUBLIC,)),
                                   (self.public, "vpub", (CALLER, AGENT))):
            for address in addresses:
                self.run(ns, "ip", "addr", "add", f"{address}/24", "dev", dev)
            self.run(ns, "ip", "link", "set", dev, "up")
        self.run(self.private, "ip", "route", "add", "default", "via", ROUTER_PRIVATE)
        self.run(self.router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        low, high = self.rtp_ports
        nat = ("ip", "netns", "exec", self.router, "iptables", "-t", "nat", "-A")
        for ports in (str(self.sip_port), f"{low}:{high + 1}"):  # RTP and RTCP
            subprocess.run([*nat, "PREROUTING", "-i", "rout", "-p", "udp", "-d", ROUTER_PUBLIC, "--dport", ports,
                            "-j", "DNAT", "--to-destination", VOICEGW], check=True, capture_output=True)
        subprocess.run([*nat, "POSTROUTING", "-o", "rout", "-j", "MASQUERADE"], check=True, capture_output=True)
        return self

    def close(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.made.clear()

    def __enter__(self) -> NatNet:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def inside(self, ns: str) -> Iterator[None]:
        """Sockets made in this block belong to ``ns`` (this thread only, meanwhile)."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]
