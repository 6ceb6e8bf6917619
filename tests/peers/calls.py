"""Call-level fixtures for the B2BUA wire tests: the daemon, sipp peers, a raw caller.

Builds on tests/peers (DaemonProcess, the leased ports of ports.py, the UDP helpers).
Everything here runs on 127.0.0.1, on leased ports (peers/ports.py); every process
started here is stopped by :class:`CallLab` (sipp peers first, then the daemon), and
every wait has a deadline.

- :class:`SippPeer`: one sipp process (caller or bot) with ``-trace_msg``; after it
  exits, :meth:`SippPeer.messages` reads what crossed the wire from its message log.
- :class:`RawCaller`: a caller written in Python (SIP over UDP plus its own RTP
  socket) for the tests that must look at RTP packets themselves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import yaml

from peers.daemon import DaemonProcess, wait_until
from peers.net import recv_any, udp_socket
from peers.ports import free_block, free_port, udp_free

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP = shutil.which("sipp")
HOST = "127.0.0.1"


# --------------------------------------------------------------------------- messages
@dataclass
class SipMessage:
    first_line: str
    headers: list[tuple[str, str]]
    body: bytes
    direction: str = ""
    """For traced messages: "in" (received by the peer) or "out" (sent by it)."""

    @classmethod
    def parse(cls, data: bytes, direction: str = "") -> SipMessage:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return cls(lines[0].strip(), headers, body, direction)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    @property
    def status(self) -> int | None:
        """The status of a response, None for a request."""
        if self.first_line.startswith("SIP/2.0 "):
            return int(self.first_line.split(" ", 2)[1])
        return None

    @property
    def method(self) -> str:
        """The request's method, or the CSeq method of a response."""
        if self.status is None:
            return self.first_line.split(" ", 1)[0]
        return (self.header("cseq") or " ").split()[-1]

    @property
    def branch(self) -> str | None:
        match = re.search(r";\s*branch=([^;,\s]+)", self.header("via") or "")
        return match.group(1) if match else None

    def tag(self, name: str) -> str | None:
        match = re.search(r";\s*tag=([^;,\s>]+)", self.header(name) or "")
        return match.group(1) if match else None

    def describe(self) -> str:
        """"in INVITE" / "out 200 INVITE": what a test compares sequences of."""
        if self.status is None:
            return f"{self.direction} {self.method}"
        return f"{self.direction} {self.status} {self.method}"


def sdp_media(body: bytes) -> tuple[str, int, list[int], str]:
    """(connection address, audio port, payload types, direction) of an SDP body."""
    text = body.decode("utf-8", "replace")
    host = re.search(r"^c=IN IP4 (\S+)", text, re.MULTILINE)
    media = re.search(r"^m=audio (\d+) RTP/AVP([ \d]*)", text, re.MULTILINE)
    direction = re.search(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", text, re.MULTILINE)
    if host is None or media is None:
        raise ValueError(f"no audio stream in SDP: {text!r}")
    return (host.group(1), int(media.group(1)), [int(p) for p in media.group(2).split()],
            direction.group(1) if direction else "sendrecv")


def read_sipp_messages(path: Path) -> list[SipMessage]:
    """The messages of a sipp ``-trace_msg`` file, in order, with their direction."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    out = []
    for block in re.split(r"^-{20,} [^\n]*\n", text, flags=re.MULTILINE)[1:]:
        info, _, raw = block.partition("\n")
        if " message received " in info:
            direction = "in"
        elif " message sent " in info:
            direction = "out"
        else:
            continue
        raw = raw.strip("\n")
        if not raw:
            continue
        # sipp logs its messages with LF or CRLF line ends depending on direction
        data = raw.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        if b"\r\n\r\n" not in data:
            data += b"\r\n\r\n"
        out.append(SipMessage.parse(data, direction))
    return out


def render_scenario(name: str, dest: Path, **values: object) -> Path:
    """Copy scenario ``name`` to ``dest`` with each ``@KEY@`` replaced by its value
    (for the places where sipp substitutes no keyword, e.g. ``recv response``)."""
    text = (SCENARIOS / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key.upper()}@", str(value))
    if re.search(r"@[A-Z_]+@", text):
        raise ValueError(f"{name}: unreplaced placeholder in {re.findall(r'@[A-Z_]+@', text)}")
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- sipp
class SippPeer:
    """One sipp process on 127.0.0.1, started by :meth:`start`, stopped by the lab."""

    def __init__(self, name: str, scenario: Path | str, workdir: Path, *, port: int | None = None,
                 remote: tuple[str, int] | None = None, calls: int = 1,
                 media_port: int | None = None, rtp_echo: bool = False,
                 keys: dict[str, str] | None = None, timeout: float = 30.0,
                 extra: tuple[str, ...] = (), host: str = HOST) -> None:
        if SIPP is None:
            raise RuntimeError("sipp is not installed: run scripts/bootstrap")
        self.name = name
        self.host = host
        """The address sipp binds (another 127.0.0.0/8 one: a call from another source)."""
        self.port = port or free_port(host)
        self.media_port = media_port or free_block(4)
        self.workdir = workdir
        self.message_file = workdir / f"{name}_messages.log"
        self.error_file = workdir / f"{name}_errors.log"
        self.cmd = [
            SIPP, *([f"{remote[0]}:{remote[1]}"] if remote else []),
            # a file, or the name of one of sipp's built-in scenarios ("uas")
            *(["-sf", str(scenario)] if isinstance(scenario, Path) else ["-sn", scenario]),
            "-i", host, "-p", str(self.port),
            "-mp", str(self.media_port), "-m", str(calls), "-nostdin",
            "-timeout", f"{int(timeout)}s", "-timeout_error",
            "-trace_msg", "-message_file", str(self.message_file),
            "-trace_err", "-error_file", str(self.error_file),
            *(["-rtp_echo"] if rtp_echo else []),
            *[arg for key, value in (keys or {}).items() for arg in ("-key", key, str(value))],
            *extra,
        ]
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""

    def start(self) -> SippPeer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        # listening once its SIP port is taken (or it died: wait() tells)
        wait_until(lambda: not udp_free(self.port, self.host) or self.proc.poll() is not None, 5.0, 0.01)
        if self.proc.poll() is not None:  # e.g. a scenario sipp refuses
            self.output = self.proc.communicate(timeout=5)[0]
            raise RuntimeError(f"sipp {self.name} exited at start:\n{self.report()}")
        return self

    def wait(self, timeout: float | None = None) -> int:
        """The exit code (0: every call successful); killed after ``timeout``."""
        assert self.proc is not None
        try:
            self.output, _ = self.proc.communicate(timeout=timeout or self.timeout + 10)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"sipp {self.name} did not finish:\n{self.report()}") from None
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.output, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.output, _ = self.proc.communicate(timeout=5)

    def messages(self) -> list[SipMessage]:
        return read_sipp_messages(self.message_file)

    def flow(self) -> list[str]:
        """What crossed the wire, as "in INVITE", "out 180 INVITE", ..."""
        return [m.describe() for m in self.messages()]

    def report(self) -> str:
        errors = self.error_file.read_text(errors="replace") if self.error_file.exists() else ""
        return (f"--- sipp {self.name}: {' '.join(self.cmd)}\n{self.output[-1500:]}\n"
                f"--- errors\n{errors[-1500:]}\n--- flow {self.flow()}")


# --------------------------------------------------------------------------- the lab
@dataclass
class CallLab:
    """A daemon plus its peers for one test; ``with CallLab(tmp_path) as lab``."""

    workdir: Path
    daemon: DaemonProcess | None = None
    peers: list[SippPeer] = field(default_factory=list)
    callers: list[RawCaller] = field(default_factory=list)
    bot_port: int | None = None

    def start_voicegw(self, *, bot: bool = True, calls: dict[str, object] | None = None,
                      rtp_ports: int = 40, media: dict[str, object] | None = None) -> DaemonProcess:
        """``voicegw run`` on a free port with its own RTP range; with ``bot`` its
        --bot-uri points at :attr:`bot_port` (where :meth:`bot` listens)."""
        low = free_block(rtp_ports)
        args = ["--rtp-ports", f"{low}-{low + rtp_ports - 1}"]
        if bot:
            self.bot_port = free_port(HOST)
            args += ["--bot-uri", f"sip:bot@{HOST}:{self.bot_port}"]
        # no control API: it listens on a fixed port that another daemon may hold
        config: dict[str, object] = {"api": {"enabled": False}}
        if calls:
            config["calls"] = calls
        if media:
            config["media"] = media
        path = self.workdir / "voicegw.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        args += ["--config", str(path)]
        self.daemon = DaemonProcess(HOST, None, *args).start()
        return self.daemon

    def bot(self, scenario: str | Path, **kwargs: object) -> SippPeer:
        """A sipp bot (UAS) on the port voicegw dials."""
        assert self.bot_port is not None, "start_voicegw(bot=True) first"
        path = scenario if isinstance(scenario, Path) else SCENARIOS / scenario
        peer = SippPeer("bot", path, self.workdir, port=self.bot_port, **kwargs)  # type: ignore[arg-type]
        self.peers.append(peer)
        return peer.start()

    def caller(self, scenario: str | Path, **kwargs: object) -> SippPeer:
        """A sipp caller (UAC) towards the daemon."""
        assert self.daemon is not None
        path = scenario if isinstance(scenario, Path) else SCENARIOS / scenario
        peer = SippPeer("caller", path, self.workdir, remote=self.daemon.address, **kwargs)  # type: ignore[arg-type]
        self.peers.append(peer)
        return peer.start()

    def raw_caller(self) -> RawCaller:
        assert self.daemon is not None
        caller = RawCaller(self.daemon.address)
        self.callers.append(caller)
        return caller

    def events(self, name: str) -> list[dict]:
        assert self.daemon is not None
        return [e for e in self.daemon.events() if e.get("event") == name]

    def report(self) -> str:
        parts = [peer.report() for peer in self.peers]
        if self.daemon is not None:
            parts.append("--- voicegw log (last 30 lines)\n" + "\n".join(self.daemon.lines[-30:]))
        return "\n".join(parts)

    def __enter__(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        for caller in self.callers:
            caller.close()
        for peer in self.peers:
            peer.stop()
        if self.daemon is not None and self.daemon.running():
            try:
                self.daemon.terminate()
            finally:
                self.daemon.kill()


# --------------------------------------------------------------------------- raw caller
def caller_sdp(rtp_port: int, direction: str = "sendrecv", version: int = 1,
               telephone_event: int | None = 101) -> bytes:
    lines = [
        "v=0", f"o=test 4242 {version} IN IP4 {HOST}", "s=-", f"c=IN IP4 {HOST}", "t=0 0",
        f"m=audio {rtp_port} RTP/AVP 0" + (f" {telephone_event}" if telephone_event else ""),
        "a=rtpmap:0 PCMU/8000",
    ]
    if telephone_event:
        lines += [f"a=rtpmap:{telephone_event} telephone-event/8000", f"a=fmtp:{telephone_event} 0-15"]
    lines += ["a=ptime:20", f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()


class RawCaller:
    """A caller over raw UDP: its own SIP socket and RTP socket on 127.0.0.1."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sip = udp_socket(HOST)
        self.rtp = udp_socket(HOST, free_block(2))
        self.local = self.sip.getsockname()
        self.call_id = f"{uuid.uuid4().hex}@{HOST}"
        self.from_tag = uuid.uuid4().hex[:10]
        self.cseq = 0
        self.invite_branch = ""
        self.to_header = f"<sip:bot@{target[0]}:{target[1]}>"
        self.remote_target = f"sip:bot@{target[0]}:{target[1]}"
        self.received: list[SipMessage] = []

    @property
    def rtp_port(self) -> int:
        return self.rtp.getsockname()[1]

    def request(self, method: str, body: bytes = b"", cseq: int | None = None,
                branch: str | None = None, uri: str | None = None) -> str:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        branch = branch or f"z9hG4bK{uuid.uuid4().hex}"
        lines = [
            f"{method} {uri or self.remote_target} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local[0]}:{self.local[1]};branch={branch};rport",
            f"From: <sip:caller@{HOST}>;tag={self.from_tag}",
            f"To: {self.to_header}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:caller@{self.local[0]}:{self.local[1]}>",
            "Max-Forwards: 70",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        self.sip.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + body, self.target)
        return branch

    def invite(self, direction: str = "sendrecv") -> SipMessage:
        """INVITE with an SDP offer for :attr:`rtp`; the final response (ACKed if 2xx)."""
        self.invite_branch = self.request("INVITE", caller_sdp(self.rtp_port, direction))
        final = self.final_response("INVITE", timeout=10.0)
        if final.status is not None and final.status < 300:
            self.to_header = final.header("to") or self.to_header
            contact = re.search(r"<([^>]+)>", final.header("contact") or "")
            if contact:
                self.remote_target = contact.group(1)
            self.ack(final)
        return final

    def reinvite(self, direction: str, version: int) -> SipMessage:
        self.request("INVITE", caller_sdp(self.rtp_port, direction, version))
        final = self.final_response("INVITE", timeout=5.0)
        self.ack(final)
        return final

    def ack(self, final: SipMessage) -> None:
        seq = int((final.header("cseq") or "1").split()[0])
        self.request("ACK", cseq=seq)

    def bye(self) -> SipMessage:
        self.request("BYE")
        return self.final_response("BYE", timeout=5.0)

    def final_response(self, method: str, timeout: float) -> SipMessage:
        """The first final response to ``method`` within ``timeout`` (AssertionError if none)."""
        deadline = time.monotonic() + timeout
        while True:
            got = recv_any([self.sip], max(0.0, deadline - time.monotonic()))
            if got is None:
                raise AssertionError(f"no final response to {method} in {timeout} s; got "
                                     f"{[m.first_line for m in self.received]}")
            message = SipMessage.parse(got[0], "in")
            self.received.append(message)
            if message.status is not None and message.status >= 200 and message.method == method:
                return message

    def send_rtp(self, data: bytes, to: tuple[str, int]) -> None:
        self.rtp.sendto(data, to)

    def recv_rtp(self, timeout: float) -> bytes | None:
        got = recv_any([self.rtp], timeout)
        return got[0] if got else None

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()
