"""The supervisor of ``voicegw run --workers N``: N ``voicegw run`` processes, each on
its own SIP port and RTP slice (plan.py), and one control API in front (api.py).

- A worker is this same program (``python -m voicegw run --worker I ...``) with the
  operator's flags plus its ports; its log lines go to the shared stderr, each with
  ``"worker": I``. ``PR_SET_PDEATHSIG`` makes a worker stop (SIGTERM: drain) when the
  supervisor dies, even by ``kill -9``.
- A worker that exits while the supervisor is not stopping is restarted on the same
  ports, after 0.5 s, doubling up to 10 s while it keeps dying within 10 s of its
  start. The new process opens the shared store, whose crash recovery
  (store/recovery.py: the dead run's lock is free) closes the calls the dead one
  left as ``restart``.
- SIGTERM/SIGINT are passed to every worker (they drain, docs/operations.md); the
  supervisor exits when they all have, 0 when each exited 0. SIGHUP is passed on too.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..logging import get_logger
from .plan import WorkerPlan

log = get_logger("voicegw.workers")

BACKOFF_FIRST, BACKOFF_MAX, STABLE_AFTER = 0.5, 10.0, 10.0
READY_TIMEOUT = 60.0
"""Seconds a worker may take to answer on its API after it starts (imports, store)."""
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the worker outlives a killed supervisor
        pass


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Worker:
    plan: WorkerPlan
    api_port: int | None
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    ready: bool = False
    backoff: float = BACKOFF_FIRST
    exits: list[int] = field(default_factory=list)


def _options(host: str, port: int, local: tuple[Any, ...]) -> bytes:
    """A minimal out-of-dialog OPTIONS (the supervisor's readiness probe)."""
    branch, tag = os.urandom(6).hex(), os.urandom(4).hex()
    target = f"[{host}]" if ":" in host else host
    return (f"OPTIONS sip:{target}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{branch};rport\r\n"
            f"From: <sip:supervisor@{target}>;tag={tag}\r\nTo: <sip:{target}:{port}>\r\n"
            f"Call-ID: {branch}@supervisor\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


class Supervisor:
    def __init__(self, plans: Sequence[WorkerPlan], args: Sequence[str], *, api: Any, version: str,
                 name_prefix: str | None = None, sip_host: str = "127.0.0.1") -> None:
        """``args``: the operator's ``voicegw run`` flags every worker gets; ``api``: the
        daemon's ApiConfig (None: no control API, and the workers run without one);
        ``name_prefix``: the store's worker id of this host (``PREFIX-I`` per worker)."""
        self.name_prefix = name_prefix
        self.sip_host = sip_host
        self.api_config = api
        self.version = version
        self.args = list(args)
        self.workers = [Worker(p, free_loopback_port() if api is not None else None) for p in plans]
        self.count = len(self.workers)
        self.url: str | None = None
        self._stopping = False
        self._stop = asyncio.Event()
        self._server: Any = None
        self._watchers: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ workers
    def worker_api(self, index: int) -> str | None:
        worker = self.workers[index]
        if worker.api_port is None or worker.process is None or worker.process.returncode is not None:
            return None
        return f"http://127.0.0.1:{worker.api_port}"

    def rows(self) -> list[dict[str, Any]]:
        return [{"index": w.plan.index, "pid": w.process.pid if w.process else None,
                 "alive": w.process is not None and w.process.returncode is None, "ready": w.ready,
                 "sip_port": w.plan.sip_port, "rtp_ports": w.plan.rtp_ports, "restarts": w.restarts,
                 "exit_codes": w.exits[-5:]} for w in self.workers]

    def _command(self, worker: Worker) -> list[str]:
        command = [sys.executable, "-m", "voicegw", "run", *self.args, "--worker", str(worker.plan.index),
                   "--sip-port", str(worker.plan.sip_port), "--rtp-ports", worker.plan.rtp_ports]
        if worker.api_port is not None:
            command += ["--api-port", str(worker.api_port)]
            if self.url is not None:
                command += ["--api-public-url", self.url]
        return command

    async def _spawn(self, worker: Worker) -> None:
        worker.ready = False
        worker.started_at = time.monotonic()
        # the records name each worker's runs and calls (store/backend.py: $VOICEGW_WORKER_ID)
        index = worker.plan.index
        name = f"{self.name_prefix}-{index}" if self.name_prefix else str(index)
        worker.process = await asyncio.create_subprocess_exec(
            *self._command(worker), stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent,
            env=dict(os.environ, VOICEGW_WORKER_ID=name))
        log.info("worker.started", worker=worker.plan.index, pid=worker.process.pid,
                 sip_port=worker.plan.sip_port, rtp_ports=worker.plan.rtp_ports, restarts=worker.restarts)

    async def _wait_ready(self, worker: Worker) -> bool:
        """Until the worker answers an OPTIONS on its SIP port with a 2xx (it answers 503
        until its API is up), then /health on its API (when it has one): what Kamailio
        and the operator will ask of it."""
        deadline = time.monotonic() + READY_TIMEOUT
        if not await self._sip_answers(worker, deadline):
            return False
        if worker.api_port is None:
            worker.ready = True
            return True
        import httpx

        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline and not self._stopping:
                if worker.process is None or worker.process.returncode is not None:
                    return False
                try:
                    await client.get(f"http://127.0.0.1:{worker.api_port}/health")
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
                    continue
                worker.ready = True
                return True
        return False

    async def _sip_answers(self, worker: Worker, deadline: float) -> bool:
        """An OPTIONS to the worker's UDP port (RFC 3261 section 11) until a 2xx answer:
        what Kamailio's dispatcher takes for up (``ds_ping_reply_codes``)."""
        loop = asyncio.get_running_loop()
        host = "127.0.0.1" if self.sip_host in ("0.0.0.0", "::", "") else self.sip_host
        answered = asyncio.Event()

        class _Probe(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                if data.startswith(b"SIP/2.0 2"):
                    answered.set()

        transport, _ = await loop.create_datagram_endpoint(_Probe, remote_addr=(host, worker.plan.sip_port))
        try:
            while time.monotonic() < deadline and not self._stopping:
                if worker.process is None or worker.process.returncode is not None:
                    return False
                transport.sendto(_options(host, worker.plan.sip_port, transport.get_extra_info("sockname")))
                try:
                    await asyncio.wait_for(answered.wait(), 0.2)  # a 503 (starting): ask again soon
                    return True
                except TimeoutError:
                    continue
            return False
        finally:
            transport.close()

    async def _watch(self, worker: Worker) -> None:
        """Restart the worker whenever it exits, until the supervisor stops."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            worker.exits.append(code)
            worker.ready = False
            if self._stopping:
                return
            lived = time.monotonic() - worker.started_at
            worker.backoff = BACKOFF_FIRST if lived >= STABLE_AFTER else min(worker.backoff * 2, BACKOFF_MAX)
            log.error("worker.died", worker=worker.plan.index, pid=worker.process.pid, exit_code=code,
                      lived_seconds=round(lived, 3), restart_in=worker.backoff)
            try:
                await asyncio.wait_for(self._stop.wait(), worker.backoff)
                return  # stopping meanwhile: no restart
            except TimeoutError:
                pass
            worker.restarts += 1
            await self._spawn(worker)
            if await self._wait_ready(worker):
                log.info("worker.restarted", worker=worker.plan.index, pid=worker.process.pid,
                         restarts=worker.restarts)

    # ------------------------------------------------------------------ lifecycle
    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        if not await self._start_api():
            return 1
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, self._signal_all, signal.SIGHUP)
        for worker in self.workers:
            await self._spawn(worker)
        ready = await asyncio.gather(*(self._wait_ready(w) for w in self.workers))
        if not all(ready) and not self._stopping:
            log.error("workers.failed", ready=[w.plan.index for w, r in zip(self.workers, ready) if r])
            self._on_stop(signal.SIGTERM)
        else:
            log.info("workers.started", pid=os.getpid(), api=self.url, workers=self.rows())
        self._watchers = [loop.create_task(self._watch(w)) for w in self.workers]
        await self._stop.wait()
        codes = [await w.process.wait() for w in self.workers if w.process is not None]
        for task in self._watchers:
            task.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        if self._server is not None:
            await self._server.close()
        log.info("workers.stopped", exit_codes=codes)
        return 0 if all(code == 0 for code in codes) else 1

    def _on_stop(self, signum: int) -> None:
        log.info("workers.stopping", signal=signal.Signals(signum).name)
        self._stopping = True
        self._signal_all(signum)
        self._stop.set()

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signum)

    async def _start_api(self) -> bool:
        if self.api_config is None:
            return True
        from .server import AggregateServer

        server = AggregateServer(self, self.api_config)
        try:
            await server.start()
        except OSError as error:
            log.error("api.failed", error=str(error), host=self.api_config.host, port=self.api_config.port)
            return False
        self._server = server
        self.url = server.url
        return True
