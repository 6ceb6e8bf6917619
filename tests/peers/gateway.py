"""A carrier gateway stand-in: a sipp UAS on one loopback address and port that answers
INVITEs and (``-aa``) OPTIONS, stopped and started again by the gateway tests, and
counting the INVITEs it logged over all its runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from peers.net import free_port
from peers.ports import free_block
from peers.sipp import SIPP


class SippGateway:
    def __init__(self, workdir: Path, name: str, request_line: str, *, host: str = "127.0.0.1",
                 port: int | None = None, timeout: str = "280s") -> None:
        self.workdir, self.name, self.host = workdir, name, host
        self.port = free_port() if port is None else port
        self.request_line = request_line
        """What each INVITE it counts starts with (``INVITE sip:... SIP/2.0``)."""
        self.timeout = timeout
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"udp:{self.host}:{self.port}"

    def start(self) -> SippGateway:
        assert SIPP is not None
        self.runs += 1
        media = free_block(4)  # sipp's -mp: RTP and RTCP, leased (peers/ports.py)
        self.proc = subprocess.Popen(
            [SIPP, "-p", str(self.port), "-i", self.host, "-mp", str(media), "-nostdin", "-sn", "uas", "-aa",
             "-trace_msg", "-message_file", str(self.workdir / f"{self.name}-{self.runs}.log"),
             "-timeout", self.timeout],
            cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def invites(self) -> int:
        return sum(log.read_text(errors="replace").count(self.request_line)
                   for log in self.workdir.glob(f"{self.name}-*.log"))
