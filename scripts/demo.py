#!/usr/bin/env python3
"""``make demo``: one scripted call through ``voicegw run`` with sipp peers, and its SIP ladder.

The story (all on 127.0.0.1, free ports, every process stopped at the end):

1. A carrier (sipp UAC) calls in; voicegw bridges the call to the bot (sipp UAS).
2. The bot asks for a human by REFER to agent 1; voicegw answers 202 and dials agent 1
   by INVITE, reporting progress to the bot in NOTIFYs (100 Trying...).
3. Agent 1 is busy (486): the bot gets a NOTIFY with a ``SIP/2.0 486`` sipfrag; the
   caller stays connected to the bot (a failed transfer never drops the caller).
4. The bot tries again: REFER to agent 2, who answers: NOTIFY 200 to the bot, then
   voicegw BYEs the bot and the caller talks to agent 2 (media through voicegw).
5. Agent 2 hangs up after a moment; voicegw BYEs the caller.

Not shown yet: the fallback prompt played to the caller and the automatic retry by
INVITE after a failed REFER to the carrier - the engine's fallback machine
(engine/fallback.py) is not wired into the engine yet; here the bot does the retry.

Prints the ladder built from the sipp peers' message logs (``-trace_msg``, microsecond
times from the same clock) interleaved with the daemon's transfer log lines, then the
outcome. Exit status 0 when every peer ran its scenario to the end and the transfers
went as told.

    .venv/bin/python scripts/demo.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "tests" / "sipp"
HOST = "127.0.0.1"
SIPP = shutil.which("sipp")


def free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise SystemExit("no free port")


def udp_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def even_block(count: int) -> int:
    """``count`` consecutive free UDP ports below the ephemeral range (RTP)."""
    import random

    for _ in range(200):
        start = random.randrange(24000, 32000 - count) & ~1
        if not any(udp_taken(p) for p in range(start, start + count)):
            return start
    raise SystemExit("no free RTP ports")


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --------------------------------------------------------------------------- processes
class Daemon:
    def __init__(self, workdir: Path, bot_port: int, allow: list[str]) -> None:
        self.port = free_port()
        rtp = even_block(40)
        config = workdir / "voicegw.yaml"
        config.write_text(
            "calls:\n  transfer_method: invite\n  ring_timeout: 10\n  transfer_allow:\n"
            + "".join(f"    - '{a}'\n" for a in allow)
            + "api:\n  enabled: false\n", encoding="utf-8")
        self.cmd = [sys.executable, "-m", "voicegw", "run", "--sip-host", HOST, "--sip-port", str(self.port),
                    "--bot-uri", f"sip:bot@{HOST}:{bot_port}", "--rtp-ports", f"{rtp}-{rtp + 39}",
                    "--config", str(config)]
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", VOICEGW_DB=str(workdir / "voicegw.db"))
        self.lines: list[str] = []
        self.started = threading.Event()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        if not self.started.wait(20) or self.proc.poll() is not None:
            self.stop()
            raise SystemExit("voicegw did not start:\n" + "\n".join(self.lines[-20:]))

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if '"daemon.started"' in line:
                self.started.set()

    def events(self) -> list[dict]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "non-json", "text": line})
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Peer:
    name: str
    scenario: str
    workdir: Path
    port: int
    remote: tuple[str, int] | None = None
    keys: dict[str, str] | None = None
    rtp_echo: bool = False
    proc: subprocess.Popen[str] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}_messages.log"

    def start(self) -> None:
        cmd = [SIPP, *([f"{self.remote[0]}:{self.remote[1]}"] if self.remote else []),
               "-sf", str(SCENARIOS / self.scenario), "-i", HOST, "-p", str(self.port),
               "-mp", str(even_block(4)), "-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error",
               "-trace_msg", "-message_file", str(self.log),
               "-trace_err", "-error_file", str(self.workdir / f"{self.name}_errors.log"),
               *(["-rtp_echo"] if self.rtp_echo else []),
               *[a for k, v in (self.keys or {}).items() for a in ("-key", k, v)]]
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        wait_for(lambda: udp_taken(self.port) or self.proc.poll() is not None, 5)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return -1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --------------------------------------------------------------------------- the ladder
@dataclass
class Line:
    when: float
    peer: str
    outgoing: bool
    """True: the peer sent it to voicegw; False: voicegw sent it to the peer."""
    label: str


def read_messages(peer: Peer) -> list[Line]:
    if not peer.log.exists():
        return []
    text = peer.log.read_text(encoding="utf-8", errors="replace")
    out = []
    for block in re.split(r"^-{20,} ", text, flags=re.M)[1:]:
        stamp, _, rest = block.partition("\n")
        info, _, raw = rest.partition("\n")
        if " message received " not in info and " message sent " not in info:
            continue
        first = raw.strip("\n").split("\n", 1)[0].strip()
        if not first:
            continue
        when = datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        head = raw.split("\n\n", 1)
        body = head[1].strip() if len(head) > 1 else ""
        if first.startswith("SIP/2.0"):
            cseq = re.search(r"^CSeq:\s*\d+\s+(\S+)", raw, re.M | re.I)
            label = f"{first[8:].strip()} ({cseq.group(1) if cseq else '?'})"
        else:
            label = first.split()[0]
            if label == "REFER":
                target = re.search(r"^Refer-To:\s*(.+)$", raw, re.M | re.I)
                label += f" -> {target.group(1).strip()}" if target else ""
            elif label == "NOTIFY" and body.startswith("SIP/2.0"):
                label += f" [{body.splitlines()[0].strip()}]"
        out.append(Line(when, peer.name, " message sent " in info, label))
    return out


def log_lines(daemon: Daemon) -> list[tuple[float, str]]:
    out = []
    for e in daemon.events():
        name = e.get("event", "")
        if name.startswith("transfer.") or name == "call.ended":
            when = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
            detail = " ".join(f"{k}={e[k]}" for k in ("method", "target", "status", "reason") if k in e)
            out.append((when, f"{name} {detail}".strip()))
    return out


def ladder(peers: list[Peer], daemon: Daemon) -> str:
    left = [p for p in peers if p.name == "caller"]
    right = [p for p in peers if p.name != "caller"]
    lines = sorted((m for p in peers for m in read_messages(p)), key=lambda m: m.when)
    events = log_lines(daemon)
    width = 30
    t0 = lines[0].when if lines else 0.0
    header = f"{'time (s)':>8}  {'caller (carrier)':>{width}}  voicegw   bot, agents"
    rows = [header, "-" * len(header)]
    items: list[tuple[float, str]] = []
    for m in lines:
        arrow = m.label
        if m.peer in (p.name for p in left):
            text = (f"{arrow} --->".rjust(width) + "   |       |") if m.outgoing else \
                   (f"<--- {arrow}".ljust(width) + "   |       |")
            items.append((m.when, f"{text}"))
        else:
            who = m.peer
            text = (" " * width + "   |       |   " + f"<--- {arrow}  [{who}]") if m.outgoing else \
                   (" " * width + "   |       |   " + f"{arrow} --->  [{who}]")
            items.append((m.when, text))
    for when, text in events:
        items.append((when, " " * width + f"   |  * {text}"))
    for when, text in sorted(items, key=lambda i: i[0]):
        rows.append(f"{when - t0:8.3f}  {text}")
    return "\n".join(rows)


# --------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="keep the logs in this directory")
    args = parser.parse_args()
    if SIPP is None:
        print("sipp is not installed: run scripts/bootstrap (make bootstrap)", file=sys.stderr)
        return 2
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="voicegw-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bot_port, agent1_port, agent2_port = free_port(), free_port(), free_port()
    agent1 = f"sip:agent1@{HOST}:{agent1_port}"
    agent2 = f"sip:agent2@{HOST}:{agent2_port}"
    daemon = Daemon(workdir, bot_port, [agent1, agent2])
    peers = [
        Peer("agent1", "agent_busy.xml", workdir, agent1_port),
        Peer("agent2", "agent_hangup.xml", workdir, agent2_port, rtp_echo=True),
        Peer("bot", "bot_refer_retry.xml", workdir, bot_port, keys={"refer_to": agent1, "refer_to2": agent2}),
    ]
    codes: dict[str, int] = {}
    try:
        print(f"voicegw demo: logs in {workdir}", flush=True)
        daemon.start()
        for p in peers:
            p.start()
        caller = Peer("caller", "carrier_call_wait_bye.xml", workdir, free_port(), remote=(HOST, daemon.port))
        peers.insert(0, caller)
        caller.start()
        for p in peers:
            codes[p.name] = p.wait(40)
    finally:
        for p in peers:
            p.stop()
        daemon.stop()
    print()
    print(ladder(peers, daemon))
    print()
    events = [e for e in daemon.events() if e.get("event", "").startswith("transfer.")]
    failed = [e for e in events if e["event"] == "transfer.failed"]
    succeeded = [e for e in events if e["event"] == "transfer.succeeded"]
    ok = (all(c == 0 for c in codes.values()) and [e.get("status") for e in failed] == [486]
          and len(succeeded) == 1)
    for name, code in codes.items():
        print(f"  sipp {name:<7} exit {code}" + ("" if code == 0 else f"  (see {workdir}/{name}_errors.log)"))
    print(f"  transfers: {len(failed)} failed ({', '.join(str(e.get('status')) for e in failed)}), "
          f"{len(succeeded)} succeeded")
    print("demo: OK" if ok else "demo: FAILED")
    if not args.keep and ok:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
