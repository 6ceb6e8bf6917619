"""A voicegw farm on loopback: ``voicegw run --workers N`` behind the shipped
deploy/kamailio/kamailio.cfg (the dispatcher), each on free ports, in its own run dir.

- :class:`Workers`: the supervisor and its workers as one subprocess (their JSON log
  lines, each tagged ``worker``, read from the shared stderr), its aggregating control
  API on a free port with the token in the run dir; ``kill_worker`` sends SIGKILL to
  one worker by its pid.
- :class:`Dispatcher`: Kamailio started with ``-A`` settings (listen address, the
  dispatcher list naming the workers' ports, ``WITH_TRACE`` for one log line per
  request), stopped by its PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from .calls import HOST
from .daemon import ROOT, TTS_CACHE
from .kamailio import Kamailio
from .ports import free_block, free_port, free_ports

KAMAILIO_CFG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"


class Workers:
    def __init__(self, workdir: Path, count: int = 2, *, calls: dict[str, Any] | None = None,
                 sections: dict[str, Any] | None = None, args: tuple[str, ...] = (), rtp_ports: int = 80,
                 profiles_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.count = count
        self.base = free_ports(count)
        self.api_port = free_port(HOST)
        self.token_file = workdir / "api.token"
        low = free_block(rtp_ports)
        data: dict[str, Any] = {**(sections or {}), "calls": calls or {},
                                "api": {"port": self.api_port, "token_file": str(self.token_file)},
                                "paths": {"tts_cache": str(TTS_CACHE)},
                                "profiles_dir": str(profiles_dir) if profiles_dir else None, "flows_dir": None}
        data.setdefault("guard", {}).setdefault("max_loop_lag", 0)
        self.config = workdir / "voicegw-workers.yaml"
        self.config.write_text(yaml.safe_dump(data), encoding="utf-8")
        self.args = ["--config", str(self.config), "--sip-host", HOST, "--sip-port", str(self.base),
                     "--rtp-ports", f"{low}-{low + rtp_ports - 1}", *args]
        self.lines: list[str] = []
        self._started = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def ports(self) -> list[int]:
        return [self.base + i for i in range(self.count)]

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    def start(self, timeout: float = 120.0) -> Workers:
        cmd = [sys.executable, "-m", "voicegw", "run", "--workers", str(self.count), *self.args]
        self._proc = subprocess.Popen(cmd, cwd=self.workdir, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._started.wait(timeout) or self._proc.poll() is not None:
            self.kill()
            raise RuntimeError("voicegw --workers did not start:\n" + "\n".join(self.lines[-30:]))
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if '"workers.started"' in line:
                self._started.set()

    def events(self, name: str | None = None, **fields: Any) -> list[dict]:
        out = []
        for line in list(self.lines):
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if (name is None or entry.get("event") == name) and all(entry.get(k) == v for k, v in fields.items()):
                out.append(entry)
        return out

    def worker_pid(self, index: int) -> int:
        """The pid of worker ``index``'s current process (from the supervisor's log)."""
        started = [e for e in self.events("worker.started") if e.get("worker") == index]
        return started[-1]["pid"]

    def kill_worker(self, index: int) -> int:
        pid = self.worker_pid(index)
        os.kill(pid, signal.SIGKILL)
        return pid

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.api + path, headers=headers, timeout=15, **kwargs)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "voicegw", *args, "--api", self.api, "--token-file",
                               str(self.token_file)], cwd=self.workdir, capture_output=True, text=True, timeout=60,
                              check=False, env=dict(os.environ, COLUMNS="250"))

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def terminate(self, timeout: float = 40.0) -> int:
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            return self._proc.wait(timeout)
        finally:
            if self._reader is not None:
                self._reader.join(5)

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()  # the workers follow (PR_SET_PDEATHSIG: SIGTERM)
            self._proc.wait(5)


class Dispatcher(Kamailio):
    """Kamailio running deploy/kamailio/kamailio.cfg in front of ``ports``."""

    def __init__(self, workdir: Path, ports: list[int], *, ping_interval: int = 1, fr_timer_ms: int = 1500,
                 children: int = 1) -> None:
        self.list_file = workdir / "dispatcher.list"
        self.list_file.write_text("".join(f"1 sip:{HOST}:{p}\n" for p in ports))
        super().__init__(workdir, cfg=KAMAILIO_CFG)
        self.defines = (f"LISTEN=udp:{HOST}:{self.port}", f'DISPATCHER_LIST="{self.list_file}"',
                        f"PING_INTERVAL={ping_interval}", f"FR_TIMER={fr_timer_ms}", "WITH_TRACE",
                        # one receiver by default: with two, the 200 to a NOTIFY and the BYE
                        # voicegw sends right after it can pass each other (sipp's carrier
                        # scenarios are strict); a load test wants two (one busy receiver
                        # delays the pings and the failover)
                        f"CHILDREN={children}")

    def lines(self, kind: str, method: str | None = None) -> list[str]:  # type: ignore[override]
        """Its trace lines ``KAM <kind> <method> ...`` (kind: dispatch, loose_route, failover)."""
        prefix = f"KAM {kind} " + (f"{method} " if method else "")
        return [line[line.index(prefix):] for line in self.text().splitlines() if prefix in line]


_BLOCK = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d[ \t]\d\d:\d\d:\d\d\.\d+)\n([^\n]*)\n\n([^\n]*)\n(.*?)(?=^-{20,} |\Z)",
                    re.MULTILINE | re.DOTALL)


@dataclass
class CallOutcome:
    """One sipp UAC call as its ``-trace_msg`` log shows it."""

    invited_at: float
    """Wall-clock time sipp first sent the INVITE."""
    answered: bool = False
    """A 200 to the INVITE came back."""
    completed: bool = False
    """A 200 to the BYE came back: the call went through from start to end."""


def call_outcomes(path: Path) -> dict[str, CallOutcome]:
    """Every call of a sipp UAC's message log, by Call-ID."""
    calls: dict[str, CallOutcome] = {}
    for stamp, info, first, rest in _BLOCK.findall(path.read_text(errors="replace")):
        call_id = re.search(r"^(?:Call-ID|i):\s*(\S+)", rest, re.MULTILINE | re.IGNORECASE)
        cseq = re.search(r"^CSeq:\s*\d+\s+(\w+)", rest, re.MULTILINE | re.IGNORECASE)
        if call_id is None or cseq is None:
            continue
        key = call_id.group(1)
        if key not in calls and " sent " in info and first.startswith("INVITE "):
            calls[key] = CallOutcome(datetime.fromisoformat(stamp.replace("\t", " ")).timestamp())
        call = calls.get(key)
        if call is not None and " received " in info and first.startswith("SIP/2.0 200"):
            if cseq.group(1) == "INVITE":
                call.answered = True
            elif cseq.group(1) == "BYE":
                call.completed = True
    return calls
