"""A real rtpengine (Debian's rtpengine-daemon) in userspace on loopback, for one test
or one benchmark trial (scripts/bench/rtp_relay.py imports this module: one place starts it).

``--table=-1``: no kernel module, every packet in userspace. Its own ng port, DTMF log
destination and RTP port range (leased, peers/ports.py; a bench may name its own range),
``--foreground``, its log in the given directory; stopped by its PID.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from voicegw.media.rtpengine_ng import NgClient, NgError

from .ports import HOST, free_block, free_port
from .procs import stop

RTPENGINE = shutil.which("rtpengine") or "/usr/bin/rtpengine"


class Rtpengine:
    def __init__(self, workdir: Path, ports: int = 200, *,
                 port_range: tuple[int, int] | None = None, threads: int = 1, log_level: int = 6,
                 binary: str = RTPENGINE) -> None:
        """``ports`` RTP ports leased for it, or ``port_range`` (first, last) as given."""
        self.ng = (HOST, free_port())
        self.dtmf = (HOST, free_port())
        if port_range is None:
            low = free_block(ports)
            port_range = (low, low + ports - 1)
        self.port_min, self.port_max = port_range
        self.log_path = workdir / "rtpengine.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [binary, "--table=-1", f"--interface={HOST}",
             f"--listen-ng={self.ng[0]}:{self.ng[1]}",
             f"--dtmf-log-dest={self.dtmf[0]}:{self.dtmf[1]}",
             f"--port-min={self.port_min}", f"--port-max={self.port_max}",
             "--foreground", "--log-stderr", "-L", str(log_level), f"--num-threads={threads}",
             f"--pidfile={workdir / 'rtpengine.pid'}"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, seconds: float = 30.0) -> None:
        # bounded generously: on a loaded box (load 12 on 2 cores) it once took over 10 s
        with NgClient(self.ng, timeout=0.5, retransmit=0.1) as client:
            deadline = time.monotonic() + seconds
            while True:
                try:
                    client.ping()
                    return
                except (NgError, TimeoutError):
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"rtpengine did not start: {self.log()[-2000:]}")
                    time.sleep(0.1)

    def log(self) -> str:
        if not self._log.closed:  # stopped: the file has it all
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop(self.proc)
        self._log.close()
