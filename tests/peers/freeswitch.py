"""FreeSWITCH 1.10 as a peer of the wire tests (issue 11): one instance per test module.

Where the binary comes from, in the order scripts/peers/build-freeswitch uses:
``freeswitch`` on PATH, else the cached build
``$VOICEGW_PEERS_CACHE/freeswitch-1.10.12-<key>/`` (default /var/cache/voicegw/peers)
that scripts/bootstrap makes from ../shared/peers/freeswitch/. :data:`INSTALL` is None
when neither exists; test modules then skip with :data:`SKIP_REASON` (one message).

An instance (:class:`FreeSwitch`) runs from its own temporary directory: a copy of the
shipped test configuration (../shared/peers/freeswitch/conf, or the copy the build
installed as <prefix>/conf) with the test extensions of
``templates/freeswitch/extensions.xml`` added to the ``test`` context, its own log, db,
run and temp directories, and free loopback ports for SIP, RTP and the event socket,
handed over through the config's environment overrides (FS_SIP_PORT, FS_RTP_START, ...).
The SIP trace is on (``FS_SIP_TRACE=yes``): :meth:`FreeSwitch.sip_messages` reads what
FreeSWITCH received and sent from its log, so tests assert on its side of the wire too.
Checks go through the event socket (:class:`EventSocket`, the protocol fs_cli speaks).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from peers.calls import SipMessage, free_block
from peers.net import free_port
from peers.pbx import tone_frame

VERSION = "1.10.12"
HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = Path(__file__).resolve().parent / "templates" / "freeswitch"
SKIP_REASON = (
    "FreeSWITCH not available: no freeswitch on PATH, no cached build in "
    "/var/cache/voicegw/peers and no ../shared/peers/freeswitch to build one from "
    "(run scripts/bootstrap)"
)


# --------------------------------------------------------------------------- finding it
@dataclass(frozen=True)
class Install:
    binary: Path
    conf: Path
    """The shipped test configuration (copied for each instance, never changed)."""


def _shared_dir() -> Path:
    """../shared beside the repository (a git worktree finds the one beside its main
    checkout, as scripts/peers/shared-dir does)."""
    if os.environ.get("VOICEGW_SHARED"):
        return Path(os.environ["VOICEGW_SHARED"])
    if (ROOT.parent / "shared").is_dir():
        return ROOT.parent / "shared"
    try:
        common = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute",
                                 "--git-common-dir"], check=False, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ROOT.parent / "shared"
    candidate = Path(common.stdout.strip()).parent.parent / "shared"
    return candidate if common.returncode == 0 and candidate.is_dir() else ROOT.parent / "shared"


def _cache_dirs() -> list[Path]:
    if os.environ.get("VOICEGW_PEERS_CACHE"):
        return [Path(os.environ["VOICEGW_PEERS_CACHE"])]
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return [Path("/var/cache/voicegw/peers"), home / "voicegw" / "peers"]


def locate() -> Install | None:
    shipped = _shared_dir() / "peers" / "freeswitch" / "conf"
    on_path = shutil.which("freeswitch")
    builds = sorted((p for d in _cache_dirs() for p in d.glob(f"freeswitch-{VERSION}-*")
                     if (p / ".complete").is_file() and (p / "bin" / "freeswitch").is_file()),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    binary = Path(on_path) if on_path else (builds[0] / "bin" / "freeswitch" if builds else None)
    if binary is None:
        return None
    for conf in (shipped, *(b / "conf" for b in builds)):
        if (conf / "dialplan" / "test.xml").is_file():
            return Install(binary, conf)
    return None


INSTALL = locate()


# --------------------------------------------------------------------------- event socket
class EventSocket:
    """An inbound event-socket connection (what fs_cli uses): ``api`` commands and their
    replies. Plain text frames: headers, a blank line, then Content-Length bytes."""

    def __init__(self, port: int, password: str = "ClueCon", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buffer = b""
        headers, _ = self._frame()
        if headers.get("Content-Type") != "auth/request":
            raise ConnectionError(f"event socket: expected auth/request, got {headers}")
        self.sock.sendall(f"auth {password}\n\n".encode())
        headers, _ = self._frame()
        if not headers.get("Reply-Text", "").startswith("+OK"):
            raise ConnectionError(f"event socket: auth refused: {headers}")

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("event socket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _frame(self) -> tuple[dict[str, str], str]:
        while b"\n\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("event socket closed")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\n\n", 1)
        headers = dict(line.split(": ", 1) for line in head.decode().splitlines() if ": " in line)
        body = self._read(int(headers.get("Content-Length", "0"))).decode("utf-8", "replace")
        return headers, body

    def api(self, command: str) -> str:
        """``api COMMAND``: the command's output (e.g. ``+OK ...`` or ``-ERR ...``)."""
        self.sock.sendall(f"api {command}\n\n".encode())
        while True:
            headers, body = self._frame()
            if headers.get("Content-Type") == "api/response":
                return body

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- the instance
_TRACE_HEAD = re.compile(r"^(recv|send) \d+ bytes (from|to) \w+/\[[^\]]+\]:\d+ at [\d:.]+:$")


def parse_trace(text: str) -> list[SipMessage]:
    """The SIP messages of a FreeSWITCH log with ``sip-trace`` on: each is a line
    ``recv|send N bytes from|to udp/[ip]:port at T:``, a line of dashes, then the message
    with LF line ends (its body as long as its Content-Length says)."""
    lines = text.split("\n")
    out: list[SipMessage] = []
    i = 0
    while i < len(lines):
        head = _TRACE_HEAD.match(lines[i])
        if head is None or i + 1 >= len(lines) or not lines[i + 1].startswith("-" * 20):
            i += 1
            continue
        j, header_lines = i + 2, []
        while j < len(lines) and lines[j].rstrip("\r"):
            header_lines.append(lines[j].rstrip("\r"))
            j += 1
        length = next((int(v.strip()) for n, _, v in (h.partition(":") for h in header_lines)
                       if n.strip().lower() in ("content-length", "l") and v.strip().isdigit()), 0)
        j += 1
        body = b""
        while len(body) < length and j < len(lines):
            body += (lines[j].rstrip("\r") + "\r\n").encode()
            j += 1
        data = "\r\n".join(header_lines).encode() + b"\r\n\r\n" + body[:length]
        out.append(SipMessage.parse(data, "in" if head.group(1) == "recv" else "out"))
        i = j
    return out


class FreeSwitch:
    """One FreeSWITCH process on free loopback ports, from a temporary directory."""

    def __init__(self, install: Install, workdir: Path) -> None:
        self.install = install
        self.workdir = workdir
        self.sip_port = free_port(HOST)
        self.esl_port = free_port(HOST)
        self.rtp_start = free_block(40, reserve=True)  # bound only when calls need them
        self.proc: subprocess.Popen[bytes] | None = None
        self._esl: EventSocket | None = None
        self.log_file = workdir / "log" / "freeswitch.log"
        self.console_file = workdir / "console.log"
        self.since = 0
        """Where the current test's part of the log starts (set by the conftest fixture)."""

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.sip_port

    def uri(self, user: str) -> str:
        """A number of the test dialplan, e.g. ``echo``, ``tone-440``, ``bridge-5080``."""
        return f"sip:{user}@{HOST}:{self.sip_port}"

    # ------------------------------------------------------------------ lifecycle
    def _write_config(self) -> Path:
        conf = self.workdir / "conf"
        shutil.copytree(self.install.conf, conf)
        dialplan = conf / "dialplan" / "test.xml"
        text = dialplan.read_text(encoding="utf-8")
        marker = '<extension name="not_found">'
        if marker not in text:
            raise RuntimeError(f"{dialplan}: no {marker} to put the test extensions before")
        extra = (TEMPLATES / "extensions.xml").read_text(encoding="utf-8")
        dialplan.write_text(text.replace(marker, extra + "\n    " + marker), encoding="utf-8")
        return conf

    def start(self, timeout: float = 60.0) -> FreeSwitch:
        conf = self._write_config()
        dirs = {name: self.workdir / name for name in ("log", "db", "run", "temp")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, FS_IP=HOST, FS_SIP_PORT=str(self.sip_port), FS_ESL_PORT=str(self.esl_port),
                   FS_RTP_START=str(self.rtp_start), FS_RTP_END=str(self.rtp_start + 39),
                   FS_LOGLEVEL="debug", FS_SIP_TRACE="yes")
        cmd = [str(self.install.binary), "-nonat", "-nonatmap", "-nc", "-nf", "-np", "-conf", str(conf),
               *[arg for name, path in dirs.items() for arg in (f"-{name}", str(path))]]
        with self.console_file.open("wb") as console:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=console, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"freeswitch exited with {self.proc.returncode}\n{self.report()}")
            if self._ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"freeswitch not ready after {timeout} s\n{self.report()}")

    def _ready(self) -> bool:
        try:
            if self._esl is None:
                self._esl = EventSocket(self.esl_port)
            return "is ready" in self.api("status") and re.search(
                r"\btest\s+profile\s+\S+\s+RUNNING", self.api("sofia status")) is not None
        except OSError:
            self._esl = None
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """``shutdown`` through the event socket, then SIGTERM, then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            if self._esl is not None:
                self._esl.sock.sendall(b"api fsctl shutdown\n\n")
        except OSError:
            pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout / 2 if sig is None else 5)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._esl is not None:
            self._esl.close()
            self._esl = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ checks
    def api(self, command: str) -> str:
        if self._esl is None:
            self._esl = EventSocket(self.esl_port)
        return self._esl.api(command)

    def channels(self) -> int:
        """How many channels FreeSWITCH has now (``show channels count``)."""
        match = re.search(r"(\d+) total", self.api("show channels count"))
        return int(match.group(1)) if match else -1

    def wait_channels(self, count: int = 0, timeout: float = 5.0) -> list[str]:
        """Wait until FreeSWITCH has ``count`` channels; the names of those it has then
        (empty when it got there)."""
        deadline = time.monotonic() + timeout
        while self.channels() != count and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.channels() == count:
            return []
        return re.findall(r"^[0-9a-f-]{36},[^,]*,[^,]*,[^,]*,([^,]+)", self.api("show channels"), re.MULTILINE)

    def mark(self) -> int:
        """The log's size now: pass it as ``since`` to look at what came after."""
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def log(self, since: int = 0) -> str:
        if not self.log_file.exists():
            return ""
        with self.log_file.open("rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace")

    def sip_messages(self, since: int = 0) -> list[SipMessage]:
        """What FreeSWITCH received ("in") and sent ("out") since the mark, in order,
        read from its SIP trace."""
        return parse_trace(self.log(since))

    def wait_sip(self, description: str, since: int = 0, timeout: float = 5.0) -> list[SipMessage]:
        """Wait until the trace since the mark holds ``description`` ("in 200 BYE",
        "out NOTIFY"...; its log trails the wire a little); the messages then."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.sip_messages(since)
            if description in [m.describe() for m in messages] or time.monotonic() >= deadline:
                return messages
            time.sleep(0.05)

    def report(self, since: int = 0, lines: int = 200) -> str:
        """The console output and the log since the mark (its last ``lines`` lines)."""
        console = self.console_file.read_text(errors="replace") if self.console_file.exists() else ""
        log = self.log(since).splitlines()[-lines:]
        return (f"--- freeswitch console ({self.console_file})\n{console[-3000:]}\n"
                f"--- freeswitch log with SIP trace ({self.log_file}), last {lines} lines\n"
                + "\n".join(log))


# --------------------------------------------------------------------------- audio
def tone(freq: float, count: int) -> list[bytes]:
    """``count`` 20 ms PCMU frames of a continuous ``freq`` Hz sine (peers.pbx.tone_frame)."""
    return [tone_frame(freq, index) for index in range(count)]


def talk(caller, payloads: list[bytes], tail: float = 0.5) -> list[bytes]:
    """Send ``payloads`` from ``caller`` (peers.caller.Caller) paced at 20 ms and collect
    every RTP packet it receives meanwhile and for ``tail`` seconds after."""
    received: list[bytes] = []
    start = time.monotonic()
    for index, payload in enumerate(payloads):
        caller.send_rtp(payload)
        caller.rtp_ts += 160
        received += caller.receive_rtp(max(0.0, start + (index + 1) * 0.02 - time.monotonic()))
    return received + caller.receive_rtp(tail)


def wait_request(caller, method: str, timeout: float = 10.0) -> bool:
    """Let ``caller`` (peers.caller.Caller) take in SIP and RTP until it got a ``method``
    request (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not caller.got_request(method) and time.monotonic() < deadline:
        caller.receive_rtp(0.2)
    return caller.got_request(method)
