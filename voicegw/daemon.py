"""The daemon: the SIP endpoint, an application, structured logs, a clean stop.

Lifecycle: bind SIP (UDP and TCP), log ``daemon.started``; on SIGINT or SIGTERM log
``daemon.stopping``, close the sockets (TCP writes flushed, bounded), log
``daemon.stopped`` with the statistics, exit 0. A port that cannot be bound logs
``daemon.failed`` and exits 1.

The application is whatever object has ``handle_event(event)``. Until the B2BUA
engine lands, :class:`RejectingApplication` answers every new request 480; the
engine replaces it through ``Daemon(application_factory=...)``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import signal
import traceback
from collections.abc import Callable
from typing import Protocol

from .config.defaults import DEFAULT, DaemonConfig
from .logging import get_logger
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

    def handle_event(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            if event.request.method == "ACK" or not event.transaction_id:
                return
            response = make_response(event.request, self.STATUS, to_tag=new_tag())
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
        log.info(
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
    ) -> None:
        self.config = config
        calls = config.calls
        self.guard = Guard(config.guard, whitelist=(  # default: whom we trust or dial
            *calls.trusted_sources, *uri_hosts((calls.bot_uri, calls.agent_uri, calls.trunk))))
        self.endpoint = SipEndpoint(limits=config.limits, guard=self.guard)
        self.application = application_factory(self.endpoint)
        listeners = getattr(self.application, "listeners", None)
        if listeners is not None:  # the guard counts calls up, per source
            listeners.append(self.guard.on_call_event)
        self.endpoint.on_event = self._on_event
        self._stop = asyncio.Event()

    def _on_event(self, event: Event) -> None:
        log_event(event)
        self.application.handle_event(event)

    def stop(self) -> None:
        self._stop.set()

    async def serve(self) -> int:
        """Run until stopped; the exit code."""
        from .sip.core import CoreConfig, UserAgentCore

        loop = asyncio.get_running_loop()
        sip = self.config.sip
        try:
            await self.endpoint.start(sip.host, sip.udp_port, sip.tcp_port)
        except OSError as error:
            log.error("daemon.failed", error=str(error), host=sip.host,
                      udp_port=sip.udp_port, tcp_port=sip.tcp_port)
            return 1
        if not await self._start_tls():
            await self.endpoint.close()
            return 1
        udp, tcp = self.endpoint.udp_address, self.endpoint.tcp_address
        self.endpoint.core = UserAgentCore(
            CoreConfig(
                host=sip.host,
                udp_port=udp.port if udp else (tcp.port if tcp else 5060),
                tcp_port=tcp.port if tcp else (udp.port if udp else 5060),
                user_agent=self.config.user_agent,
                # RFC 4028 session timers and RFC 4488 Refer-Sub: the engine honours both
                supported=("timer", "norefersub", "replaces"),
            )
        )
        self.endpoint.core.admission = self.guard.admit_call  # overload, calls per source
        if (tls := self.endpoint.tls_address) is not None:  # Via of requests sent over TLS
            self.endpoint.core.config.tls_port = tls.port  # type: ignore[attr-defined]
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        loop.set_exception_handler(_log_loop_exception)
        log.info(
            "daemon.started",
            pid=os.getpid(),
            udp=str(udp) if udp else None,
            tcp=str(tcp) if tcp else None,
            loop=type(loop).__module__.split(".")[0],
            application=type(self.application).__name__,
        )
        try:
            await self._stop.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await self.endpoint.close()
            log.info("daemon.stopped", statistics=_plain(self.endpoint.statistics()))
        return 0

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

    def _on_signal(self, signum: int) -> None:
        log.info("daemon.stopping", signal=signal.Signals(signum).name)
        self.stop()


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


def run(config: DaemonConfig = DEFAULT) -> int:
    """Run the daemon in the foreground on uvloop when installed; the exit code."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    tune_gc()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(Daemon(config, application_factory=engine_factory(config)).serve())


def tune_gc() -> None:
    """Fewer, cheaper collections: signalling allocates many short-lived objects, and
    full collections over everything loaded at start-up showed as 40-50 ms latency
    spikes at 3,000 requests/s. Start-up objects move out of the collector's sight
    (``gc.freeze``); the young generation is collected less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def engine_factory(config: DaemonConfig) -> ApplicationFactory:
    """The B2BUA engine on the daemon's SIP endpoint, configured from ``config.calls``."""
    from .engine.b2bua import Engine, EngineConfig
    from .engine.transfer import TransferConfig
    from .flow.runner import demo_flow

    calls = config.calls
    allow = calls.transfer_allow + ((calls.agent_uri,) if calls.agent_uri else ())
    engine_config = EngineConfig(
        host=config.sip.host,
        sip_port=config.sip.udp_port or config.sip.tcp_port or 5060,
        rtp_port_min=calls.rtp_port_min,
        rtp_port_max=calls.rtp_port_max,
        trusted_sources=calls.trusted_sources,
        bot_uri=calls.bot_uri,
        bot_answer_timeout=calls.bot_answer_timeout,
        tts_cache_dir=calls.tts_cache_dir,
        flow=demo_flow(calls.agent_uri, calls.transfer_method),
        transfer=TransferConfig(allow=allow, trunk=calls.trunk, country_code=calls.country_code,
                                ring_timeout=calls.ring_timeout, refer_sub=calls.refer_sub,
                                refer_timeout=calls.refer_timeout, notify_timeout=calls.notify_timeout,
                                bot_refer_method=calls.transfer_method),
    )
    return lambda endpoint: Engine(endpoint, engine_config)
    if config.source is not None:  # files: flows and profiles reach the engine
        from .config.convert import engine_config as from_files

        return from_files(config.source, config)
