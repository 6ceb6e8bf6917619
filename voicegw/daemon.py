"""The daemon: the SIP endpoint, an application, structured logs, a clean stop.

Lifecycle: bind SIP (UDP and TCP), start the control API, log ``daemon.started``.
On SIGTERM log ``daemon.stopping`` and drain: new INVITEs get 503 with Retry-After,
calls in progress may finish until ``lifecycle.drain_deadline``, the rest are hung
up (BYE); a second SIGTERM or a SIGINT hangs up at once. Then the API and the
sockets close (TCP writes flushed, bounded), records are flushed, ``daemon.stopped``
is logged with the statistics, exit 0. SIGHUP (or ``POST /reload``) reloads the
config; a bad one is refused and the running config stays. A SIP port that cannot be
bound logs ``daemon.failed`` and exits 1; an API port that cannot be bound logs
``api.failed`` and the daemon runs on without its API (calls matter more).

The application is whatever object has ``handle_event(event)``. Until the B2BUA
engine lands, :class:`RejectingApplication` answers every new request 480; the
engine replaces it through ``Daemon(application_factory=...)``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from .config.defaults import DEFAULT, DaemonConfig
from .engine.refusals import Refusals
from .logging import get_logger
from .memory import PeriodicCollector, tune_gc
from .settings import EngineConfig
from .sip.build import make_response, new_tag
from .sip.errors import SipError
from .sip.events import (
    CancelReceived,
    Event,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimedOut,
)
from .sip.refusal import Cause, Refused, refusal_response
from .store import RecordStore, StoreError, open_store
from .store.backend import where as store_where
from .store.backend import worker_id as store_worker_id
from .store.schema import SchemaError
from .transport.endpoint import SipEndpoint
from .transport.guard import Guard, uri_hosts

log = get_logger("voicegw.daemon")


class Application(Protocol):
    """What the daemon hands SIP events to (the B2BUA engine, later)."""

    def handle_event(self, event: Event) -> None: ...


ApplicationFactory = Callable[[SipEndpoint], Application]


class RejectingApplication:
    """Answers every new request (INVITE included) 480 Temporarily Unavailable.

    A placeholder with the engine's shape: it reacts to events and answers through
    the endpoint. ACK has no transaction and gets no answer (17.2.1).
    """

    STATUS = 480

    def __init__(self, endpoint: SipEndpoint) -> None:
        self._endpoint = endpoint
        self.refusals = Refusals()

    def handle_event(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            if event.request.method == "ACK" or not event.transaction_id:
                return
            request = event.request
            response = refusal_response(request, Cause.NO_APPLICATION, to_tag=new_tag(), status=self.STATUS)
            self.refusals.note(Cause.NO_APPLICATION, self.STATUS, method=request.method,
                               call_id=request.headers.get("call-id"), source=str(event.source))
            self._endpoint.send_response(event.transaction_id, response)
        elif isinstance(event, CancelReceived):
            # the INVITE may already be answered: then the core refuses, and that is fine
            try:
                response = make_response(event.request, 487, to_tag=new_tag())
                self._endpoint.send_response(event.transaction_id, response)
            except SipError:
                pass


def log_event(event: Event) -> None:
    """One log line per core event, under a stable dotted name."""
    if isinstance(event, RequestReceived):
        headers = event.request.headers
        log.info(
            "sip.request",
            method=event.request.method,
            call_id=headers.get("call-id"),
            cseq=headers.get("cseq"),
            source=str(event.source),
            transaction_id=event.transaction_id,
        )
    elif isinstance(event, ResponseReceived):
        # responses are the bulk of signalling; at info the call-level events suffice
        log.debug(
            "sip.response",
            status=event.response.status,
            call_id=event.response.headers.get("call-id"),
            transaction_id=event.transaction_id,
        )
    elif isinstance(event, CancelReceived):
        log.info("sip.cancel", transaction_id=event.transaction_id)
    elif isinstance(event, TransactionTimedOut):
        log.warning(
            "sip.timeout",
            transaction_id=event.transaction_id,
            method=event.method,
            timer=event.timer,
        )
    elif isinstance(event, TransactionTerminated):
        log.debug("sip.transaction.terminated", transaction_id=event.transaction_id)
    elif isinstance(event, MessageRejected):
        log.info(
            "sip.rejected", source=str(event.source), status=event.status, reason=event.reason
        )
    else:
        log.info("sip.event", kind=type(event).__name__)


class Daemon:
    def __init__(
        self,
        config: DaemonConfig = DEFAULT,
        application_factory: ApplicationFactory = RejectingApplication,
        loader: Callable[[], DaemonConfig] | None = None,
    ) -> None:
        self.config = config
        # --- operations (control API, drain, reload) ---
        self.loader = loader
        """Rebuilds the config from its sources (file + command line) for a reload."""
        self.control: Any = None
        self.api: Any = None
        self._hurry = False
        """Set by a second stop signal (or SIGINT): hang up now instead of draining."""
        # ---
        calls = config.calls
        self.guard = Guard(config.guard, whitelist=(  # default: whom we trust or dial
            *calls.trusted_sources, *uri_hosts((calls.bot_uri, calls.agent_uri, calls.trunk))))
        self.endpoint = SipEndpoint(limits=config.limits, guard=self.guard)
        self.application = application_factory(self.endpoint)
        listeners = getattr(self.application, "listeners", None)
        if listeners is not None:  # the guard counts calls up, per source
            listeners.append(self.guard.on_call_event)
        self.endpoint.on_event = self._on_event
        self.taps: list[Callable[[Event], bool]] = []
        """Asked first about every SIP event; one that returns True has taken it (the
        carrier probe's own transactions and dialog, voicegw/probe/runner.py)."""
        self.refusals: Refusals = getattr(self.application, "refusals", None) or Refusals()
        """Where refusals are counted and logged: the engine's, so the metric sees the
        UA core's stateless refusals (guard, transaction limit) and the engine's alike."""
        self._stop = asyncio.Event()
        self.collector: PeriodicCollector | None = None
        """The full garbage collections on a clock (memory.py), while serving."""
        self.registrations: Any = None
        self.keepalives: Any = None
        """Keep-alives toward the profiles that ask for them (voicegw/keepalives.py)."""
        self.gateways: Any = None
        """The carrier gateways' OPTIONS pings while serving (voicegw/gateways.py); the
        dial path may read it as gateways.GatewayStates."""
        """The carrier profiles' REGISTERs while serving (voicegw/registrar.py)."""
        self.store: RecordStore | None = None
        """The call/transfer records (store/), open while serving when the application
        is an engine (has ``listeners``); the control API reads it."""

    def _admit(self, request: Any, source: Any, now: float) -> Refused | None:
        """Whether a new INVITE is taken on (the UA core asks): not while the records
        store is backlogged (store/writer.py: Backlog: no record of the calls up is
        dropped, new calls wait), else as the guard says (overload, call limits)."""
        store = self.store
        if store is not None and store.writer.backlogged():
            return Refused(Cause.STORE_BACKLOG)
        return self.guard.admit_call(request, source, now)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, MessageRejected) and event.cause is not None:
            # refused by the core before any transaction (guard, transaction limit):
            # one call.refused line, counted by cause
            self.refusals.note(event.cause, event.status, method=event.method or "?", call_id=event.call_id,
                               source=str(event.source), detail=event.reason)
        else:
            log_event(event)
        for tap in self.taps:
            if tap(event):
                return
        self.application.handle_event(event)

    def stop(self) -> None:
        self._stop.set()

    async def serve(self) -> int:
        """Run until stopped; the exit code."""
        from .sip.core import CoreConfig, UserAgentCore

        loop = asyncio.get_running_loop()
        sip = self.config.sip
        if not self._open_store():
            return 1
        try:
            await self.endpoint.start(sip.host, sip.udp_port, sip.tcp_port, lag_probe=False)
        except OSError as error:
            log.error("daemon.failed", error=str(error), host=sip.host,
                      udp_port=sip.udp_port, tcp_port=sip.tcp_port)
            await self._close_store()
            return 1
        if not await self._start_tls() or not await self._start_media():
            await self.endpoint.close()
            await self._close_store()
            return 1
        udp, tcp = self.endpoint.udp_address, self.endpoint.tcp_address
        self.endpoint.core = UserAgentCore(
            CoreConfig(
                host=sip.host,
                addresses=sip.addresses(),
                udp_port=udp.port if udp else (tcp.port if tcp else 5060),
                tcp_port=tcp.port if tcp else (udp.port if udp else 5060),
                user_agent=self.config.user_agent,
                # RFC 4028 session timers, RFC 4488 Refer-Sub, RFC 3891 Replaces and
                # RFC 3262 reliable 1xx (the caller's INVITE session sends them)
                supported=("timer", "norefersub", "replaces", "100rel"),
            )
        )
        self.endpoint.core.admission = self._admit  # the store's backlog, the guard's limits
        # OPTIONS pings get 503 until the API is up too: Kamailio's dispatcher (and the
        # supervisor of --workers) must not send calls to a worker that is half started
        self.endpoint.core.ready = False
        if (tls := self.endpoint.tls_address) is not None:  # Via of requests sent over TLS
            self.endpoint.core.config.tls_port = tls.port  # type: ignore[attr-defined]
        collector = self.collector = PeriodicCollector(loop, self.config.lifecycle.gc_interval)
        collector.start()
        api_url, api_error = await self._start_api()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        loop.set_exception_handler(_log_loop_exception)
        # the loop's lateness counts from here: the start-up above (the API's routes,
        # TLS contexts) blocks the loop for a few hundred ms on a busy machine, which
        # the guard would take for overload and refuse the first calls for
        self.endpoint.start_lag_probe()
        self.endpoint.core.ready = True  # the API is up (or failed: calls matter more)
        log.info(
            "daemon.started",
            pid=os.getpid(),
            udp=str(udp) if udp else None,
            tcp=str(tcp) if tcp else None,
            api=api_url,
            loop=type(loop).__module__.split(".")[0],
            application=type(self.application).__name__,
        )
        if api_error is not None:  # logged after daemon.started: SIP is up, the API is not
            log.error("api.failed", error=api_error, host=self.config.api.host, port=self.config.api.port)
        self._start_registrations()
        try:
            await self._stop.wait()
            await self._drain()
        finally:
            if self.gateways is not None:
                await self.gateways.stop()
            if self.keepalives is not None:
                await self.keepalives.stop()
            if self.registrations is not None:  # Expires: 0 for every binding (bounded)
                await self.registrations.stop()
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            collector.stop()
            if self.api is not None:
                await self.api.close()
            await self.endpoint.close()
            if (engine := self._engine()) is not None:
                await engine.media.close()
            await self._close_store()
            log.info("daemon.stopped", statistics=_plain(self.endpoint.statistics()))
        return 0

    # ------------------------------------------------------------------ trunks
    def _start_registrations(self) -> None:
        if self.config.health_checks:
            from .gateways import Gateways

            self.gateways = Gateways(self.endpoint, self.config.sip, self.config.health_checks,
                                     self.config.dns)
            self.taps.append(self.gateways.tap)
            self.gateways.start()
            if hasattr(self.application, "gateways"):
                self.application.gateways = self.gateways  # the dial path skips gateways down
        if self.config.keepalives:
            from .keepalives import Keepalives

            self.keepalives = Keepalives(self.endpoint, self.config.sip, self.config.keepalives, self.config.dns)
            self.taps.append(self.keepalives.tap)
            self.keepalives.start()
        if not self.config.registrations:
            return
        from .registrar import Registrations

        self.registrations = Registrations(self.endpoint, self.config.sip, self.config.registrations,
                                           self.config.dns)  # names via the daemon's dns:, as dialled targets
        self.taps.append(self.registrations.tap)
        self.registrations.start()

    # ------------------------------------------------------------------ media plane
    async def _start_media(self) -> bool:
        """With ``media.backend: rtpengine``, the engine's legs go through rtpengine: its
        ng port must answer a ping now (False, logged, when it does not)."""
        media = self.config.media_plane
        engine = self._engine()
        if media.backend != "rtpengine" or engine is None:
            return True
        from .media.plane import RtpenginePlane
        from .media.rtpengine_ng import NgError

        try:
            plane = await RtpenginePlane.connect(media.rtpengine_ng, media.rtpengine_dtmf,
                                                 media.rtpengine_files)
            await plane.backend.client.request({"command": "ping"})
        except (NgError, TimeoutError, OSError) as error:
            log.error("daemon.failed", error=f"rtpengine: {error}", ng=f"{media.rtpengine_ng}")
            return False
        engine.media = plane
        log.info("media.rtpengine", ng=f"{media.rtpengine_ng}", dtmf=f"{media.rtpengine_dtmf}")
        return True

    # ------------------------------------------------------------------ TLS (sips)
    async def _start_tls(self) -> bool:
        """The TLS listener when ``tls.enabled``; False (logged) when it cannot start:
        a port taken, or a certificate/key/CA file missing or unusable."""
        tls = self.config.tls
        if not tls.enabled:
            return True
        from .transport.tls import TlsConfigError

        try:
            await self.endpoint.start_tls(self.config.sip.host, tls)
        except (OSError, TlsConfigError) as error:
            log.error("daemon.failed", error=str(error), host=self.config.sip.host,
                      tls_port=tls.port)
            return False
        log.info("tls.listening", address=str(self.endpoint.tls_address),
                 min_version=tls.min_version, verify_client=tls.verify_client)
        return True

    # ------------------------------------------------------------------ records (store/)
    def _open_store(self) -> bool:
        """Open the records before any SIP arrives (migrations and crash recovery run
        here, blocking, once) and record every call of the engine; False on failure."""
        listeners = getattr(self.application, "listeners", None)
        if listeners is None:
            return True  # not an engine: nothing to record
        try:
            self.store = open_store(self.config)
        except StoreError as error:  # postgres: its message names the server, not the password
            log.error("daemon.failed", error=f"records store: {error}")
            return False
        except (OSError, sqlite3.Error, SchemaError) as error:
            log.error("daemon.failed", error=f"records store {store_where(self.config)}: {error}")
            return False
        listeners.append(self.store.listener)
        if hasattr(self.application, "durable"):
            self.application.durable = self.store.durable  # transfers wait for their record
        return True

    async def _close_store(self) -> None:
        """Flush and close the records (off the loop: the writer commits what is queued)."""
        if self.control is not None and self.store is not None:
            self.control.save_pending_ladders()
        if self.store is not None:
            store, self.store = self.store, None
            await asyncio.to_thread(store.close)

    # ------------------------------------------------------------------ operations:
    # signals, drain, reload, the control API
    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set() or signum == signal.SIGINT:
            self._hurry = True  # a second signal, or Ctrl-C: no waiting for calls
        if self._stop.is_set():
            log.info("daemon.hurry", signal=name)
            return
        log.info("daemon.stopping", signal=name)
        engine = self._engine()
        if engine is not None:
            engine.draining = True  # from now on new INVITEs get 503 + Retry-After
        if self.endpoint.core is not None:
            self.endpoint.core.ready = False  # and OPTIONS pings 503: dispatchers look elsewhere
        self.stop()

    def _on_sighup(self) -> None:
        self.reload(trigger="sighup")

    def _engine(self) -> Any:
        from .engine.b2bua import Engine

        return self.application if isinstance(self.application, Engine) else None

    async def _drain(self) -> None:
        """Let calls in progress finish until the deadline, then hang up the rest."""
        engine = self._engine()
        if engine is None:
            return
        engine.draining = True
        loop = asyncio.get_running_loop()
        # calls still being set up are not conversations yet: refused now (480), as a
        # new call would be, instead of holding the stop for them
        for call in engine.active_calls():
            if call.state.value == "setup":
                engine.hang_up(call, "shutdown")
        active = engine.active_calls()
        if not active:
            return
        deadline = 0.0 if self._hurry else self.config.lifecycle.drain_deadline
        log.info("daemon.draining", active_calls=len(active), deadline=deadline)
        until = loop.time() + deadline
        while engine.active_calls() and loop.time() < until and not self._hurry:
            await asyncio.sleep(0.05)
        left = engine.active_calls()
        for call in left:
            engine.hang_up(call, "shutdown")
        log.info("daemon.drained", finished=len(active) - len(left), hung_up=len(left))
        if left:  # give the BYEs a moment to be answered (bounded)
            until = loop.time() + 2.0
            core = self.endpoint.core
            while core is not None and core.statistics().pending_transactions and loop.time() < until:
                await asyncio.sleep(0.05)

    async def _start_api(self) -> tuple[str | None, str | None]:
        """The control API: (its URL or None, why it could not start or None)."""
        engine = self._engine()
        api = self.config.api
        if engine is None or not api.enabled:
            return None, None
        from .api.control import Control
        from .api.server import ApiServer
        from .api.token import TokenError
        from .api.trace import SipTrace

        self.control = Control(engine, daemon=self, trace=SipTrace(per_call=api.trace_per_call))
        self.control.transcripts.max_uses = api.transcript_max_uses
        self.control.transcripts.ttl = api.transcript_ttl
        self.endpoint.trace = self.control.trace
        if self.config.desk.enabled:  # aiortc is imported only when the desk is on
            import ipaddress

            from .desk.service import DeskService

            secure = api.host != "localhost" and not ipaddress.ip_address(api.host).is_loopback
            self.control.desk = engine.desk = DeskService(self.config.desk, engine.config.policy.rtp_host,
                                                          secure=secure, records=self.store)
        server = ApiServer(self.control, api)
        try:
            await server.start()
        except (OSError, TokenError) as error:
            return None, str(error)
        self.api = server
        return server.url, None

    def reload(self, trigger: str = "api") -> tuple[bool, str]:
        """Reload the config from its sources; (done, what happened). A config that does
        not load, or that changes what needs a restart, is refused whole."""
        engine = self._engine()
        counts = self.control.reloads if self.control is not None else None

        def refuse(reason: str) -> tuple[bool, str]:
            log.error("daemon.reload_refused", trigger=trigger, error=reason)
            if counts is not None:
                counts["refused"] += 1
            return False, f"reload refused, the running config stays: {reason}"

        if self.loader is None or engine is None:
            return refuse("this daemon was started without a config to reload")
        try:
            config = self.loader()
        except Exception as error:  # noqa: BLE001 - the loader names the file and the field
            return refuse(str(getattr(error, "message", None) or error))
        try:
            engine.reconfigure(engine_config(config))
        except Exception as error:  # noqa: BLE001 - a reload refused, the daemon goes on
            return refuse(str(error))
        fixed = ("sip", "api", "limits", "tls", "registrations", "health_checks", "keepalives")
        notes = [name for name in fixed if getattr(config, name) != getattr(self.config, name)]
        self.config = dataclasses.replace(config, **{name: getattr(self.config, name) for name in fixed})
        detail = "reloaded" + (f"; {', '.join(notes)} changes need a restart" if notes else "")
        log.info("daemon.reloaded", trigger=trigger, restart_needed=notes)
        if counts is not None:
            counts["ok"] += 1
        return True, detail


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """Errors in callbacks become JSON log lines with their traceback, like the rest."""
    error = context.get("exception")
    log.error(
        "loop.exception",
        message=str(context.get("message", "")),
        error=repr(error) if error is not None else None,
        traceback="".join(traceback.format_exception(error)) if isinstance(error, BaseException) else None,
    )


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def run(config: DaemonConfig = DEFAULT, loader: Callable[[], DaemonConfig] | None = None) -> int:
    """Run the daemon in the foreground on uvloop when installed; the exit code.
    ``loader`` rebuilds the config for a reload (SIGHUP, ``voicegw reload``)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    if config.api.enabled:
        # imported here, not on the loop: FastAPI/pydantic/uvicorn take about a second to
        # import, which on the loop would read as lag (the guard would shed calls)
        from .api import server as _api_server  # noqa: F401
    tune_gc()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(Daemon(config, application_factory=engine_factory(config), loader=loader).serve())


def engine_factory(config: DaemonConfig) -> ApplicationFactory:
    """The B2BUA engine on the daemon's SIP endpoint, configured from ``config.calls``."""
    from .engine.b2bua import Engine

    built = engine_config(config)
    return lambda endpoint: Engine(endpoint, built)


def engine_config(config: DaemonConfig) -> EngineConfig:
    """The engine's config from the daemon's (config/convert.py builds it): at start,
    and again for a reload."""
    from .config.convert import engine_config as build

    built = build(config)
    worker = store_worker_id(config)
    return dataclasses.replace(built, transfer_id_prefix=f"{worker}-") if worker else built
