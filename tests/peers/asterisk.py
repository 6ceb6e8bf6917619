"""Asterisk 22 as a real PBX in wire tests: one instance per test module.

Where it comes from, in the order scripts/peers/build-asterisk uses: ``asterisk`` on
PATH, else the cached build ``$VOICEGW_PEERS_CACHE/asterisk-22.10.1-<key>/`` (default
/var/cache/voicegw/peers) that scripts/bootstrap makes from ../shared/peers/asterisk/.
When there is none, :data:`INSTALL` is None and the tests skip with :data:`SKIP_REASON`.

An :class:`Asterisk` gets its own run directory (short, under /tmp: the control socket's
path must fit in 108 bytes), its config rendered from ``templates/asterisk/`` with free
ports (SIP on 127.0.0.1, an RTP range), and talks to voicegw on
:attr:`Asterisk.voicegw_port`, which the tests give the daemon they start (the
``voicegw`` endpoint is identified by that address). It runs in the foreground
(``asterisk -f``), is checked and driven through its own control socket
(``asterisk -C ... -rx``) and its AMI port (:meth:`Asterisk.originate`: this build has
no res_clioriginate), and logs everything to ``messages.log``, including the SIP
trace of res_pjsip_logger, which :meth:`Asterisk.sip` parses into messages: the tests
assert on what Asterisk sent and received. The ``asterisk`` fixture
(tests/conftest.py) starts and stops it and prints its log of a failed test.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from peers.calls import SipMessage, free_block
from peers.daemon import wait_until
from peers.net import free_port

VERSION = "22.10.1"
TEMPLATES = Path(__file__).resolve().parent / "templates" / "asterisk"
HOST = "127.0.0.1"
AGENT_PASSWORD = "agent-secret-7"
AMI_SECRET = "vgtest-ami-secret"


@dataclass(frozen=True)
class Install:
    prefix: Path
    binary: Path
    modules: Path


def _cache_dirs() -> list[Path]:
    if os.environ.get("VOICEGW_PEERS_CACHE"):
        return [Path(os.environ["VOICEGW_PEERS_CACHE"])]
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return [Path("/var/cache/voicegw/peers"), home / "voicegw" / "peers"]


def _install(prefix: Path) -> Install | None:
    binary = next((p for p in (prefix / "sbin" / "asterisk", prefix / "bin" / "asterisk") if p.is_file()), None)
    modules = next((p for p in (prefix / "lib" / "asterisk" / "modules",
                                prefix / "lib" / "x86_64-linux-gnu" / "asterisk" / "modules",
                                prefix / "lib64" / "asterisk" / "modules")
                    if (p / "chan_pjsip.so").is_file()), None)
    return Install(prefix, binary, modules) if binary is not None and modules is not None else None


def locate() -> Install | None:
    """The Asterisk the tests run, in scripts/peers/build-asterisk's order:
    $VOICEGW_ASTERISK_PREFIX, ``asterisk`` on PATH, the newest complete cached build.
    Nothing is built here (scripts/bootstrap does that)."""
    if os.environ.get("VOICEGW_ASTERISK_PREFIX"):
        return _install(Path(os.environ["VOICEGW_ASTERISK_PREFIX"]))
    on_path = shutil.which("asterisk")
    if on_path:
        return _install(Path(on_path).resolve().parent.parent)
    builds = sorted((p for d in _cache_dirs() for p in d.glob(f"asterisk-{VERSION}-*")
                     if (p / ".complete").is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((found for found in map(_install, builds) if found is not None), None)


INSTALL = locate()
SKIP_REASON = ("Asterisk not available: no asterisk on PATH, no cached build in /var/cache/voicegw/peers "
               "and no ../shared/peers/asterisk to build one from (run scripts/bootstrap)")

# res_pjsip_logger: "<--- Received SIP request (612 bytes) from UDP:127.0.0.1:5062 --->"
_TRACE = re.compile(r"<--- (Received|Transmitting) SIP (?:request|response) \(\d+ bytes\) "
                    r"(?:from|to) \w+:([\d.]+):(\d+) --->")
# a log entry starts with the date (logger.conf: dateformat = %F %T.%3q)
_ENTRY = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\] ", re.MULTILINE)


@dataclass
class Traced:
    """One SIP message in Asterisk's trace: ``direction`` "in" (Asterisk received it)
    or "out" (Asterisk sent it), and the address of the other side."""

    message: SipMessage
    direction: str
    peer: tuple[str, int]

    def describe(self) -> str:
        return f"{self.direction} {self.message.describe().split(' ', 1)[1]}"


class Asterisk:
    """One Asterisk process with its own config, ports and run directory."""

    def __init__(self, install: Install, voicegw_port: int | None = None, rtp_ports: int = 60) -> None:
        self.install = install
        self.run = Path(tempfile.mkdtemp(prefix="vg-ast-", dir="/tmp"))
        self.sip_port = free_port(HOST)
        self.voicegw_port = voicegw_port or free_port(HOST)
        self.rtp_start = free_block(rtp_ports, reserve=True)  # bound only when calls need them
        self.rtp_end = self.rtp_start + rtp_ports - 1
        self.agent_password = AGENT_PASSWORD
        self.ami_port = free_port(HOST)
        self.conf = self.run / "etc" / "asterisk.conf"
        self.log = self.run / "log" / "messages.log"
        self.console = self.run / "console.log"
        self.failed = False
        """Set by a test that failed: the run directory is kept for a look."""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.sip_port

    def uri(self, user: str) -> str:
        return f"sip:{user}@{HOST}:{self.sip_port}"

    # ------------------------------------------------------------------ life
    def _render(self) -> None:
        values = {
            "RUN": str(self.run), "MODULES": str(self.install.modules),
            "SBIN": str(self.install.binary.parent), "SIP_PORT": str(self.sip_port),
            "VOICEGW_PORT": str(self.voicegw_port), "RTP_START": str(self.rtp_start),
            "RTP_END": str(self.rtp_end), "AGENT_PASSWORD": self.agent_password,
            "AMI_PORT": str(self.ami_port), "AMI_SECRET": AMI_SECRET,
        }
        for sub in ("etc", "log", "run", "lib", "spool", "cache"):
            (self.run / sub).mkdir(parents=True, exist_ok=True)
        for template in sorted(TEMPLATES.glob("*.conf")):
            text = template.read_text(encoding="utf-8")
            for key, value in values.items():
                text = text.replace(f"@{key}@", value)
            left = re.findall(r"@[A-Z_]+@", text)
            if left:
                raise ValueError(f"{template.name}: unreplaced {left}")
            (self.run / "etc" / template.name).write_text(text, encoding="utf-8")

    def start(self, timeout: float = 120.0) -> Asterisk:
        self._render()
        with self.console.open("wb") as out:
            self._proc = subprocess.Popen(
                [str(self.install.binary), "-C", str(self.conf), "-f", "-n"],
                cwd=self.run, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        booted = wait_until(lambda: self._proc.poll() is not None or self._rx_ok("core waitfullybooted"),
                            timeout, 0.2)
        if not booted or self._proc.poll() is not None:
            self.failed = True
            report = self.report()
            self.stop()
            raise RuntimeError(f"Asterisk did not boot (run dir {self.run})\n{report}")
        return self

    def _rx_ok(self, command: str) -> bool:
        try:
            return self._rx(command, 10.0).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _rx(self, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.install.binary), "-C", str(self.conf), "-rx", command],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)

    def rx(self, command: str, timeout: float = 30.0) -> str:
        """A CLI command through this instance's control socket; its output."""
        done = self._rx(command, timeout)
        if done.returncode != 0 or done.stdout.startswith("No such command"):
            raise RuntimeError(f"asterisk -rx {command!r}: {done.returncode} {done.stderr}{done.stdout}")
        return done.stdout

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            try:
                self._rx("core stop now", 10.0)
            except subprocess.TimeoutExpired:
                pass
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if not self.failed:
            shutil.rmtree(self.run, ignore_errors=True)

    def __enter__(self) -> Asterisk:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ state
    def ami(self, action: str, timeout: float = 10.0, **fields: str) -> dict[str, str]:
        """One AMI action (login, the action, logoff on a fresh connection); the
        fields of its response (``Response: Success`` or ``Error`` and ``Message``)."""
        with socket.create_connection((HOST, self.ami_port), timeout=timeout) as sock:
            reader = sock.makefile("rb")
            reader.readline()  # "Asterisk Call Manager/x.y"

            def send(name: str, **values: str) -> dict[str, str]:
                lines = [f"Action: {name}", f"ActionID: vg-{name}", *(f"{k}: {v}" for k, v in values.items())]
                sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
                while True:  # events may come first; our answer carries our ActionID
                    block: dict[str, str] = {}
                    for raw in iter(reader.readline, b""):
                        line = raw.decode(errors="replace").rstrip("\r\n")
                        if not line:
                            break
                        key, _, value = line.partition(":")
                        block[key.strip()] = value.strip()
                    if not block:
                        raise ConnectionError(f"AMI closed during {name}")
                    if block.get("ActionID") == f"vg-{name}":
                        return block

            login = send("Login", Username="vgtest", Secret=AMI_SECRET, Events="off")
            if login.get("Response") != "Success":
                raise RuntimeError(f"AMI login refused: {login}")
            answer = send(action, **fields)
            send("Logoff")
            return answer

    def originate(self, endpoint: str, exten: str, context: str) -> None:
        """Asterisk places a call to ``endpoint`` (e.g. ``voicegw``) and, once it is
        answered, runs ``exten`` of ``context`` on that channel (AMI Originate)."""
        answer = self.ami("Originate", Channel=f"PJSIP/{endpoint}", Context=context, Exten=exten,
                          Priority="1", Async="true", Timeout="15000")
        if answer.get("Response") != "Success":
            raise RuntimeError(f"AMI Originate failed: {answer}")

    def hangup_all(self) -> None:
        self.rx("channel request hangup all")

    def channels(self) -> list[str]:
        """The names of the channels up now (``core show channels concise``)."""
        out = self.rx("core show channels concise")
        return [line.split("!", 1)[0] for line in out.splitlines() if "!" in line]

    def wait_channels(self, predicate, timeout: float = 20.0) -> list[str]:
        """Poll the channel list until ``predicate(names)`` holds; the last list seen
        (the caller asserts on it)."""
        seen: list[str] = []

        def check() -> bool:
            seen[:] = self.channels()
            return bool(predicate(seen))

        wait_until(check, timeout, 0.2)
        return seen

    def contacts(self, aor: str) -> list[str]:
        """The contact URIs registered to ``aor`` (``pjsip show contacts``)."""
        out = self.rx("pjsip show contacts")
        found = re.findall(rf"Contact:\s+{re.escape(aor)}/(\S+)", out)
        return [uri for uri in found if not uri.startswith("<")]

    # ------------------------------------------------------------------ the log
    def mark(self) -> int:
        """The current end of the log: pass it as ``since`` to see one test's part."""
        return self.log.stat().st_size if self.log.exists() else 0

    def text(self, since: int = 0) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace")

    def entries(self, since: int = 0) -> list[str]:
        """The log entries (one per logged message, several lines each) since ``since``."""
        text = self.text(since)
        starts = [m.start() for m in _ENTRY.finditer(text)] + [len(text)]
        return [text[a:b] for a, b in itertools.pairwise(starts)]

    def sip(self, since: int = 0) -> list[Traced]:
        """Every SIP message Asterisk sent or received since ``since``, in order."""
        out = []
        for entry in self.entries(since):
            found = _TRACE.search(entry)
            if found is None:
                continue
            raw = entry[found.end():].lstrip("\r\n")
            head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
            data = head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body.encode()
            message = SipMessage.parse(data, "in" if found.group(1) == "Received" else "out")
            length = message.header("content-length") or message.header("l")
            if length is not None and length.strip().isdigit():
                message.body = message.body[: int(length)]
            out.append(Traced(message, message.direction, (found.group(2), int(found.group(3)))))
        return out

    def with_voicegw(self, since: int = 0) -> list[Traced]:
        """The part of the trace exchanged with voicegw (its port)."""
        return [t for t in self.sip(since) if t.peer[1] == self.voicegw_port]

    def wait_sip(self, predicate, since: int = 0, timeout: float = 20.0) -> list[Traced]:
        """The trace once ``predicate(trace)`` holds (or after ``timeout``: the caller asserts)."""
        seen: list[Traced] = []

        def check() -> bool:
            seen[:] = self.sip(since)
            return bool(predicate(seen))

        wait_until(check, timeout, 0.1)
        return seen

    def marks(self, since: int = 0) -> list[str]:
        """The dialplan's ``vgtest:`` lines since ``since`` (extensions.conf Verbose)."""
        # the Verbose() app's own line, not pbx.c's "Executing [...] Verbose(...)" trace
        return [m.group(1).strip() for m in re.finditer(r"app_verbose\.c: vgtest: ([^\n]*)", self.text(since))]

    def wait_mark(self, needle: str, since: int = 0, timeout: float = 20.0) -> str | None:
        """The first ``vgtest:`` line containing ``needle``, waiting up to ``timeout``."""
        found: list[str] = []

        def check() -> bool:
            found[:] = [m for m in self.marks(since) if needle in m]
            return bool(found)

        wait_until(check, timeout, 0.1)
        return found[0] if found else None

    def report(self, since: int = 0, tail: int = 120) -> str:
        """The end of this instance's log (and console), for a failed test's output."""
        lines = self.text(since).splitlines()[-tail:]
        console = self.console.read_text(errors="replace")[-2000:] if self.console.exists() else ""
        return (f"--- Asterisk {self.run} (SIP 127.0.0.1:{self.sip_port}, voicegw expected on "
                f"{self.voicegw_port})\n" + "\n".join(lines) + (f"\n--- console\n{console}" if console else ""))


def ladder(trace: list[Traced], peer_port: int | None = None) -> list[str]:
    """``["in INVITE", "out 100 INVITE", ...]``, optionally only with one peer port."""
    return [t.describe() for t in trace if peer_port is None or t.peer[1] == peer_port]


def requests(trace: list[Traced], method: str, direction: str) -> list[SipMessage]:
    """The ``method`` requests Asterisk received ("in") or sent ("out"), in order."""
    return [t.message for t in trace if t.direction == direction and t.message.status is None
            and t.message.method == method]


def sipfrags(trace: list[Traced], direction: str) -> list[int | None]:
    """The sipfrag status of each NOTIFY Asterisk received ("in") or sent ("out")."""
    return [sipfrag_status(m) for m in requests(trace, "NOTIFY", direction)]


def sipfrag_status(message: SipMessage) -> int | None:
    """The status in a NOTIFY's message/sipfrag body (RFC 3420), or None."""
    first = message.body.decode("utf-8", "replace").strip().splitlines()
    if first and first[0].startswith("SIP/2.0 "):
        return int(first[0].split()[1])
    return None
