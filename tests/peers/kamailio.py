"""Kamailio as a peer: one process in the foreground (``-DD -E``) on a leased loopback
port, running a config written by the test (a template with ``@PORT@`` and the test's
own ``@KEY@`` values) or a shipped one with ``-A`` defines; its log (stderr) in the
test's directory, where a config's ``xlog("KAM ...")`` lines are read back; stopped by
its PID."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .daemon import wait_until
from .ports import HOST, free_port, udp_free
from .procs import stop

KAMAILIO = shutil.which("kamailio") or ("/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)

CORE = """debug=2
log_stderror=yes
fork=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:@PORT@
alias="127.0.0.1:@PORT@"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so\""""
"""What a test's config shares, put where it says ``@CORE@``: one process in the
foreground's settings, the loopback listener, and the modules a stateful proxy that
record-routes and logs needs (a config loads what else it uses after it)."""


class Kamailio:
    def __init__(self, workdir: Path, template: str | None = None, *, cfg: Path | None = None,
                 defines: tuple[str, ...] = (), **values: object) -> None:
        """``template``: a config written to ``workdir/kamailio.cfg`` with ``@CORE@`` (the
        shared settings and modules above), ``@PORT@`` (the port it listens on) and each
        ``@KEY@`` of ``values`` filled in; else ``cfg``."""
        self.port = free_port(HOST)
        self.workdir = workdir
        if template is not None:
            text = template.replace("@CORE@", CORE).replace("@PORT@", str(self.port))
            for key, value in values.items():
                text = text.replace(f"@{key.upper()}@", str(value))
            cfg = workdir / "kamailio.cfg"
            cfg.write_text(text, encoding="utf-8")
        assert cfg is not None, "a template or a cfg"
        self.cfg = cfg
        self.defines = defines
        self.log = workdir / "kamailio.log"
        self.pidfile = workdir / "kamailio.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    def command(self, *extra: str) -> list[str]:
        assert KAMAILIO is not None
        return [KAMAILIO, "-f", str(self.cfg), *(x for d in self.defines for x in ("-A", d)), *extra]

    def start(self) -> Kamailio:
        check = subprocess.run(self.command("-c"), capture_output=True, text=True, timeout=20, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen(self.command("-P", str(self.pidfile), "-DD", "-E"), cwd=self.workdir,
                                     stdin=subprocess.DEVNULL, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        proc = self.proc
        if not wait_until(lambda: not udp_free(self.port) or proc.poll() is not None, 10.0):
            raise AssertionError(f"kamailio did not listen:\n{self.text()}")
        assert proc.poll() is None, self.text()
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def lines(self, what: str) -> list[str]:
        """The log lines with ``KAM <what>`` (the configs' xlog prefix)."""
        return [line for line in self.text().splitlines() if f"KAM {what}" in line]

    def stop(self) -> None:
        # -DD keeps the main process in the foreground: SIGTERM to it stops its children
        stop(self.proc)
