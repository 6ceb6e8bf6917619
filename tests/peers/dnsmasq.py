"""dnsmasq (Debian's dnsmasq-base) as a real DNS server on a free loopback port, serving
the NAPTR, SRV, A and CNAME records a test gives it for ``*.voicegw.test`` and NXDOMAIN
for every other name there (``--local``); it forwards nothing."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from .net import free_port
from .procs import stop

DNSMASQ = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists() else None)
DOMAIN = "voicegw.test"


class Dnsmasq:
    """``records``: dnsmasq options without the leading dashes, e.g.
    ``"srv-host=_sip._udp.a.voicegw.test,gw1.voicegw.test,5071,10,50"``."""

    def __init__(self, workdir: Path, records: list[str], ttl: int = 60) -> None:
        self.port = free_port()
        self.log = workdir / "dnsmasq.log"
        self.args = [
            DNSMASQ or "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={self.port}",
            f"--local=/{DOMAIN}/", f"--local-ttl={ttl}", "--log-queries", f"--log-facility={self.log}",
            f"--pid-file={workdir / 'dnsmasq.pid'}", "--user=root",
            *(f"--{record}" for record in records),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 5.0) -> Dnsmasq:
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # up when a UDP query gets any answer
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.proc.stdout.read().decode()}")  # type: ignore[union-attr]
            if _answers(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("dnsmasq did not answer")

    def queries(self) -> list[str]:
        """The questions it was asked, in order (from its query log)."""
        if not self.log.exists():
            return []
        return [line.split("query[", 1)[1] for line in self.log.read_text().splitlines() if "query[" in line]

    def stop(self) -> None:
        stop(self.proc, 5.0)


def _answers(port: int) -> bool:
    # a minimal query for "x.voicegw.test" A: any response means the server is up
    query = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x01x\x07voicegw\x04test\x00\x00\x01\x00\x01")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(query, ("127.0.0.1", port))
            return sock.recv(512)[:2] == b"\x12\x34"
        except OSError:
            return False
