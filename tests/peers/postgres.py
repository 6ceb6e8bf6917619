"""A throwaway PostgreSQL cluster for the records tests (PostgreSQL from Debian:
``postgresql`` in scripts/bootstrap).

``initdb`` refuses to run as root, so the cluster belongs to an unprivileged user
(``postgres``, made by the Debian package; else ``nobody``): its folder is a fresh
``/tmp/vg-pg-*`` given to that user (a test's tmp_path is root's, 0700), the server
runs as that user (setpriv), listens on 127.0.0.1 on a free port with its socket in
the same folder, trusts local connections, and is stopped by its PID (from
``postmaster.pid``) at the end. ``fsync=off``: a test cluster never survives a power
cut, and the shared machine's disk is spared; what a commit promises is the server's
business, not what these tests check.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import psycopg

from peers.net import free_port


def bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (scripts/bootstrap installs Debian's postgresql)")
    return Path(found[-1]).parent


def _owner() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user to run PostgreSQL as")


class PgCluster:
    def __init__(self) -> None:
        self.bin = bindir()
        self.user = _owner()
        self.dir = Path(tempfile.mkdtemp(prefix="vg-pg-"))
        os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.pid: int | None = None
        self._databases = 0

    def _as_owner(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--clear-groups",
                   *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.dir, check=False)

    def init(self) -> PgCluster:
        done = self._as_owner(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--no-sync")
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
        return self.start()

    def start(self, port: int | None = None) -> PgCluster:
        """Start (again): on ``port``, else the last one, else a free one."""
        self.port = port or self.port or free_port()
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir}"
                   " -c fsync=off -c full_page_writes=off -c max_connections=60 -c shared_buffers=16MB")
        done = self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                              "-t", "60", "-o", options, "start")
        if done.returncode:
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}\n{self.server_log()}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def stop(self, how: signal.Signals = signal.SIGINT, timeout: float = 30) -> None:
        """Stop the server by its PID: SIGINT is a fast shutdown (clients cut at once),
        SIGQUIT an immediate one (as a crash)."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, how)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def database(self) -> str:
        """A new empty database; its DSN."""
        self._databases += 1
        name = f"records{self._databases}"

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.init()

    def __exit__(self, *exc: object) -> None:
        self.close()


class CommitCutter:
    """A TCP relay in front of a cluster that cuts one connection right after the server
    answered a COMMIT: once ``arm()`` ed, the first server reply carrying the COMMIT's
    CommandComplete (tag ``COMMIT``) is not passed on and both sides are closed. The
    client is left not knowing whether its transaction is in; the server has committed
    it (it answers only after). ``dsn(dsn)`` points a DSN at the relay; ``close()``
    stops it (its threads end with their sockets)."""

    TAG = b"C\x00\x00\x00\x0bCOMMIT\x00"  # CommandComplete, length 4 + len("COMMIT\0")

    def __init__(self, port: int) -> None:
        self.upstream = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        self._armed = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def dsn(self, dsn: str) -> str:
        parts = [p for p in dsn.split() if not p.startswith("port=")]
        return " ".join([*parts, f"port={self.port}"])

    def arm(self) -> None:
        self._armed.set()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            server = socket.create_connection(self.upstream, timeout=10)
            client.settimeout(None)
            server.settimeout(None)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        tail = b""
        try:
            while data := source.recv(65536):
                if from_server and self._armed.is_set() and self.TAG in tail + data:
                    self._armed.clear()
                    self.cuts += 1
                    break  # the answer is dropped: both sides closed below
                sink.sendall(data)
                tail = data[-len(self.TAG):]
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
