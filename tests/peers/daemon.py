"""``voicegw run`` as a subprocess on a free loopback port, stopped by the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import yaml

from .net import free_port

ROOT = Path(__file__).resolve().parents[2]
TTS_CACHE = ROOT / "var" / "tts"


_PORT_TAKEN = "address already in use"
_PORT_TAKEN_UVLOOP = '"could not bind to local_addr'
"""How daemon.failed says its SIP port was taken: asyncio's errno text, or uvloop's
message (its OSError carries the errno only as its cause)."""


class DaemonProcess:
    """Starts the daemon, waits for ``daemon.started``, collects its JSON log lines."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *args: str) -> None:
        self.host = host
        self._own_port = port is None
        self.port = port or free_port(host)
        self.args = args
        self.lines: list[str] = []
        self._started = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self.workdir = ROOT
        self.api_port: int | None = None
        self._reader: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self, timeout: float = 60.0) -> DaemonProcess:
        """Start and wait for ``daemon.started``. A port picked here can be taken by
        another process before the daemon binds it (free_port is racy, and parallel
        test workers, sipp and PBXs all draw from the ephemeral range): then, and only
        for ports picked here, try again on new ones, at most ``PORT_RETRIES`` times."""
        for attempt in range(self.PORT_RETRIES + 1):
            if self._launch(timeout):
                return self
            lost_race = any(_PORT_TAKEN in line or _PORT_TAKEN_UVLOOP in line for line in self.lines[-20:])
            if not (lost_race and self._own_port and attempt < self.PORT_RETRIES):
                break
            self.port = free_port(self.host)
            self.lines.clear()
        raise RuntimeError("daemon did not start:\n" + "\n".join(self.lines[-20:]))

    PORT_RETRIES = 2

    def _launch(self, timeout: float) -> bool:
        """One start; False (the process stopped) if it exits or is not up in time."""
        args = self._isolated_args(list(self.args))
        cmd = [sys.executable, "-m", "voicegw", "run", "--sip-host", self.host,
               "--sip-port", str(self.port), *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._started.clear()
        self._proc = subprocess.Popen(
            cmd, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._started.wait(0.1):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                self._reader.join(5)  # its last lines say why
                return False
        return True

    def _isolated_args(self, args: list[str]) -> list[str]:
        """Each test daemon gets its own working directory (records, API token) and a
        free API port, so daemons of parallel or successive tests never share state;
        the TTS cache is shared (rendering is slow, the files are immutable)."""
        self.workdir = Path(tempfile.mkdtemp(prefix="voicegw-test-"))
        self.api_port = free_port(self.host)
        data: dict = {}
        if "--config" in args:
            index = args.index("--config")
            source = Path(args[index + 1])
            data = yaml.safe_load(source.read_text()) or {}
            del args[index : index + 2]
        data.setdefault("api", {}).setdefault("port", self.api_port)
        self.api_port = data["api"]["port"]
        data.setdefault("paths", {}).setdefault("tts_cache", str(TTS_CACHE))
        # No load shedding unless a test is about it (it sets guard.max_loop_lag itself):
        # on a busy machine the loop runs late, and a 503 "overloaded" would fail tests
        # about something else.
        data.setdefault("guard", {}).setdefault("max_loop_lag", 0)
        # Nor an RTP inactivity timeout (media.inactivity_timeout, 60 s by default): many
        # tests' sipp callers send no RTP, and on a loaded machine a test can outlast it.
        # The tests about it set it themselves (test_media_timeout_wire, test_leak_wire).
        data.setdefault("media", {}).setdefault("inactivity_timeout", 0)
        data.setdefault("profiles_dir", None)
        data.setdefault("flows_dir", None)
        config = self.workdir / "voicegw-test.yaml"
        config.write_text(yaml.safe_dump(data))
        return ["--config", str(config), *args]

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if '"daemon.started"' in line:
                self._started.set()

    def events(self) -> list[dict]:
        """The log lines parsed as JSON (raises on a line that is not JSON)."""
        return [json.loads(line) for line in list(self.lines) if line.strip()]

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit code (killed and failing after ``timeout``)."""
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        if self._reader is not None:
            self._reader.join(5)
        return code

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.running():
            try:
                self.terminate()
            finally:
                self.kill()


def wait_until(predicate, timeout: float = 5.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
