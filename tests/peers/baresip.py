"""baresip as a phone or an agent in wire tests: one headless baresip process per UA.

baresip 1.0 (Debian's baresip-core, installed by scripts/bootstrap) runs from a config
written here from ``templates/baresip/config.template``: a WAV file is its microphone
(``aufile``: silence, or a tone this module writes), the ``sndfile`` filter records what
it receives to ``<record_dir>/dump-*-dec.wav``, the ``aubridge`` player stands in for a
sound card, and ``ctrl_tcp`` is how a test drives it (JSON commands in netstrings:
``dial``, ``accept``, ``hangup``, ``quit``; call events come back the same way). With
``-s`` baresip prints every SIP message it sends and receives: :meth:`Baresip.sip`
reads them from its log, so tests assert on its side of the wire.

An incoming call is answered at once (``answermode="auto"``) or rings until the test
says (``manual``): :meth:`Baresip.accept` answers it, :meth:`Baresip.hangup` rejects it
(baresip answers a call it has not accepted ``486 Busy Here``) or ends it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import string
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

import numpy as np

from peers.calls import SipMessage, free_block
from peers.net import free_port
from voicegw.media.wav import write_wav

BARESIP = shutil.which("baresip")
TEMPLATES = Path(__file__).resolve().parent / "templates" / "baresip"
HOST = "127.0.0.1"
RATE = 8000
WAV_HEADER = 44


class BaresipControl:
    """baresip's ctrl_tcp: netstring-framed JSON commands, responses and events (read by
    a thread, so events are kept as they come)."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection((HOST, port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.sock.settimeout(None)
        self.events: list[dict] = []
        self.responses: dict[str, dict] = {}
        self._cond = threading.Condition()
        self._token = 0
        self._reader = threading.Thread(target=self._read, name=f"baresip-ctrl-{port}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self.events.append({"type": "CTRL_CLOSED"})
                    self._cond.notify_all()
                return
            buffer += chunk
            while True:
                head, colon, rest = buffer.partition(b":")
                if not colon or not head.isdigit() or len(rest) <= int(head):
                    break
                body, buffer = rest[: int(head)], rest[int(head) + 1:]
                message = json.loads(body)
                with self._cond:
                    if message.get("event"):
                        self.events.append(message)
                    elif message.get("response"):
                        self.responses[str(message.get("token"))] = message
                    self._cond.notify_all()

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict:
        with self._cond:
            self._token += 1
            token = str(self._token)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))
        with self._cond:
            if not self._cond.wait_for(lambda: token in self.responses, timeout):
                raise TimeoutError(f"baresip did not answer {command!r}")
            return self.responses.pop(token)

    def wait_event(self, kind: str, timeout: float) -> dict | None:
        with self._cond:
            self._cond.wait_for(lambda: any(e.get("type") == kind for e in self.events), timeout)
            return next((e for e in self.events if e.get("type") == kind), None)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._reader.join(2)


def tone_file(path: Path, hz: float | None, seconds: float) -> Path:
    """The microphone: ``seconds`` of a ``hz`` sine at a moderate level (silence if None)."""
    t = np.arange(int(seconds * RATE)) / RATE
    samples = np.zeros_like(t) if hz is None else 8000 * np.sin(2 * np.pi * hz * t)
    write_wav(path, samples.astype(np.int16), RATE)
    return path


# "baresip -s" prints each message after a line "UDP 127.0.0.1:5060 -> 127.0.0.1:5070"
_HOP = re.compile(r"^(?:UDP|TCP|TLS) [\d.]+:(\d+) -> [\d.]+:(\d+)$")
_START = re.compile(r"^(?:[A-Z]+ \S+ SIP/2\.0|SIP/2\.0 \d{3} .*)$")


class Baresip:
    """One baresip process on free loopback ports; ``with Baresip(workdir) as ua``."""

    def __init__(self, workdir: Path, name: str = "baresip", *, user: str = "agent",
                 answermode: str = "manual", tone_hz: float | None = None, max_life: int = 90) -> None:
        if BARESIP is None:
            raise RuntimeError("baresip is not installed: run scripts/bootstrap")
        self.dir = Path(workdir) / name
        self.name = name
        self.user = user
        self.answermode = answermode
        self.tone_hz = tone_hz
        self.max_life = max_life
        self.sip_port = free_port(HOST)
        self.ctrl_port = free_port(HOST)
        self.record_dir = self.dir / "recordings"
        self.log_path = self.dir / "baresip.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.control: BaresipControl | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{HOST}:{self.sip_port}"

    def start(self) -> Self:
        self.record_dir.mkdir(parents=True, exist_ok=True)
        rtp = free_block(20)
        fields = {"sip_port": self.sip_port, "ctrl_port": self.ctrl_port,
                  "source_wav": tone_file(self.dir / "microphone.wav", self.tone_hz, self.max_life + 10),
                  "record_dir": self.record_dir, "rtp_min": rtp, "rtp_max": rtp + 19}
        config = string.Template((TEMPLATES / "config.template").read_text()).substitute(fields)
        (self.dir / "config").write_text(config)
        # one UA, no REGISTER (regint=0)
        (self.dir / "accounts").write_text(
            f"<sip:{self.user}@{HOST}:{self.sip_port}>;regint=0;answermode={self.answermode}\n")
        with self.log_path.open("wb") as log:
            # -t: baresip quits by itself after max_life seconds whatever happens to the test
            self.proc = subprocess.Popen([BARESIP, "-f", str(self.dir), "-s", "-t", str(self.max_life)],
                                         cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.control = BaresipControl(self.ctrl_port)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self, command: str, params: str = "") -> dict:
        assert self.control is not None
        return self.control.command(command, params)

    def wait_event(self, kind: str, timeout: float = 10.0) -> dict | None:
        assert self.control is not None
        return self.control.wait_event(kind, timeout)

    def events(self) -> list[dict]:
        return list(self.control.events) if self.control is not None else []

    def accept(self) -> None:
        assert self.command("accept").get("ok"), self.report()

    def hangup(self) -> None:
        """Reject the ringing call (486) or hang up the established one."""
        assert self.command("hangup").get("ok"), self.report()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                if self.control is not None:
                    self.control.command("quit", timeout=2)
            except (OSError, TimeoutError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        if self.control is not None:
            self.control.close()
            self.control = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the wire
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def sip(self) -> list[SipMessage]:
        """The SIP messages of baresip's trace (-s), in order, "in" (baresip received
        it) or "out"; headers only (the trace's bodies are left out)."""
        out: list[SipMessage] = []
        lines = self.log().replace("\r\n", "\n").split("\n")
        i = 0
        while i < len(lines):
            hop = _HOP.match(lines[i - 1]) if i else None
            if hop is None or not _START.match(lines[i]):
                i += 1
                continue
            direction = "in" if int(hop.group(2)) == self.sip_port else "out"
            block = [lines[i]]
            i += 1
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            out.append(SipMessage.parse(("\r\n".join(block) + "\r\n\r\n").encode(), direction))
        return out

    def requests(self, method: str, direction: str = "in") -> list[SipMessage]:
        return [m for m in self.sip() if m.status is None and m.method == method and m.direction == direction]

    def flow(self) -> list[str]:
        return [m.describe() for m in self.sip()]

    # ------------------------------------------------------------------ audio
    def received_seconds(self) -> float:
        files = sorted(self.record_dir.glob("*-dec.wav"))
        return max(0, files[-1].stat().st_size - WAV_HEADER) / (2 * RATE) if files else 0.0

    def received(self, since: float = 0.0) -> np.ndarray:
        """What it received (int16 at 8 kHz), from ``since`` seconds into the recording."""
        files = sorted(self.record_dir.glob("*-dec.wav"))
        if not files:
            return np.zeros(0, dtype=np.int16)
        data = files[-1].read_bytes()[WAV_HEADER:]
        start = int(since * RATE) * 2
        data = data[start: len(data) // 2 * 2]
        return np.frombuffer(data, dtype="<i2").copy()

    def report(self) -> str:
        return (f"--- baresip {self.name} ({self.uri}) events {self.events()[-10:]}\n"
                f"--- log (last 3000 chars)\n{self.log()[-3000:]}")

