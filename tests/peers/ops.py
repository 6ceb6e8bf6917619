"""Fixtures for the operations tests: a daemon with its control API on a free port,
the ``voicegw`` CLI run as a user runs it, and sipp peers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

from peers.daemon import ROOT, DaemonProcess, wait_until
from peers.ports import free_block, free_port, udp_free
from peers.sipp import SIPP

HOST = "127.0.0.1"
SCENARIOS = Path(__file__).parent / "scenarios"


class OpsDaemon:
    """``voicegw run --config`` with ``api:`` on a free port and the token file in ``workdir``."""

    def __init__(self, workdir: Path, *, config: dict[str, Any] | None = None, args: tuple[str, ...] = (),
                 token: str | None = None, sip_port: int | None = None) -> None:
        """``sip_port``: where a peer expects voicegw (an Asterisk's ``voicegw`` endpoint);
        default a free port."""
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port(HOST)
        self.token_file = workdir / "api.token"
        api: dict[str, Any] = {"port": self.api_port, "token_file": str(self.token_file)}
        if token:
            api["token"] = token
        self.config = {"api": api, **(config or {})}
        self.config_file = workdir / "voicegw.yaml"
        self.write_config(self.config)
        low = free_block(40)
        self.daemon = DaemonProcess(HOST, sip_port, "--config", str(self.config_file),
                                    "--rtp-ports", f"{low}-{low + 39}", *args)
        self.url = f"http://{HOST}:{self.api_port}"

    def write_config(self, config: dict[str, Any] | str) -> None:
        """Write the config the daemon reads on a reload. The daemon helper may run the
        daemon on a copy of ours (its own work dir, TTS cache...): then the copy is
        rewritten, keeping what the helper added."""
        target = self.config_file
        running = getattr(self.daemon, "workdir", None) if hasattr(self, "daemon") else None
        copy = Path(running) / "voicegw-test.yaml" if running is not None else None
        if copy is not None and copy.exists():
            if not isinstance(config, str):
                if not hasattr(self, "_added"):
                    self._added = yaml.safe_load(copy.read_text()) or {}
                added = self._added
                config = {**{k: v for k, v in added.items() if k not in config}, **config}
                config["api"] = {**added.get("api", {}), **config.get("api", {})}
            target = copy
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        target.write_text(text, encoding="utf-8")

    def start(self) -> OpsDaemon:
        self.daemon.start()
        copy = Path(getattr(self.daemon, "workdir", self.workdir)) / "voicegw-test.yaml"
        if copy.exists():  # what the daemon helper added to our config (kept on rewrites)
            self._added = yaml.safe_load(copy.read_text()) or {}
        assert wait_until(lambda: self.token_file.exists(), 5)
        return self

    @property
    def token(self) -> str:
        return self.config["api"].get("token") or self.token_file.read_text().strip()

    @property
    def address(self) -> tuple[str, int]:
        return self.daemon.address

    def http(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def cli(self, *args: str, token_args: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``voicegw ARGS --api URL --token-file FILE`` as a user runs it."""
        extra = ["--api", self.url, "--token-file", str(self.token_file)] if token_args else []
        env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
        return subprocess.run([sys.executable, "-m", "voicegw", *args, *extra], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [e for e in self.daemon.events()
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.daemon.running():
            try:
                self.daemon._proc.send_signal(2)  # type: ignore[union-attr]  # SIGINT: no drain wait
                self.daemon._proc.wait(10)  # type: ignore[union-attr]
            finally:
                self.daemon.kill()


class Sipp:
    """One sipp process (a caller towards the daemon, or an agent UAS)."""

    def __init__(self, workdir: Path, name: str, scenario: str, *, remote: tuple[str, int] | None = None,
                 port: int | None = None, extra: tuple[str, ...] = (), timeout: float = 40,
                 calls: int = 1) -> None:
        if SIPP is None:
            raise RuntimeError("sipp is not installed: run scripts/bootstrap")
        self.port = port or free_port(HOST)
        media = free_block(4)
        self.messages = workdir / f"{name}_messages.log"
        sf = ["-sn", scenario[4:]] if scenario.startswith("-sn ") else ["-sf", str(SCENARIOS / scenario)]
        self.cmd = [SIPP, *([f"{remote[0]}:{remote[1]}"] if remote else []), *sf, "-i", HOST,
                    "-p", str(self.port), "-mp", str(media), "-m", str(calls), "-nostdin",
                    "-timeout", f"{int(timeout)}s", "-timeout_error",
                    "-trace_msg", "-message_file", str(self.messages), *extra]
        self.workdir = workdir
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Sipp:
        self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_until(lambda: not udp_free(self.port) or self.proc.poll() is not None, 5.0, 0.01)
        return self

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def output(self) -> str:
        text = self.messages.read_text(errors="replace") if self.messages.exists() else ""
        return text

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def active_call(ops: OpsDaemon, timeout: float = 10) -> dict[str, Any]:
    """The one connected call (waits for it)."""
    found: list[dict[str, Any]] = []

    def connected() -> bool:
        found[:] = [c for c in ops.http("GET", "/calls", params={"state": "active"}).json()
                    if c["state"] == "connected"]
        return bool(found)

    assert wait_until(connected, timeout, 0.1), "no connected call"
    return found[0]


def sleep_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@contextmanager
def nothing_broke(ops: OpsDaemon, *, json_only: bool = False) -> Iterator[None]:
    """Around a test of a module's daemon: its log lines meanwhile hold no error and no
    failed engine task (nor, ``json_only``, a line that is not JSON: a traceback, a
    library's warning)."""
    since = len(ops.daemon.lines)
    yield
    lines = ops.daemon.lines[since:]
    noise = [line for line in lines if not line.startswith("{")] if json_only else []
    errors = [line for line in lines if '"level": "error"' in line or '"engine.task_failed"' in line]
    assert not noise and not errors, (noise[:5], errors[:5])
