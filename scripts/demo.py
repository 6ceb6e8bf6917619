#!/usr/bin/env python3
"""``make demo``: one scripted call through ``voicegw run`` with sipp peers, and its SIP ladder.

The story (all on 127.0.0.1, free ports, every process stopped at the end), with
``calls.transfer_methods: [refer, invite]``:

1. A carrier (sipp UAC) calls in; voicegw bridges the call to the bot (sipp UAS).
2. The bot asks for a human: REFER to the agent. voicegw answers 202 and carries it out
   with its first method: a REFER on the caller's leg, to the carrier.
3. The carrier accepts (202) but the agent is busy for it: NOTIFY 100, then NOTIFY 486.
   The call stays up (a failed transfer never drops the caller); the fallback machine
   plays the "please hold" prompt to the caller.
4. voicegw retries with the next method: INVITE to the agent, who answers; the bot gets
   its final NOTIFY (200, never the 486 of the first method), then BYE; the caller now
   talks to the agent (media through voicegw).
5. The agent hangs up after a moment; voicegw BYEs the caller.

Prints the call's SIP ladder and timeline as ``voicegw call show`` renders them from the
daemon's control API (every leg's messages, the fallback decision and the prompt), then
the outcome. Exit status 0 when every peer ran its scenario to the end and the call went
as told (about 10 s).

    .venv/bin/python scripts/demo.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))  # the shared netutil
from netutil import free_port, udp_taken, wait_for  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # peers.procs
from peers.procs import stop  # tests/peers: how every peer is stopped

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "tests" / "peers" / "scenarios"
HOST = "127.0.0.1"
SIPP = shutil.which("sipp")






def even_block(count: int) -> int:
    """``count`` consecutive free UDP ports below the ephemeral range (RTP)."""
    import random

    for _ in range(200):
        start = random.randrange(24000, 32000 - count) & ~1
        if not any(udp_taken(p) for p in range(start, start + count)):
            return start
    raise SystemExit("no free RTP ports")




# --------------------------------------------------------------------------- processes
class Daemon:
    def __init__(self, workdir: Path, bot_port: int, allow: list[str]) -> None:
        self.port = free_port()
        self.api = f"http://{HOST}:{free_port()}"
        self.token = f"demo-{os.getpid()}-{int(time.time())}"
        rtp = even_block(40)
        config = workdir / "voicegw.yaml"
        config.write_text(
            "calls:\n  transfer_methods: [refer, invite]\n  ring_timeout: 10\n  ringback: silence\n"
            "  transfer_allow:\n" + "".join(f"    - '{a}'\n" for a in allow)
            + f"api:\n  host: {HOST}\n  port: {self.api.rsplit(':', 1)[1]}\n  token: {self.token}\n"
            f"paths:\n  records_dir: {workdir}\n  tts_cache: {ROOT / 'var' / 'tts'}\n"
            "profiles_dir: null\nflows_dir: null\n", encoding="utf-8")
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
        stop(self.proc)


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
        stop(self.proc, 5.0)


# --------------------------------------------------------------------------- the call
def call_detail(daemon: Daemon) -> dict | None:
    """The demo's call as the control API has it (timeline and SIP trace)."""
    import httpx

    headers = {"Authorization": f"Bearer {daemon.token}"}
    try:
        calls = httpx.get(f"{daemon.api}/calls", params={"state": "all"}, headers=headers, timeout=5).json()
        if not calls:
            return None
        return httpx.get(f"{daemon.api}/calls/{calls[-1]['key']}", headers=headers, timeout=5).json()
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def show_call(daemon: Daemon, call_id: str) -> str:
    """``voicegw call show CALL_ID``: the SIP ladder of every leg, then the timeline."""
    env = dict(os.environ, COLUMNS="150", NO_COLOR="1", TERM="dumb")
    result = subprocess.run([sys.executable, "-m", "voicegw", "call", "show", call_id, "--api", daemon.api,
                             "--token", daemon.token], check=False, cwd=ROOT, env=env, capture_output=True,
                            text=True,
                            timeout=30, stdin=subprocess.DEVNULL)
    return result.stdout + result.stderr


def story(detail: dict | None, daemon: Daemon) -> list[str]:
    """What went wrong, if anything: the transfers and the timeline's order."""
    problems = []
    transfers = [(e["event"], e.get("method"), e.get("status")) for e in daemon.events()
                 if e.get("event") in ("transfer.failed", "transfer.succeeded")]
    if transfers != [("transfer.failed", "refer", 486), ("transfer.succeeded", "invite", 200)]:
        problems.append(f"transfers were {transfers}, expected REFER 486 then INVITE 200")
    if detail is None:
        return problems + ["the control API did not give the call"]
    events = [(entry["event"], entry["detail"]) for entry in detail["timeline"]]
    names = [name for name, _ in events]

    def first(name: str, **fields: object) -> int:
        return next((i for i, (n, d) in enumerate(events)
                     if n == name and all(d.get(k) == v for k, v in fields.items())), -1)

    order = [first("transfer.failed", status=486), first("transfer.fallback", action="next"),
             first("fallback.prompt"), first("transfer.started", method="invite"),
             first("transfer.succeeded", status=200), first("leg.bot.bye_sent")]
    if -1 in order or order != sorted(order):
        problems.append("expected in the timeline, in this order: REFER failed 486, fallback next, "
                        f"prompt, INVITE started, succeeded, bot BYE; got {names}")
    return problems


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
    bot_port, agent_port = free_port(), free_port()
    agent = f"sip:agent@{HOST}:{agent_port}"
    daemon = Daemon(workdir, bot_port, [agent])
    peers = [
        Peer("agent", "agent_hangup.xml", workdir, agent_port, rtp_echo=True),
        Peer("bot", "bot_refer.xml", workdir, bot_port, keys={"refer_to": agent}),
    ]
    codes: dict[str, int] = {}
    detail = None
    try:
        print(f"voicegw demo: logs in {workdir}", flush=True)
        daemon.start()
        for p in peers:
            p.start()
        caller = Peer("caller", "carrier_refer_fail_wait_bye.xml", workdir, free_port(),
                      remote=(HOST, daemon.port), keys={"final": "486 Busy Here"})
        peers.insert(0, caller)
        caller.start()
        for p in peers:
            codes[p.name] = p.wait(40)
        wait_for(lambda: any(e.get("event") == "call.ended" for e in daemon.events()), 5)
        detail = call_detail(daemon)
        if detail is not None:
            print()
            print(show_call(daemon, detail["id"]))
    finally:
        for p in peers:
            p.stop()
        daemon.stop()
    problems = story(detail, daemon)
    ok = all(c == 0 for c in codes.values()) and not problems
    for name, code in codes.items():
        print(f"  sipp {name:<7} exit {code}" + ("" if code == 0 else f"  (see {workdir}/{name}_errors.log)"))
    for problem in problems:
        print(f"  {problem}")
    if ok:
        print("  REFER to the carrier failed (486), the caller heard the hold prompt, the INVITE to the "
              "agent succeeded")
    print("demo: OK" if ok else "demo: FAILED")
    if not args.keep and ok:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
